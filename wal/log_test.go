package wal_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/internal/testutil/faultfs"
	"github.com/lockstitch/lockstitch/wal"
)

// payloadFor is the payload the tests write for an LSN: its size varies
// with the LSN and its bytes depend on it, so a record read at the wrong
// place is noticed.
func payloadFor(lsn wal.LSN, size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(uint64(lsn)*31 + uint64(i))
	}
	return p
}

func sizeFor(lsn wal.LSN) int { return int(uint64(lsn)*7919%300) + 1 }

func testConfig(fs wal.FS) wal.Config {
	cfg := wal.DefaultConfig()
	cfg.FS = fs
	cfg.SegmentBytes = 16 << 10
	cfg.IndexIntervalBytes = 1 << 10
	cfg.ReadBufferBytes = 4 << 10
	cfg.Sync = wal.SyncManual
	return cfg
}

func openLog(t testing.TB, dir string, cfg wal.Config) *wal.Log {
	t.Helper()
	l, err := wal.Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendRange appends LSNs from..to, in batches of batch records.
func appendRange(t testing.TB, l *wal.Log, from, to wal.LSN, batch int) {
	t.Helper()
	recs := make([]wal.Record, 0, batch)
	for lsn := from; lsn <= to; lsn++ {
		recs = append(recs, wal.Record{LSN: lsn, Epoch: uint64(lsn) / 10, Aux: uint64(lsn) * 3, Payload: payloadFor(lsn, sizeFor(lsn))})
		if len(recs) == batch || lsn == to {
			if err := l.AppendBatch(recs); err != nil {
				t.Fatalf("AppendBatch ending at %d: %v", lsn, err)
			}
			recs = recs[:0]
		}
	}
}

func checkRecord(t testing.TB, r *wal.Record, lsn wal.LSN) {
	t.Helper()
	if err := verifyRecord(r, lsn); err != nil {
		t.Fatal(err)
	}
}

// verifyRecord checks that r is the record appendRange wrote for lsn.
func verifyRecord(r *wal.Record, lsn wal.LSN) error {
	if r.LSN != lsn || r.Epoch != uint64(lsn)/10 || r.Aux != uint64(lsn)*3 {
		return fmt.Errorf("record %d: got LSN %d epoch %d aux %d", lsn, r.LSN, r.Epoch, r.Aux)
	}
	if want := payloadFor(lsn, sizeFor(lsn)); !bytes.Equal(r.Payload, want) {
		return fmt.Errorf("record %d: payload differs", lsn)
	}
	if r.CRC != wal.Checksum(r.Payload) {
		return fmt.Errorf("record %d: CRC %08x, payload checksum %08x", lsn, r.CRC, wal.Checksum(r.Payload))
	}
	return nil
}

// checkForward reads from..to forward and expects io.EOF after to.
func checkForward(t testing.TB, l *wal.Log, from, to wal.LSN) {
	t.Helper()
	it, err := l.NewIterator(from)
	if err != nil {
		t.Fatalf("NewIterator(%d): %v", from, err)
	}
	defer it.Close()
	var r wal.Record
	for lsn := from; lsn <= to; lsn++ {
		if err := it.Next(&r); err != nil {
			t.Fatalf("Next at %d: %v", lsn, err)
		}
		checkRecord(t, &r, lsn)
	}
	if err := it.Next(&r); err != io.EOF {
		t.Fatalf("Next after %d: got %v, want io.EOF", to, err)
	}
}

// checkBackward reads from the end back to first and expects io.EOF.
func checkBackward(t testing.TB, l *wal.Log, first, last wal.LSN) {
	t.Helper()
	it, err := l.NewIterator(last + 1)
	if err != nil {
		t.Fatalf("NewIterator(%d): %v", last+1, err)
	}
	defer it.Close()
	var r wal.Record
	for lsn := last; lsn >= first; lsn-- {
		if err := it.Prev(&r); err != nil {
			t.Fatalf("Prev at %d: %v", lsn, err)
		}
		checkRecord(t, &r, lsn)
	}
	if err := it.Prev(&r); err != io.EOF {
		t.Fatalf("Prev before %d: got %v, want io.EOF", first, err)
	}
}

func TestAppendReadForwardBackward(t *testing.T) {
	for _, batch := range []int{1, 7, 100} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			l := openLog(t, t.TempDir(), testConfig(nil))
			appendRange(t, l, 1, 1000, batch)
			st := l.Stats()
			if st.First != 1 || st.Last != 1000 || st.Segments < 5 {
				t.Fatalf("stats %+v: want 1..1000 over several segments", st)
			}
			checkForward(t, l, 1, 1000)
			checkBackward(t, l, 1, 1000)
			// Seek to every LSN and read one record each way.
			it, err := l.NewIterator(1)
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			var r wal.Record
			for lsn := wal.LSN(1); lsn <= 1001; lsn += 13 {
				if err := it.Seek(lsn); err != nil {
					t.Fatalf("Seek(%d): %v", lsn, err)
				}
				if lsn <= 1000 {
					if err := it.Next(&r); err != nil {
						t.Fatalf("Next after Seek(%d): %v", lsn, err)
					}
					checkRecord(t, &r, lsn)
					it.Seek(lsn)
				}
				if lsn > 1 {
					if err := it.Prev(&r); err != nil {
						t.Fatalf("Prev after Seek(%d): %v", lsn, err)
					}
					checkRecord(t, &r, lsn-1)
				}
			}
		})
	}
}

