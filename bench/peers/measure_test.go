package main

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSystem answers after delay, failing every failEvery-th op (0:
// none); it counts the ops in flight through start and their most.
type fakeSystem struct {
	async     bool
	delay     time.Duration
	failEvery int64
	n         atomic.Int64
	mu        sync.Mutex
	inflight  int
	most      int
}

var errFake = errors.New("fake failure")

func (f *fakeSystem) info() systemInfo { return systemInfo{Name: "fake"} }

func (f *fakeSystem) outcome() error {
	if f.delay > 0 {
		time.Sleep(f.delay) // the fake's service time
	}
	if n := f.n.Add(1); f.failEvery > 0 && n%f.failEvery == 0 {
		return errFake
	}
	return nil
}

func (f *fakeSystem) do(context.Context, int, []byte) error { return f.outcome() }

func (f *fakeSystem) start(context.Context, int, []byte) waiter {
	f.mu.Lock()
	f.inflight++
	f.most = max(f.most, f.inflight)
	f.mu.Unlock()
	return func(context.Context) error {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
		return f.outcome()
	}
}

func (f *fakeSystem) pipelined() bool { return f.async }
func (f *fakeSystem) pids() []int     { return []int{os.Getpid()} }
func (f *fakeSystem) inProcess() bool { return true }

const (
	testWarmup = 50 * time.Millisecond
	testWindow = 200 * time.Millisecond
)

func TestMeasureSync(t *testing.T) {
	f := &fakeSystem{failEvery: 10, delay: 100 * time.Microsecond}
	r := measure(context.Background(), f, cell{modeSync, 16, 4}, 2, testWindow, testWindow)
	if r.Skipped != "" || r.Ops == 0 {
		t.Fatalf("%+v", r)
	}
	if r.OpsPerSec != float64(r.Ops)/testWindow.Seconds() || r.MBPerSec != r.OpsPerSec*16/1e6 {
		t.Errorf("%d ops: %v/s, %v MB/s", r.Ops, r.OpsPerSec, r.MBPerSec)
	}
	// Only the window's ops count, not the warm-up's (as long as the
	// window): about half of all.
	if total := f.n.Load(); float64(r.Ops+r.Errors) > 0.75*float64(total) {
		t.Errorf("%d ops and %d errors counted of %d done: the warm-up's were counted", r.Ops, r.Errors, total)
	}
	if r.Errors == 0 || r.Errors > r.Ops/5 {
		t.Errorf("%d errors for %d ops, want about one in ten", r.Errors, r.Ops)
	}
	if r.P50us > r.P99us || r.P99us > r.P999us {
		t.Errorf("percentiles out of order: %v %v %v", r.P50us, r.P99us, r.P999us)
	}
	if r.PeakRSSMiB <= 0 {
		t.Errorf("peak RSS %v", r.PeakRSSMiB)
	}
}

func TestMeasurePipelined(t *testing.T) {
	f := &fakeSystem{async: true}
	r := measure(context.Background(), f, cell{modePipelined, 16, 64}, 3, testWarmup, testWindow)
	if r.Skipped != "" || r.Ops == 0 || r.Errors != 0 {
		t.Fatalf("%+v", r)
	}
	// 64 in flight over 3 submitters (22+21+21): never more than 64, and
	// the window fills.
	if f.most < 22 || f.most > 64 {
		t.Errorf("at most %d in flight, want 22 to 64", f.most)
	}
	if f.inflight != 0 {
		t.Errorf("%d ops left in flight", f.inflight)
	}
}

func TestMeasureSkipsWithoutAsync(t *testing.T) {
	f := &fakeSystem{}
	start := time.Now()
	r := measure(context.Background(), f, cell{modePipelined, 16, 64}, 1, testWarmup, testWindow)
	if r.Skipped != "no async API" || r.Ops != 0 || f.n.Load() != 0 {
		t.Errorf("%+v after %d ops", r, f.n.Load())
	}
	if d := time.Since(start); d > testWindow {
		t.Errorf("a skipped cell took %v", d)
	}
}

func TestMeasureAllFail(t *testing.T) {
	f := &fakeSystem{failEvery: 1}
	r := measure(context.Background(), f, cell{modeSync, 16, 2}, 1, testWarmup, testWindow)
	if r.Ops != 0 || r.Errors == 0 || r.Skipped == "" {
		t.Errorf("%+v", r)
	}
}
