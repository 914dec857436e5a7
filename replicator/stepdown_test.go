package replicator_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
)

// TestAppendsEndWhenLeadershipIsLost stops both followers of a partition
// while appends are in flight on its leader: they cannot commit, and the
// leader steps down once it misses its quorum (CheckQuorum). The appends
// then end at once with ErrAborted (their outcome is unknown), not after
// ProposalTimeout, set here far beyond the test's wait.
func TestAppendsEndWhenLeadershipIsLost(t *testing.T) {
	t.Parallel()
	leader := leaderAlone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 8
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			_, err := leader.Append(ctx, replicator.AppendOp{Payload: []byte("in flight")})
			errs <- err
		}()
	}
	aborted := 0
	for i := 0; i < n; i++ {
		err := <-errs
		if ctx.Err() != nil {
			t.Fatalf("append still waiting after 30 s (ProposalTimeout is 5 minutes): %v", err)
		}
		// An append proposed before the step-down is aborted; one that
		// came after it is refused as not leader.
		if !errors.Is(err, lockstitch.ErrAborted) && !errors.Is(err, lockstitch.ErrNotLeader) {
			t.Fatalf("append %d: %v, want ErrAborted or ErrNotLeader", i, err)
		}
		if errors.Is(err, lockstitch.ErrAborted) {
			aborted++
		}
	}
	if aborted == 0 {
		t.Fatal("no append was in flight when the leader stepped down: the test did not exercise it")
	}
}

// TestSubscriptionLeavesACutOffFollower: a subscription waiting on a
// follower with WaitInTouch ends with ErrUnavailable once the follower loses touch with
// its leader (both other nodes stopped), instead of waiting for ops that
// cannot come; its position is where a consumer resumes elsewhere.
func TestSubscriptionLeavesACutOffFollower(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	appendN(t, c, 1, 0, 10)
	l := c.leader(1)
	f := (l + 1) % 3
	follower := c.partition(f, 1)
	waitApplied(t, follower, 10)
	sub, err := follower.Subscribe(11)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- sub.WaitInTouch(ctx) }()
	for i := range c.nodes {
		if i != f {
			c.stop(i)
		}
	}
	if err := <-errc; !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("Wait on a follower cut off from its leader: %v, want ErrUnavailable", err)
	}
	if sub.Position() != 11 {
		t.Fatalf("position %d, want 11", sub.Position())
	}
	if n := c.counter(f, "lockstitch_subscriptions_left_total"); n != 1 {
		t.Fatalf("lockstitch_subscriptions_left_total %v, want 1", n)
	}
}

// TestReadsEndWhenLeadershipIsLost: a linearizable read on a leader that
// has lost its followers fails with ErrUnavailable once it steps down,
// instead of retrying its read index until the timeout (5 minutes here),
// so the caller reads from another replica within an election.
func TestReadsEndWhenLeadershipIsLost(t *testing.T) {
	t.Parallel()
	leader := leaderAlone(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := leader.Query(ctx, nil, replicator.QueryOptions{Consistency: lockstitch.Linearizable})
	if ctx.Err() != nil || !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("linearizable read on a leader cut off from its followers: %v (after the 30 s deadline: %v), want ErrUnavailable before it", err, ctx.Err() != nil)
	}
}

// leaderAlone returns the leader of partition 1 of a three-node cluster
// (ProposalTimeout 5 minutes) whose other two nodes it has just stopped:
// it is about to lose its leadership (CheckQuorum).
func leaderAlone(t *testing.T) *replicator.Partition {
	t.Helper()
	c := newCluster(t, 3, func(cfg *replicator.Config) { cfg.ProposalTimeout = 5 * time.Minute })
	c.create(1)
	appendN(t, c, 1, 0, 10)
	l := c.leader(1)
	for i := range c.nodes {
		if i != l {
			c.stop(i)
		}
	}
	return c.partition(l, 1)
}