func TestReopenKeepsRecords(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(nil)
	l, err := wal.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 1, 500, 9)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	l = openLog(t, dir, cfg)
	if _, ok := l.Repaired(); ok {
		t.Fatal("clean reopen reported a repair")
	}
	if got := l.Last(); got != 500 {
		t.Fatalf("Last after reopen = %d, want 500", got)
	}
	checkForward(t, l, 1, 500)
	checkBackward(t, l, 1, 500)
	appendRange(t, l, 501, 700, 5)
	checkForward(t, l, 1, 700)
}

func TestAppendRejects(t *testing.T) {
	cfg := testConfig(nil)
	cfg.MaxPayloadBytes = 100
	l := openLog(t, t.TempDir(), cfg)
	if err := l.Append(&wal.Record{LSN: 2}); !errors.Is(err, wal.ErrOutOfOrder) {
		t.Fatalf("append LSN 2 to an empty log: %v, want ErrOutOfOrder", err)
	}
	r := wal.Record{Payload: []byte("x")}
	if err := l.Append(&r); err != nil || r.LSN != 1 {
		t.Fatalf("append with LSN 0: err %v, assigned LSN %d", err, r.LSN)
	}
	batch := []wal.Record{{LSN: 2}, {LSN: 4}}
	if err := l.AppendBatch(batch); !errors.Is(err, wal.ErrOutOfOrder) {
		t.Fatalf("batch with a gap: %v, want ErrOutOfOrder", err)
	}
	if err := l.Append(&wal.Record{Payload: make([]byte, 101)}); !errors.Is(err, wal.ErrTooLarge) {
		t.Fatalf("101-byte payload: %v, want ErrTooLarge", err)
	}
	if l.Last() != 1 {
		t.Fatalf("rejected appends changed the log: Last %d", l.Last())
	}
	if _, err := l.NewIterator(3); !errors.Is(err, wal.ErrNotFound) {
		t.Fatalf("iterator at 3 of 1: %v, want ErrNotFound", err)
	}
	if _, err := wal.Open(l.Dir(), cfg); err == nil {
		t.Fatal("second Open of a locked directory succeeded")
	}
	l.Close()
	if err := l.Append(&wal.Record{}); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("append after Close: %v, want ErrClosed", err)
	}
}

func TestTruncateFront(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(nil)
	l := openLog(t, dir, cfg)
	appendRange(t, l, 1, 1000, 10)
	before := l.Segments(nil)
	// One iterator in the first segment, one in the segment just below
	// the one holding 500: both segments are dropped.
	var lastDropped wal.SegmentInfo
	for _, s := range before {
		if s.Last < 500 {
			lastDropped = s
		}
	}
	it, err := l.NewIterator(1)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	late, err := l.NewIterator(lastDropped.First)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	var r wal.Record
	if err := it.Next(&r); err != nil {
		t.Fatal(err)
	}
	if err := late.Next(&r); err != nil {
		t.Fatal(err)
	}
	n, err := l.TruncateFront(500)
	if err != nil {
		t.Fatal(err)
	}
	after := l.Segments(nil)
	if n == 0 || len(after) != len(before)-n {
		t.Fatalf("dropped %d segments: %d before, %d after", n, len(before), len(after))
	}
	first := l.First()
	if first > 500 || first <= 1 || first != after[0].First {
		t.Fatalf("First after TruncateFront(500) = %d", first)
	}
	if _, err := l.NewIterator(first - 1); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("iterator below First: %v, want ErrTruncated", err)
	}
	// Open iterators finish the dropped segment they are in; the first
	// then finds its next segment gone, the other carries on.
	for lsn := wal.LSN(2); lsn <= before[0].Last; lsn++ {
		if err := it.Next(&r); err != nil {
			t.Fatalf("Next at %d in a dropped segment: %v", lsn, err)
		}
		checkRecord(t, &r, lsn)
	}
	if err := it.Next(&r); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("Next into a dropped segment: %v, want ErrTruncated", err)
	}
	for lsn := lastDropped.First + 1; lsn <= 1000; lsn++ {
		if err := late.Next(&r); err != nil {
			t.Fatalf("Next at %d across truncation: %v", lsn, err)
		}
		checkRecord(t, &r, lsn)
	}
	l.Close()
	l = openLog(t, dir, cfg)
	if l.First() != first || l.Last() != 1000 {
		t.Fatalf("after reopen: %d..%d, want %d..1000", l.First(), l.Last(), first)
	}
	checkForward(t, l, first, 1000)
	checkBackward(t, l, first, 1000)
}

