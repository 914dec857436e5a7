package replicator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

func appendN(t *testing.T, c *cluster, id lockstitch.PartitionID, from, to int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := from; i < to; i++ {
		if _, err := c.appendRetry(ctx, id, replicator.AppendOp{Payload: opPayload(int(id), i)}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

// TestQueriesAndLag checks each consistency level on the leader and on a
// follower, the NotLeader error's leader address, and the lag each
// replica reports.
func TestQueriesAndLag(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	appendN(t, c, 1, 0, 25)
	l := c.leader(1)
	f := (l + 1) % 3
	ctx := context.Background()
	leader, follower := c.partition(l, 1), c.partition(f, 1)

	var pos struct{ LSN lockstitch.LSN }
	for _, p := range []*replicator.Partition{leader, follower} {
		res, err := linearizable(ctx, p)
		if err != nil {
			t.Fatalf("linearizable query on replica %d: %v", p.Replica(), err)
		}
		if json.Unmarshal(res.Result, &pos); pos.LSN != 25 || res.LSN != 25 || res.Staleness != 0 {
			t.Fatalf("linearizable query on replica %d: %s at LSN %d", p.Replica(), res.Result, res.LSN)
		}
	}
	if _, err := leader.Query(ctx, nil, replicator.QueryOptions{Consistency: lockstitch.LeaderLocal}); err != nil {
		t.Fatalf("leader-local query on the leader: %v", err)
	}
	_, err := follower.Query(ctx, nil, replicator.QueryOptions{Consistency: lockstitch.LeaderLocal})
	var nl *lockstitch.NotLeaderError
	if !errors.As(err, &nl) || nl.Leader != leader.Replica() || nl.LeaderAddr != c.nodes[l].cfg.ClientAddress {
		t.Fatalf("leader-local query on a follower: %v; want NotLeader naming %q", err, c.nodes[l].cfg.ClientAddress)
	}
	if _, err := follower.Append(ctx, replicator.AppendOp{Payload: []byte("x")}); !errors.As(err, &nl) || nl.LeaderAddr == "" {
		t.Fatalf("append on a follower: %v, want NotLeader with an address", err)
	}

	// Bounded: a fresh follower answers; its staleness is bounded.
	opts := replicator.QueryOptions{Consistency: lockstitch.Bounded, MaxStaleness: time.Second}
	res, err := follower.Query(ctx, nil, opts)
	if err != nil || res.LSN != 25 || res.Staleness > time.Second {
		t.Fatalf("any-replica query on a follower: %+v, %v", res, err)
	}

	// Lag: every replica reports; once quiet, each is at the leader's LSN.
	testutil.WaitFor(t, "every replica to report LSN 25", 10*time.Second, func() bool {
		st, err := leader.Status(ctx)
		if err != nil || len(st.Replicas) != 3 {
			return false
		}
		for _, r := range st.Replicas {
			if !r.Reported || r.AppliedLSN != 25 || r.Lag != 0 {
				return false
			}
		}
		return true
	})
	st, _ := follower.Status(ctx)
	if st.Role != lockstitch.RoleFollower || st.Leader != leader.Replica() || st.LeaderAddr == "" || st.CommittedLSN != 25 {
		t.Fatalf("follower status: %+v", st)
	}

	// A stopped follower falls behind: the leader reports its lag.
	c.stop(f)
	appendN(t, c, 1, 25, 60)
	st, err = leader.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range st.Replicas {
		if r.Replica == follower.Replica() {
			found = true
			if r.AppliedLSN != 25 || r.Lag != 35 {
				t.Fatalf("stopped replica status %+v, want applied 25, lag 35", r)
			}
		}
	}
	if !found {
		t.Fatalf("leader status does not list the stopped replica %d: %+v", follower.Replica(), st.Replicas)
	}
	// Restarted, it answers Bounded queries once it has opened and
	// proved itself fresh, which implies it has caught up.
	c.start(f)
	follower = c.partition(f, 1)
	testutil.WaitFor(t, "the restarted follower to answer", 20*time.Second, func() bool {
		res, err = follower.Query(ctx, nil, opts)
		if err != nil && !errors.Is(err, lockstitch.ErrUnavailable) && !errors.Is(err, lockstitch.ErrTooStale) {
			t.Fatalf("any-replica query after a restart: %v", err)
		}
		return err == nil
	})
	if res.LSN != 60 {
		t.Fatalf("any-replica query after catching up answered at LSN %d, want 60", res.LSN)
	}
}

// TestMembershipChanges adds a voter on a fourth node (it joins as
// non-voting, catches up and promotes itself), transfers the leadership to
// it, and removes an original replica, whose node deletes its data.
func TestMembershipChanges(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	appendN(t, c, 1, 0, 100)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	cfg := testConfig(t, filepath.Join(t.TempDir(), "node4"))
	c.nodes = append(c.nodes, &node{cfg: cfg})
	c.start(3)
	l := c.leader(1)
	if err := c.get(l).AddReplica(ctx, 1, 4, cfg.RaftAddress, lockstitch.Voter); err != nil {
		t.Fatal(err)
	}
	p4, err := c.get(3).JoinPartition(replicator.JoinSpec{Partition: 1, Replica: 4, Kind: lockstitch.Voter, Plugin: replicator.LogPluginName})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "replica 4 to be promoted to voter", 30*time.Second, func() bool {
		st, err := c.partition(l, 1).Status(ctx)
		if err != nil {
			return false
		}
		for _, r := range st.Replicas {
			if r.Replica == 4 && r.Kind == lockstitch.Voter {
				return true
			}
		}
		return false
	})
	if recs := c.stream(3, 1, 100); len(recs) != 100 || !bytes.Equal(recs[99].Payload, opPayload(1, 99)) {
		t.Fatalf("replica 4 holds %d ops", len(recs))
	}
	if err := c.get(l).TransferLeader(ctx, 1, 4); err != nil {
		t.Fatal(err)
	}
	if st, _ := p4.Status(ctx); st.Role != lockstitch.RoleLeader {
		t.Fatalf("replica 4 role after the transfer: %v", st.Role)
	}
	appendN(t, c, 1, 100, 110)

	// Remove replica 1 (node 0): its node forgets the partition.
	if err := c.get(3).RemoveReplica(ctx, 1, 1); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "node 1 to delete its removed replica", 30*time.Second, func() bool {
		return len(c.get(0).Partitions()) == 0
	})
	appendN(t, c, 1, 110, 120)
	if recs := c.stream(1, 1, 120); len(recs) != 120 {
		t.Fatalf("replica 2 holds %d ops", len(recs))
	}
	if err := c.get(3).AddReplica(ctx, 1, 1, c.nodes[0].cfg.RaftAddress, lockstitch.Voter); err == nil {
		t.Fatal("a removed replica id was added again")
	}
}

// TestBackpressure fills a partition's queue: appends beyond it fail at
// once with ErrBusy, and the ones accepted all commit.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		cfg.MaxPendingOps = 64
		cfg.MaxPendingBytes = 4 << 20
		cfg.MaxInflightBatches = 1
		cfg.MaxBatchOps = 8
	})
	c.create(1)
	p := c.partition(c.leader(1), 1)
	var futures []*replicator.Future
	busy := 0
	for i := 0; i < 1000; i++ {
		f := p.AppendAsync(replicator.AppendOp{Payload: opPayload(0, i)})
		select {
		case <-f.Done():
			if _, err := f.Result(); errors.Is(err, lockstitch.ErrBusy) {
				busy++
				continue
			}
		default:
		}
		futures = append(futures, f)
	}
	if busy == 0 {
		t.Fatal("1000 appends into a 64-op queue: none was refused with ErrBusy")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seen := map[lockstitch.LSN]bool{}
	for _, f := range futures {
		res, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("an accepted append failed: %v", err)
		}
		seen[res.LSN] = true
	}
	if len(seen) != len(futures) {
		t.Fatalf("%d accepted appends got %d LSNs", len(futures), len(seen))
	}
	t.Logf("%d appends accepted, %d refused as busy", len(futures), busy)
}

