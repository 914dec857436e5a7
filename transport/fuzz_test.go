package transport

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/wal"
)

// seedGolden adds the bodies of the golden files to f's corpus (bodies,
// or whole frames when frames is set).
func seedGolden(f *testing.F, frames bool) {
	paths, err := filepath.Glob(filepath.Join("testdata", "golden", "*.bin"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no golden files: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if frames {
			f.Add(b)
		} else {
			f.Add(b[HeaderSize:])
		}
	}
}

// fuzzRoundTrip is the shape of every message fuzzer: decode must not
// panic; when it succeeds, encoding the result and decoding that again
// must give the same message.
func fuzzRoundTrip[M any](f *testing.F, decode func([]byte, *M) error, encode func(*M) []byte) {
	seedGolden(f, false)
	f.Fuzz(func(t *testing.T, body []byte) {
		var m M
		if decode(body, &m) != nil {
			return
		}
		frame := encode(&m)
		var m2 M
		if err := decode(frame[HeaderSize:], &m2); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m2)
		}
	})
}

func FuzzDecodeHeader(f *testing.F) {
	seedGolden(f, true)
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if DecodeHeader(b, &h) != nil {
			if len(b) >= HeaderSize {
				t.Fatal("a full header failed to decode")
			}
			return
		}
		if got := AppendHeader(nil, h); !bytes.Equal(got, b[:HeaderSize]) {
			t.Fatalf("header round trip: %x, want %x", got, b[:HeaderSize])
		}
	})
}

func FuzzDecodeHello(f *testing.F) {
	fuzzRoundTrip(f, decodeHello, func(m *helloMsg) []byte { return appendHello(nil, m) })
}

func FuzzDecodeWelcome(f *testing.F) {
	fuzzRoundTrip(f, decodeWelcome, func(m *welcomeMsg) []byte { return appendWelcome(nil, m) })
}

func FuzzDecodeAppend(f *testing.F) {
	fuzzRoundTrip(f, decodeAppend, func(m *AppendRequest) []byte { return appendAppend(nil, 1, m) })
}

func FuzzDecodeAppendResult(f *testing.F) {
	fuzzRoundTrip(f, decodeAppendResult, func(m *AppendResult) []byte { return appendAppendResult(nil, 1, m) })
}

func FuzzDecodeAppendBatch(f *testing.F) {
	fuzzRoundTrip(f, decodeAppendBatch, func(m *AppendBatchRequest) []byte {
		var payloads [][]byte
		var crcs []uint32
		it := m.Ops()
		var op BatchOp
		for it.Next(&op) {
			payloads = append(payloads, op.Payload)
			crcs = append(crcs, op.CRC)
		}
		return appendAppendBatch(nil, 1, m, payloads, crcs)
	})
}

func FuzzDecodeAppendBatchResult(f *testing.F) {
	decode := func(b []byte, rs *[]AppendResult) error {
		it, err := decodeBatchResults(b)
		if err != nil {
			return err
		}
		var r AppendResult
		for it.next(&r) {
			*rs = append(*rs, r)
		}
		if len(*rs) != it.n {
			f.Fatalf("iterated %d results of %d", len(*rs), it.n)
		}
		return nil
	}
	fuzzRoundTrip(f, decode, func(rs *[]AppendResult) []byte { return appendBatchResults(nil, 1, *rs) })
}

func FuzzDecodeRead(f *testing.F) {
	fuzzRoundTrip(f, decodeRead, func(m *ReadRequest) []byte { return appendRead(nil, 1, m) })
}

// recordsMsg is the decoded body of a ReadResult or Data frame.
type recordsMsg struct {
	Committed uint64
	Records   []byte
}

func FuzzDecodeRecords(f *testing.F) {
	decode := func(b []byte, m *recordsMsg) error {
		c, r, err := decodeRecords(TypeData, b)
		m.Committed, m.Records = uint64(c), r
		if err == nil {
			// The records themselves are checked by wal.DecodeRecord (fuzzed
			// in wal) and walked by countRecords; neither may panic.
			countRecords(r)
			var recs Records
			recs.buf, recs.maxPayload = r, 1<<20
			for recs.Next(new(walRecord)) == nil {
			}
		}
		return err
	}
	fuzzRoundTrip(f, decode, func(m *recordsMsg) []byte { return appendData(nil, 1, walLSN(m.Committed), m.Records) })
}

func FuzzDecodeSubscribe(f *testing.F) {
	fuzzRoundTrip(f, decodeSubscribe, func(m *SubscribeRequest) []byte { return appendSubscribe(nil, 1, m) })
}

// FuzzDecodeSnapshot also verifies the chunks that decode: verify must
// not panic, and a chunk whose CRC matches survives the round trip.
func FuzzDecodeSnapshot(f *testing.F) {
	decode := func(b []byte, m *snapshotMsg) error {
		err := decodeSnapshot(b, m)
		if err == nil {
			m.verify()
		}
		return err
	}
	fuzzRoundTrip(f, decode, func(m *snapshotMsg) []byte { return appendSnapshot(nil, 1, m) })
}

