package replicator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/wal"
)

func opPayload(g, i int) []byte { return []byte(fmt.Sprintf("op g=%d i=%d", g, i)) }

// ackLog records which payload each acknowledged LSN was given to, from
// many goroutines.
type ackLog struct {
	mu sync.Mutex
	m  map[lockstitch.LSN][]byte
}

func newAckLog() *ackLog { return &ackLog{m: map[lockstitch.LSN][]byte{}} }

// add records an acknowledgement; an LSN acknowledged for another payload
// is an error (the same payload again is a deduplicated retry).
func (a *ackLog) add(lsn lockstitch.LSN, payload []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if prev, ok := a.m[lsn]; ok && !bytes.Equal(prev, payload) {
		return fmt.Errorf("LSN %d acknowledged for %q and for %q", lsn, prev, payload)
	}
	a.m[lsn] = payload
	return nil
}

// ack records the outcome of goroutine g's op i, whose payload is
// opPayload(g, i): an append error, or an LSN acknowledged for another
// payload, is returned.
func (a *ackLog) ack(g, i int, res replicator.AppendResult, err error) error {
	if err != nil {
		return fmt.Errorf("goroutine %d op %d: %w", g, i, err)
	}
	return a.add(res.LSN, opPayload(g, i))
}

// TestConcurrentAppendsIdenticalStreams appends from many goroutines at
// once and checks that every replica holds the same dense stream, which
// holds every acknowledged op at the LSN it was acknowledged with.
func TestConcurrentAppendsIdenticalStreams(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	l := c.leader(1)
	p := c.partition(l, 1)
	const goroutines, each = 16, 150
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acks := newAckLog()
	acked := acks.m
	goAppenders(goroutines, func(g int) error {
		futures := make([]*replicator.Future, each)
		for i := range futures {
			futures[i] = p.AppendAsync(replicator.AppendOp{Payload: opPayload(g, i)})
		}
		for i, f := range futures {
			res, err := f.Wait(ctx)
			if err := acks.ack(g, i, res, err); err != nil {
				return err
			}
		}
		return nil
	}).wait(t)
	last := lockstitch.LSN(goroutines * each)
	if len(acked) != int(last) {
		t.Fatalf("%d distinct LSNs acknowledged for %d ops", len(acked), last)
	}
	for i := range c.nodes {
		recs := c.stream(i, 1, last)
		if len(recs) != int(last) {
			t.Fatalf("node %d holds %d ops, want %d", i+1, len(recs), last)
		}
		for j, r := range recs {
			if r.LSN != lockstitch.LSN(j+1) {
				t.Fatalf("node %d: record %d has LSN %d", i+1, j, r.LSN)
			}
			if !bytes.Equal(r.Payload, acked[r.LSN]) || r.CRC != wal.Checksum(r.Payload) {
				t.Fatalf("node %d: LSN %d holds %q, acknowledged %q", i+1, r.LSN, r.Payload, acked[r.LSN])
			}
		}
	}
}