// TestNodeBackpressure: the appends pending across a node's partitions
// are bounded as a whole (MaxNodePendingBytes), below what the partitions'
// own bounds would let them hold together: appends are refused saying the
// node is full, every accepted one commits, and the bound is free again
// after.
func TestNodeBackpressure(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		cfg.MaxOpBytes = 1 << 20
		cfg.MaxPendingBytes = 2 << 20
		cfg.MaxNodePendingBytes = 2 << 20 // the two partitions could hold 4 MiB
		cfg.MaxInflightBatches = 1
		cfg.MaxBatchOps = 1
	})
	c.create(1)
	c.create(2)
	// Both partitions led by one node (replica i is on node i).
	l := c.leader(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.get(l).TransferLeader(ctx, 2, lockstitch.ReplicaID(l+1)); err != nil {
		t.Fatal(err)
	}
	parts := []*replicator.Partition{c.partition(l, 1), c.partition(l, 2)}
	// The replica learns that it leads a moment after the transfer.
	for {
		_, err := parts[1].Append(ctx, replicator.AppendOp{Payload: []byte("led here")})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("partition 2 is not led by node %d: %v", l+1, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	payload := make([]byte, 64<<10)
	var futures []*replicator.Future
	nodeBusy := 0
	for i := 0; i < 400; i++ {
		f := parts[i%2].AppendAsync(replicator.AppendOp{Payload: payload})
		select {
		case <-f.Done():
			if _, err := f.Result(); errors.Is(err, lockstitch.ErrBusy) {
				// A partition whose twin has drained may meet its own
				// bound first (it is checked first).
				if strings.Contains(err.Error(), "the node has") {
					nodeBusy++
				}
				continue
			}
		default:
		}
		futures = append(futures, f)
	}
	if nodeBusy == 0 {
		t.Fatal("400 appends of 64 KiB to two partitions under a node bound of 2 MiB: none was refused by it")
	}
	for _, f := range futures {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatalf("an accepted append failed: %v", err)
		}
	}
	// Everything committed: the node's bound is free again.
	for i := range 40 {
		if _, err := parts[i%2].Append(ctx, replicator.AppendOp{Payload: payload}); err != nil {
			t.Fatalf("append after the queue drained: %v", err)
		}
	}
	t.Logf("%d appends accepted, %d refused by the node's bound", len(futures), nodeBusy)
}

// TestSnapshotCatchUp stops a follower while the others advance past Raft
// log compaction: on restart it receives a copy of the state and goes on
// from there; its log starts after the copy.
func TestSnapshotCatchUp(t *testing.T) {
	t.Parallel()
	c, l, f := behindCompaction(t, func(c *cluster) { appendN(t, c, 1, 10, 200) })
	c.start(f)
	p := c.partition(f, 1)
	waitApplied(t, p, 200)
	if n := c.copiesReceived(f); n < 1 {
		t.Fatalf("the follower restored %v copies: it replayed Raft's log instead of receiving one", n)
	}
	// The copy brought the retained history: the follower serves the same
	// records as the leader, from the leader's first retained LSN.
	appendN(t, c, 1, 200, 210)
	st := waitApplied(t, p, 210)
	lst, err := c.partition(l, 1).Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.FirstLSN != lst.FirstLSN || st.FirstLSN != 1 {
		t.Fatalf("after the copy the follower's log starts at %d, the leader's at %d; want both at 1", st.FirstLSN, lst.FirstLSN)
	}
	for _, r := range holdsLeaders(t, c, f, l, 210) {
		if want := opPayload(1, int(r.LSN)-1); !bytes.Equal(r.Payload, want) {
			t.Fatalf("LSN %d after the copy holds %q, want %q", r.LSN, r.Payload, want)
		}
	}
}

// behindCompaction makes a cluster whose partition 1 advances past Raft
// log compaction (snapshots every 20 entries, one op per entry) while one
// follower is down: it appends ops 1 to 10, stops the follower, and calls
// advance. It returns the cluster, the leader and the follower, still
// stopped: when it starts again it needs a copy.
func behindCompaction(t *testing.T, advance func(c *cluster)) (c *cluster, l, f int) {
	t.Helper()
	c = newCluster(t, 3, func(cfg *replicator.Config) {
		cfg.SnapshotEntries = 20
		cfg.CompactionOverhead = 5
		cfg.MaxInflightBatches = 1
		cfg.MaxBatchOps = 1
	})
	c.create(1)
	appendN(t, c, 1, 0, 10)
	l = c.leader(1)
	f = (l + 1) % 3
	c.stop(f)
	advance(c)
	return c, l, f
}

// holdsLeaders checks that node f serves partition 1's records 1 to n
// exactly as node l does (sameRecords), and returns them.
func holdsLeaders(t *testing.T, c *cluster, f, l, n int) []replicator.Record {
	t.Helper()
	recs, err := c.partition(f, 1).Read(1, n+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	lrecs, err := c.partition(l, 1).Read(1, n+1, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n || len(lrecs) != n || recs[0].LSN != 1 {
		t.Fatalf("the follower reads %d records from LSN 1, the leader %d; want %d", len(recs), len(lrecs), n)
	}
	if !sameRecords(recs, lrecs) {
		t.Fatalf("the follower's records 1 to %d differ from the leader's", n)
	}
	return recs
}

// TestSnapshotBySize checks the size trigger of snapshots: with snapshots
// by entry count off, a few MiB of large ops make the replicas compact
// Raft's log, so a follower that missed them gets a copy on restart
// instead of replaying the log. With SnapshotBytes at 0 as well, the same
// follower replays the log (the control).
func TestSnapshotBySize(t *testing.T) {
	t.Parallel()
	for _, bySize := range []bool{true, false} {
		t.Run(fmt.Sprintf("bySize=%v", bySize), func(t *testing.T) {
			c := newCluster(t, 3, func(cfg *replicator.Config) {
				cfg.SnapshotEntries, cfg.CompactionOverhead = 0, 0
				cfg.SnapshotBytes = 0
				if bySize {
					cfg.SnapshotBytes = 1 << 20
				}
			})
			c.create(1)
			appendN(t, c, 1, 0, 10)
			l := c.leader(1)
			f := (l + 1) % 3
			c.stop(f)
			// 4 MiB in 32 KiB ops: four size-triggered snapshots, the
			// later ones compacting the log past LSN 10.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			payload := bytes.Repeat([]byte{'s'}, 32<<10)
			for i := 0; i < 128; i++ {
				if _, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: payload}); err != nil {
					t.Fatalf("append %d: %v", i, err)
				}
			}
			c.start(f)
			p := c.partition(f, 1)
			st := waitApplied(t, p, 138)
			if copied := c.copiesReceived(f) > 0; copied != bySize {
				t.Fatalf("the follower restored a copy: %v, want %v", copied, bySize)
			}
			if st.FirstLSN != 1 {
				t.Fatalf("the follower's log starts at %d, want 1 (the copy carries the retained log)", st.FirstLSN)
			}
		})
	}
}

// TestSubscribeFollowsCommits subscribes on a follower before and while
// ops commit: it gets every op once, in order.
func TestSubscribeFollowsCommits(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	appendN(t, c, 1, 0, 10)
	f := (c.leader(1) + 1) % 3
	sub, err := c.partition(f, 1).Subscribe(5)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		var r replicator.Record
		for lsn := lockstitch.LSN(5); lsn <= 60; lsn++ {
			if err := sub.Next(ctx, &r); err != nil {
				done <- err
				return
			}
			if r.LSN != lsn || !bytes.Equal(r.Payload, opPayload(1, int(lsn)-1)) {
				done <- fmt.Errorf("got LSN %d %q, want %d", r.LSN, r.Payload, lsn)
				return
			}
		}
		done <- nil
	}()
	appendN(t, c, 1, 10, 60)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// A subscription ahead of the stream waits for its first op, and one
	// that is closed says so.
	ahead, err := c.partition(f, 1).Subscribe(62)
	if err != nil {
		t.Fatal(err)
	}
	var r replicator.Record
	if ok, err := ahead.TryNext(&r); ok || err != nil {
		t.Fatalf("a subscription from 62 at LSN 60: %v, %v", ok, err)
	}
	appendN(t, c, 1, 60, 62)
	if err := ahead.Next(ctx, &r); err != nil || r.LSN != 62 {
		t.Fatalf("a subscription from 62: LSN %d, %v", r.LSN, err)
	}
	ahead.Close()
	if _, err := ahead.TryNext(&r); !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("a closed subscription: %v", err)
	}
	if _, err := c.partition(f, 1).Subscribe(0); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("subscribe from 0: %v", err)
	}

	// Backwards: from the end, from an LSN, and down to LSN 1.
	for _, tc := range []struct {
		from, top lockstitch.LSN
		ops, want int
	}{{0, 62, 5, 5}, {100, 62, 2, 2}, {3, 3, 10, 3}, {62, 62, 1000, 62}} {
		recs, err := c.partition(f, 1).ReadReverse(tc.from, tc.ops, 1<<20)
		if err != nil || len(recs) != tc.want {
			t.Fatalf("reverse read from %d: %d records, %v; want %d", tc.from, len(recs), err, tc.want)
		}
		for i, r := range recs {
			if lsn := tc.top - lockstitch.LSN(i); r.LSN != lsn || !bytes.Equal(r.Payload, opPayload(1, int(lsn)-1)) {
				t.Fatalf("reverse read from %d: record %d is LSN %d %q", tc.from, i, r.LSN, r.Payload)
			}
		}
	}
}

