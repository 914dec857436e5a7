package replicator

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
)

// TestProposeFailureUnderLoad stops the Raft replica under a partition
// while appenders keep its batcher busy, so that batches fail when they
// are proposed (the replica no longer answers as leader). Every append
// must end, with an error or not; none may hang on the batcher's locks.
func TestProposeFailureUnderLoad(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "node")
	cfg.RaftAddress = testutil.FreeAddr(t)
	cfg.RTT = 5 * time.Millisecond
	cfg.LogDB = LogDBTan
	cfg.EngineWorkers = 2
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hung := false
	defer func() {
		if !hung { // closing would wait for the stuck batcher
			r.Close()
		}
	}()
	p, err := r.CreatePartition(PartitionSpec{ID: 1, Plugin: LogPluginName, Replicas: map[ReplicaID]string{1: cfg.RaftAddress}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if _, err := p.Append(ctx, AppendOp{Payload: []byte("first")}); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("no leader: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	const appenders = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
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
					mu.Lock()
					failed++
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := r.nh.StopReplica(1, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(25 * time.Second):
		hung = true
		t.Fatal("appenders did not finish after the replica stopped")
	}
	if failed == 0 {
		t.Fatal("no append failed after the replica stopped")
	}
}
