package replicator_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

// flipByte flips one bit in the middle of the last segment of partition
// id's operation log in dataDir, as a failing disk does.
func flipByte(t *testing.T, dataDir string, id lockstitch.PartitionID) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "partitions", fmt.Sprint(id), "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segments of partition %d in %s: %v", id, dataDir, err)
	}
	slices.Sort(segs)
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 64 {
		t.Fatalf("segment %s holds %d bytes", path, len(b))
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// gaugeValue returns the value of the unlabelled gauge name in g.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// TestQuarantine damages one replica's operation log while its node is
// down: the node starts, quarantines that replica and serves its other
// partition; the replica is then rebuilt the way server's repair does it
// (removed, deleted, a new replica added on the same node) and serves
// the same records as its peers.
func TestQuarantine(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	c.create(2)
	appendN(t, c, 1, 0, 200)
	appendN(t, c, 2, 0, 50)
	c.stream(2, 1, 200)
	c.stream(2, 2, 50)

	c.stop(2)
	flipByte(t, c.nodes[2].cfg.DataDir, 1)
	c.start(2) // before quarantine, a panic in dragonboat stopped the process here

	r := c.get(2)
	qs := r.Quarantined()
	if len(qs) != 1 || qs[0].Partition != 1 || qs[0].Replica != 3 || qs[0].Kind != lockstitch.Voter || qs[0].Reason == nil {
		t.Fatalf("quarantined: %+v, want partition 1 replica 3", qs)
	}
	t.Logf("quarantined: %v", &qs[0])
	if got := gaugeValue(t, c.nodes[2].cfg.Registerer.(prometheus.Gatherer), "lockstitch_replicas_quarantined"); got != 1 {
		t.Fatalf("lockstitch_replicas_quarantined = %v, want 1", got)
	}
	q := c.partition(2, 1)
	if q.Quarantine() == nil {
		t.Fatal("the damaged replica is not quarantined")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := q.Append(ctx, replicator.AppendOp{Payload: []byte("x")}); !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("append to a quarantined replica: %v, want ErrUnavailable", err)
	}
	if _, err := q.Read(1, 10, 1<<20); !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("read from a quarantined replica: %v, want ErrUnavailable", err)
	}
	if err := q.WaitReady(ctx); !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("WaitReady of a quarantined replica: %v, want ErrUnavailable", err)
	}

	// The node's other partition serves, and the damaged partition
	// commits on its two other replicas.
	appendN(t, c, 2, 50, 80)
	appendN(t, c, 1, 200, 230)
	want2 := c.stream(0, 2, 80)
	if got := c.stream(2, 2, 80); !sameRecords(got, want2) {
		t.Fatal("node 3's healthy partition differs from node 1's")
	}

	// Rebuild: remove replica 3, delete it on node 3, add replica 4 there.
	l := c.leader(1)
	if err := c.get(l).RemoveReplica(ctx, 1, 3); err != nil {
		t.Fatalf("remove the quarantined replica: %v", err)
	}
	dir := filepath.Join(c.nodes[2].cfg.DataDir, "partitions", "1")
	if err := r.DeletePartition(ctx, 1); err != nil {
		t.Fatalf("delete the quarantined replica: %v", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the quarantined replica's directory is still there: %v", err)
	}
	if len(r.Quarantined()) != 0 {
		t.Fatalf("still quarantined after the delete: %+v", r.Quarantined())
	}
	if err := c.get(l).AddReplica(ctx, 1, 4, c.nodes[2].cfg.RaftAddress, lockstitch.Voter); err != nil {
		t.Fatalf("add replica 4: %v", err)
	}
	if _, err := r.JoinPartition(replicator.JoinSpec{Partition: 1, Replica: 4, Plugin: replicator.LogPluginName}); err != nil {
		t.Fatalf("join replica 4: %v", err)
	}
	appendN(t, c, 1, 230, 240)
	want := c.stream(0, 1, 240)
	if got := c.stream(2, 1, 240); !sameRecords(got, want) || len(got) < 240 {
		t.Fatalf("the rebuilt replica holds %d records, not the %d its peer holds, or they differ", len(got), len(want))
	}
	testutil.WaitFor(t, "replica 4 to become a voter", 30*time.Second, func() bool {
		st, err := c.partition(2, 1).Status(ctx)
		return err == nil && (st.Role == lockstitch.RoleFollower || st.Role == lockstitch.RoleLeader)
	})
	if got := gaugeValue(t, c.nodes[2].cfg.Registerer.(prometheus.Gatherer), "lockstitch_replicas_quarantined"); got != 0 {
		t.Fatalf("lockstitch_replicas_quarantined = %v after the rebuild, want 0", got)
	}
}

// sameRecords reports whether two streams hold the same ops, byte for
// byte.
func sameRecords(a, b []replicator.Record) bool {
	return slices.EqualFunc(a, b, func(x, y replicator.Record) bool {
		return x.LSN == y.LSN && x.Epoch == y.Epoch && x.CRC == y.CRC && bytes.Equal(x.Payload, y.Payload)
	})
}
