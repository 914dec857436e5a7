package replicator

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Op is one committed operation handed to a plugin.
type Op struct {
	LSN   lockstitch.LSN
	Epoch lockstitch.Epoch
	// Time is the proposing leader's wall clock when it proposed the op
	// (in UTC, without a monotonic reading). It is replicated with the op,
	// so every replica, and a replica replaying the op after a restart,
	// sees the same Time: a plugin may base deterministic decisions on it
	// (a lease that expires), never on its own clock. It is not monotonic:
	// ops proposed together share a time, and a new leader's clock may be
	// behind its predecessor's; a plugin that needs a clock that never
	// goes back keeps the latest Time it has seen. It is the zero time for
	// ops written before nodes stamped it (Raft entries of versions 1
	// and 2).
	Time time.Time
	// Payload aliases a buffer owned by the replicator; it is valid only
	// during the call that received it. Copy what must outlive the call.
	Payload []byte
}

// StateMachine is a plugin: the state machine behind a partition. The
// replicator calls its methods one at a time, with two exceptions: Query
// calls may run concurrently with each other (never with the others), and
// the Snapshot that PrepareSnapshot returned is written out concurrently
// with later calls.
//
// The contract:
//
//  1. Open returns the last LSN whose effects are durable in the plugin
//     (0 for none). The replicator then replays the ops after it that its
//     log still holds, and Raft replays the rest. A plugin with no state
//     of its own may return the LSN of the last op it has seen, or 0.
//  2. Apply receives ops in LSN order, each exactly once per process life
//     (after a restart, ops after the LSN Open returned come again). It
//     is deterministic: every replica applies the same ops to the same
//     state. It fills results[i] for ops[i] (nil for none); results are
//     returned to the appender and must stay valid until the next call.
//     It must not block on anything slow: it runs on a worker that other
//     partitions share.
//  3. Sync makes the effects of every op applied so far durable and
//     returns the last LSN it covers.
//  4. PrepareSnapshot captures the state as of the last op applied. It
//     must be quick (it runs between Apply calls); the Snapshot it
//     returns is written out later, possibly concurrently with Apply.
//  5. Restore discards all state and replaces it with a snapshot's,
//     taken at lsn. It then must be as if the plugin had applied every op
//     up to lsn.
//  6. Query answers a read-only request against the state as of the last
//     op applied; it must not change the state. It must be quick: while
//     queries run, Apply waits.
//  7. Close releases what the plugin holds. It is called once, also for
//     an instance that was never opened (the replica failed to start).
//
// Errors. A plugin shares its replica's fate: an error from Open, Apply,
// Sync or Restore means its state can no longer be trusted to match the
// other replicas'. An error from Open when the node restarts quarantines
// the replica (see Quarantine: the node serves its other partitions and
// the replica is rebuilt from its peers); an error from Open when the
// replica is created or joins fails that call; an error from Apply, Sync
// or Restore stops the whole node process (dragonboat panics; the node
// restarts from its durable state). So these errors are for
// broken disks and corrupt state, never for bad input: an op a plugin
// rejects is still committed and applied everywhere, and the plugin
// reports the rejection in its result for that op. Option errors belong
// in the PluginFactory, which runs when the replica is started and fails
// the start (CreatePartition, JoinPartition) with an error instead.
type StateMachine interface {
	Open(ctx context.Context) (lockstitch.LSN, error)
	Apply(ops []Op, results [][]byte) error
	Query(ctx context.Context, req []byte) ([]byte, error)
	Sync() (lockstitch.LSN, error)
	PrepareSnapshot() (Snapshot, error)
	Restore(r io.Reader, lsn lockstitch.LSN) error
	Close() error
}

// Snapshot is a plugin's captured state.
type Snapshot interface {
	// WriteTo writes the state to w. It may be called once, possibly
	// concurrently with Apply; it stops early when ctx ends.
	WriteTo(ctx context.Context, w io.Writer) error
	// Release frees what the snapshot holds. It is called exactly once,
	// after WriteTo or instead of it.
	Release()
}

// RoleObserver is implemented by plugins that want to know when their
// replica's role changes. RoleChanged gets the new role and the current
// epoch: for a new leader, the epoch its ops will carry. It is called
// between Apply calls and must return quickly. Bursts of changes
// collapse into one call with the role as it is then.
type RoleObserver interface {
	RoleChanged(role lockstitch.Role, epoch lockstitch.Epoch)
}

// PluginContext is what a plugin factory is given to build a plugin.
type PluginContext struct {
	Partition lockstitch.PartitionID
	Replica   lockstitch.ReplicaID
	// Dir is a directory the plugin owns, created for it; it keeps its
	// durable state there.
	Dir string
	// Options are the plugin options given when the partition was created.
	Options map[string]string
	// Logger has the partition and replica as attributes.
	Logger *slog.Logger
}

// PluginFactory builds a plugin for one replica of a partition, each time
// the replica starts. It should check its options and fail with an error
// when they are wrong; it should leave opening files to Open.
type PluginFactory func(PluginContext) (StateMachine, error)
