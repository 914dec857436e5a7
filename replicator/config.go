package replicator

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxOpBytesLimit is the largest MaxOpBytes, and the largest op any
// replica's log accepts when reading.
const maxOpBytesLimit = 64 << 20

// LogDB names the Raft log store of dragonboat.
type LogDB string

// Raft log stores. The choice is fixed at a node's first start.
const (
	// LogDBPebble is dragonboat's default: 16 pebble instances, with a
	// move of the commit index written with the next synced save instead
	// of synced on its own (lazyCommitLogDB).
	LogDBPebble LogDB = "pebble"
	// LogDBTan is dragonboat's tan store (docs/benchmarks.md compares them).
	LogDBTan LogDB = "tan"
)

// RaftTLS is mutual TLS between the nodes' Raft ports: each node serves
// and dials with its certificate, and accepts only peers whose
// certificate chains to CAFile (their certificates must allow both server
// and client authentication, and name the host of their Raft address).
// Dragonboat reads the files when the node starts (its listener) and on
// each new outgoing connection: a rotated certificate is wholly in use
// after a restart. Set all three files, or none for plain TCP; every node
// of a cluster must agree.
type RaftTLS struct {
	CAFile, CertFile, KeyFile string
}

// Enabled reports whether t turns mutual TLS on.
func (t RaftTLS) Enabled() bool { return t != RaftTLS{} }

// Config configures a Replicator. Start from DefaultConfig.
type Config struct {
	// DataDir holds everything the node keeps: dragonboat's Raft log,
	// each partition's operation log, checkpoints and plugin state.
	DataDir string
	// RaftAddress is the host:port where this node's Raft traffic is
	// served and where peers reach it. Fixed at the node's first start.
	RaftAddress string
	// RaftListenAddress, when set, is the host:port the Raft port binds,
	// RaftAddress then being only where peers reach it: through a proxy,
	// a NAT, or a container's published port. Empty: RaftAddress.
	RaftListenAddress string
	// ClientAddress is the address clients use to reach this node (the
	// transport server's); followers hand it out in NotLeader errors.
	// Empty when the node serves no clients.
	ClientAddress string
	// Plugins are the state machine plugins partitions can be created
	// with, by name. DefaultConfig registers the built-in "log" plugin.
	Plugins map[string]PluginFactory
	// Logger receives the replicator's logs and dragonboat's (at Warn and
	// above); nil discards them.
	Logger *slog.Logger
	// Registerer receives the node's metrics (see Metrics); nil records
	// none.
	Registerer prometheus.Registerer

	// RaftTLS, when set, is mutual TLS on the Raft port.
	RaftTLS RaftTLS

	// DeploymentID separates clusters that could reach each other: nodes
	// with different ids ignore each other. Fixed at first start.
	DeploymentID uint64
	// RTT is the Raft tick: the round trip time between nodes. Raft
	// timeouts are counted in ticks.
	RTT time.Duration
	// ElectionRTT and HeartbeatRTT are the election timeout and heartbeat
	// interval in ticks. ElectionRTT must be at least 10 x HeartbeatRTT.
	ElectionRTT, HeartbeatRTT uint64
	// Quiesce lets a partition with no activity for ten election timeouts
	// go quiet: its replicas stop exchanging heartbeats until a write, a
	// read index or a vote wakes them (dragonboat's quiesce). A quiet
	// partition does not notice by itself that its leader's node died:
	// whoever runs the node must call WakeQuiesced when it sees nodes down
	// (server's peer probes do), else the partition stays leaderless.
	// Off by default here; server.DefaultConfig turns it on.
	Quiesce bool
	// SnapshotEntries is how many Raft entries pass between snapshots of
	// Raft's metadata, after which Raft's log is compacted. Each snapshot
	// also checkpoints every partition's state and syncs its plugin.
	SnapshotEntries uint64
	// CompactionOverhead is how many Raft entries are kept behind a
	// snapshot, so that a briefly absent replica catches up from the log
	// instead of a copy.
	CompactionOverhead uint64
	// SnapshotBytes triggers snapshots by size as well: a replica that
	// has applied this many bytes of Raft entries since its last such
	// snapshot takes one and compacts Raft's log up to the one before, so
	// that the log keeps between one and two times SnapshotBytes behind
	// it. Batched entries are large (up to MaxBatchBytes), so counting
	// entries alone would let Raft's log grow to gigabytes, and the LogDB
	// rewrite it in its compactions; removed early, most entries never
	// leave the LogDB's memtable. 0 counts entries only.
	SnapshotBytes int64
	// LogDB selects Raft's log store. Fixed at first start.
	LogDB LogDB
	// EngineWorkers sizes dragonboat's worker pools (step, apply,
	// snapshot, commit, close); 0 keeps dragonboat's defaults. Fixed at
	// first start.
	EngineWorkers int

	// MaxOpBytes is the largest op payload.
	MaxOpBytes int
	// MaxBatchBytes and MaxBatchOps bound the Raft entry into which the
	// leader coalesces concurrent appends to one partition.
	MaxBatchBytes, MaxBatchOps int
	// BatchLinger is how long, after batches complete, the open partial
	// batch may wait for their callers to append again (see batcher.go);
	// 0 proposes it as soon as nothing is in flight. Waking a few hundred
	// blocked callers takes a few hundred microseconds, up to a
	// millisecond on a busy machine.
	BatchLinger time.Duration
	// BatchGap ends that wait early once this long has passed with no
	// append: the callers still away are taken to have gone. Callers that
	// come back do so microseconds apart; callers that do not wait for
	// their appends (open-loop load) pay at most this, not BatchLinger.
	// 0, or a gap at or above BatchLinger, waits the whole BatchLinger.
	BatchGap time.Duration
	// MaxInflightBatches bounds the batches per partition proposed and
	// not yet committed: full ones; a partial batch waits until none is.
	MaxInflightBatches int
	// MaxPendingOps and MaxPendingBytes bound each partition's queue of
	// appends not yet committed; beyond them Append fails with ErrBusy.
	MaxPendingOps   int
	MaxPendingBytes int64
	// MaxNodePendingBytes bounds the payload bytes of appends not yet
	// committed across every partition of the node, so that many busy
	// partitions cannot take its memory; beyond it Append fails with
	// ErrBusy. At least MaxPendingBytes.
	MaxNodePendingBytes int64
	// ProposalTimeout bounds how long a batch may take to commit before
	// its appends fail with ErrAborted.
	ProposalTimeout time.Duration
	// ProposerClock is the clock a leader reads when it proposes a batch
	// of ops, the time the ops carry (Op.Time); nil means time.Now. Tests
	// of time-based plugins set a fake one per node.
	ProposerClock func() time.Time

	// SegmentBytes is the segment size of each partition's operation log.
	SegmentBytes int64
	// RetainBytes and RetainAge bound each partition's operation log:
	// whole segments beyond either limit are dropped, but never one that
	// recovery still needs. Zero means no limit.
	RetainBytes int64
	RetainAge   time.Duration
	// CursorRetainOps bounds how far behind the replica's applied LSN a
	// durable cursor holds retention: while a cursor lags by at most this
	// many ops, retention keeps the ops after it, whatever RetainBytes and
	// RetainAge say; beyond it the cursor is marked lapsed
	// (lockstitch.ErrCursorLapsed) and no longer holds anything.
	CursorRetainOps int64
	// CopyBytesPerSecond bounds the rate at which this node sends copies
	// (snapshots with their retained log) to replicas that fell behind,
	// all copies together, so that a large copy leaves the disk and the
	// network to live replication. Zero means no limit; the default is
	// 100 MiB/s (see docs/decisions.md).
	CopyBytesPerSecond int64
	// CheckpointInterval is how often a partition with new ops makes its
	// state durable, which bounds what a restart replays from Raft. Log
	// retention runs every five intervals.
	CheckpointInterval time.Duration
	// ProgressInterval is how often a replica with new ops reports its
	// applied LSN, from which the leader computes each replica's lag.
	ProgressInterval time.Duration
}

