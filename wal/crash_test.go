package wal_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/lockstitch/lockstitch/internal/testutil/faultfs"
	"github.com/lockstitch/lockstitch/wal"
)

// crashWorkload is what the crash test does to a log, recording what was
// acknowledged. It stops at the first error (the crash).
type crashWorkload struct {
	acked      wal.LSN // last LSN whose append returned nil
	truncated  bool    // TruncateFront(150) returned nil
	resetAcked bool    // Reset(1000) returned nil
	resetTried bool
	backTried  bool // TruncateBack(1040) was called
	backAcked  bool // and returned nil
}

func (w *crashWorkload) run(l *wal.Log) error {
	appendTo := func(from, to wal.LSN) error {
		for lsn := from; lsn <= to; {
			n := wal.LSN(lsn%7) + 1
			if lsn+n-1 > to {
				n = to - lsn + 1
			}
			recs := make([]wal.Record, 0, n)
			for i := wal.LSN(0); i < n; i++ {
				recs = append(recs, wal.Record{LSN: lsn + i, Epoch: uint64(lsn+i) / 10, Aux: uint64(lsn+i) * 3, Payload: payloadFor(lsn+i, sizeFor(lsn+i))})
			}
			if err := l.AppendBatch(recs); err != nil {
				return err
			}
			w.acked = lsn + n - 1
			lsn += n
		}
		return nil
	}
	if err := appendTo(1, 300); err != nil {
		return err
	}
	if _, err := l.TruncateFront(150); err != nil {
		return err
	}
	w.truncated = true
	if err := appendTo(301, 400); err != nil {
		return err
	}
	w.resetTried = true
	if err := l.Reset(1000); err != nil {
		return err
	}
	w.resetAcked = true
	w.acked = 999
	if err := appendTo(1000, 1100); err != nil {
		return err
	}
	w.backTried = true
	if err := l.TruncateBack(1040); err != nil {
		return err
	}
	w.backAcked, w.acked = true, 1040
	return appendTo(1041, 1060)
}

// check verifies the log recovered after a crash against what w saw
// acknowledged.
func (w *crashWorkload) check(t *testing.T, l *wal.Log, crashAt int) {
	t.Helper()
	first, last := l.First(), l.Last()
	reset := first >= 1000
	switch {
	case w.resetAcked && !reset:
		t.Fatalf("crash at op %d: acknowledged Reset(1000) lost: log is %d..%d", crashAt, first, last)
	case reset && !w.resetTried:
		t.Fatalf("crash at op %d: log starts at %d without a Reset", crashAt, first)
	case reset && first != 1000:
		t.Fatalf("crash at op %d: reset log starts at %d", crashAt, first)
	case !reset && first > 150:
		t.Fatalf("crash at op %d: First %d: truncation went past 150", crashAt, first)
	case !reset && w.truncated && first == 1:
		t.Fatalf("crash at op %d: acknowledged TruncateFront(150) undone", crashAt)
	}
	must := w.acked
	if w.backTried && !w.backAcked {
		// An interrupted TruncateBack(1040) may have dropped some records.
		must = min(must, 1040)
	}
	if (reset == w.resetAcked) && last < must {
		t.Fatalf("crash at op %d: acknowledged LSN %d lost: log is %d..%d", crashAt, must, first, last)
	}

	if last >= first {
		checkForward(t, l, first, last)
	}
	appendRange(t, l, last+1, last+3, 3)
	checkBackward(t, l, first, last+3)
}

// countOps counts the file system operations of a run of the workload.
func countOps(t *testing.T, cfg wal.Config) int {
	fs := faultfs.New()
	cfg.FS = fs
	var mu sync.Mutex
	n := 0
	fs.SetFault(func(faultfs.Op, string) bool {
		mu.Lock()
		n++
		mu.Unlock()
		return false
	})
	l, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var w crashWorkload
	if err := w.run(l); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return n
}

