package copy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/lockstitch/lockstitch/wal"
)

// testLog opens a log in a temporary directory with small segments and
// appends records 1..n, record i carrying payload "op i" (every 7th one
// larger), epoch i/50 and aux i.
func testLog(t testing.TB, n int) *wal.Log {
	t.Helper()
	cfg := wal.DefaultConfig()
	cfg.SegmentBytes = 16 << 10
	cfg.Preallocate = false
	l, err := wal.Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for i := 1; i <= n; i++ {
		if err := l.Append(&wal.Record{Epoch: uint64(i / 50), Aux: uint64(i), Payload: payloadOf(i)}); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func payloadOf(i int) []byte {
	p := []byte(fmt.Sprintf("op %d", i))
	if i%7 == 0 {
		p = append(p, bytes.Repeat([]byte{byte(i)}, 3000)...)
	}
	return p
}

// readAll reads a log section back into a slice of records with copied
// payloads, checking batch bounds.
func readAll(t *testing.T, b []byte) (first, last wal.LSN, recs []wal.Record, err error) {
	t.Helper()
	first, last, err = ReadLog(bytes.NewReader(b), 1<<20, func(batch []wal.Record) error {
		if len(batch) == 0 || len(batch) > LogBatchRecords {
			t.Fatalf("a batch of %d records", len(batch))
		}
		for _, r := range batch {
			r.Payload = append([]byte(nil), r.Payload...)
			recs = append(recs, r)
		}
		return nil
	})
	return first, last, recs, err
}

// TestLogRoundTrip writes sections of a log spread over many segments and
// reads them back, record for record.
func TestLogRoundTrip(t *testing.T) {
	l := testLog(t, 3000)
	if segs := len(l.Segments(nil)); segs < 10 {
		t.Fatalf("the test log has %d segments, want many", segs)
	}
	ctx := context.Background()
	for _, r := range [][2]wal.LSN{{1, 3000}, {1, 1}, {1234, 2345}, {3000, 3000}, {3001, 3000}} {
		var buf bytes.Buffer
		if err := WriteLog(ctx, &buf, l, r[0], r[1]); err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		first, last, recs, err := readAll(t, buf.Bytes())
		if err != nil || first != r[0] || last != r[1] || len(recs) != int(r[1]-r[0]+1) {
			t.Fatalf("%v: read [%d, %d], %d records, %v", r, first, last, len(recs), err)
		}
		for i, rec := range recs {
			lsn := r[0] + wal.LSN(i)
			if rec.LSN != lsn || rec.Epoch != uint64(lsn/50) || rec.Aux != uint64(lsn) || !bytes.Equal(rec.Payload, payloadOf(int(lsn))) || rec.CRC != wal.Checksum(rec.Payload) {
				t.Fatalf("%v: record %d read as %+v", r, lsn, rec)
			}
		}
	}
	// Into another log, as a restore does.
	var buf bytes.Buffer
	if err := WriteLog(ctx, &buf, l, 101, 3000); err != nil {
		t.Fatal(err)
	}
	dst, err := wal.Open(t.TempDir(), wal.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Reset(101); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadLog(bytes.NewReader(buf.Bytes()), 1<<20, dst.AppendBatch); err != nil {
		t.Fatal(err)
	}
	if dst.First() != 101 || dst.Last() != 3000 {
		t.Fatalf("the restored log holds [%d, %d]", dst.First(), dst.Last())
	}
}

// TestLogRefused damages sections and checks that each is refused.
func TestLogRefused(t *testing.T) {
	l := testLog(t, 200)
	var buf bytes.Buffer
	if err := WriteLog(context.Background(), &buf, l, 1, 200); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	if _, _, _, err := readAll(t, good); err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x10
		return b
	}
	// A section whose header claims more records than it holds, and one
	// with a record too many: rebuilt with a lying header.
	lying := func(first, last wal.LSN, from, to wal.LSN) []byte {
		var b bytes.Buffer
		cw := NewChunkWriter(&b)
		var h [logHeaderSize]byte
		h[0], h[8] = byte(first), byte(last)
		cw.Write(h[:])
		for lsn := from; lsn <= to; lsn++ {
			cw.Write(wal.AppendRecord(nil, &wal.Record{LSN: lsn, Payload: payloadOf(int(lsn))}))
		}
		cw.Close()
		return b.Bytes()
	}
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"a flipped payload byte", flip(len(good) / 2), ErrCorrupt},
		{"a flipped header byte", flip(ChunkHeaderSize + 3), ErrCorrupt},
		{"cut short", good[:len(good)-20], io.ErrUnexpectedEOF},
		{"no terminator", good[:len(good)-ChunkHeaderSize], io.ErrUnexpectedEOF},
		{"fewer records than the header says", lying(1, 10, 1, 9), io.ErrUnexpectedEOF},
		{"more records than the header says", lying(1, 9, 1, 10), ErrCorrupt},
		{"a gap", lying(1, 10, 2, 11), ErrCorrupt},
		{"an empty range that is not one", lying(5, 3, 5, 4), ErrCorrupt},
		{"LSN 0", lying(0, 0, 1, 0), ErrCorrupt},
	}
	for _, c := range cases {
		if _, _, _, err := readAll(t, c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// A record above the receiver's payload limit is refused before its
	// payload is read.
	if _, _, err := ReadLog(bytes.NewReader(good), 100, func([]wal.Record) error { return nil }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a record above the payload limit: %v", err)
	}
	// apply's error ends the read.
	boom := errors.New("boom")
	if _, _, err := ReadLog(bytes.NewReader(good), 1<<20, func([]wal.Record) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("apply's error: %v", err)
	}
}

// TestWriteLogTruncated asks for records retention has dropped: WriteLog
// fails before writing anything.
func TestWriteLogTruncated(t *testing.T) {
	l := testLog(t, 3000)
	if _, err := l.TruncateFront(1500); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteLog(context.Background(), &buf, l, 1, 3000); !errors.Is(err, wal.ErrTruncated) || buf.Len() != 0 {
		t.Fatalf("a dropped range: %v, %d bytes written", err, buf.Len())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := WriteLog(ctx, &buf, l, l.First(), 3000); !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled context: %v", err)
	}
}

func FuzzReadLog(f *testing.F) {
	l := testLog(f, 40)
	for _, r := range [][2]wal.LSN{{1, 40}, {7, 9}, {41, 40}} {
		var buf bytes.Buffer
		if err := WriteLog(context.Background(), &buf, l, r[0], r[1]); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		next := wal.LSN(0)
		first, last, err := ReadLog(bytes.NewReader(b), 1<<16, func(batch []wal.Record) error {
			for _, r := range batch {
				if next != 0 && r.LSN != next {
					t.Fatalf("record %d after %d", r.LSN, next-1)
				}
				if r.CRC != wal.Checksum(r.Payload) {
					t.Fatalf("record %d handed out with a bad checksum", r.LSN)
				}
				next = r.LSN + 1
			}
			return nil
		})
		if err == nil && (first == 0 || first > last+1 || (first <= last && next != last+1)) {
			t.Fatalf("accepted [%d, %d] but handed out up to %d", first, last, next-1)
		}
	})
}

// TestLogFramesIntoLog restores a section into another log as the
// replicator does, frames written as they are: batches are whole frames
// with LSNs that run on, of about LogBatchBytes, and the restored log
// holds the sender's bytes exactly.
func TestLogFramesIntoLog(t *testing.T) {
	l := testLog(t, 3000)
	var buf bytes.Buffer
	if err := WriteLog(context.Background(), &buf, l, 101, 3000); err != nil {
		t.Fatal(err)
	}
	dst, err := wal.Open(t.TempDir(), wal.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if err := dst.Reset(101); err != nil {
		t.Fatal(err)
	}
	next, batches := wal.LSN(101), 0
	first, last, err := ReadLogFrames(bytes.NewReader(buf.Bytes()), 1<<20, func(frames []byte, bf, bl wal.LSN) error {
		if bf != next || bl < bf || len(frames) > LogBatchBytes+wal.FrameSize(1<<20) {
			t.Fatalf("batch [%d, %d] of %d bytes after LSN %d", bf, bl, len(frames), next-1)
		}
		got, err := dst.AppendFrames(frames)
		if err != nil || got != bl {
			t.Fatalf("AppendFrames of [%d, %d]: last %d, %v", bf, bl, got, err)
		}
		next, batches = bl+1, batches+1
		return nil
	})
	if err != nil || first != 101 || last != 3000 || next != 3001 {
		t.Fatalf("read [%d, %d], next %d: %v", first, last, next, err)
	}
	if batches < 2 {
		t.Fatalf("%d batches: the test did not cross a batch boundary", batches)
	}
	it, err := dst.NewIterator(101)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var rec wal.Record
	for lsn := wal.LSN(101); lsn <= 3000; lsn++ {
		if err := it.Next(&rec); err != nil || rec.LSN != lsn || rec.Aux != uint64(lsn) || !bytes.Equal(rec.Payload, payloadOf(int(lsn))) {
			t.Fatalf("restored record %d: %+v, %v", lsn, rec, err)
		}
	}
	// A damaged frame is refused before anything of its batch is written.
	b := bytes.Clone(buf.Bytes())
	b[len(b)-10] ^= 0xff
	empty, err := wal.Open(t.TempDir(), wal.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if err := empty.Reset(101); err != nil {
		t.Fatal(err)
	}
	_, _, err = ReadLogFrames(bytes.NewReader(b), 1<<20, func(frames []byte, _, _ wal.LSN) error {
		_, err := empty.AppendFrames(frames)
		return err
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged section: %v, want ErrCorrupt", err)
	}
}