// DefaultConfig returns defaults for a LAN: a 10 ms tick, heartbeats every
// tick, elections after 300 ms without one (a loaded machine can miss a
// shorter deadline), 64 KiB batches, 16 MiB log segments.
func DefaultConfig() Config {
	return Config{
		Plugins:             map[string]PluginFactory{LogPluginName: NewLogPlugin},
		DeploymentID:        1,
		RTT:                 10 * time.Millisecond,
		ElectionRTT:         30,
		HeartbeatRTT:        1,
		SnapshotEntries:     20000,
		CompactionOverhead:  5000,
		SnapshotBytes:       4 << 20,
		LogDB:               LogDBPebble,
		MaxOpBytes:          4 << 20,
		MaxBatchBytes:       64 << 10,
		MaxBatchOps:         4096,
		BatchLinger:         2 * time.Millisecond,
		BatchGap:            300 * time.Microsecond,
		MaxInflightBatches:  32,
		MaxPendingOps:       1 << 16,
		MaxPendingBytes:     64 << 20,
		MaxNodePendingBytes: 1 << 30,
		ProposalTimeout:     5 * time.Second,
		SegmentBytes:        16 << 20,
		RetainBytes:         1 << 30,
		CursorRetainOps:     10_000_000,
		CopyBytesPerSecond:  100 << 20,
		CheckpointInterval:  2 * time.Second,
		ProgressInterval:    time.Second,
	}
}

