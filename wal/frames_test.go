package wal_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/lockstitch/lockstitch/wal"
)

// framesFor returns the frames of LSNs from..to as AppendRecord encodes
// them, back to back.
func framesFor(from, to wal.LSN) []byte {
	var b []byte
	for lsn := from; lsn <= to; lsn++ {
		b = wal.AppendRecord(b, &wal.Record{LSN: lsn, Epoch: uint64(lsn) / 10, Aux: uint64(lsn) * 3, Payload: payloadFor(lsn, sizeFor(lsn))})
	}
	return b
}

// TestAppendFrames appends raw frames in batches across many segments and
// reads them back both ways, before and after a reopen: the log holds
// them as AppendBatch would have written them, index included.
func TestAppendFrames(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(nil)
	l, err := wal.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Reset(101); err != nil {
		t.Fatal(err)
	}
	if last, err := l.AppendFrames(nil); err != nil || last != 100 {
		t.Fatalf("no frames: last %d, err %v; want 100, nil", last, err)
	}
	for from := wal.LSN(101); from <= 1100; from += 50 {
		last, err := l.AppendFrames(framesFor(from, from+49))
		if err != nil || last != from+49 {
			t.Fatalf("frames %d..%d: last %d, err %v", from, from+49, last, err)
		}
	}
	if st := l.Stats(); st.First != 101 || st.Last != 1100 || st.Segments < 5 {
		t.Fatalf("stats %+v: want 101..1100 over several segments", st)
	}
	checkForward(t, l, 101, 1100)
	checkBackward(t, l, 101, 1100)
	// Spans of the log hold the same bytes that were appended.
	spans, err := l.Spans(101, 1100, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, s := range spans {
		f, err := l.OpenSpan(s)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, s.Length)
		if _, err := f.ReadAt(b, s.Offset); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got = append(got, b...)
	}
	if !bytes.Equal(got, framesFor(101, 1100)) {
		t.Fatal("the log's spans differ from the frames appended")
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	checkForward(t, l, 101, 1100)
	appendRange(t, l, 1101, 1200, 7)
	checkForward(t, l, 101, 1200)
}

// TestAppendFramesRejects checks that a batch with bad framing, an LSN
// out of sequence or a payload over the limit is refused whole.
func TestAppendFramesRejects(t *testing.T) {
	cfg := testConfig(nil)
	cfg.MaxPayloadBytes = 300
	l := openLog(t, t.TempDir(), cfg)
	appendRange(t, l, 1, 10, 10)
	good := framesFor(11, 12)
	badTrailer := bytes.Clone(good)
	badTrailer[len(badTrailer)-1] ^= 1
	big := wal.AppendRecord(nil, &wal.Record{LSN: 11, Payload: make([]byte, 301)})
	for _, tc := range []struct {
		name   string
		frames []byte
		want   error
	}{
		{"gap", framesFor(12, 13), wal.ErrOutOfOrder},
		{"repeat", append(framesFor(11, 11), framesFor(11, 11)...), wal.ErrOutOfOrder},
		{"cut short", good[:len(good)-3], wal.ErrCorrupt},
		{"partial header", append(bytes.Clone(good), 1, 2, 3), wal.ErrCorrupt},
		{"trailer", badTrailer, wal.ErrCorrupt},
		{"too large", big, wal.ErrTooLarge},
	} {
		if _, err := l.AppendFrames(tc.frames); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if l.Last() != 10 {
			t.Fatalf("%s: the rejected batch changed the log: Last %d", tc.name, l.Last())
		}
	}
	if last, err := l.AppendFrames(good); err != nil || last != 12 {
		t.Fatalf("good frames after the rejects: last %d, err %v", last, err)
	}
	checkForward(t, l, 1, 12)
}