// rolePlugin is the log plugin plus a record of role changes and epochs.
type rolePlugin struct {
	replicator.StateMachine
	mu         sync.Mutex
	roles      []lockstitch.Role
	roleEpochs []lockstitch.Epoch // the epoch each role change came with
	epochs     []lockstitch.Epoch // of each op applied
}

func (p *rolePlugin) RoleChanged(role lockstitch.Role, epoch lockstitch.Epoch) {
	p.mu.Lock()
	p.roles = append(p.roles, role)
	p.roleEpochs = append(p.roleEpochs, epoch)
	p.mu.Unlock()
}

// lastRole returns the last role change the plugin heard, with its epoch.
func (p *rolePlugin) lastRole() (lockstitch.Role, lockstitch.Epoch, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.roles) == 0 {
		return 0, 0, false
	}
	return p.roles[len(p.roles)-1], p.roleEpochs[len(p.roleEpochs)-1], true
}

func (p *rolePlugin) Apply(ops []replicator.Op, results [][]byte) error {
	p.mu.Lock()
	for _, op := range ops {
		p.epochs = append(p.epochs, op.Epoch)
	}
	p.mu.Unlock()
	return p.StateMachine.Apply(ops, results)
}

// TestRolesAndEpochs checks that plugins learn their roles and that epochs
// rise across a leader change and never fall.
func TestRolesAndEpochs(t *testing.T) {
	t.Parallel()
	plugins := map[string]*rolePlugin{}
	var mu sync.Mutex
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		addr := cfg.RaftAddress
		cfg.Plugins = map[string]replicator.PluginFactory{replicator.LogPluginName: func(pc replicator.PluginContext) (replicator.StateMachine, error) {
			inner, err := replicator.NewLogPlugin(pc)
			p := &rolePlugin{StateMachine: inner}
			mu.Lock()
			plugins[addr] = p
			mu.Unlock()
			return p, err
		}}
	})
	c.create(1)
	appendN(t, c, 1, 0, 10)
	l := c.leader(1)
	target := lockstitch.ReplicaID((l+1)%3 + 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.get(l).TransferLeader(ctx, 1, target); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, 1, 10, 20)
	for i := range c.nodes {
		c.stream(i, 1, 20)
	}
	mu.Lock()
	defer mu.Unlock()
	newLeader := plugins[c.nodes[int(target)-1].cfg.RaftAddress]
	oldLeader := plugins[c.nodes[l].cfg.RaftAddress]
	testutil.WaitFor(t, "the new leader's plugin to hear it leads", 10*time.Second, func() bool {
		role, _, ok := newLeader.lastRole()
		return ok && role == lockstitch.RoleLeader
	})
	testutil.WaitFor(t, "the old leader's plugin to hear it follows", 10*time.Second, func() bool {
		role, _, ok := oldLeader.lastRole()
		return ok && role == lockstitch.RoleFollower
	})
	// The ops appended after the transfer were proposed by the new leader:
	// they carry the epoch it was told when it became leader.
	_, leaderEpoch, _ := newLeader.lastRole()
	for addr, p := range plugins {
		p.mu.Lock()
		if len(p.epochs) != 20 {
			t.Fatalf("plugin at %s applied %d ops", addr, len(p.epochs))
		}
		for i := 1; i < len(p.epochs); i++ {
			if p.epochs[i] < p.epochs[i-1] {
				t.Fatalf("plugin at %s: epoch fell from %d to %d", addr, p.epochs[i-1], p.epochs[i])
			}
		}
		if p.epochs[19] != leaderEpoch {
			t.Fatalf("plugin at %s: last op has epoch %d, the new leader was told epoch %d", addr, p.epochs[19], leaderEpoch)
		}
		if p.epochs[19] <= p.epochs[0] {
			t.Fatalf("plugin at %s: epoch %d after a leader change, %d before", addr, p.epochs[19], p.epochs[0])
		}
		p.mu.Unlock()
	}
}

