package replicator_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	qops "github.com/lockstitch/lockstitch/ops/queue"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/replicator/queue"
)

// TestQueueLeasesAcrossLeaderChanges runs the queue plugin on three nodes
// whose proposer clocks the test sets (Config.ProposerClock), and moves
// the leadership between them: a lease expires at the op whose leader's
// time reaches its deadline, whichever node leads, and a leader whose
// clock is behind neither brings an expired lease back nor expires one
// early. Every replica ends with the same state.
func TestQueueLeasesAcrossLeaderChanges(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var clocks [3]atomic.Int64 // each node's proposer clock, Unix ns
	nodes := 0
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		i := nodes
		nodes++
		cfg.Plugins[queue.PluginName] = queue.New
		cfg.ProposerClock = func() time.Time { return time.Unix(0, clocks[i].Load()) }
	})
	const id = 1
	spec := c.spec(id)
	spec.Plugin, spec.Options = queue.PluginName, map[string]string{queue.OptionMaxDeliveries: "2"}
	for i := range c.nodes {
		if _, err := c.get(i).CreatePartition(spec); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// lead makes node i the leader, its clock at offset from t0.
	lead := func(i int, offset time.Duration) {
		t.Helper()
		clocks[i].Store(t0.Add(offset).UnixNano())
		if err := c.get(0).TransferLeader(ctx, id, lockstitch.ReplicaID(i+1)); err != nil {
			t.Fatal(err)
		}
		c.leader(id) // every node knows it
	}
	var last lockstitch.LSN
	do := func(op []byte) qops.Result {
		t.Helper()
		res, err := c.appendRetry(ctx, id, replicator.AppendOp{Payload: op})
		if err != nil {
			t.Fatal(err)
		}
		last = res.LSN
		var r qops.Result
		if err := qops.DecodeResult(res.Result, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	dequeue := func(lease time.Duration, want string, delivery uint32, deadline time.Time) qops.Result {
		t.Helper()
		r := do(qops.AppendDequeue(nil, lease))
		if r.Status != qops.StatusOK || string(r.Payload) != want || r.Delivery != delivery || !r.Deadline.Equal(deadline) {
			t.Fatalf("dequeue: %v %q delivery %d deadline %v; want %q delivery %d deadline %v", r.Status, r.Payload, r.Delivery, r.Deadline, want, delivery, deadline)
		}
		return r
	}

	lead(0, 0)
	for _, s := range []string{"a", "b"} {
		do(qops.AppendEnqueue(nil, []byte(s)))
	}
	a := dequeue(10*time.Second, "a", 1, t0.Add(10*time.Second))
	// Node 2 leads at t0+5s: a is still leased, b comes out.
	lead(1, 5*time.Second)
	dequeue(10*time.Second, "b", 1, t0.Add(15*time.Second))
	// Node 3 leads at t0+10s: a's lease has just expired; its first
	// delivery can no longer be acknowledged, and a comes back.
	lead(2, 10*time.Second)
	if r := do(qops.AppendAck(nil, a.ID, 1)); r.Status != qops.StatusLost {
		t.Fatalf("ack of the expired delivery: %v", r.Status)
	}
	a2 := dequeue(time.Minute, "a", 2, t0.Add(70*time.Second))
	// Node 1 leads again, its clock an hour behind: the queue's clock stays
	// at t0+10s, so b (deadline t0+15s) is not ready, and a new lease runs
	// from t0+10s.
	lead(0, -time.Hour)
	if r := do(qops.AppendDequeue(nil, time.Second)); r.Status != qops.StatusEmpty {
		t.Fatalf("dequeue behind the clock: %v %q", r.Status, r.Payload)
	}
	if r := do(qops.AppendExtend(nil, a2.ID, a2.Delivery, 20*time.Second)); r.Status != qops.StatusOK || !r.Deadline.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("extend behind the clock: %v deadline %v", r.Status, r.Deadline)
	}
	// Node 2 leads at t0+15s: b comes back for its second and last
	// delivery; at t0+30s, on node 3, a's second lease and b's expire:
	// both are dead-lettered (max_deliveries 2).
	lead(1, 15*time.Second)
	dequeue(15*time.Second, "b", 2, t0.Add(30*time.Second))
	lead(2, 30*time.Second)
	if r := do(qops.AppendDequeue(nil, time.Second)); r.Status != qops.StatusEmpty {
		t.Fatalf("dequeue after the last deliveries: %v %q", r.Status, r.Payload)
	}

	// Every replica has the same state: both dead-lettered, nothing else.
	var want []byte
	for i := range c.nodes {
		p := c.partition(i, id)
		waitApplied(t, p, last)
		var got []byte
		for _, req := range [][]byte{
			qops.AppendLenQuery(nil),
			qops.AppendPeekQuery(nil, qops.ListReady, qops.MaxPeek),
			qops.AppendPeekQuery(nil, qops.ListLeased, qops.MaxPeek),
			qops.AppendPeekQuery(nil, qops.ListDead, qops.MaxPeek),
		} {
			res, err := p.Query(ctx, req, replicator.QueryOptions{Consistency: lockstitch.Bounded, MaxStaleness: time.Hour})
			if err != nil {
				t.Fatalf("node %d: %v", i+1, err)
			}
			got = append(got, res.Result...)
		}
		if i == 0 {
			want = got
			res, err := p.Query(ctx, qops.AppendLenQuery(nil), replicator.QueryOptions{Consistency: lockstitch.Bounded, MaxStaleness: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			var l qops.Lengths
			if err := qops.DecodeLengths(res.Result, &l); err != nil || l.Ready != 0 || l.Leased != 0 || l.Dead != 2 || !l.Clock.Equal(t0.Add(30*time.Second)) {
				t.Fatalf("lengths %+v, %v", l, err)
			}
		} else if !bytes.Equal(got, want) {
			t.Fatalf("node %d's queue differs from node 1's:\n% x\n% x", i+1, got, want)
		}
	}
}