// TestCanceledAppendWaits mixes appends whose wait ends with their
// context, while their op is queued or in flight, with appends that wait
// for their outcome. Append reuses its waiters; one whose wait was
// abandoned must not hand its late outcome to a later append: every
// completed append must find its own payload at the LSN it was given.
func TestCanceledAppendWaits(t *testing.T) {
	c := newCluster(t, 1, nil)
	c.create(1)
	p := c.partition(c.leader(1), 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const goroutines, each = 8, 200
	acks := newAckLog()
	acked := acks.m
	var canceled atomic.Int64
	goAppenders(goroutines, func(g int) error {
		for i := 0; i < each; i++ {
			actx, acancel := ctx, context.CancelFunc(func() {})
			if g%2 == 1 {
				// Deadlines from 0 to 700 µs: some end before the op
				// is proposed, some while it is in Raft.
				actx, acancel = context.WithTimeout(ctx, time.Duration(i%8)*100*time.Microsecond)
			}
			res, err := p.Append(actx, replicator.AppendOp{Payload: opPayload(g, i)})
			acancel()
			if errors.Is(err, context.DeadlineExceeded) && g%2 == 1 {
				canceled.Add(1)
				continue
			}
			if err := acks.ack(g, i, res, err); err != nil {
				return err
			}
		}
		return nil
	}).wait(t)
	// Canceled ops may still have committed: the stream holds them too.
	st, err := p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs := c.stream(0, 1, st.AppliedLSN)
	if len(recs) <= len(acked) {
		// (A wait that ended before its op was queued, at 0 µs, abandons
		// no waiter: only a canceled op that committed proves one was.)
		t.Fatalf("%d ops committed for %d acknowledged: no abandoned waiter got a late outcome, so the test did not exercise them", len(recs), len(acked))
	}
	found := 0
	for _, r := range recs {
		if want, ok := acked[r.LSN]; ok {
			if !bytes.Equal(r.Payload, want) {
				t.Fatalf("LSN %d holds %q, acknowledged for %q", r.LSN, r.Payload, want)
			}
			found++
		}
	}
	if found != len(acked) {
		t.Fatalf("%d of %d acknowledged LSNs are in the stream", found, len(acked))
	}
	t.Logf("%d appends acknowledged, %d waits canceled, %d ops committed", len(acked), canceled.Load(), len(recs))
}

// TestLeaderFailover closes the leader's node while producers append and
// retry; a new leader takes over and no acknowledged op is lost, moved or
// applied twice.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	old := c.leader(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const producers, each = 4, 60
	acks := newAckLog()
	acked := acks.m
	started := make(chan struct{}, producers)
	a := goAppenders(producers, func(g int) error {
		for i := 0; i < each; i++ {
			if i == each/3 {
				started <- struct{}{}
			}
			op := replicator.AppendOp{Payload: opPayload(g, i), Producer: lockstitch.ProducerID(g + 1), Seq: uint64(i + 1)}
			res, err := c.appendRetry(ctx, 1, op)
			if err != nil {
				return err
			}
			if err := acks.add(res.LSN, op.Payload); err != nil {
				return err
			}
		}
		return nil
	})
	for range producers {
		<-started
	}
	c.stop(old)
	a.wait(t)
	if len(acked) != producers*each {
		t.Fatalf("%d ops acknowledged at distinct LSNs, want %d: an op was applied twice", len(acked), producers*each)
	}
	l := c.leader(1)
	if l == old {
		t.Fatalf("node %d still leads after being closed", l+1)
	}
	// An op without a producer marks the end: everything before it is in
	// the stream, and every op must be there exactly once.
	end, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: []byte("end")})
	if err != nil {
		t.Fatal(err)
	}
	if want := lockstitch.LSN(producers*each + 1); end.LSN != want {
		t.Fatalf("the end marker got LSN %d, want %d: an op was lost or applied twice", end.LSN, want)
	}
	for i := range c.nodes {
		if i == old {
			continue
		}
		recs := c.stream(i, 1, end.LSN)
		seen := map[string]int{}
		for _, r := range recs {
			if want, ok := acked[r.LSN]; ok && !bytes.Equal(want, r.Payload) {
				t.Fatalf("node %d: LSN %d holds %q, acknowledged %q", i+1, r.LSN, r.Payload, want)
			}
			seen[string(r.Payload)]++
		}
		if len(recs) != int(end.LSN) {
			t.Fatalf("node %d: %d ops up to LSN %d", i+1, len(recs), end.LSN)
		}
		for g := 0; g < producers; g++ {
			for j := 0; j < each; j++ {
				if n := seen[string(opPayload(g, j))]; n != 1 {
					t.Fatalf("node %d: op %q is in the stream %d times", i+1, opPayload(g, j), n)
				}
			}
		}
	}
}

// TestRestartedNodeCatchesUp stops a follower, appends, restarts it from
// its directory, and checks that it catches up to the same stream.
func TestRestartedNodeCatchesUp(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	l := c.leader(1)
	follower := (l + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 50; i++ {
		if _, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: opPayload(0, i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.stop(follower)
	for i := 50; i < 200; i++ {
		if _, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: opPayload(0, i)}); err != nil {
			t.Fatal(err)
		}
	}
	c.start(follower)
	want := c.stream(l, 1, 200)
	got := c.stream(follower, 1, 200)
	if len(got) != len(want) {
		t.Fatalf("restarted node holds %d ops, leader %d", len(got), len(want))
	}
	for i := range want {
		if got[i].LSN != want[i].LSN || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("LSN %d differs after restart", want[i].LSN)
		}
	}
}