var errBadOption = errors.New("unknown option")

// TestPluginFactoryErrorFailsCreate checks that a plugin rejecting its
// options fails CreatePartition with the plugin's error, leaves nothing
// behind, and that the node goes on serving other partitions.
func TestPluginFactoryErrorFailsCreate(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, func(cfg *replicator.Config) {
		cfg.Plugins["picky"] = func(pc replicator.PluginContext) (replicator.StateMachine, error) {
			if len(pc.Options) > 0 {
				return nil, fmt.Errorf("picky: %w: %v", errBadOption, pc.Options)
			}
			return replicator.NewLogPlugin(pc)
		}
	})
	spec := c.spec(1)
	spec.Plugin, spec.Options = "picky", map[string]string{"color": "red"}
	if _, err := c.get(0).CreatePartition(spec); !errors.Is(err, errBadOption) {
		t.Fatalf("create with a bad option: %v, want the plugin's error", err)
	}
	if ids := c.get(0).Partitions(); len(ids) != 0 {
		t.Fatalf("partitions after the failed create: %v", ids)
	}
	// The same id, now with good options, works.
	spec.Options = nil
	if _, err := c.get(0).CreatePartition(spec); err != nil {
		t.Fatal(err)
	}
	appendN(t, c, 1, 0, 3)
}