func FuzzDecodeCursor(f *testing.F) {
	fuzzRoundTrip(f, decodeCursorReq, func(m *CursorRequest) []byte { return appendCursorReq(nil, 1, m) })
}

func FuzzDecodeCursorResult(f *testing.F) {
	fuzzRoundTrip(f, decodeCursorResult, func(m *CursorResult) []byte { return appendCursorResult(nil, 1, m) })
}

func FuzzDecodeCredit(f *testing.F) {
	fuzzRoundTrip(f, decodeCredit, func(m *creditMsg) []byte { return appendCredit(nil, 1, *m) })
}

func FuzzDecodeQuery(f *testing.F) {
	fuzzRoundTrip(f, decodeQuery, func(m *QueryRequest) []byte { return appendQuery(nil, 1, m) })
}

func FuzzDecodeQueryResult(f *testing.F) {
	fuzzRoundTrip(f, decodeQueryResult, func(m *QueryResult) []byte { return appendQueryResult(nil, 1, m) })
}

func FuzzDecodeStatus(f *testing.F) {
	fuzzRoundTrip(f, decodeStatus, func(m *StatusRequest) []byte { return appendStatus(nil, 1, m) })
}

func FuzzDecodeStatusResult(f *testing.F) {
	var req StatusRequest
	decode := func(b []byte, m *NodeStatus) error { return decodeStatusResult(b, &req, m) }
	fuzzRoundTrip(f, decode, func(m *NodeStatus) []byte { return appendStatusResult(nil, 1, &req, m) })
}

// FuzzDecodeStatusResultAsked decodes answers to a request that asked
// about a producer and for report ages.
func FuzzDecodeStatusResultAsked(f *testing.F) {
	req := StatusRequest{OnePartition: true, Partition: 3, Producer: 77, ReportAges: true}
	decode := func(b []byte, m *NodeStatus) error { return decodeStatusResult(b, &req, m) }
	fuzzRoundTrip(f, decode, func(m *NodeStatus) []byte { return appendStatusResult(nil, 1, &req, m) })
}

func FuzzDecodeError(f *testing.F) {
	fuzzRoundTrip(f, decodeError, func(m *errorMsg) []byte { return appendError(nil, 1, m) })
}

// FuzzFrameReader feeds arbitrary bytes to the frame reader with a small
// limit: it must return frames that fit in the bytes given and never
// panic or grow its buffer past the limit.
func FuzzFrameReader(f *testing.F) {
	seedGolden(f, true)
	f.Fuzz(func(t *testing.T, stream []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			b.Write(stream)
			b.Close()
		}()
		var fr frameReader
		fr.init(a, 32, 1024, time.Minute, time.Minute)
		defer fr.release()
		total := 0
		for {
			var h Header
			body, err := fr.next(&h)
			if err != nil {
				break
			}
			total += HeaderSize + len(body)
			if total > len(stream) || len(body) > 1024 || cap(fr.bb.B) > 2*(1024+HeaderSize) {
				t.Fatalf("frame of %d bytes, %d read of %d, buffer %d", len(body), total, len(stream), cap(fr.bb.B))
			}
		}
	})
}

// Short names for the fuzzers above.
type walRecord = wal.Record

func walLSN(v uint64) wal.LSN { return wal.LSN(v) }

// FuzzServerConn sends a valid Hello followed by arbitrary bytes to a
// real server connection (over net.Pipe, with the fake handler) and reads
// whatever comes back: the server must not panic, and must end the
// connection when the client closes it. Seeds are golden frames, so the
// fuzzer starts from well-formed requests of every type.
func FuzzServerConn(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.bin"))
	var all []byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	l := newPipeListener()
	cfg := testServerConfig()
	cfg.MaxFrameBytes = 1 << 16
	srv, err := NewServer(newFakeHandler(), cfg)
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	hello := appendHello(nil, &helloMsg{MaxVersion: Version, MinVersion: Version, MaxFrameBytes: 1 << 16})
	f.Fuzz(func(t *testing.T, input []byte) {
		nc, err := l.dial(context.Background(), "", "")
		if err != nil {
			t.Fatal(err)
		}
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, nc)
			close(drained)
		}()
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		nc.Write(hello)
		nc.Write(input)
		nc.Close()
		<-drained
	})
}

func FuzzDecodeAdmin(f *testing.F) {
	fuzzRoundTrip(f, func(b []byte, r *AdminRequest) error { return r.UnmarshalBinary(b) }, func(r *AdminRequest) []byte {
		body, err := r.AppendBinary(nil)
		if err != nil {
			panic(err) // a decoded request is within the format's limits
		}
		return appendAdmin(nil, 1, body)
	})
}

func FuzzDecodeAdminResult(f *testing.F) {
	fuzzRoundTrip(f, func(b []byte, r *AdminResult) error { return r.UnmarshalBinary(b) }, func(r *AdminResult) []byte { return appendAdminResult(nil, 1, r) })
}
