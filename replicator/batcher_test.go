package replicator

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
)

// TestProposeFailureUnderLoad stops the Raft replica under a partition
// while appenders keep its batcher busy, so that batches fail when they
// are proposed (the replica no longer answers as leader). Every append
// must end, with an error or not; none may hang on the batcher's locks.
func TestProposeFailureUnderLoad(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, p := singleNode(ctx, t, LogPluginName, nil)
	hung := false
	defer func() {
		if !hung { // closing would wait for the stuck batcher
			r.Close()
		}
	}()

	const (
		appenders = 32
		// The replica stops once this many appends have committed, and
		// the appenders stop once this many have failed.
		committed, failures = 10 * appenders, 10 * appenders
	)
	var wg sync.WaitGroup
	var ok, failed atomic.Int64
	flowing, failing := make(chan struct{}), make(chan struct{})
	stop := make(chan struct{})
	for g := 0; g < appenders; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				actx, acancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := p.Append(actx, AppendOp{Payload: []byte("op")})
				acancel()
				if errors.Is(err, context.DeadlineExceeded) {
					t.Error("an append hung")
					return
				}
				if err != nil {
					if failed.Add(1) == failures {
						close(failing)
					}
				} else if ok.Add(1) == committed {
					close(flowing)
				}
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	// await waits for ch, or for the appenders to end; if neither comes,
	// appends are stuck.
	await := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-finished:
		case <-time.After(25 * time.Second):
			hung = true
			t.Fatalf("no %s in 25s (%d appends committed, %d failed): appends stuck", what, ok.Load(), failed.Load())
		}
	}
	await("commits", flowing)
	if ok.Load() < committed {
		t.Fatalf("the appenders ended with %d appends committed, before the replica was stopped", ok.Load())
	}
	if err := r.nh.StopReplica(1, 1); err != nil {
		t.Fatal(err)
	}
	await("failures", failing)
	close(stop)
	await("end", finished)
	if failed.Load() == 0 {
		t.Fatal("no append failed after the replica stopped")
	}
}

// singleNode opens a one-node Replicator (tan, a 5 ms tick), with tweak
// applied to its configuration, creates partition 1 with plugin on it
// and waits until the partition has taken an append. The caller closes
// the Replicator.
func singleNode(ctx context.Context, t *testing.T, plugin string, tweak func(*Config)) (*Replicator, *Partition) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "node")
	cfg.RaftAddress = testutil.FreeAddr(t)
	cfg.RTT = 5 * time.Millisecond
	cfg.LogDB = LogDBTan
	cfg.EngineWorkers = 2
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.CreatePartition(PartitionSpec{ID: 1, Plugin: plugin, Replicas: map[lockstitch.ReplicaID]string{1: cfg.RaftAddress}})
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	ready := false
	defer func() {
		if !ready { // WaitFor failed the test
			r.Close()
		}
	}()
	testutil.WaitFor(t, "partition 1 to take an append", 20*time.Second, func() bool {
		_, err := p.Append(ctx, AppendOp{Payload: []byte("first")})
		return err == nil
	})
	ready = true
	return r, p
}

// gatePlugin is the log plugin whose Apply waits while the gate is shut,
// so that appends stay in flight for as long as a test needs.
type gatePlugin struct {
	StateMachine
	shut    *atomic.Bool
	release chan struct{}
}

func (g gatePlugin) Apply(ops []Op, results [][]byte) error {
	if g.shut.Load() {
		<-g.release
	}
	return g.StateMachine.Apply(ops, results)
}