// TestDeletePartition deletes a replica, directly and by a deletion that
// a crash interrupted after its tombstone, and checks that each leaves
// nothing behind: the replica id cannot be used again, and a replica of
// the same partition under a new id starts afresh at LSN 1.
func TestDeletePartition(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dirOf := func(id lockstitch.PartitionID) string {
		return filepath.Join(c.nodes[0].cfg.DataDir, "partitions", fmt.Sprint(id))
	}
	// recreate checks that replica 1 of id cannot come back and that
	// replica 2 starts afresh.
	recreate := func(id lockstitch.PartitionID) {
		t.Helper()
		spec := c.spec(id)
		if _, err := c.get(0).CreatePartition(spec); !errors.Is(err, lockstitch.ErrReplicaDeleted) {
			t.Fatalf("partition %d: reusing the deleted replica id: %v, want ErrReplicaDeleted", id, err)
		}
		if _, err := os.Stat(dirOf(id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("partition %d: directory after the refused create: %v", id, err)
		}
		spec.Replicas = map[lockstitch.ReplicaID]string{2: c.nodes[0].cfg.RaftAddress}
		if _, err := c.get(0).CreatePartition(spec); err != nil {
			t.Fatal(err)
		}
		res, err := c.appendRetry(ctx, id, replicator.AppendOp{Payload: []byte("first")})
		if err != nil {
			t.Fatal(err)
		}
		if res.LSN != 1 {
			t.Fatalf("partition %d: the new replica appended at LSN %d, want 1", id, res.LSN)
		}
	}
	for _, id := range []lockstitch.PartitionID{1, 2} {
		c.create(id)
		appendN(t, c, id, 0, 5)
	}

	if err := c.get(0).DeletePartition(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.get(0).Partition(1); !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("partition after delete: %v", err)
	}
	if _, err := os.Stat(dirOf(1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory after delete: %v", err)
	}
	if err := c.get(0).DeletePartition(ctx, 1); !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	recreate(1)

	// A deletion of partition 2 interrupted right after its tombstone.
	c.stop(0)
	if err := os.WriteFile(filepath.Join(dirOf(2), "deleting"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	c.start(0)
	if ids := c.get(0).Partitions(); len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("partitions after restart: %v, want [1]", ids)
	}
	if _, err := os.Stat(dirOf(2)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("directory of the deleted replica after restart: %v", err)
	}
	recreate(2)
}
