package replicator

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these with
// the partition and operation; match them with errors.Is.
var (
	// ErrNotLeader reports a call that only the leader can serve, made on
	// a replica that is not the leader. The error is a *NotLeaderError
	// naming the leader when this replica knows it.
	ErrNotLeader = errors.New("replicator: not the leader")
	// ErrBusy reports that a partition's queue of pending appends is full.
	// Nothing was appended; retry after a pause.
	ErrBusy = errors.New("replicator: busy, retry")
	// ErrPartitionNotFound reports a partition this node does not host.
	ErrPartitionNotFound = errors.New("replicator: partition not found")
	// ErrPartitionExists reports the creation of a partition that exists.
	ErrPartitionExists = errors.New("replicator: partition exists")
	// ErrReplicaDeleted reports the start of a replica whose partition and
	// replica id were used by a replica this node deleted (or that was
	// removed from the partition): Raft never reuses them. Give the new
	// replica another replica id, or the partition another id.
	ErrReplicaDeleted = errors.New("replicator: replica id was deleted on this node")
	// ErrPluginNotFound reports a plugin name missing from Config.Plugins.
	ErrPluginNotFound = errors.New("replicator: plugin not registered")
	// ErrTooLarge reports an op above the configured maximum size.
	ErrTooLarge = errors.New("replicator: op too large")
	// ErrChecksum reports an op whose payload does not match the CRC-32C
	// its producer computed: it was damaged on the way. Nothing was
	// appended.
	ErrChecksum = errors.New("replicator: op checksum mismatch")
	// ErrStaleSequence reports an idempotent append whose sequence is not
	// above its producer's last one and is not among the producer's
	// recent ops, so whether it was applied cannot be told.
	ErrStaleSequence = errors.New("replicator: stale producer sequence")
	// ErrTruncated reports a read from an LSN that retention has dropped.
	ErrTruncated = errors.New("replicator: LSN truncated")
	// ErrTooStale reports a query that the replica cannot answer within
	// the requested maximum lag.
	ErrTooStale = errors.New("replicator: replica too far behind")
	// ErrUnavailable reports that the partition cannot serve the call now
	// (no leader, replica starting or stopping); retry.
	ErrUnavailable = errors.New("replicator: partition unavailable")
	// ErrAborted reports an append whose outcome is unknown: it may or may
	// not have been committed (the leader changed or the node is closing).
	// Retry it with the same producer id and sequence to be safe.
	ErrAborted = errors.New("replicator: append outcome unknown")
	// ErrClosed reports a call on a closed Replicator.
	ErrClosed = errors.New("replicator: closed")
)

// NotLeaderError is the error a follower returns for leader-only calls.
type NotLeaderError struct {
	Partition PartitionID
	// Leader is the leader's replica id, zero when unknown.
	Leader ReplicaID
	// LeaderAddr is the leader's client address, empty when unknown.
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return fmt.Sprintf("replicator: partition %d: not the leader, leader unknown", e.Partition)
	}
	return fmt.Sprintf("replicator: partition %d: not the leader; leader is replica %d at %q", e.Partition, e.Leader, e.LeaderAddr)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
