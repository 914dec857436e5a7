package replicator_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

// appendSized appends ops from..to-1 of about 200 bytes each at the
// leader, idempotently.
func appendSized(ctx context.Context, c *cluster, id lockstitch.PartitionID, from, to int) error {
	const batch = 250
	for lo := from; lo < to; lo += batch {
		var ops []replicator.AppendOp
		for i := lo; i < min(lo+batch, to); i++ {
			ops = append(ops, replicator.AppendOp{Payload: fmt.Appendf(nil, "op %d %0190d", i, i), Producer: 5, Seq: uint64(i) + 1})
		}
		for {
			p, err := c.get(c.leader(id)).Partition(id)
			if err != nil {
				return err
			}
			if _, _, err = p.AppendBatch(ctx, ops); err == nil {
				break
			}
			if !retryable(err) || ctx.Err() != nil {
				return err
			}
		}
	}
	return nil
}

// firstLSN waits until every replica's log starts after above and at or
// before atMost, and returns the first LSN of each.
func (c *cluster) firstLSNs(ctx context.Context, id lockstitch.PartitionID, above, atMost lockstitch.LSN) {
	c.t.Helper()
	for i := range c.nodes {
		p := c.partition(i, id)
		var first lockstitch.LSN
		testutil.WaitFor(c.t, fmt.Sprintf("retention on node %d to drop past LSN %d", i+1, above), 60*time.Second, func() bool {
			st, err := p.Status(ctx)
			first = st.FirstLSN
			return err == nil && first > above
		})
		if first > atMost {
			c.t.Fatalf("node %d: retention dropped up to LSN %d, past %d", i+1, first-1, atMost-1)
		}
	}
}

// cursorsOn returns the cursors of node i's replica once they satisfy ok.
func (c *cluster) cursorsOn(i int, id lockstitch.PartitionID, what string, ok func(map[string]replicator.Cursor) bool) map[string]replicator.Cursor {
	c.t.Helper()
	var m map[string]replicator.Cursor
	testutil.WaitFor(c.t, fmt.Sprintf("node %d: %s", i+1, what), 30*time.Second, func() bool {
		cs, err := c.partition(i, id).Cursors()
		if err != nil {
			return false
		}
		m = map[string]replicator.Cursor{}
		for _, cur := range cs {
			m[cur.Name] = cur
		}
		return ok(m)
	})
	return m
}

// TestCursors holds retention with a durable cursor, lets a cursor lapse
// once it lags beyond CursorRetainOps (acking it then fails with
// ErrCursorLapsed, and retention goes past it), and restarts the cluster:
// the cursors, lapsed or not, are still there on every replica.
func TestCursors(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		cfg.SegmentBytes = 64 << 10
		cfg.RetainBytes = 128 << 10
		cfg.CheckpointInterval = 20 * time.Millisecond
		cfg.CursorRetainOps = 2000
	})
	c.create(1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	leader := func() *replicator.Partition { return c.partition(c.leader(1), 1) }
	if err := appendSized(ctx, c, 1, 0, 1000); err != nil {
		t.Fatal(err)
	}
	if err := leader().AckCursor(ctx, "slow", 1000); err != nil {
		t.Fatal(err)
	}
	if err := leader().AckCursor(ctx, "slow", 900); err != nil {
		t.Fatal(err) // an ack never moves a cursor back
	}
	if err := leader().AckCursor(ctx, "early", 5000); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("ack beyond the last op: %v", err)
	}
	if err := leader().DeleteCursor(ctx, "none"); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("delete of a missing cursor: %v", err)
	}
	follower := c.partition((c.leader(1)+1)%3, 1)
	if err := follower.AckCursor(ctx, "slow", 1000); !errors.Is(err, lockstitch.ErrNotLeader) {
		t.Fatalf("ack on a follower: %v", err)
	}

	// 1500 ops behind, within the bound: retention keeps LSN 1001 on.
	if err := appendSized(ctx, c, 1, 1000, 2500); err != nil {
		t.Fatal(err)
	}
	c.firstLSNs(ctx, 1, 1, 1001)
	for i := range c.nodes {
		c.cursorsOn(i, 1, "cursor slow at 1000", func(m map[string]replicator.Cursor) bool {
			return m["slow"] == replicator.Cursor{Name: "slow", LSN: 1000}
		})
		if recs, err := c.partition(i, 1).Read(1001, 1, 1<<20); err != nil || len(recs) != 1 || recs[0].LSN != 1001 {
			t.Fatalf("node %d: the op after the cursor: %v", i+1, err)
		}
	}

	// Beyond the bound: the cursor lapses and holds nothing.
	if err := appendSized(ctx, c, 1, 2500, 4000); err != nil {
		t.Fatal(err)
	}
	for i := range c.nodes {
		c.cursorsOn(i, 1, "cursor slow to lapse", func(m map[string]replicator.Cursor) bool { return m["slow"].Lapsed })
	}
	if err := leader().AckCursor(ctx, "slow", 1100); !errors.Is(err, lockstitch.ErrCursorLapsed) {
		t.Fatalf("ack of a lapsed cursor: %v", err)
	}
	c.firstLSNs(ctx, 1, 1001, 4001)
	if err := leader().AckCursor(ctx, "current", 3900); err != nil {
		t.Fatal(err)
	}
	if err := leader().AckCursor(ctx, "gone", 3900); err != nil {
		t.Fatal(err)
	}
	if err := leader().DeleteCursor(ctx, "gone"); err != nil {
		t.Fatal(err)
	}

	// A restart keeps them all.
	for i := range c.nodes {
		c.cursorsOn(i, 1, "the cursors applied", func(m map[string]replicator.Cursor) bool { return len(m) == 2 && m["current"].LSN == 3900 })
	}
	c.close()
	for i := range c.nodes {
		c.start(i)
	}
	want := map[string]replicator.Cursor{
		"current": {Name: "current", LSN: 3900},
		"slow":    {Name: "slow", LSN: 1000, Lapsed: true},
	}
	for i := range c.nodes {
		c.cursorsOn(i, 1, "the cursors after a restart", func(m map[string]replicator.Cursor) bool {
			return len(m) == len(want) && m["current"] == want["current"] && m["slow"] == want["slow"]
		})
	}
	// The consumer came back through a snapshot at 4000: a reset clears
	// the lapse.
	testutil.WaitFor(t, "the leader to take a reset", 30*time.Second, func() bool {
		return leader().ResetCursor(ctx, "slow", 4000) == nil
	})
	if err := leader().AckCursor(ctx, "slow", 4000); err != nil {
		t.Fatalf("ack after a reset: %v", err)
	}
	for i := range c.nodes {
		c.cursorsOn(i, 1, "cursor slow reset", func(m map[string]replicator.Cursor) bool {
			return m["slow"] == replicator.Cursor{Name: "slow", LSN: 4000}
		})
	}
}
