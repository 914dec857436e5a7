package wal_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil/faultfs"
	"github.com/lockstitch/lockstitch/wal"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized wal tests (0: time-based)")

func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed %d)", seed, seed)
	return seed
}

// TestConcurrentReadersFollowWriter runs one writer, readers that follow
// the log forward, a reader that walks it backward, and retention, all at
// once. Every record a reader returns must be the right one.
func TestConcurrentReadersFollowWriter(t *testing.T) {
	const total = 3000
	cfg := testConfig(nil)
	cfg.Sync = wal.SyncPeriodic
	cfg.SyncInterval = time.Millisecond
	l := openLog(t, t.TempDir(), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	errc := make(chan error, 8)
	report := func(err error) {
		select {
		case errc <- err:
		default:
		}
		cancel()
	}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Retention may drop First between the two calls; try again.
			var it *wal.Iterator
			var err error
			for it == nil {
				if it, err = l.NewIterator(l.First()); err != nil && !errors.Is(err, wal.ErrTruncated) {
					report(err)
					return
				}
			}
			defer it.Close()
			var r wal.Record
			for next := it.Position(); next <= total; {
				err := it.Next(&r)
				switch {
				case err == io.EOF:
					if err := l.Wait(ctx, next); err != nil {
						report(err)
						return
					}
					continue
				case errors.Is(err, wal.ErrTruncated):
					// Retention overtook this reader: skip ahead.
					if err := it.Seek(l.First()); err != nil {
						report(err)
						return
					}
					next = it.Position()
					continue
				case err != nil:
					report(err)
					return
				}
				if err := verifyRecord(&r, next); err != nil {
					report(err)
					return
				}
				next++
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var r wal.Record
		for ctx.Err() == nil && l.Last() < total {
			it, err := l.NewIterator(l.Last() + 1)
			if err != nil {
				report(err)
				return
			}
			for i := 0; i < 200; i++ {
				want := it.Position() - 1
				err := it.Prev(&r)
				if err == io.EOF || errors.Is(err, wal.ErrTruncated) {
					break
				}
				if err == nil {
					err = verifyRecord(&r, want)
				}
				if err != nil {
					report(err)
					break
				}
			}
			it.Close()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil && l.Last() < total {
			if _, err := l.TruncateFront(l.Last() / 2); err != nil {
				report(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	for lsn := wal.LSN(1); lsn <= total && ctx.Err() == nil; lsn += 10 {
		appendRange(t, l, lsn, lsn+9, 10)
	}
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatal(err)
	default:
	}
}

// TestGroupCommitSharesSyncs checks that concurrent appenders under
// SyncEveryBatch all see their records durable and share fsyncs.
func TestGroupCommitSharesSyncs(t *testing.T) {
	fs := faultfs.New()
	var mu sync.Mutex
	syncs := 0
	fs.SetFault(func(op faultfs.Op, _ string) bool {
		if op == faultfs.OpSync {
			mu.Lock()
			syncs++
			mu.Unlock()
		}
		return false
	})
	cfg := testConfig(fs)
	cfg.Sync = wal.SyncEveryBatch
	cfg.SegmentBytes = 1 << 20
	l := openLog(t, "/wal", cfg)
	const appenders, each = 16, 50
	var wg sync.WaitGroup
	for range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r := wal.Record{Payload: make([]byte, 100)}
				if err := l.Append(&r); err != nil {
					t.Error(err)
					return
				}
				if d := l.Durable(); d < r.LSN {
					t.Errorf("append of %d returned with Durable %d", r.LSN, d)
					return
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if l.Last() != appenders*each {
		t.Fatalf("Last = %d, want %d", l.Last(), appenders*each)
	}
	// With one appender every append needs its own fsync; concurrent
	// appenders share them. The count depends on scheduling, so only
	// the impossible is rejected.
	if syncs > appenders*each {
		t.Fatalf("%d fsyncs for %d appends", syncs, appenders*each)
	}
	t.Logf("%d appends from %d goroutines took %d fsyncs", appenders*each, appenders, syncs)
}

// TestRandomAgainstModel applies random appends, retention, resets and
// reopens to a log and to a simple model, and checks that random reads of
// the log agree with the model.
func TestRandomAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	fs := faultfs.New()
	cfg := testConfig(fs)
	cfg.SegmentBytes = 4 << 10
	cfg.Preallocate = rng.IntN(2) == 0
	l, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	first, next := wal.LSN(1), wal.LSN(1) // the model: records first..next-1
	for step := 0; step < 400; step++ {
		switch op := rng.IntN(100); {
		case op < 60:
			n := wal.LSN(rng.IntN(12) + 1)
			appendRange(t, l, next, next+n-1, rng.IntN(5)+1)
			next += n
		case op < 70:
			lsn := first + wal.LSN(rng.Uint64N(uint64(next-first)+1))
			if _, err := l.TruncateFront(lsn); err != nil {
				t.Fatalf("step %d: TruncateFront(%d): %v", step, lsn, err)
			}
			if f := l.First(); f < first || (f > lsn && f > first) {
				t.Fatalf("step %d: TruncateFront(%d) moved First from %d to %d", step, lsn, first, f)
			}
			first = l.First()
		case op < 70+3:
			lsn := first - 1 + wal.LSN(rng.Uint64N(uint64(next-first)+1))
			if err := l.TruncateBack(lsn); err != nil {
				t.Fatalf("step %d: TruncateBack(%d): %v", step, lsn, err)
			}
			next = lsn + 1
		case op < 76:
			n := next + wal.LSN(rng.IntN(1000))
			if err := l.Reset(n); err != nil {
				t.Fatalf("step %d: Reset(%d): %v", step, n, err)
			}
			first, next = n, n
		case op < 82:
			if err := l.Close(); err != nil {
				t.Fatalf("step %d: Close: %v", step, err)
			}
			if l, err = wal.Open("/wal", cfg); err != nil {
				t.Fatalf("step %d: reopen: %v", step, err)
			}
		default:
			if next == first {
				continue
			}
			at := first + wal.LSN(rng.Uint64N(uint64(next-first)))
			it, err := l.NewIterator(at)
			if err != nil {
				t.Fatalf("step %d: NewIterator(%d): %v", step, at, err)
			}
			var r wal.Record
			for lsn := at; lsn < next && lsn < at+20; lsn++ {
				if err := it.Next(&r); err != nil {
					t.Fatalf("step %d: Next at %d: %v", step, lsn, err)
				}
				checkRecord(t, &r, lsn)
			}
			it.Seek(at)
			for lsn := at - 1; lsn >= first && lsn+20 > at; lsn-- {
				if err := it.Prev(&r); err != nil {
					t.Fatalf("step %d: Prev at %d: %v", step, lsn, err)
				}
				checkRecord(t, &r, lsn)
			}
			it.Close()
		}
		if l.First() != first || l.Last() != next-1 {
			t.Fatalf("step %d: log is %d..%d, model %d..%d", step, l.First(), l.Last(), first, next-1)
		}
	}
	if next > first {
		checkForward(t, l, first, next-1)
		checkBackward(t, l, first, next-1)
	}
}