// TestSharedContextCancel ends the context that many waiting appends
// share, while some of their ops are proposed and stuck in the plugin's
// Apply and the rest are queued behind them. Every wait must end at once
// with the context's error (those callers do not select on the context:
// the batcher's watch of it must reach both the batches in flight and the
// open one), and the watch must be gone once the ops are done.
func TestSharedContextCancel(t *testing.T) {
	var shut atomic.Bool
	release := make(chan struct{})
	bg, cancelBg := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelBg()
	r, p := singleNode(bg, t, "gate", func(cfg *Config) {
		cfg.MaxBatchOps = 8 // full batches are proposed while one is stuck
		cfg.Plugins["gate"] = func(pc PluginContext) (StateMachine, error) {
			sm, err := NewLogPlugin(pc)
			return gatePlugin{StateMachine: sm, shut: &shut, release: release}, err
		}
	})
	defer r.Close()
	opened := false
	openGate := func() {
		if !opened {
			opened = true
			close(release)
		}
	}
	defer openGate() // before Close, which waits for the stuck apply
	b := p.batcher
	pending := func() int {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.pendingOps
	}

	shut.Store(true)
	blocked := make(chan error, 1)
	go func() {
		_, err := p.Append(bg, AppendOp{Payload: []byte("blocker")})
		blocked <- err
	}()
	testutil.WaitFor(t, "the blocker to be in flight", 10*time.Second, func() bool { return pending() == 1 })
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	const n = 64
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := p.Append(ctx, AppendOp{Payload: []byte("shared")})
			errs <- err
		}()
	}
	testutil.WaitFor(t, "the shared appends to be queued", 10*time.Second, func() bool { return pending() == n+1 })
	b.mu.Lock()
	cw, flying := b.watches[ctx.Done()], len(b.flying)
	watching := cw != nil && cw.stop != nil && cw.refs == n
	b.mu.Unlock()
	if !watching {
		t.Fatalf("no watch of the shared context covers its %d ops: %+v", n, cw)
	}
	if flying < 2 {
		t.Fatalf("%d batches in flight, want the blocker's and full ones", flying)
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("a shared append ended with %v, want %v", err, context.Canceled)
			}
		case <-deadline:
			t.Fatalf("%d of %d waits did not end with their context", n-i, n)
		}
	}
	openGate()
	if err := <-blocked; err != nil {
		t.Fatalf("blocker: %v", err)
	}
	testutil.WaitFor(t, "the canceled ops to be done", 10*time.Second, func() bool { return pending() == 0 })
	b.mu.Lock()
	left := len(b.watches)
	b.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d context watches left with no op pending", left)
	}
	// The canceled ops committed; appends after them go on from there.
	res, err := p.Append(bg, AppendOp{Payload: []byte("after")})
	if err != nil {
		t.Fatal(err)
	}
	if want := lockstitch.LSN(n + 3); res.LSN != want {
		t.Fatalf("append after the canceled ones got LSN %d, want %d", res.LSN, want)
	}
}

// TestBatcherClock runs a batcher on a fake clock that stands still:
// after a batch of two appends completes, a lone append waits for the
// other caller until the linger ends, and however often the batcher's
// timer fires, that is not before the clock passes it. So the batcher
// reads the time from its clock alone, and drives gather with it.
func TestBatcherClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const linger = 20 * time.Millisecond
	r, p := singleNode(ctx, t, LogPluginName, func(cfg *Config) {
		cfg.BatchLinger, cfg.BatchGap = linger, 0
	})
	defer r.Close()
	b := p.batcher
	// An hour behind the real clock: were the real time read anywhere, the
	// linger would be long over and the lone append would go at once.
	clock := testutil.NewClock(time.Now().Add(-time.Hour))
	start := clock.Now()
	b.mu.Lock() // the batcher's goroutine reads b.now under mu
	b.now = clock.Now
	b.mu.Unlock()

	if _, _, err := p.AppendBatch(ctx, []AppendOp{{Payload: []byte("one")}, {Payload: []byte("two")}}); err != nil {
		t.Fatal(err)
	}
	f := p.AppendAsync(AppendOp{Payload: []byte("alone")})
	testutil.WaitFor(t, "the lone append to wait for the linger on the fake clock", 10*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.open != nil && b.gather.armed.Equal(start.Add(linger))
	})
	select {
	case <-f.Done():
		t.Fatal("the lone append went before the fake clock passed the linger")
	default:
	}
	clock.Advance(linger)
	if _, err := f.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestGapEndsLinger has a burst of callers append once each and go away;
// the batcher, counting them as away, would hold the next append for the
// whole BatchLinger (a second here, the most it may be) for them to come
// back. BatchGap with no append must end that wait.
func TestGapEndsLinger(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, p := singleNode(ctx, t, LogPluginName, func(cfg *Config) {
		cfg.BatchLinger, cfg.BatchGap = time.Second, 2*time.Millisecond
	})
	defer r.Close()
	maxAway := 0
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := p.Append(ctx, AppendOp{Payload: []byte("burst")}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		p.batcher.mu.Lock()
		maxAway = max(maxAway, p.batcher.gather.away)
		p.batcher.mu.Unlock()
		start := time.Now()
		if _, err := p.Append(ctx, AppendOp{Payload: []byte("alone")}); err != nil {
			t.Fatal(err)
		}
		// A commit takes milliseconds; the linger would add a second.
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("round %d: an append after the burst took %v: it waited for callers that had gone", round, d)
		}
	}
	// The lone append counts one caller back: with fewer than two away,
	// it would not have waited for any.
	if maxAway < 2 {
		t.Fatalf("at most %d callers away after a burst: the test did not exercise the wait", maxAway)
	}
}