// TestCrashAtEveryOperation crashes the file system (losing everything not
// synced) at each file system operation of a workload of appends, segment
// rolls, retention and a reset, then recovers: Open must succeed and every
// acknowledged append, retention and reset must have survived.
func TestCrashAtEveryOperation(t *testing.T) {
	for _, prealloc := range []bool{false, true} {
		t.Run(fmt.Sprintf("preallocate=%v", prealloc), func(t *testing.T) {
			cfg := testConfig(nil)
			cfg.Sync = wal.SyncEveryBatch
			cfg.Preallocate = prealloc
			cfg.SegmentBytes = 8 << 10
			total := countOps(t, cfg)
			t.Logf("crashing at each of %d file system operations", total)
			step := 1
			if testing.Short() {
				step = 7
			}
			for crashAt := 0; crashAt < total; crashAt += step {
				fs := faultfs.New()
				cfg.FS = fs
				var mu sync.Mutex
				n := 0
				fs.SetFault(func(faultfs.Op, string) bool {
					mu.Lock()
					defer mu.Unlock()
					n++
					if n-1 == crashAt {
						fs.Crash()
						return true
					}
					return false
				})
				var w crashWorkload
				l, err := wal.Open("/wal", cfg)
				if err == nil {
					if err := w.run(l); err == nil {
						t.Fatalf("crash at op %d of %d: workload saw no error", crashAt, total)
					}
					l.Close()
				}
				fs.SetFault(nil)
				l, err = wal.Open("/wal", cfg)
				if err != nil {
					t.Fatalf("crash at op %d of %d: recovery: %v", crashAt, total, err)
				}
				w.check(t, l, crashAt)
				l.Close()
			}
		})
	}
}

// TestFailedWriteIsNotDurable injects a write failure (half the bytes
// written) and a sync failure: the append fails, Durable does not move,
// the log refuses more appends, and a reopen recovers what was durable.
func TestFailedWriteIsNotDurable(t *testing.T) {
	for _, op := range []faultfs.Op{faultfs.OpWrite, faultfs.OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			fs := faultfs.New()
			cfg := testConfig(fs)
			cfg.Sync = wal.SyncEveryBatch
			l, err := wal.Open("/wal", cfg)
			if err != nil {
				t.Fatal(err)
			}
			appendRange(t, l, 1, 20, 4)
			fs.SetFault(func(o faultfs.Op, _ string) bool { return o == op })
			err = l.AppendBatch([]wal.Record{{Payload: payloadFor(21, 300)}, {Payload: payloadFor(22, 300)}})
			if !errors.Is(err, wal.ErrFailed) || !errors.Is(err, faultfs.ErrInjected) {
				t.Fatalf("append with a failing %s: %v, want ErrFailed wrapping the fault", op, err)
			}
			if d := l.Durable(); d != 20 {
				t.Fatalf("Durable after a failed append = %d, want 20", d)
			}
			fs.SetFault(nil)
			if err := l.Append(&wal.Record{Payload: []byte("x")}); !errors.Is(err, wal.ErrFailed) {
				t.Fatalf("append after a failure: %v, want ErrFailed", err)
			}
			if err := l.Sync(); !errors.Is(err, wal.ErrFailed) {
				t.Fatalf("Sync after a failure: %v, want ErrFailed", err)
			}
			l.Close()
			fs.Crash()
			l = openLog(t, "/wal", cfg)
			if got := l.Last(); got != 20 {
				t.Fatalf("after the crash: Last = %d, want 20", got)
			}
			checkForward(t, l, 1, 20)
			appendRange(t, l, 21, 30, 3)
			checkForward(t, l, 1, 30)
		})
	}
}

// TestUnsyncedAppendsLostOnCrash checks that a crash loses only what no
// Sync covered.
func TestUnsyncedAppendsLostOnCrash(t *testing.T) {
	fs := faultfs.New()
	cfg := testConfig(fs)
	cfg.Sync = wal.SyncManual
	l, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 1, 300, 10)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 301, 350, 10)
	// Sealing a segment syncs it, so Durable may have moved past 300.
	durable := l.Durable()
	if durable < 300 || durable >= 350 {
		t.Fatalf("Durable = %d, want at least the synced 300 and not all of 350", durable)
	}
	fs.Crash()
	l.Close()
	l = openLog(t, "/wal", cfg)
	if got := l.Last(); got != durable {
		t.Fatalf("after a crash: Last = %d, want the durable %d", got, durable)
	}
	checkForward(t, l, 1, durable)
}
