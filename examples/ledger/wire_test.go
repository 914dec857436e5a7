package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/examples/testcluster"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// TestWireProtocolConsumer does what README.md tells a program in another
// language to do, with nothing but a socket and the byte layouts of
// docs/protocol.md: it appends ops with a producer id and sequences
// (a resent op answers with its original LSN), follows the partition with
// Subscribe and Credit, checks each record's CRCs, saves the ledger with
// its marker, "crashes" with ops applied past the save, resumes from the
// saved marker on a new connection, and cancels the stream. The ledger
// must equal the one the Go client's stream gives.
func TestWireProtocolConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	c, cl := testcluster.StartTest(ctx, t)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "log", Replicas: 3}); err != nil {
		t.Fatal(err)
	}

	// The producer: Append frames, sent to the leader (a NotLeader answer
	// names it).
	w := dial(t, c.Addrs()[0])
	w.addrs = c.Addrs()
	const n = 60
	ops := []string{`{"type":"open","account":"a"}`, `{"type":"open","account":"b"}`, `{"type":"deposit","account":"a","amount":500}`}
	for len(ops) < n {
		ops = append(ops, fmt.Sprintf(`{"type":"transfer","from":"%c","to":"%c","amount":%d}`, "ab"[len(ops)%2], "ba"[len(ops)%2], 7*len(ops)))
	}
	for i, op := range ops {
		if lsn := w.append(t, 1, 99, uint64(i+1), op); lsn != wal.LSN(i+1) {
			t.Fatalf("op %d appended at LSN %d", i+1, lsn)
		}
	}
	if lsn := w.append(t, 1, 99, 3, ops[2]); lsn != 3 {
		t.Fatalf("op 3 resent with its sequence: LSN %d, want its original LSN 3", lsn)
	}
	w.c.Close()

	// The consumer: subscribe from the saved marker, apply, save at LSN
	// 25, apply to 40 in memory, die; resume from the store.
	st, err := OpenStore(filepath.Join(dir, "wire"))
	if err != nil {
		t.Fatal(err)
	}
	for _, stop := range []wal.LSN{40, n} {
		l, err := st.Load()
		if err != nil {
			t.Fatal(err)
		}
		if stop == n && l.Marker != 25 {
			t.Fatalf("the store's marker after the crash is %d, want 25", l.Marker)
		}
		w := dial(t, c.Addrs()[1])
		w.follow(t, 1, l, func(l *Ledger) bool {
			if l.Marker == 25 || l.Marker == n {
				if err := st.Save(l); err != nil {
					t.Fatal(err)
				}
			}
			return l.Marker < stop
		})
		w.c.Close() // at LSN 40 a crash: ops 26 to 40 were never saved
	}
	got, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}

	want := NewLedger()
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	for want.Marker < n {
		if err := sub.Next(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		want.Apply(rec.LSN, rec.Payload)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("over the wire:\n%s\nwant:\n%s", dump(got), dump(want))
	}
}

