package main

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// TestFiveAndSevenReplicas runs seven serve processes with a partition
// of five replicas (nodes 1 to 5) and one of seven: the leader of each is
// killed (SIGKILL) under appends, the appends go on, and every live
// replica serves the same stream from LSN 1, byte for byte.
func TestFiveAndSevenReplicas(t *testing.T) {
	c, ctx, cl := serveTest(t, 7, 3*time.Minute)
	sizes := map[lockstitch.PartitionID]int{1: 5, 2: 7}
	for id, n := range sizes {
		nodes := make([]lockstitch.NodeID, n)
		for i := range nodes {
			nodes[i] = lockstitch.NodeID(i + 1)
		}
		if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: id, Nodes: nodes}); err != nil {
			t.Fatalf("create partition %d on %d nodes: %v", id, n, err)
		}
		appendRange(ctx, t, cl, id, bulkPayload, 0, 200)
	}
	killed := map[int]bool{}
	for id := range sizes {
		st, err := cl.PartitionStatus(ctx, id)
		if err != nil || st.Leader == 0 {
			t.Fatalf("partition %d: %+v %v", id, st, err)
		}
		leader := int(st.Leader) // replica i is on node i
		if !killed[leader] {
			c.nodes[leader-1].kill()
			killed[leader] = true
		}
	}
	for id := range sizes {
		appendRange(ctx, t, cl, id, bulkPayload, 200, 400)
	}
	// Appends in flight across the kill are retried, and may commit
	// after later ones: every op is there once, and every replica holds
	// the same stream.
	for id, n := range sizes {
		var want [][]byte
		for i := 1; i <= n; i++ {
			if killed[i] {
				continue
			}
			var got [][]byte
			c.readStream(ctx, i, id, 400, func(rec *wal.Record) { got = append(got, bytes.Clone(rec.Payload)) })
			if want == nil {
				want = got
				seen := map[string]bool{}
				for _, p := range got {
					seen[string(p)] = true
				}
				for op := 0; op < 400; op++ {
					if !seen[string(bulkPayload(op))] || len(seen) != 400 {
						t.Fatalf("partition %d on node %d: op %d missing, or %d distinct ops in 400 LSNs", id, i, op, len(seen))
					}
				}
				continue
			}
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("partition %d: node %d's stream differs from the first live replica's", id, i)
			}
		}
	}
	t.Logf("killed the leaders' nodes %v; %s", killed, fmt.Sprint(sizes))
}
