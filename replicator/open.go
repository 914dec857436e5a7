package replicator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// errPluginOpen marks an error of a plugin's Open: the plugin refused its
// state.
var errPluginOpen = errors.New("plugin open")

// damaged reports whether an error opening a replica says its state is
// damaged (a corrupt log, a checkpoint the log does not match, a plugin
// that refused its state), which quarantines the replica, rather than
// that the node cannot open files now (permissions, descriptors, a full
// disk), which fails the node's start: a restart may then succeed, and
// the replica is not rebuilt for a passing fault.
func damaged(err error) bool {
	return errors.Is(err, errBadState) || errors.Is(err, wal.ErrCorrupt) || errors.Is(err, errPluginOpen)
}

// openedReplica is a replica's durable state, opened and checked: the
// partition state of its last checkpoint, its operation log cut back to
// that checkpoint, and its plugin opened and caught up to it. The
// replicator opens it before dragonboat starts the replica, so that a
// replica whose state cannot be opened is quarantined instead of stopping
// the node (an error from a state machine's Open panics in dragonboat).
type openedReplica struct {
	state  *partitionState
	wal    *wal.Log
	plugin StateMachine
	// durable is what the plugin reported durable when it opened; skipTo
	// is set when it is ahead of the checkpoint (Raft's replay must not
	// hand it those ops again).
	durable lockstitch.LSN
	skipTo  lockstitch.LSN
}

// close releases what o holds; for a replica that was opened but never
// started.
func (o *openedReplica) close() error {
	perr := o.plugin.Close()
	werr := o.wal.Close()
	if perr != nil {
		return fmt.Errorf("plugin close: %w", perr)
	}
	return werr
}

// openReplica opens the durable state of the replica in dir, with the
// plugin built for it (which it closes on failure). The log is made to end
// exactly at the checkpoint: Raft replays the rest.
func openReplica(ctx context.Context, dir string, segmentBytes int64, log *slog.Logger, plugin StateMachine) (o *openedReplica, err error) {
	defer func() {
		if err != nil {
			if cerr := plugin.Close(); cerr != nil {
				log.Warn("closing the plugin of a replica that failed to open", "err", cerr)
			}
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "plugin"), 0o755); err != nil {
		return nil, err
	}
	state, err := readCheckpoint(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	wcfg := wal.DefaultConfig()
	wcfg.SegmentBytes = segmentBytes
	// The log holds whatever was committed, including ops accepted under
	// a larger MaxOpBytes before a restart: it is bounded by the hard
	// limit, not the current setting.
	wcfg.MaxPayloadBytes = maxOpBytesLimit
	wcfg.Preallocate = false // checkpoints fsync; thousands of partitions must not each reserve a segment
	wcfg.Sync = wal.SyncManual
	wcfg.Logger = log
	l, err := wal.Open(filepath.Join(dir, "wal"), wcfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if rep, ok := l.Repaired(); ok {
		log.Warn("operation log had a torn tail", "segment", rep.Segment, "offset", rep.Offset, "last", rep.LastLSN)
	}
	restoring, err := fileExists(filepath.Join(dir, restoringName))
	if err != nil {
		return nil, err
	}
	switch last := l.Last(); {
	case last == state.lsn:
	case last > state.lsn && state.lsn+1 >= l.First():
		err = l.TruncateBack(state.lsn)
	case restoring:
		// A snapshot restore was interrupted after its checkpoint was
		// written: the log still holds what came before the snapshot.
		log.Warn("finishing an interrupted snapshot restore", "log_first", l.First(), "log_last", last, "checkpoint", state.lsn)
		err = l.Reset(state.lsn + 1)
	default:
		// The checkpoint is only written once the log is durable up to
		// it, so a log that does not reach it lost synced records.
		err = fmt.Errorf("%w: operation log holds LSNs %d to %d but the checkpoint is at LSN %d; the log was damaged or removed", errBadState, l.First(), last, state.lsn)
	}
	if err == nil && restoring {
		err = removeFileDurable(filepath.Join(dir, restoringName))
	}
	if err != nil {
		return nil, err
	}
	durable, err := plugin.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errPluginOpen, err)
	}
	o = &openedReplica{state: state, wal: l, plugin: plugin, durable: durable}
	switch {
	case durable > state.lsn:
		o.skipTo = durable
	case durable < state.lsn:
		if err := replayIntoPlugin(ctx, l, plugin, durable, state.lsn); err != nil {
			return nil, err
		}
		log.Info("replayed the operation log into the plugin", "from", durable+1, "to", state.lsn)
	}
	return o, nil
}

// replayIntoPlugin hands the plugin the logged ops after from, up to to.
func replayIntoPlugin(ctx context.Context, l *wal.Log, plugin StateMachine, from, to lockstitch.LSN) error {
	if from+1 < l.First() {
		return fmt.Errorf("plugin has applied up to LSN %d but the operation log starts at %d", from, l.First())
	}
	it, err := l.NewIterator(from + 1)
	if err != nil {
		return err
	}
	defer it.Close()
	const chunk = 256
	ops := make([]Op, 0, chunk)
	results := make([][]byte, chunk)
	for lsn := from + 1; lsn <= to; {
		if err := ctx.Err(); err != nil {
			return err
		}
		ops = ops[:0]
		for ; lsn <= to && len(ops) < chunk; lsn++ {
			var r wal.Record
			if err := it.Next(&r); err != nil {
				return fmt.Errorf("replaying LSN %d into the plugin: %w", lsn, err)
			}
			// Next's payload is valid until the next call: keep a copy.
			p := append([]byte(nil), r.Payload...)
			ops = append(ops, Op{LSN: r.LSN, Epoch: lockstitch.Epoch(r.Epoch), Time: recordTime(r.Aux), Payload: p})
		}
		if err := plugin.Apply(ops, results[:len(ops)]); err != nil {
			return fmt.Errorf("plugin apply during replay: %w", err)
		}
	}
	return nil
}