// Frame types and error codes of docs/protocol.md.
const (
	tHello, tWelcome       = 0x01, 0x81
	tAppend, tAppendResult = 0x03, 0x83
	tSubscribe, tCredit    = 0x06, 0x07
	tCancel, tData, tEnd   = 0x08, 0x86, 0x87
	tError                 = 0xFF
	codeNotLeader          = 10
	ourMaxFrame            = 1 << 20
	// wireCreditOps is small, so that Credit is exercised.
	wireCreditOps uint32 = 8
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// wire is one connection speaking the protocol by hand.
type wire struct {
	c        net.Conn
	r        *bufio.Reader
	maxFrame uint32   // the server's, from Welcome
	id       uint64   // last correlation id used
	addrs    []string // the cluster's, for a NotLeader without a hint
	next     int
}

// dial opens a connection and does the Hello/Welcome handshake.
func dial(t *testing.T, addr string) *wire {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w := &wire{c: c, r: bufio.NewReader(c)}
	body := []byte("LSTC")
	body = append(body, 1, 0, 0, 0) // lowest version 1, 3 zero bytes
	body = binary.LittleEndian.AppendUint32(body, ourMaxFrame)
	body = binary.AppendUvarint(body, 4)
	body = append(body, "wire"...)
	body = binary.AppendUvarint(body, 0) // no credentials
	w.send(t, tHello, 0, body)
	typ, _, body := w.recv(t)
	if typ != tWelcome || len(body) != 16 {
		t.Fatalf("answer to Hello: type %#x, %d bytes", typ, len(body))
	}
	w.maxFrame = binary.LittleEndian.Uint32(body[8:])
	return w
}

// send writes one frame: the 16-byte header, then the body.
func (w *wire) send(t *testing.T, typ byte, id uint64, body []byte) {
	t.Helper()
	h := []byte{1, typ, 0, 0}
	h = binary.LittleEndian.AppendUint32(h, uint32(len(body)))
	h = binary.LittleEndian.AppendUint64(h, id)
	if _, err := w.c.Write(append(h, body...)); err != nil {
		t.Fatal(err)
	}
}

// recv reads one frame.
func (w *wire) recv(t *testing.T) (typ byte, id uint64, body []byte) {
	t.Helper()
	w.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var h [16]byte
	if _, err := io.ReadFull(w.r, h[:]); err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint32(h[4:])
	if n > ourMaxFrame {
		t.Fatalf("frame of %d bytes, beyond the %d announced", n, ourMaxFrame)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(w.r, body); err != nil {
		t.Fatal(err)
	}
	return h[1], binary.LittleEndian.Uint64(h[8:]), body
}

// append sends one Append and returns the LSN of its AppendResult. On
// NotLeader it connects to the leader named and sends it again, with the
// same producer id and sequence.
func (w *wire) append(t *testing.T, p, producer, seq uint64, op string) wal.LSN {
	t.Helper()
	body := binary.LittleEndian.AppendUint64(nil, p)
	body = binary.LittleEndian.AppendUint64(body, producer)
	body = binary.LittleEndian.AppendUint64(body, seq)
	body = binary.LittleEndian.AppendUint32(body, crc32.Checksum([]byte(op), crc32c))
	body = append(body, op...)
	var typ byte
	var id uint64
	var res []byte
	for attempt := range 20 {
		w.id++
		w.send(t, tAppend, w.id, body)
		typ, id, res = w.recv(t)
		if typ != tError {
			break
		}
		code, hint := decodeError(t, res)
		if code != codeNotLeader {
			t.Fatalf("append of sequence %d: error code %d", seq, code)
		}
		if hint == "" { // no leader known (an election): back off, try another node
			time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
			w.next++
			hint = w.addrs[w.next%len(w.addrs)]
		}
		w.c.Close()
		addrs, next := w.addrs, w.next
		*w = *dial(t, hint)
		w.addrs, w.next = addrs, next
	}
	if typ != tAppendResult || id != w.id || len(res) < 16 {
		t.Fatalf("answer to Append: type %#x id %d, %d bytes", typ, id, len(res))
	}
	return wal.LSN(binary.LittleEndian.Uint64(res))
}

// follow subscribes to p from l.Marker and applies records to l, calling
// more after each, until it returns false; then it cancels the
// subscription and reads up to its End.
func (w *wire) follow(t *testing.T, p uint64, l *Ledger, more func(*Ledger) bool) {
	t.Helper()
	w.id++
	sid := w.id
	body := binary.LittleEndian.AppendUint64(nil, p)
	body = binary.LittleEndian.AppendUint64(body, uint64(l.Marker))
	body = binary.LittleEndian.AppendUint64(body, uint64(w.maxFrame)) // byte credit: any record fits
	body = binary.LittleEndian.AppendUint32(body, wireCreditOps)
	w.send(t, tSubscribe, sid, body)
	var usedOps uint32
	var usedBytes uint64
	going := true
	for {
		typ, id, body := w.recv(t)
		if id != sid {
			t.Fatalf("frame %#x for id %d on a connection with one subscription, %d", typ, id, sid)
		}
		switch typ {
		case tEnd:
			if going {
				t.Fatal("the stream ended before it was cancelled")
			}
			return
		case tError:
			code, _ := decodeError(t, body)
			t.Fatalf("subscription: error code %d", code)
		case tData:
		default:
			t.Fatalf("frame type %#x on a subscription", typ)
		}
		recs := body[8:] // after the committed LSN
		for len(recs) > 0 {
			size, lsn, payload := decodeRecord(t, recs)
			recs = recs[size:]
			usedOps++
			usedBytes += uint64(size)
			if !going {
				continue // sent before the Cancel reached the server
			}
			if _, err := l.Apply(lsn, payload); err != nil {
				t.Fatal(err)
			}
			if !more(l) {
				going = false
				w.send(t, tCancel, sid, nil)
			}
		}
		if going && usedOps >= wireCreditOps/2 {
			c := binary.LittleEndian.AppendUint64(nil, usedBytes)
			c = binary.LittleEndian.AppendUint32(c, usedOps)
			w.send(t, tCredit, sid, c)
			usedOps, usedBytes = 0, 0
		}
	}
}

// decodeRecord checks and decodes the record at the start of b (the log's
// frame, wal/doc.go) and returns its size, LSN and payload.
func decodeRecord(t *testing.T, b []byte) (int, wal.LSN, []byte) {
	t.Helper()
	if len(b) < 40 {
		t.Fatalf("a record of %d bytes", len(b))
	}
	n := int(binary.LittleEndian.Uint32(b))
	if len(b) < 40+n || binary.LittleEndian.Uint32(b[36+n:]) != uint32(n) {
		t.Fatalf("a record of %d payload bytes in %d bytes, or a bad trailer", n, len(b))
	}
	payload := b[36 : 36+n]
	if crc32.Checksum(payload, crc32c) != binary.LittleEndian.Uint32(b[4:]) {
		t.Fatal("payload CRC mismatch")
	}
	if crc32.Update(crc32.Checksum(payload, crc32c), crc32c, b[:32]) != binary.LittleEndian.Uint32(b[32:]) {
		t.Fatal("frame CRC mismatch")
	}
	return 40 + n, wal.LSN(binary.LittleEndian.Uint64(b[8:])), payload
}

// decodeError returns an Error frame's code and leader hint.
func decodeError(t *testing.T, b []byte) (code uint16, hint string) {
	t.Helper()
	if len(b) < 17 {
		t.Fatalf("an Error of %d bytes", len(b))
	}
	n, k := binary.Uvarint(b[16:])
	if k <= 0 || len(b) < 16+k+int(n) {
		t.Fatal("a malformed Error")
	}
	return binary.LittleEndian.Uint16(b), string(b[16+k : 16+k+int(n)])
}