// TestIdempotentProducer retries appends with the same producer and
// sequence, also after a leader change and a full cluster restart: they
// are not applied again and return the original LSN.
func TestIdempotentProducer(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 20
	lsns := make([]lockstitch.LSN, n)
	epochs := make([]lockstitch.Epoch, n)
	op := func(i int) replicator.AppendOp {
		return replicator.AppendOp{Payload: opPayload(7, i), Producer: 7, Seq: uint64(i + 1)}
	}
	for i := range lsns {
		res, err := c.appendRetry(ctx, 1, op(i))
		if err != nil || res.Duplicate {
			t.Fatalf("op %d: %+v, %v", i, res, err)
		}
		lsns[i], epochs[i] = res.LSN, res.Epoch
	}
	retryAll := func(when string) {
		t.Helper()
		for i := range lsns {
			res, err := c.appendRetry(ctx, 1, op(i))
			if err != nil {
				t.Fatalf("%s: retry of op %d: %v", when, i, err)
			}
			if !res.Duplicate || res.LSN != lsns[i] || res.Epoch != epochs[i] {
				t.Fatalf("%s: retry of op %d returned %+v, want a duplicate of LSN %d epoch %d", when, i, res, lsns[i], epochs[i])
			}
		}
	}
	retryAll("same leader")

	l := c.leader(1)
	target := lockstitch.ReplicaID((l+1)%3 + 1)
	if err := c.get(l).TransferLeader(ctx, 1, target); err != nil {
		t.Fatal(err)
	}
	retryAll("after a leader change")

	c.close()
	for i := range c.nodes {
		c.start(i)
	}
	c.leader(1)
	retryAll("after a full restart")

	// A new sequence is applied; an older one that was never seen is stale.
	res, err := c.appendRetry(ctx, 1, op(n))
	if err != nil || res.Duplicate || res.LSN != lsns[n-1]+1 {
		t.Fatalf("next sequence: %+v, %v; want LSN %d", res, err, lsns[n-1]+1)
	}
	// A sequence below the window of a producer whose window is full
	// cannot be told apart: it is refused.
	ops := make([]replicator.AppendOp, replicator.DedupeWindow+10)
	for i := range ops {
		ops[i] = replicator.AppendOp{Payload: []byte("w"), Producer: 8, Seq: uint64(i + 2)}
	}
	p := c.partition(c.leader(1), 1)
	if _, _, err := p.AppendBatch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	old := replicator.AppendOp{Payload: []byte("x"), Producer: 8, Seq: 1}
	if _, err := c.appendRetry(ctx, 1, old); !errors.Is(err, lockstitch.ErrStaleSequence) {
		t.Fatalf("sequence below a full window: %v, want ErrStaleSequence", err)
	}
	// Every replica holds each op once.
	last := lsns[n-1] + 1 + lockstitch.LSN(len(ops))
	for i := range c.nodes {
		if recs := c.stream(i, 1, last); len(recs) != int(last) {
			t.Fatalf("node %d holds %d ops, want %d", i+1, len(recs), last)
		}
	}
}

// TestFullClusterRestart closes every node and opens them again: the
// partition comes back by itself with its stream, and goes on.
func TestFullClusterRestart(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	c.create(2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 30; i++ {
		for _, id := range []lockstitch.PartitionID{1, 2} {
			if _, err := c.appendRetry(ctx, id, replicator.AppendOp{Payload: opPayload(int(id), i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.close()
	for i := range c.nodes {
		c.start(i)
		if got := c.get(i).Partitions(); len(got) != 2 {
			t.Fatalf("node %d restarted with partitions %v", i+1, got)
		}
	}
	for i := 30; i < 40; i++ {
		if _, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: opPayload(1, i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.nodes {
		recs := c.stream(i, 1, 40)
		for j, r := range recs {
			if !bytes.Equal(r.Payload, opPayload(1, j)) {
				t.Fatalf("node %d: LSN %d holds %q", i+1, r.LSN, r.Payload)
			}
		}
		if recs := c.stream(i, 2, 30); len(recs) != 30 {
			t.Fatalf("node %d: partition 2 holds %d ops", i+1, len(recs))
		}
	}
}

// TestAppendsAcrossLeaderTransfers keeps concurrent producers appending
// while leadership moves around: batches queued on a replica that stops
// leading fail (some when they are proposed) and are retried. Every
// append must complete, exactly once, and nothing may hang.
func TestAppendsAcrossLeaderTransfers(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const producers, each = 16, 100
	a := goAppenders(producers, func(g int) error {
		for i := 0; i < each; i++ {
			op := replicator.AppendOp{Payload: opPayload(g, i), Producer: lockstitch.ProducerID(g + 1), Seq: uint64(i + 1)}
			if _, err := c.appendRetry(ctx, 1, op); err != nil {
				return fmt.Errorf("producer %d op %d: %w", g, i, err)
			}
		}
		return nil
	})
	for transfers := 0; transfers < 4; transfers++ {
		select {
		case <-a.done:
		case <-time.After(100 * time.Millisecond):
		}
		l := c.leader(1)
		target := lockstitch.ReplicaID((l+1)%3 + 1)
		if err := c.get(l).TransferLeader(ctx, 1, target); err != nil && !retryable(err) {
			t.Fatalf("transfer %d: %v", transfers, err)
		}
	}
	select {
	case <-a.done:
	case <-ctx.Done():
		t.Fatal("appends did not finish: a batch was never completed")
	}
	a.wait(t)
	end, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: []byte("end")})
	if err != nil {
		t.Fatal(err)
	}
	if want := lockstitch.LSN(producers*each + 1); end.LSN != want {
		t.Fatalf("the end marker got LSN %d, want %d: an op was lost or applied twice", end.LSN, want)
	}
}
