// Package replicator is Lockstitch's library: a Replicator is one node
// (one dragonboat NodeHost) hosting replicas of many partitions, each an
// ordered operation stream replicated to a quorum with a state machine
// plugin behind it. The server, the CLI and the sidecar are built on it; a
// program can link it directly.
//
// # What a partition guarantees
//
//   - Ordered stream: every committed op gets a dense LSN (1, 2, 3, ...),
//     assigned deterministically when the op is applied, so every replica
//     holds the same op at the same LSN. LSNs are never reused or reordered.
//   - Quorum acknowledgement: Append returns only after the op is in the
//     fsynced Raft log of a majority of the voters and applied on the
//     leader. docs/guarantees.md states exactly what that means.
//   - Epochs: each op carries the epoch (the proposing leader's Raft term)
//     under which it was committed; epochs never decrease along a stream.
//   - Idempotent producers: an op that carries (producer id, sequence) is
//     applied at most once; a retry returns the original LSN, across leader
//     changes and restarts, for the DedupeWindow most recent sequences of
//     each of the MaxProducers most recently active producers.
//   - Catch-up: a replica or a consumer reads the stream from any LSN the
//     replica's log retains (Read, Subscribe); a replica too far behind is
//     sent a copy of the state by the leader.
//
// # The path of an append
//
// Only the leader accepts appends; a follower answers with a
// *lockstitch.NotLeaderError naming the leader's client address. Errors
// are package lockstitch's sentinels (lockstitch.ErrBusy, ...), the same a
// Go client gets over the wire; match them with errors.Is. The leader's batcher
// coalesces concurrent appends into one Raft entry (bounded by
// Config.MaxBatchBytes and MaxBatchOps, several in flight); each op keeps
// its own LSN and result. A full queue (Config.MaxPendingOps and
// MaxPendingBytes) fails appends at once with lockstitch.ErrBusy: backpressure, never
// loss or unbounded memory. When the entry commits, every replica's state
// machine checks each op's CRC-32C, drops duplicates, assigns LSNs, appends
// the ops to its operation log (package wal) with one write and hands them
// to its plugin with one call; the leader then completes the appends.
//
// # Plugins
//
// A plugin is a StateMachine built by a PluginFactory registered by name in
// Config.Plugins (no global registry). Its contract is on StateMachine. The
// built-in "log" plugin keeps nothing but its position: the stream is the
// state; replicator/queue is a queue with leases on pebble. Each op comes
// with the time its leader stamped on it when proposing it (Op.Time),
// replicated in the Raft entry and kept in the operation log, so that a
// plugin's time-based decisions are the same on every replica and on a
// replay. A plugin that implements RoleObserver is told when its replica
// becomes leader, follower or non-voting. A program outside the process can
// be the state machine instead: it subscribes to the stream from its own
// marker and applies the ops itself.
//
// # Recovery
//
// A replica's durable state is its operation log, its plugin's state, and a
// checkpoint of the partition state (LSN, epoch, Raft index, dedupe table,
// the replicas' client addresses). A checkpoint is written every
// Config.CheckpointInterval while ops arrive, before each Raft snapshot and
// on a clean close, after the log is fsynced up to it. At start the log is
// cut back to the checkpoint, the plugin reports what it holds and is
// replayed from the log if it is behind, and Raft replays the entries after
// the checkpoint, which get the same LSNs again. A clean restart replays
// nothing; a crash replays at most one checkpoint interval.
//
// # Failures
//
// Dragonboat stops the process when a state machine fails to apply
// entries. So a failed disk write, a plugin error, or corruption (an op
// whose checksum does not match, a damaged log) stops the node, loudly,
// with the partition and the cause in the error: a replica never goes on
// with state it cannot vouch for. After a restart it recovers from disk
// and its peers.
//
// # Reads and lag
//
// Queries go to the plugin with a consistency level: Linearizable (a Raft
// read index, on any replica), LeaderLocal, or Bounded within
// QueryOptions.MaxStaleness. Every answer carries the LSN it reflects.
// Replicas report the LSN they have applied every Config.ProgressInterval
// while it moves, through small Raft entries; Status gives each replica's
// lag in ops as computed from those reports against the leader.
//
// # Catch-up and cursors
//
// A replica or consumer holding a marker (the last LSN it has) catches up
// with Partition.Copy, as catchup.PlanCatchUp (package copy) plans it: a
// Subscription from the marker's next op while it is retained, else,
// with CopyOptions.Snapshot, the plugin's snapshot at an LSN S (written
// with Copy.WriteSnapshot while appends go on) and a Subscription from
// S+1. A marker beyond the commit point fails with a
// *lockstitch.DivergedError; one dropped by retention without a snapshot
// with a *lockstitch.TruncatedError. Durable cursors (AckCursor,
// ResetCursor, DeleteCursor, Cursors) keep a consumer's marker in the
// partition: replicated state that holds log retention for the cursor,
// up to Config.CursorRetainOps ops behind, after which the cursor lapses
// (lockstitch.ErrCursorLapsed).
//
// # Membership
//
// CreatePartition is called on every initial member with the same spec.
// To add a replica, AddReplica on a member, then JoinPartition on the new
// node; a voter joins as non-voting and promotes itself once a read index
// proves it has caught up. RemoveReplica removes one (its node deletes the
// data); replica ids are never reused. TransferLeader retries dragonboat's
// best-effort transfer until it takes.
//
// # Concurrency
//
// Replicator and Partition are safe for concurrent use. A Subscription is
// used by one goroutine. Appends complete on replicator goroutines; a
// Completion must not block.
package replicator
