package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	qops "github.com/lockstitch/lockstitch/ops/queue"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/queueclient"
)

// queueView is everything a replica's queue shows: its lengths and each
// list, as one node answers from its own state.
type queueView struct {
	Lengths             qops.Lengths
	Ready, Leased, Dead []qops.Item
	LSN                 lockstitch.LSN
}

// localQueueView reads node i's replica of queue partition id from its own
// state (a bounded read with a large bound, through a client of node i
// alone), once it has applied lsn.
func (c *serveCluster) localQueueView(ctx context.Context, i int, id lockstitch.PartitionID, lsn lockstitch.LSN) queueView {
	c.t.Helper()
	cl := c.dial(ctx, i)
	defer cl.Close()
	q := queueclient.New(cl, id)
	q.Consistency, q.MaxStaleness = lockstitch.Bounded, time.Hour
	var v queueView
	testutil.WaitFor(c.t, fmt.Sprintf("node %d to apply LSN %d", i, lsn), time.Minute, func() bool {
		l, err := q.Len(ctx)
		if err != nil || l.LSN < lsn {
			return false
		}
		v = queueView{Lengths: l.Lengths, LSN: l.LSN}
		for _, p := range []struct {
			list qops.List
			dst  *[]qops.Item
		}{{qops.ListReady, &v.Ready}, {qops.ListLeased, &v.Leased}, {qops.ListDead, &v.Dead}} {
			items, at, err := q.Peek(ctx, p.list, qops.MaxPeek)
			if err != nil || at != v.LSN {
				return false // an op applied between the reads: read again
			}
			*p.dst = items
		}
		return true
	})
	return v
}

// TestQueueFollowerCrash kills a follower with SIGKILL while clients
// enqueue, lease, acknowledge and let leases expire, restarts it, and
// checks that its queue ends exactly as the replicas that never crashed:
// the same lengths, clock and lists, item by item.
func TestQueueFollowerCrash(t *testing.T) {
	queueCrash(t, "--checkpoint-interval", "50ms")
}

// TestQueueFollowerCopy is TestQueueFollowerCrash with Raft logs
// compacted every 100 entries: the restarted follower is too far behind
// for the leader's log and is sent a copy, the queue's snapshot.
func TestQueueFollowerCopy(t *testing.T) {
	c, follower := queueCrash(t, "--snapshot-entries", "100", "--compaction-overhead", "10")
	if log := c.nodes[follower-1].log.String(); !strings.Contains(log, "replica restored from a snapshot") {
		t.Fatalf("node %d caught up without a copy (the test did not exercise the queue's snapshot):\n%s", follower, log)
	}
}