// Validate reports every invalid setting. It does not change c.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		bad("DataDir is empty")
	}
	if t := c.RaftTLS; t.Enabled() && (t.CAFile == "" || t.CertFile == "" || t.KeyFile == "") {
		bad("RaftTLS needs a CA file, a certificate file and a key file, or none of them")
	}
	if _, _, err := net.SplitHostPort(c.RaftAddress); err != nil {
		bad("RaftAddress %q: %v", c.RaftAddress, err)
	}
	if c.RaftListenAddress != "" {
		if _, _, err := net.SplitHostPort(c.RaftListenAddress); err != nil {
			bad("RaftListenAddress %q: %v", c.RaftListenAddress, err)
		}
	}
	if c.ClientAddress != "" {
		if _, _, err := net.SplitHostPort(c.ClientAddress); err != nil {
			bad("ClientAddress %q: %v", c.ClientAddress, err)
		}
	}
	for name, f := range c.Plugins {
		if name == "" || f == nil {
			bad("plugin %q has an empty name or a nil factory", name)
		}
	}
	if c.RTT < time.Millisecond || c.RTT%time.Millisecond != 0 {
		bad("RTT %v must be a whole number of milliseconds, at least 1ms", c.RTT)
	}
	if c.HeartbeatRTT == 0 || c.ElectionRTT < 10*c.HeartbeatRTT {
		bad("ElectionRTT %d must be at least 10 x HeartbeatRTT %d (> 0)", c.ElectionRTT, c.HeartbeatRTT)
	}
	if c.SnapshotEntries != 0 && c.CompactionOverhead >= c.SnapshotEntries {
		bad("CompactionOverhead %d must be below SnapshotEntries %d", c.CompactionOverhead, c.SnapshotEntries)
	}
	if c.SnapshotBytes != 0 && c.SnapshotBytes < 1<<20 {
		bad("SnapshotBytes %d must be 0 or at least 1 MiB", c.SnapshotBytes)
	}
	switch c.LogDB {
	case LogDBPebble, LogDBTan:
	default:
		bad("LogDB %q is not %q or %q", c.LogDB, LogDBPebble, LogDBTan)
	}
	if c.EngineWorkers < 0 {
		bad("EngineWorkers %d is negative", c.EngineWorkers)
	}
	if c.MaxOpBytes < 1 || c.MaxOpBytes > maxOpBytesLimit {
		bad("MaxOpBytes %d is outside [1, %d]", c.MaxOpBytes, maxOpBytesLimit)
	}
	if c.MaxBatchBytes < 1<<10 || c.MaxBatchOps < 1 {
		bad("MaxBatchBytes %d must be at least 1 KiB and MaxBatchOps %d at least 1", c.MaxBatchBytes, c.MaxBatchOps)
	}
	if c.BatchLinger < 0 || c.BatchLinger > time.Second {
		bad("BatchLinger %v is outside [0, 1s]", c.BatchLinger)
	}
	if c.BatchGap < 0 || c.BatchGap > time.Second {
		bad("BatchGap %v is outside [0, 1s]", c.BatchGap)
	}
	if c.MaxInflightBatches < 1 {
		bad("MaxInflightBatches %d is below 1", c.MaxInflightBatches)
	}
	if c.MaxPendingOps < 1 || c.MaxPendingBytes < int64(c.MaxOpBytes) {
		bad("MaxPendingOps %d must be positive and MaxPendingBytes %d at least MaxOpBytes", c.MaxPendingOps, c.MaxPendingBytes)
	}
	if c.MaxNodePendingBytes < c.MaxPendingBytes {
		bad("MaxNodePendingBytes %d must be at least MaxPendingBytes %d", c.MaxNodePendingBytes, c.MaxPendingBytes)
	}
	if c.ProposalTimeout < c.RTT {
		bad("ProposalTimeout %v is below one RTT", c.ProposalTimeout)
	}
	if c.SegmentBytes < 64<<10 {
		bad("SegmentBytes %d is below 64 KiB", c.SegmentBytes)
	}
	if c.CopyBytesPerSecond < 0 {
		bad("CopyBytesPerSecond %d must not be negative", c.CopyBytesPerSecond)
	}
	if c.RetainBytes < 0 || c.RetainAge < 0 {
		bad("RetainBytes %d and RetainAge %v must not be negative", c.RetainBytes, c.RetainAge)
	}
	if c.CursorRetainOps < 1 {
		bad("CursorRetainOps %d must be at least 1", c.CursorRetainOps)
	}
	if c.CheckpointInterval <= 0 || c.ProgressInterval <= 0 {
		bad("CheckpointInterval %v and ProgressInterval %v must be positive", c.CheckpointInterval, c.ProgressInterval)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("replicator: invalid config: %w", err)
	}
	return nil
}

// promoteWait bounds the read that checks whether a joining replica has
// caught up before its promotion: 25 ticks, and at least 250 ms.
func (c Config) promoteWait() time.Duration {
	return max(25*c.RTT, 250*time.Millisecond)
}
