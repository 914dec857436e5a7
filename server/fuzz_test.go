package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// sentinels are the errors an admin request may fail with: package
// lockstitch's, and a deadline.
var sentinels = []error{
	lockstitch.ErrInvalidArgument, lockstitch.ErrNotLeader, lockstitch.ErrBusy, lockstitch.ErrPartitionNotFound,
	lockstitch.ErrPartitionExists, lockstitch.ErrReplicaDeleted, lockstitch.ErrPluginNotFound, lockstitch.ErrTruncated,
	lockstitch.ErrChecksum, lockstitch.ErrTooLarge, lockstitch.ErrUnavailable, lockstitch.ErrTooStale,
	lockstitch.ErrAborted, lockstitch.ErrTimeout, lockstitch.ErrCanceled, lockstitch.ErrStaleSequence,
	lockstitch.ErrShuttingDown, lockstitch.ErrClosed, context.DeadlineExceeded,
}

func typed(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzAdmin decodes admin bodies and serves each one that decodes on a
// node of a two-node cluster whose other node is down: nothing may panic,
// and every failure must be one of the typed errors. The seeds are the
// hostile requests of TestAdminErrors and the internal ops with odd
// fields.
func FuzzAdmin(f *testing.F) {
	seeds := []transport.AdminRequest{
		{Op: transport.AdminCreatePartition},
		{Op: transport.AdminCreatePartition, Partition: 5, Replicas: 9},
		{Op: transport.AdminCreatePartition, Partition: 5, Nodes: []lockstitch.NodeID{1, 1}},
		{Op: transport.AdminCreatePartition, Partition: 5, Nodes: []lockstitch.NodeID{1, 2}},
		{Op: transport.AdminCreatePartition, Partition: 5, Nodes: []lockstitch.NodeID{1}, Plugin: "nope"},
		{Op: transport.AdminCreatePartition, Partition: 6, Nodes: []lockstitch.NodeID{1}},
		{Op: transport.AdminDeletePartition, Partition: 6},
		{Op: transport.AdminCreatePartition, Partition: 6, Nodes: []lockstitch.NodeID{1}},
		{Op: transport.AdminListPartitions},
		{Op: transport.AdminListPartitions, Node: 2},
		{Op: transport.AdminAddReplica, Partition: 6, Node: 2},
		{Op: transport.AdminAddReplica, Partition: 6, Node: 1, Kind: 9},
		{Op: transport.AdminRemoveReplica, Partition: 6, Replica: 1},
		{Op: transport.AdminRemoveReplica, Partition: 6},
		{Op: transport.AdminTransferLeader, Partition: 6, Replica: 3},
		{Op: transport.AdminClusterStatus},
		{Op: transport.AdminStartReplica, Partition: 7, Replica: 1, Plugin: "log", Members: []transport.Member{{Replica: 1, RaftAddr: "x"}}},
		{Op: transport.AdminStartReplica, Partition: 7, Replica: 2, Plugin: "log", Join: true, Kind: lockstitch.Witness},
		{Op: transport.AdminStartReplica, Partition: 7, Replica: 1, Plugin: "log", Join: true, Members: []transport.Member{{Replica: 1}}},
		{Op: transport.AdminStopReplica, Partition: 7, Replica: 2},
		{Op: transport.AdminAwaitReplica, Partition: 8},
		{Op: transport.AdminPrepareReplica, Partition: 6, Replica: 1, Plugin: "log", Join: true},
		{Op: transport.AdminRepairReplica, Partition: 6, Node: 1},
		{Op: transport.AdminRepairReplica, Partition: 6, Node: 2},
		{Op: transport.AdminRepairReplica, Partition: 9, Node: 1},
		{Op: transport.AdminRepairReplica, Partition: 6},
		{Op: 200, Partition: 1},
	}
	for _, s := range seeds {
		b, err := s.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Node 2 is in the configuration but never started: it is down.
	c := startNodes(f, 2, 1)[0]
	f.Fuzz(func(t *testing.T, body []byte) {
		var req transport.AdminRequest
		if req.UnmarshalBinary(body) != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var res transport.AdminResult
		if err := c.admin(ctx, &req, &res); err != nil && !typed(err) {
			t.Fatalf("%v %+v: an untyped error: %v", req.Op, req, err)
		}
	})
}