// queueCrash runs the crash test on serve processes with extra flags and
// returns the cluster and the node it killed.
func queueCrash(t *testing.T, extra ...string) (*serveCluster, int) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute, extra...)
	const id = 1
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: id, Plugin: "queue", Options: map[string]string{"max_deliveries": "2"}, Nodes: []lockstitch.NodeID{1, 2, 3}}); err != nil {
		t.Fatalf("%v\n%s", err, c.nodes[0].log)
	}
	q := queueclient.New(cl, id)
	st, err := cl.PartitionStatus(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	follower := 1
	if st.Leader == 1 {
		follower = 2
	}
	// round runs a round of ops: enqueues, and dequeues of which it
	// acknowledges every other one; the rest come back when their short
	// leases expire, and after two deliveries are dead-lettered.
	round := func(r int) {
		t.Helper()
		for k := range 20 {
			if _, _, err := q.Enqueue(ctx, fmt.Appendf(nil, "round %d item %d", r, k)); err != nil && !errors.Is(err, transport.ErrResultLost) {
				t.Fatal(err)
			}
		}
		for k := range 15 {
			lease := time.Hour
			if k%2 == 1 {
				lease = 20 * time.Millisecond
			}
			d, err := q.Dequeue(ctx, lease)
			if errors.Is(err, queueclient.ErrEmpty) || errors.Is(err, transport.ErrResultLost) {
				continue // a retry whose first attempt leased an item: it comes back when its lease expires
			}
			if err != nil {
				t.Fatal(err)
			}
			if k%4 == 0 {
				if err := q.Ack(ctx, d.ID, d.Delivery); err != nil && !errors.Is(err, transport.ErrResultLost) {
					t.Fatal(err)
				}
			}
		}
	}
	for r := range 30 {
		switch r {
		case 10:
			c.nodes[follower-1].kill()
		case 20:
			c.nodes[follower-1] = startServe(t, c.args(follower))
		}
		round(r)
	}
	l, err := q.Len(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.Dead == 0 || l.Leased == 0 || l.Ready == 0 {
		t.Fatalf("the ops did not fill every list: %+v", l)
	}
	var views []queueView
	for i := 1; i <= 3; i++ {
		views = append(views, c.localQueueView(ctx, i, id, l.LSN))
	}
	for i, v := range views {
		if v.LSN != l.LSN {
			t.Fatalf("node %d answered at LSN %d, the leader at %d", i+1, v.LSN, l.LSN)
		}
		if !reflect.DeepEqual(v, views[0]) {
			t.Fatalf("node %d's queue differs from node 1's (node %d was killed):\n%+v\n%+v", i+1, follower, v, views[0])
		}
	}
	if log := c.nodes[follower-1].log.String(); !strings.Contains(log, "replica opened") {
		t.Fatalf("the restarted follower did not reopen its replica:\n%s", log)
	}
	// Whether the restarted follower's pebble had lost its last batches
	// (written after the kill's last flush) and the replicator replayed
	// them from the operation log, with their times, depends on timing.
	replayed := strings.Contains(c.nodes[follower-1].log.String(), "replayed the operation log into the plugin")
	t.Logf("after %d ops: %d ready, %d leased, %d dead; follower %d killed and restarted (plugin replayed from the log: %v)", l.LSN, l.Ready, l.Leased, l.Dead, follower, replayed)
	return c, follower
}

// TestQueueCLI drives a queue partition with the CLI against serve
// processes, across a leader change: an item popped on one leader and
// not acknowledged comes back, after its deadline by the op times, from
// the next leader, with the next delivery number.
func TestQueueCLI(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 2*time.Minute)
	addrs := strings.Join([]string{c.addr(0, 1), c.addr(0, 2), c.addr(0, 3)}, ",")
	// run runs a two-word command (queue pop, partition create) with
	// --addr and then args.
	run := func(t *testing.T, args ...string) (int, string, string) {
		t.Helper()
		return cli(t, append([]string{args[0], args[1], "--addr", addrs}, args[2:]...)...)
	}
	if code, out, errOut := run(t, "partition", "create", "--id", "4", "--plugin", "queue", "--option", "max_deliveries=3"); code != 0 {
		t.Fatalf("partition create: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "queue", "push", "--partition", "4", "first", "second"); code != 0 || out != "1\n2\n" {
		t.Fatalf("push: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "queue", "len", "--partition", "4", "--json"); code != 0 || !strings.Contains(out, `"ready":2`) {
		t.Fatalf("len: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "queue", "peek", "--partition", "4"); code != 0 || out != "1 0 first\n2 0 second\n" {
		t.Fatalf("peek: %d %q %q", code, out, errOut)
	}
	type popped struct {
		ID       uint64    `json:"id"`
		Delivery uint32    `json:"delivery"`
		Deadline time.Time `json:"deadline"`
		Item     string    `json:"item_text"`
		Empty    bool      `json:"empty"`
	}
	pop := func(lease string) (popped, int) {
		t.Helper()
		code, out, errOut := run(t, "queue", "pop", "--partition", "4", "--lease", lease, "--json")
		var p popped
		if code != 0 && code != exitEmpty || json.Unmarshal([]byte(out), &p) != nil {
			t.Fatalf("pop: %d %q %q", code, out, errOut)
		}
		return p, code
	}
	first, _ := pop("2s")
	if first.ID != 1 || first.Delivery != 1 || first.Item != "first" {
		t.Fatalf("first pop: %+v", first)
	}
	second, _ := pop("1h")
	if code, _, errOut := run(t, "queue", "ack", "--partition", "4", "--id", fmt.Sprint(second.ID), "--delivery", "1"); code != 0 {
		t.Fatalf("ack: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "queue", "ack", "--partition", "4", "--id", fmt.Sprint(second.ID), "--delivery", "1"); code != 1 || !strings.Contains(errOut, "lease lost") {
		t.Fatalf("second ack: %d %q", code, errOut)
	}
	// Move the leadership, then pop until the first item comes back: not
	// before its deadline in the queue's clock (each answer's deadline
	// minus its lease is the op's time).
	st, err := cl.PartitionStatus(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	to := st.Leader%3 + 1
	if code, _, errOut := run(t, "leader", "transfer", "--partition", "4", "--to", fmt.Sprint(to)); code != 0 {
		t.Fatalf("leader transfer: %d %q", code, errOut)
	}
	var again popped
	testutil.WaitFor(t, "the first item to come back", time.Minute, func() bool {
		p, code := pop("1m")
		if code == exitEmpty {
			return false
		}
		again = p
		return true
	})
	if again.ID != first.ID || again.Delivery != 2 || again.Deadline.Add(-time.Minute).Before(first.Deadline) {
		t.Fatalf("redelivery %+v of %+v", again, first)
	}
	if st, err := cl.PartitionStatus(ctx, 4); err != nil || st.Leader != to {
		t.Fatalf("the leader changed again (%v): the test did not pop on replica %d", err, to)
	}
	code, out, errOut := run(t, "queue", "extend", "--partition", "4", "--id", "1", "--delivery", "2", "--lease", "2h", "--json")
	if code != 0 || !strings.Contains(out, `"deadline"`) {
		t.Fatalf("extend: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "queue", "peek", "--partition", "4", "--list", "leased", "--consistency", "any"); code != 0 || !strings.HasPrefix(out, "1 2 first until ") {
		t.Fatalf("peek --list leased: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := run(t, "queue", "len", "--partition", "4"); code != 0 || !strings.HasPrefix(out, "0 ready, 1 leased, 0 dead") {
		t.Fatalf("len: %d %q %q", code, out, errOut)
	}
	if _, code := pop("1s"); code != exitEmpty {
		t.Fatalf("pop of an empty queue: exit %d", code)
	}
	// Usage errors exit 2; a non-queue partition's answer is an error.
	for _, args := range [][]string{{"queue"}, {"queue", "pop"}, {"queue", "ack", "--partition", "4"}, {"queue", "peek", "--partition", "4", "--list", "x"}, {"queue", "frob"}} {
		if code, _, _ := cli(t, args...); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
	if code, out, _ := cli(t, "queue", "-h"); code != 0 || !strings.Contains(out, "push [item ...]") {
		t.Fatalf("queue -h: %d %q", code, out)
	}
	if code, _, errOut := run(t, "partition", "create", "--id", "5", "--plugin", "queue", "--option", "max_deliveries=0"); code != 1 || !strings.Contains(errOut, "max_deliveries") {
		t.Fatalf("create with a bad option: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "partition", "create", "--id", "6"); code != 0 {
		t.Fatalf("create a log partition: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, "queue", "push", "--partition", "6", "x"); code != 1 || !strings.Contains(errOut, "queue") {
		t.Fatalf("push to a log partition: %d %q", code, errOut)
	}
}
