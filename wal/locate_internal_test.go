package wal

import (
	"errors"
	"io"
	"testing"
)

// appendBatchAt appends records with LSNs from..to in one batch.
func appendBatchAt(t *testing.T, l *Log, from, to LSN) {
	t.Helper()
	var recs []Record
	for lsn := from; lsn <= to; lsn++ {
		recs = append(recs, Record{LSN: lsn, Payload: []byte{byte(lsn), byte(lsn >> 8), 1, 2, 3}})
	}
	if err := l.AppendBatch(recs); err != nil {
		t.Fatalf("AppendBatch %d..%d: %v", from, to, err)
	}
}

// openLocateLog opens a log of 20 records, in batches of 10, and makes
// the n-th call of locate from then on append the batch 21..30 between
// its loads of the active segment's last LSN and end offset: the window
// in which a reader's concurrent append lands.
func openLocateLog(t *testing.T, n int) *Log {
	cfg := DefaultConfig()
	cfg.Sync = SyncManual
	l, err := Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	appendBatchAt(t, l, 1, 10)
	appendBatchAt(t, l, 11, 20)
	calls := 0
	testHookLocate = func() {
		if calls++; calls == n {
			appendBatchAt(t, l, 21, 30)
		}
	}
	t.Cleanup(func() { testHookLocate = nil })
	return l
}

// TestSeekEndRacingAppend positions an iterator at the end of the log
// while a batch is appended: the iterator must sit between 20 and 21,
// not after the new batch.
func TestSeekEndRacingAppend(t *testing.T) {
	l := openLocateLog(t, 1)
	it, err := l.NewIterator(21)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var r Record
	if err := it.Prev(&r); err != nil || r.LSN != 20 {
		t.Fatalf("Prev = LSN %d, %v; want LSN 20", r.LSN, err)
	}
	for want := LSN(20); want <= 30; want++ {
		if err := it.Next(&r); err != nil || r.LSN != want {
			t.Fatalf("Next = LSN %d, %v; want LSN %d", r.LSN, err, want)
		}
	}
	if err := it.Next(&r); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after 30 = %v, want io.EOF", err)
	}
}

// TestSpansRacingAppend takes the spans of the whole log while a batch is
// appended: the span must hold records 1..20 and no more.
func TestSpansRacingAppend(t *testing.T) {
	l := openLocateLog(t, 2) // Spans locates its first LSN, then its end
	spans, err := l.Spans(1, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	if want := int64(20 * FrameSize(5)); spans[0].Length != want {
		t.Fatalf("span of 1..20 is %d bytes, want %d", spans[0].Length, want)
	}
}
