package lockstitch

import (
	"errors"
	"fmt"
)

// Sentinel errors. The library returns them wrapped with the partition
// and the operation; the Go client returns them wrapped with the server's
// message. Match them with errors.Is. Each has a wire code of its own
// (transport.Code), except ErrTooStale and ErrClosed, which the wire
// carries as ErrUnavailable and ErrShuttingDown.
//
// Whether an append was committed:
//   - not appended, safe to retry: ErrNotLeader, ErrBusy,
//     ErrPartitionNotFound, ErrTooLarge, ErrChecksum, ErrInvalidArgument,
//     ErrUnavailable from the library or in a server's answer (it never
//     reached the log), ErrShuttingDown, ErrClosed;
//   - outcome unknown, retry with the same producer id and sequence:
//     ErrAborted, ErrTimeout, ErrCanceled;
//   - refused for good: ErrStaleSequence.
//
// The Go client sorts every append's end into one of three: success, a
// definite failure (the op is not in the stream and will not be), or an
// indeterminate one (it may be): an error that matches ErrIndeterminate
// and wraps the last attempt's cause. An append is indeterminate when
// any of its attempts was (an ErrAborted, ErrTimeout or ErrCanceled
// answer, a connection lost with the append in flight, the caller's ctx
// ending with it in flight), even if the last attempt's error alone is
// definite.
var (
	// ErrInvalidArgument reports a request field out of range or a
	// request that contradicts itself.
	ErrInvalidArgument = errors.New("lockstitch: invalid argument")
	// ErrNotLeader reports a call that only the leader can serve, made on
	// a replica that is not the leader. The error is a *NotLeaderError
	// naming the leader when the replica knows it. Retry at the leader.
	ErrNotLeader = errors.New("lockstitch: not the leader")
	// ErrBusy reports backpressure: a partition's queue of pending appends
	// is full, or a connection's in-flight limit is reached. Nothing was
	// appended; retry after a pause.
	ErrBusy = errors.New("lockstitch: busy")
	// ErrPartitionNotFound reports a partition the node does not host.
	ErrPartitionNotFound = errors.New("lockstitch: partition not found")
	// ErrPartitionExists reports the creation of a partition that exists
	// with another definition (a repeated, identical creation succeeds).
	ErrPartitionExists = errors.New("lockstitch: partition exists")
	// ErrReplicaDeleted reports the start of a replica whose partition
	// and replica id were used by a replica that was deleted (or removed
	// from its partition): Raft never reuses them. Give the new replica
	// another replica id, or the partition another id.
	ErrReplicaDeleted = errors.New("lockstitch: replica id was deleted")
	// ErrPluginNotFound reports a plugin name the node does not register.
	ErrPluginNotFound = errors.New("lockstitch: plugin not registered")
	// ErrTruncated reports a read from an LSN that retention has dropped.
	// The error is a *TruncatedError carrying the first retained LSN when
	// it is known.
	ErrTruncated = errors.New("lockstitch: LSN truncated")
	// ErrChecksum reports an op whose payload does not match the CRC-32C
	// its producer computed: it was damaged on the way. Nothing was
	// appended; retry.
	ErrChecksum = errors.New("lockstitch: checksum mismatch")
	// ErrTooLarge reports an op, frame or answer beyond a size limit.
	ErrTooLarge = errors.New("lockstitch: too large")
	// ErrUnavailable reports a partition that cannot serve the call now
	// (no leader, no quorum, replica starting or stopping, a node that
	// cannot be reached). An append that the library or a server fails
	// with it never reached the log; the Go client also returns it when
	// the connection was lost with the append in flight, and then the
	// outcome is unknown. Retry after a pause.
	ErrUnavailable = errors.New("lockstitch: unavailable")
	// ErrTooStale reports a query that the replica cannot answer within
	// the requested staleness bound. The wire carries it as
	// ErrUnavailable.
	ErrTooStale = errors.New("lockstitch: replica too far behind")
	// ErrAborted reports an append whose outcome is unknown: it may or may
	// not have been committed (the leader changed, the proposal was not
	// completed, the node is closing). Retry it with the same producer id
	// and sequence to be safe.
	ErrAborted = errors.New("lockstitch: outcome unknown")
	// ErrTimeout reports a server that gave up waiting (for a quorum, an
	// apply) when the request's deadline passed: an append's outcome is
	// unknown. Retry with the same producer id and sequence.
	ErrTimeout = errors.New("lockstitch: timeout")
	// ErrCanceled reports a request that was cancelled before it
	// finished: an append's outcome is unknown.
	ErrCanceled = errors.New("lockstitch: canceled")
	// ErrStaleSequence reports an idempotent append whose sequence is not
	// above its producer's last one and is not among the producer's
	// recent ops, so whether it was applied cannot be told. It is refused
	// and not retryable.
	ErrStaleSequence = errors.New("lockstitch: stale producer sequence")
	// ErrShuttingDown reports a node that is stopping. Retry elsewhere.
	ErrShuttingDown = errors.New("lockstitch: shutting down")
	// ErrClosed reports a call on a closed Replicator, Server, Client or
	// Subscription. The wire carries it as ErrShuttingDown.
	ErrClosed = errors.New("lockstitch: closed")
	// ErrIndeterminate marks an append whose outcome the Go client could
	// not learn: it may be in the stream, once, or not at all. The error
	// also wraps the last attempt's cause. Retrying with the same
	// producer id and sequence learns the outcome (a committed op answers
	// as a duplicate with its LSN). It has no wire code: the client
	// decides it.
	ErrIndeterminate = errors.New("lockstitch: append outcome indeterminate")
	// ErrDiverged reports a consumer or replica whose marker is ahead of
	// everything the partition has committed: it holds ops the partition
	// never committed (it followed another partition, or state from
	// before a restore), so no catch-up can make it match. The error is a
	// *DivergedError carrying the partition's committed LSN and epoch.
	// Not retryable: the consumer rebuilds its state from marker 0 or a
	// snapshot.
	ErrDiverged = errors.New("lockstitch: marker ahead of the committed stream")
	// ErrCursorLapsed reports a durable cursor that fell further behind
	// than retention holds ops for it (Config.CursorRetainOps): the ops
	// after it may have been dropped, and it was marked lapsed. Its
	// consumer comes back through a snapshot and the ops after it
	// (Partition.Copy with a snapshot), then resets the cursor.
	ErrCursorLapsed = errors.New("lockstitch: cursor lapsed")
)