func TestReset(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(nil)
	l := openLog(t, dir, cfg)
	appendRange(t, l, 1, 300, 10)
	tail, err := l.NewIterator(301)
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	if err := l.Reset(1000); err != nil {
		t.Fatal(err)
	}
	if l.First() != 1000 || l.Last() != 999 || l.Stats().Segments != 1 {
		t.Fatalf("after Reset(1000): %+v", l.Stats())
	}
	var r wal.Record
	if err := tail.Next(&r); !errors.Is(err, wal.ErrTruncated) {
		t.Fatalf("tailing iterator after Reset: %v, want ErrTruncated", err)
	}
	if err := l.Append(&wal.Record{LSN: 301}); !errors.Is(err, wal.ErrOutOfOrder) {
		t.Fatalf("append 301 after Reset(1000): %v", err)
	}
	appendRange(t, l, 1000, 1200, 7)
	l.Close()
	l = openLog(t, dir, cfg)
	checkForward(t, l, 1000, 1200)
	checkBackward(t, l, 1000, 1200)
}

func TestSpansHoldRawRecords(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig(nil))
	appendRange(t, l, 1, 800, 3)
	for _, c := range []struct{ first, last wal.LSN }{{1, 800}, {1, 1}, {37, 412}, {800, 800}, {250, 251}} {
		spans, err := l.Spans(c.first, c.last, nil)
		if err != nil {
			t.Fatalf("Spans(%d, %d): %v", c.first, c.last, err)
		}
		next := c.first
		for _, s := range spans {
			f, err := l.OpenSpan(s)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, s.Length)
			if _, err := f.ReadAt(buf, s.Offset); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if s.First != next {
				t.Fatalf("span starts at %d, want %d", s.First, next)
			}
			for len(buf) > 0 {
				var r wal.Record
				n, err := wal.DecodeRecord(buf, 1<<20, &r)
				if err != nil {
					t.Fatalf("decode span record %d: %v", next, err)
				}
				checkRecord(t, &r, next)
				buf = buf[n:]
				next++
			}
			if next != s.Last+1 {
				t.Fatalf("span claims last %d, held up to %d", s.Last, next-1)
			}
		}
		if next != c.last+1 {
			t.Fatalf("Spans(%d, %d) covered up to %d", c.first, c.last, next-1)
		}
	}
	if _, err := l.Spans(1, 801, nil); !errors.Is(err, wal.ErrNotFound) {
		t.Fatalf("Spans past the end: %v", err)
	}
}

func TestWaitFollowsAppends(t *testing.T) {
	l := openLog(t, t.TempDir(), testConfig(nil))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Wait(ctx, 3) }()
	appendRange(t, l, 1, 3, 1)
	if err := <-done; err != nil {
		t.Fatalf("Wait: %v", err)
	}
	short, cancelShort := context.WithCancel(ctx)
	cancelShort()
	if err := l.Wait(short, 4); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: %v", err)
	}
	go func() { done <- l.Wait(ctx, 10) }()
	l.Close()
	if err := <-done; !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("Wait across Close: %v, want ErrClosed", err)
	}
}

func TestSyncPolicies(t *testing.T) {
	for _, policy := range []wal.SyncPolicy{wal.SyncEveryBatch, wal.SyncPeriodic, wal.SyncManual} {
		t.Run(policy.String(), func(t *testing.T) {
			fs := faultfs.New()
			cfg := testConfig(fs)
			cfg.Sync = policy
			cfg.SyncInterval = time.Millisecond
			l := openLog(t, "/wal", cfg)
			appendRange(t, l, 1, 50, 5)
			switch policy {
			case wal.SyncEveryBatch:
				if d := l.Durable(); d != 50 {
					t.Fatalf("Durable = %d right after appends, want 50", d)
				}
			case wal.SyncPeriodic:
				testutil.WaitFor(t, "the periodic sync to cover LSN 50", 10*time.Second, func() bool { return l.Durable() == 50 })
			case wal.SyncManual:
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
				if d := l.Durable(); d != 50 {
					t.Fatalf("Durable = %d after Sync, want 50", d)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	if err := wal.DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := wal.DefaultConfig()
	bad.SegmentBytes = 10
	bad.Sync = wal.SyncPeriodic
	bad.SyncInterval = 0
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"SegmentBytes", "SyncInterval"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if _, err := wal.Open(t.TempDir(), bad); err == nil {
		t.Fatal("Open accepted an invalid config")
	}
}
