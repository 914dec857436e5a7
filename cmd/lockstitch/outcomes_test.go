package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// outcome is what the client said of one append.
type outcome struct {
	lsn          lockstitch.LSN // success
	definite     error          // not appended
	indet        error          // may be appended
	acrossAKill  bool           // in flight when a leader was killed
	start, ended time.Time
}

// TestOutcomesUnderLeaderKills holds the Go client's outcomes to the
// stream while the leader of a partition is killed (SIGKILL) and
// restarted under load from several producers, each a client of its own
// with a short retry budget (so that some appends run out of it): every
// op the client reported appended is in the stream once, at its LSN;
// every op it reported definitely not appended is absent; every
// indeterminate one is there at most once. LOCKSTITCH_OUTCOME_KILLS sets
// the number of kills (default 3; scripts/outcomes runs more).
func TestOutcomesUnderLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	t.Parallel()
	kills := 3
	if v := os.Getenv("LOCKSTITCH_OUTCOME_KILLS"); v != "" {
		var err error
		if kills, err = strconv.Atoi(v); err != nil || kills < 1 {
			t.Fatalf("LOCKSTITCH_OUTCOME_KILLS=%q", v)
		}
	}
	c := startServeCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(kills)*time.Minute+2*time.Minute)
	defer cancel()
	admin := c.dial(ctx)
	defer admin.Close()
	if _, err := admin.CreatePartition(ctx, transport.PartitionSpec{ID: 1}); err != nil {
		t.Fatal(err)
	}

	const producers = 4
	var (
		mu       sync.Mutex
		outcomes = map[string]*outcome{}
		killAt   []time.Time
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < producers; g++ {
		cfg := transport.DefaultClientConfig()
		cfg.MaxAttempts, cfg.BackoffMax = 3, 100*time.Millisecond
		cl, err := transport.Dial(ctx, cfg, c.addr(0, 1), c.addr(0, 2), c.addr(0, 3))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			// window appends in flight at a time, each its own op.
			const window = 8
			type pending struct {
				op string
				o  *outcome
				f  transport.AppendFuture
			}
			var inflight []pending
			finish := func(p pending) {
				actx, acancel := context.WithTimeout(ctx, 10*time.Second)
				res, err := p.f.Wait(actx)
				acancel()
				p.o.ended = time.Now()
				switch {
				case err == nil:
					p.o.lsn = res.LSN
				case errors.Is(err, lockstitch.ErrIndeterminate):
					p.o.indet = err
				default:
					p.o.definite = err
				}
				mu.Lock()
				outcomes[p.op] = p.o
				mu.Unlock()
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					for _, p := range inflight {
						finish(p)
					}
					return
				default:
				}
				if len(inflight) == window {
					finish(inflight[0])
					inflight = inflight[1:]
				}
				op := fmt.Sprintf("p%d-%d", g, i)
				inflight = append(inflight, pending{op, &outcome{start: time.Now()}, cl.AppendAsync(ctx, 1, []byte(op))})
			}
		}()
	}
	waitCommitted := func(n lockstitch.LSN) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			st, err := admin.PartitionStatus(sctx, 1)
			scancel()
			if err == nil && st.Committed >= n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("partition 1 did not reach LSN %d", n)
	}
	for k := 0; k < kills; k++ {
		st, err := admin.PartitionStatus(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		waitCommitted(st.Committed + 500)
		st, err = admin.PartitionStatus(ctx, 1)
		if err != nil || st.Leader == 0 {
			t.Fatalf("status: %+v %v", st, err)
		}
		leader := int(st.Leader) // replica i is on node i
		mu.Lock()
		killAt = append(killAt, time.Now())
		mu.Unlock()
		c.nodes[leader-1].kill()
		waitCommitted(st.Committed + 1000) // the others go on
		c.nodes[leader-1] = startServe(t, c.args(leader))
	}
	close(stop)
	wg.Wait()

	// An op appended now commits after everything the producers' ops
	// can still become (Raft commits in log order): read the stream up
	// to it, from one node once it has it all.
	end, err := admin.Append(ctx, 1, []byte("end"))
	if err != nil {
		t.Fatal(err)
	}
	at := map[string][]lockstitch.LSN{}
	c.readStream(ctx, 1, 1, end.LSN, func(rec *wal.Record) {
		at[string(rec.Payload)] = append(at[string(rec.Payload)], rec.LSN)
	})
	var ok, definite, indet, across int
	for op, o := range outcomes {
		for _, k := range killAt {
			if o.start.Before(k) && o.ended.After(k) {
				o.acrossAKill = true
			}
		}
		lsns := at[op]
		switch {
		case o.lsn != 0:
			ok++
			if len(lsns) != 1 || lsns[0] != o.lsn {
				t.Errorf("%s: the client said LSN %d; the stream has it at %v", op, o.lsn, lsns)
			}
		case o.definite != nil:
			definite++
			if len(lsns) != 0 {
				t.Errorf("%s: the client said not appended (%v); the stream has it at %v", op, o.definite, lsns)
			}
		default:
			indet++
			if len(lsns) > 1 {
				t.Errorf("%s: indeterminate (%v), and the stream has it %d times: %v", op, o.indet, len(lsns), lsns)
			}
		}
		if o.acrossAKill {
			across++
		}
	}
	for op, lsns := range at {
		if _, ok := outcomes[op]; !ok && op != "end" {
			t.Errorf("the stream holds %q at %v, which no producer appended", op, lsns)
		}
	}
	t.Logf("%d kills: %d appended, %d definitely not, %d indeterminate; %d in flight across a kill (retried or indeterminate)", kills, ok, definite, indet, across)
	if across == 0 {
		t.Fatal("no append was in flight across a kill: the test exercised nothing")
	}
}
