package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// scrape returns every series of a node's /metrics whose line starts with
// prefix, by the rest of its name and labels (nil when the node does not
// answer). Metrics are read without touching Raft: a status would send
// read indexes, which wake quiet partitions.
func scrape(adminAddr, prefix string) map[string]float64 {
	res, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, ' ')
		if v, err := strconv.ParseFloat(rest[i+1:], 64); err == nil {
			out[rest[:i]] = v
		}
	}
	return out
}

// leadersOn returns the partitions node i's replica leads, as its
// metrics say.
func (c *serveCluster) leadersOn(i int) map[string]bool {
	out := map[string]bool{}
	for k, v := range scrape(c.addr(20, i), "lockstitch_partition_leader{partition=") {
		if v == 1 {
			out[strings.Trim(k, `"}`)] = true
		}
	}
	return out
}

// waitQuiet waits until every replica of nodes is quiesced, as dragonboat
// reported it (lockstitch_replicas_quiesced).
func (c *serveCluster) waitQuiet(ctx context.Context, parts int, nodes ...int) {
	c.t.Helper()
	for _, i := range nodes {
		for n := -1.0; int(n) != parts; time.Sleep(50 * time.Millisecond) {
			if ctx.Err() != nil {
				c.t.Fatalf("node %d: %v of %d replicas quiesced", i, n, parts)
			}
			n = metricValue(c.t, c.addr(20, i), "lockstitch_replicas_quiesced")
		}
	}
}

// TestQuietPartitionsFailover: partitions left idle go quiet (no
// heartbeats); a status of all of them through a follower leaves them
// quiet; a write to one is acknowledged; and when the node leading
// all of them is killed (SIGKILL) while they are quiet, every one elects a
// new leader on the other nodes. A quiesced follower never times out by
// itself: without the wake-up of the peer probes (server/peers.go), no
// partition would ever elect one. The bound below only tells "never" from
// "late" on a loaded machine; the time taken is logged.
func TestQuietPartitionsFailover(t *testing.T) {
	const parts = 12
	c, ctx, cl := serveTest(t, 3, 3*time.Minute)
	for p := 1; p <= parts; p++ {
		if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: lockstitch.PartitionID(p), Nodes: []lockstitch.NodeID{1, 2, 3}}); err != nil {
			t.Fatal(err)
		}
	}
	// Node 1 (replica 1 of every partition) leads them all.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		led := c.leadersOn(1)
		if len(led) == parts {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 1 leads %d of %d partitions", len(led), parts)
		}
		for p := 1; p <= parts; p++ {
			if !led[fmt.Sprint(p)] {
				tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				cl.TransferLeader(tctx, lockstitch.PartitionID(p), 1) // best effort: checked above
				cancel()
			}
		}
	}

	qctx, qcancel := context.WithTimeout(ctx, 60*time.Second)
	c.waitQuiet(qctx, parts, 1, 2, 3)
	qcancel()
	// A status of every partition through a node that follows them all
	// leaves them quiet: a read index would have woken the replicas it
	// was asked on before it returned (and made them campaign).
	if st, err := cl.Status(ctx, c.addr(0, 2)); err != nil || len(st.Partitions) != parts {
		t.Fatalf("status of node 2: %v, %v", st, err)
	}
	if n := metricValue(t, c.addr(20, 2), "lockstitch_replicas_quiesced"); int(n) != parts {
		t.Fatalf("after a status, %v of node 2's %d replicas are quiet", n, parts)
	}
	// A write to a quiet partition wakes it and is acknowledged.
	start := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := cl.Append(wctx, 1, []byte("wake")); err != nil {
		t.Fatalf("append to a quiet partition: %v", err)
	}
	wcancel()
	t.Logf("append to a quiet partition took %v", time.Since(start))
	qctx, qcancel = context.WithTimeout(ctx, 60*time.Second)
	c.waitQuiet(qctx, parts, 1, 2, 3)
	qcancel()

	led := len(c.leadersOn(1)) // all, unless a starved machine moved some
	if led == 0 {
		t.Fatal("node 1 leads no partition: nothing to fail over")
	}
	c.nodes[0].kill()
	killed := time.Now()
	var took time.Duration
	for deadline := killed.Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		led := c.leadersOn(2)
		for p := range c.leadersOn(3) {
			led[p] = true
		}
		if len(led) == parts {
			took = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v after node 1 was killed, %d of %d quiet partitions have a new leader\nnode 2:\n%s", time.Since(killed), len(led), parts, c.nodes[1].log)
		}
	}
	t.Logf("every quiet partition had a new leader %v after node 1, leader of %d of them, was killed", took, led)
	cl23 := c.dial(ctx, 2, 3)
	defer cl23.Close()
	for p := 1; p <= parts; p++ {
		actx, acancel := context.WithTimeout(ctx, 30*time.Second)
		if _, err := cl23.Append(actx, lockstitch.PartitionID(p), []byte("after")); err != nil {
			t.Fatalf("append to partition %d after the failover: %v", p, err)
		}
		acancel()
	}
}