// NotLeaderError is the error a replica that is not the leader returns for
// leader-only calls. It matches ErrNotLeader with errors.Is.
type NotLeaderError struct {
	// Partition is the partition, zero when not known (the wire does not
	// carry it: the client knows which partition it asked about).
	Partition PartitionID
	// Leader is the leader's replica id, zero when unknown or not carried
	// (the wire carries the address only).
	Leader ReplicaID
	// LeaderAddr is the leader's client address, empty when unknown.
	LeaderAddr string
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	var where string
	if e.Partition != 0 {
		where = fmt.Sprintf(" of partition %d", e.Partition)
	}
	switch {
	case e.LeaderAddr == "" && e.Leader == 0:
		return "lockstitch: not the leader" + where + " (leader unknown)"
	case e.Leader == 0:
		return fmt.Sprintf("lockstitch: not the leader%s (leader at %s)", where, e.LeaderAddr)
	case e.LeaderAddr == "":
		return fmt.Sprintf("lockstitch: not the leader%s (leader is replica %d, address unknown)", where, e.Leader)
	}
	return fmt.Sprintf("lockstitch: not the leader%s (leader is replica %d at %s)", where, e.Leader, e.LeaderAddr)
}

// Is reports whether target is ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// TruncatedError reports a read below what a replica retains. It matches
// ErrTruncated with errors.Is.
type TruncatedError struct {
	// Partition is the partition, zero when not known (the wire does not
	// carry it).
	Partition PartitionID
	// First is the first LSN the replica retains.
	First LSN
}

// Error implements error.
func (e *TruncatedError) Error() string {
	if e.Partition == 0 {
		return fmt.Sprintf("lockstitch: LSN truncated (first retained LSN %d)", e.First)
	}
	return fmt.Sprintf("lockstitch: LSN truncated in partition %d (first retained LSN %d)", e.Partition, e.First)
}

// Is reports whether target is ErrTruncated.
func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }

// DivergedError reports a marker ahead of what a partition has committed.
// It matches ErrDiverged with errors.Is.
type DivergedError struct {
	// Partition is the partition, zero when not known.
	Partition PartitionID
	// Marker is the marker the consumer gave: the last LSN it holds.
	Marker LSN
	// Committed is the last LSN the partition had committed when the
	// marker was checked (a Raft read index confirmed it).
	Committed LSN
	// Epoch is the partition's epoch then: the epoch of the op at
	// Committed.
	Epoch Epoch
}

// Error implements error.
func (e *DivergedError) Error() string {
	var where string
	if e.Partition != 0 {
		where = fmt.Sprintf(" of partition %d", e.Partition)
	}
	return fmt.Sprintf("lockstitch: marker %d is ahead of the committed stream%s (committed LSN %d, epoch %d)",
		e.Marker, where, e.Committed, e.Epoch)
}

// Is reports whether target is ErrDiverged.
func (e *DivergedError) Is(target error) bool { return target == ErrDiverged }
