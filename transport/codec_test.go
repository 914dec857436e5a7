package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

var update = flag.Bool("update", false, "rewrite the golden encodings in testdata/golden")

// msgCase is one message encoded by the codec, with a check that decodes
// a frame of its type and compares it with what was encoded.
type msgCase struct {
	name  string
	frame []byte
	check func(t *testing.T, h Header, body []byte)
}

// testRecords returns the log frames of records first..first+n-1.
func testRecords(first wal.LSN, n int) []byte {
	var b []byte
	for i := range n {
		b = wal.AppendRecord(b, &wal.Record{LSN: first + wal.LSN(i), Epoch: 7, Aux: uint64(i), Payload: []byte{byte(i), 'x', 'y'}})
	}
	return b
}

func msgCases() []msgCase {
	payload := []byte("hello, lockstitch")
	appendReq := AppendRequest{Partition: 42, Producer: 0xfeed, Sequence: 9, CRC: wal.Checksum(payload), Payload: payload}
	appendRes := AppendResult{LSN: 1001, Epoch: 3, Result: []byte("ok")}
	batchPayloads := [][]byte{[]byte("a"), nil, []byte("ccc")}
	batchCRCs := []uint32{wal.Checksum(batchPayloads[0]), wal.Checksum(nil), wal.Checksum(batchPayloads[2])}
	batchReq := AppendBatchRequest{Partition: 7, Producer: 1, Sequence: 100}
	batchRes := []AppendResult{{LSN: 10, Epoch: 2}, {LSN: 11, Epoch: 2, Result: []byte("r")}, {LSN: 12, Epoch: 2}}
	readReq := ReadRequest{Partition: 5, From: 17, MaxOps: 100, MaxBytes: 1 << 20}
	readReverseReq := ReadRequest{Partition: 5, From: 0, MaxOps: 100, MaxBytes: 1 << 20, Reverse: true}
	records := testRecords(17, 3)
	subReq := SubscribeRequest{Partition: 5, Marker: 16, CreditBytes: 8 << 20, CreditOps: 4096}
	subSnapReq := SubscribeRequest{Partition: 5, Marker: 16, CreditBytes: 8 << 20, CreditOps: 4096, Snapshot: true}
	snapData := []byte("plugin state")
	snap := snapshotMsg{LSN: 900, Epoch: 3, CRC: wal.Checksum(snapData), Data: snapData}
	snapEnd := snapshotMsg{LSN: 900, Epoch: 3, Data: []byte{}}
	cursorReq := CursorRequest{Partition: 5, Op: CursorAck, LSN: 77, Name: "billing"}
	cursorRes := CursorResult{Cursors: []Cursor{{Name: "billing", LSN: 77}, {Name: "search", LSN: 12, Lapsed: true}}}
	credit := creditMsg{Bytes: 65536, Ops: 128}
	queryReq := QueryRequest{Partition: 3, Consistency: lockstitch.Bounded, MaxStaleness: 50 * time.Microsecond, Request: []byte("get k")}
	queryRes := QueryResult{LSN: 90, Committed: 95, Result: []byte("v")}
	statusReq := StatusRequest{OnePartition: true, Partition: 3}
	status := NodeStatus{NodeID: 2, Partitions: []PartitionStatus{{
		Partition: 3, Role: lockstitch.RoleLeader, Leader: 21, LeaderAddr: "10.0.0.2:7000", Epoch: 4, Committed: 95, Applied: 94,
		Replicas: []ReplicaStatus{
			{Replica: 21, Addr: "10.0.0.2:7000", Kind: lockstitch.Voter, Match: 95},
			{Replica: 31, Addr: "10.0.0.3:7000", Kind: lockstitch.Witness, Match: 90, Lag: 5},
		},
	}, {Partition: 4, Role: lockstitch.RoleFollower}}}
	statusAgesReq := StatusRequest{OnePartition: true, Partition: 3, Producer: 77, ReportAges: true}
	statusAges := NodeStatus{NodeID: 2, Partitions: []PartitionStatus{{
		Partition: 3, Role: lockstitch.RoleLeader, Leader: 21, Epoch: 4, Committed: 95, Applied: 94,
		Replicas: []ReplicaStatus{
			{Replica: 21, Addr: "10.0.0.2:7000", Kind: lockstitch.Voter, Match: 95, Reported: true},
			{Replica: 31, Addr: "10.0.0.3:7000", Kind: lockstitch.Voter, Match: 90, Lag: 5, Reported: true, ReportAge: 2500 * time.Millisecond},
			{Replica: 41, Addr: "10.0.0.4:7000", Kind: lockstitch.Voter},
		},
	}}, Producer: &ProducerStatus{Producer: 77, Known: true, Last: 3, LastLSN: 95, LastEpoch: 4}}
	statusProducerReq := StatusRequest{OnePartition: true, Partition: 3, Producer: 77}
	statusProducer := NodeStatus{NodeID: 2, Partitions: []PartitionStatus{{Partition: 3, Role: lockstitch.RoleLeader, Leader: 21, Epoch: 4, Committed: 95, Applied: 95}},
		Producer: &ProducerStatus{Producer: 77, Known: true, Forgotten: true, Floor: 1000, Last: 2023, LastLSN: 95, LastEpoch: 4}}
	adminReq := AdminRequest{
		Op: AdminStartReplica, Partition: 9, Replica: 2, Node: 3, Kind: lockstitch.NonVoting, Join: true, Forwarded: true, Replicas: 3,
		Timeout: 2500 * time.Millisecond,
		Plugin:  "log", Options: map[string]string{"a": "1", "b": ""}, Nodes: []lockstitch.NodeID{1, 2, 3},
		Members: []Member{{Replica: 1, RaftAddr: "10.0.0.1:7010"}, {Replica: 2, RaftAddr: "10.0.0.2:7010"}},
	}
	adminRes := AdminResult{
		Placement: []Placement{{Replica: 1, Node: 2, Kind: lockstitch.Voter}, {Replica: 2, Node: 3, Kind: lockstitch.Voter}},
		Replica:   4,
		Partitions: []PartitionInfo{{
			Partition: 9, Plugin: "log", Leader: 2, LeaderReplica: 1, Epoch: 5, Committed: 77,
			Replicas: []ReplicaInfo{{Node: 2, Replica: 1, Role: lockstitch.RoleLeader, Applied: 77}, {Node: 3, Replica: 2, Role: lockstitch.RoleNonVoting, Applied: 70}},
		}, {Partition: 10}},
		Nodes: []NodeInfo{
			{Node: 1, RaftAddr: "10.0.0.1:7010", ClientAddr: "10.0.0.1:7000", Reachable: true, Partitions: 2, Leading: 1},
			{Node: 2, RaftAddr: "10.0.0.2:7010", ClientAddr: "10.0.0.2:7000", Error: "connection refused"},
		},
	}
	adminBody, err := adminReq.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	adminWitnessReq := AdminRequest{Op: AdminCreatePartition, Partition: 9, Plugin: "log", Replicas: 2, Witnesses: 1, WitnessNodes: []lockstitch.NodeID{3}}
	adminWitnessBody, err := adminWitnessReq.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	adminWitnessRes := AdminResult{
		Placement: []Placement{{Replica: 1, Node: 1, Kind: lockstitch.Voter}, {Replica: 2, Node: 2, Kind: lockstitch.Voter}},
		Witnesses: []Placement{{Replica: 3, Node: 3, Kind: lockstitch.Witness}},
	}
	errMsg := errorMsg{Code: CodeNotLeader, LeaderAddr: "10.0.0.2:7000", Message: "not the leader"}
	divergedMsg := errorMsg{Code: CodeDiverged, Detail: 1000, Epoch: 0x0102030405, Message: "marker 1200 is ahead of the committed stream"}
	hello := helloMsg{MaxVersion: Version, MinVersion: Version, MaxFrameBytes: 1 << 20, Name: "test", Credentials: []byte("secret")}
	welcome := welcomeMsg{NodeID: 2, MaxFrameBytes: 1 << 25, MaxInFlight: 4096}

	same := func(t *testing.T, what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: got %+v, want %+v", what, got, want)
		}
	}
	return []msgCase{
		{"hello", appendHello(nil, &hello), func(t *testing.T, h Header, body []byte) {
			var m helloMsg
			if err := decodeHello(body, &m); err != nil {
				t.Fatal(err)
			}
			m.MaxVersion = h.Version
			same(t, "Hello", m, hello)
		}},
		{"welcome", appendWelcome(nil, &welcome), func(t *testing.T, h Header, body []byte) {
			var m welcomeMsg
			if err := decodeWelcome(body, &m); err != nil {
				t.Fatal(err)
			}
			same(t, "Welcome", m, welcome)
		}},
		{"ping", appendPing(nil, 5), func(t *testing.T, h Header, body []byte) {
			if err := decodeEmpty(h.Type, body); err != nil {
				t.Fatal(err)
			}
		}},
		{"pong", appendPong(nil, 5), func(t *testing.T, h Header, body []byte) {
			if err := decodeEmpty(h.Type, body); err != nil {
				t.Fatal(err)
			}
		}},
		{"append", appendAppend(nil, 1<<32|7, &appendReq), func(t *testing.T, h Header, body []byte) {
			var r AppendRequest
			if err := decodeAppend(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Append", r, appendReq)
		}},
		{"append_result", appendAppendResult(nil, 1<<32|7, &appendRes), func(t *testing.T, h Header, body []byte) {
			var r AppendResult
			if err := decodeAppendResult(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "AppendResult", r, appendRes)
		}},
		{"append_batch", appendAppendBatch(nil, 8, &batchReq, batchPayloads, batchCRCs), func(t *testing.T, h Header, body []byte) {
			var r AppendBatchRequest
			if err := decodeAppendBatch(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "AppendBatch", [3]uint64{uint64(r.Partition), r.Producer, r.Sequence}, [3]uint64{7, 1, 100})
			if r.Len() != len(batchPayloads) {
				t.Fatalf("%d ops, want %d", r.Len(), len(batchPayloads))
			}
			it := r.Ops()
			var op BatchOp
			for i := 0; it.Next(&op); i++ {
				if !bytes.Equal(op.Payload, batchPayloads[i]) || op.CRC != batchCRCs[i] {
					t.Fatalf("op %d: %q %08x, want %q %08x", i, op.Payload, op.CRC, batchPayloads[i], batchCRCs[i])
				}
			}
			if err := r.verify(); err != nil {
				t.Fatal(err)
			}
		}},
		{"append_batch_result", appendBatchResults(nil, 8, batchRes), func(t *testing.T, h Header, body []byte) {
			it, err := decodeBatchResults(body)
			if err != nil {
				t.Fatal(err)
			}
			var got []AppendResult
			var r AppendResult
			for it.next(&r) {
				if len(r.Result) == 0 {
					r.Result = nil
				}
				got = append(got, r)
			}
			same(t, "AppendBatchResult", got, batchRes)
		}},
		{"read", appendRead(nil, 9, &readReq), func(t *testing.T, h Header, body []byte) {
			var r ReadRequest
			if err := decodeRead(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Read", r, readReq)
		}},
		{"read_reverse", appendRead(nil, 9, &readReverseReq), func(t *testing.T, h Header, body []byte) {
			var r ReadRequest
			if err := decodeRead(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Read", r, readReverseReq)
		}},
		{"read_result", appendReadResult(nil, 9, 20, records), func(t *testing.T, h Header, body []byte) {
			committed, recs, err := decodeRecords(h.Type, body)
			if err != nil {
				t.Fatal(err)
			}
			same(t, "ReadResult", []any{committed, recs}, []any{wal.LSN(20), records})
		}},
		{"subscribe", appendSubscribe(nil, 10, &subReq), func(t *testing.T, h Header, body []byte) {
			var r SubscribeRequest
			if err := decodeSubscribe(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Subscribe", r, subReq)
		}},
		{"subscribe_snapshot", appendSubscribe(nil, 10, &subSnapReq), func(t *testing.T, h Header, body []byte) {
			var r SubscribeRequest
			if err := decodeSubscribe(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Subscribe", r, subSnapReq)
		}},
		{"snapshot", appendSnapshot(nil, 10, &snap), func(t *testing.T, h Header, body []byte) {
			var m snapshotMsg
			if err := decodeSnapshot(body, &m); err != nil {
				t.Fatal(err)
			}
			if err := m.verify(); err != nil {
				t.Fatal(err)
			}
			same(t, "Snapshot", m, snap)
		}},
		{"cursor", appendCursorReq(nil, 15, &cursorReq), func(t *testing.T, h Header, body []byte) {
			var r CursorRequest
			if err := decodeCursorReq(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Cursor", r, cursorReq)
		}},
		{"cursor_result", appendCursorResult(nil, 15, &cursorRes), func(t *testing.T, h Header, body []byte) {
			var r CursorResult
			if err := decodeCursorResult(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "CursorResult", r, cursorRes)
		}},
		{"snapshot_end", appendSnapshot(nil, 10, &snapEnd), func(t *testing.T, h Header, body []byte) {
			var m snapshotMsg
			if err := decodeSnapshot(body, &m); err != nil {
				t.Fatal(err)
			}
			same(t, "Snapshot", m, snapEnd)
		}},
		{"credit", appendCredit(nil, 10, credit), func(t *testing.T, h Header, body []byte) {
			var m creditMsg
			if err := decodeCredit(body, &m); err != nil {
				t.Fatal(err)
			}
			same(t, "Credit", m, credit)
		}},
		{"cancel", appendCancel(nil, 10), func(t *testing.T, h Header, body []byte) {
			if err := decodeEmpty(h.Type, body); err != nil {
				t.Fatal(err)
			}
		}},
		{"data", appendData(nil, 10, 21, records), func(t *testing.T, h Header, body []byte) {
			committed, recs, err := decodeRecords(h.Type, body)
			if err != nil {
				t.Fatal(err)
			}
			same(t, "Data", []any{committed, recs}, []any{wal.LSN(21), records})
		}},
		{"end", appendEnd(nil, 10), func(t *testing.T, h Header, body []byte) {
			if err := decodeEmpty(h.Type, body); err != nil {
				t.Fatal(err)
			}
		}},
		{"query", appendQuery(nil, 11, &queryReq), func(t *testing.T, h Header, body []byte) {
			var r QueryRequest
			if err := decodeQuery(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Query", r, queryReq)
		}},
		{"query_result", appendQueryResult(nil, 11, &queryRes), func(t *testing.T, h Header, body []byte) {
			var r QueryResult
			if err := decodeQueryResult(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "QueryResult", r, queryRes)
		}},
		{"status", appendStatus(nil, 12, &statusReq), func(t *testing.T, h Header, body []byte) {
			var r StatusRequest
			if err := decodeStatus(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Status", r, statusReq)
		}},
		{"status_result", appendStatusResult(nil, 12, &statusReq, &status), func(t *testing.T, h Header, body []byte) {
			var s NodeStatus
			if err := decodeStatusResult(body, &statusReq, &s); err != nil {
				t.Fatal(err)
			}
			same(t, "StatusResult", s, status)
		}},
		{"status_producer", appendStatus(nil, 12, &statusProducerReq), func(t *testing.T, h Header, body []byte) {
			var r StatusRequest
			if err := decodeStatus(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Status", r, statusProducerReq)
		}},
		{"status_result_producer", appendStatusResult(nil, 12, &statusProducerReq, &statusProducer), func(t *testing.T, h Header, body []byte) {
			var s NodeStatus
			if err := decodeStatusResult(body, &statusProducerReq, &s); err != nil {
				t.Fatal(err)
			}
			same(t, "StatusResult", s, statusProducer)
		}},
		{"status_ages", appendStatus(nil, 12, &statusAgesReq), func(t *testing.T, h Header, body []byte) {
			var r StatusRequest
			if err := decodeStatus(body, &r); err != nil {
				t.Fatal(err)
			}
			same(t, "Status", r, statusAgesReq)
		}},
		{"status_result_ages", appendStatusResult(nil, 12, &statusAgesReq, &statusAges), func(t *testing.T, h Header, body []byte) {
			var s NodeStatus
			if err := decodeStatusResult(body, &statusAgesReq, &s); err != nil {
				t.Fatal(err)
			}
			same(t, "StatusResult", s, statusAges)
			// A server that predates report ages answers without them.
			var old NodeStatus
			if err := decodeStatusResult(appendStatusResult(nil, 12, &statusProducerReq, &statusAges)[HeaderSize:], &statusAgesReq, &old); err != nil {
				t.Fatal(err)
			}
			if r := old.Partitions[0].Replicas[1]; r.Reported || r.ReportAge != 0 || r.Lag != 5 {
				t.Fatalf("an answer without ages: %+v", r)
			}
		}},
		{"admin", appendAdmin(nil, 14, adminBody), func(t *testing.T, h Header, body []byte) {
			var r AdminRequest
			if err := r.UnmarshalBinary(body); err != nil {
				t.Fatal(err)
			}
			same(t, "Admin", r, adminReq)
		}},
		{"admin_result", appendAdminResult(nil, 14, &adminRes), func(t *testing.T, h Header, body []byte) {
			var r AdminResult
			if err := r.UnmarshalBinary(body); err != nil {
				t.Fatal(err)
			}
			same(t, "AdminResult", r, adminRes)
		}},
		{"admin_witnesses", appendAdmin(nil, 15, adminWitnessBody), func(t *testing.T, h Header, body []byte) {
			var r AdminRequest
			if err := r.UnmarshalBinary(body); err != nil {
				t.Fatal(err)
			}
			same(t, "Admin", r, adminWitnessReq)
		}},
		{"admin_result_witnesses", appendAdminResult(nil, 15, &adminWitnessRes), func(t *testing.T, h Header, body []byte) {
			var r AdminResult
			if err := r.UnmarshalBinary(body); err != nil {
				t.Fatal(err)
			}
			same(t, "AdminResult", r, adminWitnessRes)
		}},
		{"error", appendError(nil, 13, &errMsg), func(t *testing.T, h Header, body []byte) {
			var m errorMsg
			if err := decodeError(body, &m); err != nil {
				t.Fatal(err)
			}
			same(t, "Error", m, errMsg)
		}},
		{"error_diverged", appendError(nil, 13, &divergedMsg), func(t *testing.T, h Header, body []byte) {
			var m errorMsg
			if err := decodeError(body, &m); err != nil {
				t.Fatal(err)
			}
			same(t, "Error", m, divergedMsg)
		}},
	}
}

// TestMessageRoundTrip encodes every message, checks its header, and
// decodes it back.
func TestMessageRoundTrip(t *testing.T) {
	for _, mc := range msgCases() {
		t.Run(mc.name, func(t *testing.T) {
			var h Header
			if err := DecodeHeader(mc.frame, &h); err != nil {
				t.Fatal(err)
			}
			if h.Version != Version || h.Flags != 0 || int(h.Length) != len(mc.frame)-HeaderSize {
				t.Fatalf("header %+v for a frame of %d bytes", h, len(mc.frame))
			}
			mc.check(t, h, mc.frame[HeaderSize:])
		})
	}
}

// TestGolden compares each encoding with its golden file in
// testdata/golden (rewritten with -update), and decodes each golden file,
// so that an old encoding that no longer decodes fails.
func TestGolden(t *testing.T) {
	for _, mc := range msgCases() {
		t.Run(mc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", mc.name+".bin")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, mc.frame, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(golden, mc.frame) {
				t.Fatalf("encoding changed:\n got %x\nwant %x", mc.frame, golden)
			}
			var h Header
			if err := DecodeHeader(golden, &h); err != nil {
				t.Fatal(err)
			}
			mc.check(t, h, golden[HeaderSize:])
		})
	}
}

// TestHeaderLayout pins the header's byte layout.
func TestHeaderLayout(t *testing.T) {
	b := AppendHeader(nil, Header{Version: 1, Type: TypeAppend, Flags: 0x0102, Length: 0x03040506, ID: 0x0708090a0b0c0d0e})
	want := []byte{1, 0x03, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07}
	if !bytes.Equal(b, want) {
		t.Fatalf("header %x, want %x", b, want)
	}
	var h Header
	if err := DecodeHeader(b[:HeaderSize-1], &h); !errors.Is(err, ErrShortFrame) {
		t.Fatalf("short header: %v", err)
	}
}

// withByte returns a copy of b with b[i] = v.
func withByte(b []byte, i int, v byte) []byte {
	c := append([]byte(nil), b...)
	c[i] = v
	return c
}

// TestDecodeRejects checks that malformed bodies fail with ErrProtocol.
func TestDecodeRejects(t *testing.T) {
	// One replica whose report age is unknown: its age is the last byte.
	ageless := appendStatusResult(nil, 1, &StatusRequest{ReportAges: true},
		&NodeStatus{Partitions: []PartitionStatus{{Partition: 1, Replicas: []ReplicaStatus{{Replica: 1}}}}})[HeaderSize:]
	adminBody, err := (&AdminRequest{Op: AdminCreatePartition, Partition: 3, Plugin: "log", Timeout: time.Second}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := new(AdminRequest).UnmarshalBinary(adminBody); err != nil {
		t.Fatal(err) // the cases below must fail for their own reason
	}
	adminResBody, _ := (&AdminResult{Nodes: []NodeInfo{{Node: 1, Reachable: true}}}).AppendBinary(nil)
	if err := new(AdminResult).UnmarshalBinary(adminResBody); err != nil {
		t.Fatal(err)
	}
	const nodeReachableFromEnd = 1 + 1 + 4 + 4 // reachable, error, partitions, leading
	u32 := func(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
	batchHead := make([]byte, batchFixed-4)
	cases := []struct {
		name string
		err  error
	}{
		{"append short", decodeAppend(make([]byte, appendFixed-1), new(AppendRequest))},
		{"batch zero ops", decodeAppendBatch(append(append([]byte{}, batchHead...), u32(0)...), new(AppendBatchRequest))},
		{"batch count beyond bytes", decodeAppendBatch(append(append([]byte{}, batchHead...), u32(1<<30)...), new(AppendBatchRequest))},
		{"batch op overruns", decodeAppendBatch(append(append(append([]byte{}, batchHead...), u32(1)...), append(u32(100), u32(0)...)...), new(AppendBatchRequest))},
		{"batch trailing", decodeAppendBatch(append(append(append([]byte{}, batchHead...), u32(1)...), append(append(u32(0), u32(0)...), 9)...), new(AppendBatchRequest))},
		{"read long", decodeRead(make([]byte, readSize+1), new(ReadRequest))},
		{"read flags", decodeRead(append(make([]byte, readSize), 2, 0, 0, 0, 0, 0, 0, 0), new(ReadRequest))},
		{"read flags word", decodeRead(append(make([]byte, readSize), 1, 0, 0, 0, 1, 0, 0, 0), new(ReadRequest))},
		{"status scope", decodeStatus(append(make([]byte, 8), 2, 0, 0, 0, 0, 0, 0, 0), new(StatusRequest))},
		{"status report age too large", decodeStatusResult(binary.AppendUvarint(ageless[:len(ageless)-1:len(ageless)-1], 1<<62), &StatusRequest{ReportAges: true}, new(NodeStatus))},
		{"status producer of every partition", decodeStatus(append(make([]byte, 16), 7, 0, 0, 0, 0, 0, 0, 0), new(StatusRequest))},
		{"status producer 0", decodeStatus(append(append(make([]byte, 8), 1, 0, 0, 0, 0, 0, 0, 0), make([]byte, 8)...), new(StatusRequest))},
		{"status count beyond bytes", decodeStatusResult(append(make([]byte, 8), 0xff, 0xff, 0x03), new(StatusRequest), new(NodeStatus))},
		{"error code 0", decodeError(make([]byte, 18), new(errorMsg))},
		{"error long message", decodeError(append(append(make([]byte, 16), 0), 0x81, 0x10), new(errorMsg))},
		{"hello magic", decodeHello([]byte("HTTP/1.1 200"), new(helloMsg))},
		{"ping body", decodeEmpty(TypePing, []byte{0})},
		{"admin short", new(AdminRequest).UnmarshalBinary(adminBody[:len(adminBody)-1])},
		{"admin flags", new(AdminRequest).UnmarshalBinary(withByte(adminBody, 26, 4))},
		{"admin options unsorted", new(AdminRequest).UnmarshalBinary(append(append(make([]byte, 32), 2, 1, 'b', 0, 1, 'a', 0, 0, 0), make([]byte, 8)...))},
		{"admin nodes beyond bytes", new(AdminRequest).UnmarshalBinary(append(make([]byte, 33), 0x10, 0))},
		{"admin timeout", new(AdminRequest).UnmarshalBinary(append(adminBody[:len(adminBody)-8:len(adminBody)-8], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))},
		{"admin result reachable", new(AdminResult).UnmarshalBinary(withByte(adminResBody, len(adminResBody)-nodeReachableFromEnd, 2))},
		{"admin result trailing", new(AdminResult).UnmarshalBinary(make([]byte, 12))},
		{"admin empty witnesses", new(AdminRequest).UnmarshalBinary(append(adminBody[:len(adminBody):len(adminBody)], 0, 0, 0, 0, 0))},
		{"admin witness nodes beyond bytes", new(AdminRequest).UnmarshalBinary(append(adminBody[:len(adminBody):len(adminBody)], 1, 0, 0, 0, 2, 1))},
	}
	for _, c := range cases {
		if !errors.Is(c.err, ErrProtocol) {
			t.Errorf("%s: got %v, want ErrProtocol", c.name, c.err)
		}
	}
}

// TestErrorMapping checks that handler errors map to codes and back to
// errors that match the same sentinels.
func TestErrorMapping(t *testing.T) {
	cases := []struct {
		err  error
		code Code
		want error
	}{
		{&lockstitch.NotLeaderError{LeaderAddr: "n2:7000"}, CodeNotLeader, lockstitch.ErrNotLeader},
		{lockstitch.ErrNotLeader, CodeNotLeader, lockstitch.ErrNotLeader},
		{&lockstitch.TruncatedError{First: 50}, CodeTruncated, lockstitch.ErrTruncated},
		{wal.ErrTruncated, CodeTruncated, lockstitch.ErrTruncated},
		{lockstitch.ErrBusy, CodeBusy, lockstitch.ErrBusy},
		{lockstitch.ErrPartitionNotFound, CodePartitionNotFound, lockstitch.ErrPartitionNotFound},
		{lockstitch.ErrChecksum, CodeChecksum, lockstitch.ErrChecksum},
		{wal.ErrTooLarge, CodeTooLarge, lockstitch.ErrTooLarge},
		{lockstitch.ErrUnavailable, CodeUnavailable, lockstitch.ErrUnavailable},
		{lockstitch.ErrShuttingDown, CodeShuttingDown, lockstitch.ErrShuttingDown},
		{lockstitch.ErrInvalidArgument, CodeInvalidArgument, lockstitch.ErrInvalidArgument},
		{lockstitch.ErrPartitionExists, CodePartitionExists, lockstitch.ErrPartitionExists},
		{lockstitch.ErrReplicaDeleted, CodeReplicaDeleted, lockstitch.ErrReplicaDeleted},
		{lockstitch.ErrPluginNotFound, CodePluginNotFound, lockstitch.ErrPluginNotFound},
		{lockstitch.ErrAborted, CodeAborted, lockstitch.ErrAborted},
		{&lockstitch.DivergedError{Marker: 9, Committed: 5, Epoch: 3}, CodeDiverged, lockstitch.ErrDiverged},
		{fmt.Errorf("partition 2: %w", &lockstitch.DivergedError{Committed: 5}), CodeDiverged, lockstitch.ErrDiverged},
		{lockstitch.ErrCursorLapsed, CodeCursorLapsed, lockstitch.ErrCursorLapsed},
		{lockstitch.ErrStaleSequence, CodeStaleSequence, lockstitch.ErrStaleSequence},
		{lockstitch.ErrTooStale, CodeUnavailable, lockstitch.ErrUnavailable},
		{lockstitch.ErrClosed, CodeShuttingDown, lockstitch.ErrShuttingDown},
		{context.Canceled, CodeCanceled, lockstitch.ErrCanceled},
		{context.DeadlineExceeded, CodeTimeout, lockstitch.ErrTimeout},
		{fmt.Errorf("partition 3: %w", lockstitch.ErrBusy), CodeBusy, lockstitch.ErrBusy},
		{errors.New("disk on fire"), CodeInternal, ErrInternal},
	}
	for _, c := range cases {
		m := errorFor(c.err)
		if m.Code != c.code {
			t.Errorf("%v: code %v, want %v", c.err, m.Code, c.code)
			continue
		}
		frame := appendError(nil, 1, &m)
		var got errorMsg
		if err := decodeError(frame[HeaderSize:], &got); err != nil {
			t.Fatal(err)
		}
		back := errorOf(&got)
		if !errors.Is(back, c.want) {
			t.Errorf("%v: came back as %v, which does not match %v", c.err, back, c.want)
		}
	}
	for c := Code(0); c <= lastCode+1; c++ {
		if s := c.sentinel(); s != nil {
			if got := errorFor(s).Code; got != c {
				t.Errorf("sentinel of %v maps to %v", c, got)
			}
			if c.String() == fmt.Sprintf("Code(%d)", c) {
				t.Errorf("code %d has no name", c)
			}
		}
	}
	var nl *lockstitch.NotLeaderError
	if m := errorFor(&lockstitch.NotLeaderError{LeaderAddr: "n2:7000"}); !errors.As(errorOf(&m), &nl) || nl.LeaderAddr != "n2:7000" {
		t.Fatalf("leader hint lost: %+v", nl)
	}
	var tr *lockstitch.TruncatedError
	if m := errorFor(&lockstitch.TruncatedError{First: 50}); !errors.As(errorOf(&m), &tr) || tr.First != 50 {
		t.Fatalf("first retained LSN lost: %+v", tr)
	}
	// The committed LSN and epoch of a Diverged error survive the wire,
	// the epoch up to its 48 bits.
	for _, epoch := range []lockstitch.Epoch{0, 7, 1<<48 - 1} {
		m := errorFor(fmt.Errorf("wrapped: %w", &lockstitch.DivergedError{Partition: 4, Marker: 90, Committed: 1 << 40, Epoch: epoch}))
		frame := appendError(nil, 1, &m)
		var got errorMsg
		if err := decodeError(frame[HeaderSize:], &got); err != nil {
			t.Fatal(err)
		}
		var dv *lockstitch.DivergedError
		if !errors.As(errorOf(&got), &dv) || dv.Committed != 1<<40 || dv.Epoch != epoch {
			t.Fatalf("epoch %d: diverged error came back as %+v", epoch, dv)
		}
	}
}

// TestReadResultLimits checks how ReadResult.Add applies a Read's limits
// and the client's frame limit, and that its frame decodes.
func TestReadResultLimits(t *testing.T) {
	rec := func(lsn wal.LSN, n int) *wal.Record {
		return &wal.Record{LSN: lsn, Epoch: 1, Payload: bytes.Repeat([]byte{byte(lsn)}, n)}
	}
	t.Run("ops", func(t *testing.T) {
		var r ReadResult
		r.reset(nil, &ReadRequest{From: 5, MaxOps: 2, MaxBytes: 1 << 20}, 1<<20)
		if !r.Add(rec(5, 10)) || r.Add(rec(6, 10)) || r.Add(rec(7, 10)) || r.Len() != 2 {
			t.Fatalf("after 3 Adds with MaxOps 2: %d records", r.Len())
		}
	})
	t.Run("bytes", func(t *testing.T) {
		var r ReadResult
		r.reset(nil, &ReadRequest{From: 5, MaxOps: 10, MaxBytes: 50}, 1<<20)
		if r.Add(rec(5, 100)) || r.Len() != 1 {
			t.Fatalf("the first record must be taken even above MaxBytes: %d records", r.Len())
		}
		if r.Add(rec(6, 1)) || r.Len() != 1 {
			t.Fatalf("a second record above MaxBytes was taken")
		}
	})
	t.Run("frame", func(t *testing.T) {
		var r ReadResult
		r.reset(nil, &ReadRequest{From: 5, MaxOps: 10, MaxBytes: 1 << 20}, 100)
		if r.Add(rec(5, 100)) || r.Len() != 0 || !r.tooLarge {
			t.Fatalf("a record above the frame limit was taken (%d) or not flagged", r.Len())
		}
	})
	t.Run("order", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("Add of a non-consecutive LSN did not panic")
			}
		}()
		var r ReadResult
		r.reset(nil, &ReadRequest{From: 5, MaxOps: 10, MaxBytes: 1 << 20}, 1<<20)
		r.Add(rec(5, 1))
		r.Add(rec(7, 1))
	})
	t.Run("frame decodes", func(t *testing.T) {
		var r ReadResult
		r.reset(nil, &ReadRequest{From: 5, MaxOps: 10, MaxBytes: 1 << 20}, 1<<20)
		for lsn := wal.LSN(5); lsn < 8; lsn++ {
			r.Add(rec(lsn, int(lsn)))
		}
		r.Committed = 9
		frame := r.finish(77)
		var h Header
		if err := DecodeHeader(frame, &h); err != nil || h.Type != TypeReadResult || h.ID != 77 || int(h.Length) != len(frame)-HeaderSize {
			t.Fatalf("header %+v, %v", h, err)
		}
		committed, records, err := decodeRecords(h.Type, frame[HeaderSize:])
		if err != nil || committed != 9 {
			t.Fatalf("committed %d, %v", committed, err)
		}
		var got wal.Record
		for lsn := wal.LSN(5); lsn < 8; lsn++ {
			n, err := wal.DecodeRecord(records, 1<<20, &got)
			if err != nil || got.LSN != lsn || len(got.Payload) != int(lsn) {
				t.Fatalf("record %d: %+v, %v", lsn, got, err)
			}
			records = records[n:]
		}
		if len(records) != 0 {
			t.Fatalf("%d bytes left", len(records))
		}
	})
}

// TestStoredCRCChecked checks that a record whose payload no longer
// matches its stored CRC is refused when encoded for the wire, by
// ReadResult.Add and appendChecked (which Stream.Send uses).
func TestStoredCRCChecked(t *testing.T) {
	good := wal.Record{LSN: 5, Epoch: 1, Payload: []byte("intact")}
	good.CRC = wal.Checksum(good.Payload)
	bad := good
	bad.Payload = []byte("damage")
	var r ReadResult
	r.reset(nil, &ReadRequest{From: 5, MaxOps: 10, MaxBytes: 1 << 20}, 1<<20)
	if r.Add(&bad) || r.Len() != 0 || !errors.Is(r.err, lockstitch.ErrChecksum) {
		t.Fatalf("a damaged record was added (%d) or not flagged (%v)", r.Len(), r.err)
	}
	if _, err := appendChecked(nil, &good); err != nil {
		t.Fatal(err)
	}
	unknown := bad
	unknown.CRC = 0
	if _, err := appendChecked(nil, &unknown); err != nil {
		t.Fatalf("a record without a stored CRC was refused: %v", err)
	}
}

// TestStatusFlagsIgnored: Status flag bits this version does not know are
// ignored (as servers before flags ignored the byte), and a producer asked
// about is answered even when the Handler knows nothing of it.
func TestStatusFlagsIgnored(t *testing.T) {
	var r StatusRequest
	if err := decodeStatus(append(make([]byte, 8), 1, 0xfe, 0, 0, 0, 0, 0, 0), &r); err != nil || r.ReportAges || !r.OnePartition {
		t.Fatalf("unknown flags: %+v %v", r, err)
	}
	req := StatusRequest{OnePartition: true, Partition: 3, Producer: 7, ReportAges: true}
	frame := appendStatusResult(nil, 1, &req, &NodeStatus{NodeID: 1, Partitions: []PartitionStatus{{Partition: 3, Replicas: []ReplicaStatus{{Replica: 1, Reported: true}}}}})
	var s NodeStatus
	if err := decodeStatusResult(frame[HeaderSize:], &req, &s); err != nil || s.Producer == nil || s.Producer.Producer != 7 || s.Producer.Known || !s.Partitions[0].Replicas[0].Reported {
		t.Fatalf("a producer the handler did not answer: %+v %v", s, err)
	}
}

// TestAppendResultDuplicateFlag: a duplicate's AppendResult carries
// FlagDuplicate in its header, and the client's decoding reads it back;
// other results leave the flags zero (what servers before it sent).
func TestAppendResultDuplicateFlag(t *testing.T) {
	for _, dup := range []bool{false, true} {
		frame := appendAppendResult(nil, 9, &AppendResult{LSN: 5, Epoch: 2, Duplicate: dup})
		var h Header
		if err := DecodeHeader(frame, &h); err != nil {
			t.Fatal(err)
		}
		if got := h.Flags == FlagDuplicate; got != dup || (!dup && h.Flags != 0) {
			t.Fatalf("duplicate %v: header flags %#x", dup, h.Flags)
		}
		c := &call{kind: TypeAppend}
		if err := c.receive(h.Type, h.Flags, frame[HeaderSize:]); err != nil {
			t.Fatal(err)
		}
		if c.res.Duplicate != dup || c.res.LSN != 5 {
			t.Fatalf("duplicate %v: decoded %+v", dup, c.res)
		}
	}
}
