package replicator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/lockstitch/lockstitch"
	catchup "github.com/lockstitch/lockstitch/copy"
	"github.com/lockstitch/lockstitch/wal"
)

// stateMachine is the one adapter between dragonboat's on-disk state
// machine contract and a partition replica: it assigns LSNs, drops retried
// appends, appends committed ops to the replica's operation log, hands them
// to the plugin, and keeps the state that recovery needs.
//
// Durability: the operation log is synced, and the partition state written
// as a checkpoint, by checkpoint (from Sync, Close and a timer). Open cuts
// the log back to the last checkpoint and returns its Raft index, so Raft
// replays exactly what the checkpoint does not cover, and the same entries
// get the same LSNs again.
type stateMachine struct {
	id      lockstitch.PartitionID
	replica lockstitch.ReplicaID
	dir     string
	cfg     *Config
	log     *slog.Logger
	metrics *Metrics
	factory PluginFactory
	options map[string]string
	// pending is the replica's state as the replicator opened it before
	// starting the replica; Open takes it (nil: Open opens it).
	pending *openedReplica
	// wantSnapshot asks for a size-triggered snapshot; it does not block.
	wantSnapshot func()
	// opened tells the partition that the replica is open (Ready may
	// have changed); it does not block.
	opened func()
	// throttle bounds the rate of the copies the node sends (nil: none).
	throttle *catchup.Throttle

	// mu is held for writing by Update, Sync, snapshots and Close, and
	// for reading by queries and the checkpoint's copy of the state.
	mu     sync.RWMutex
	state  *partitionState
	wal    *wal.Log
	plugin StateMachine
	skipTo lockstitch. // ops up to here are already in the plugin (it was ahead)
		LSN
	closed  bool
	scratch applyScratch
	// entryBytes counts the bytes of Raft entries applied since the last
	// call of wantSnapshot (Config.SnapshotBytes).
	entryBytes int64

	// Published for readers that do not take mu.
	ready        atomic.Bool   // opened and not closed
	applied      atomic.Uint64 // LSN
	appliedIndex atomic.Uint64 // Raft index
	epoch        atomic.Uint64

	// ckptMu serializes checkpoints; the fields below are under it.
	ckptMu        sync.Mutex
	ckptIndex     uint64
	ckptLSN       lockstitch.LSN
	ckptAt        time.Time
	pluginDurable atomic.Uint64 // LSN the plugin last reported durable

	// progress holds the applied LSN each replica last reported.
	progressMu sync.Mutex
	progress   map[lockstitch.ReplicaID]progressReport
}

type progressReport struct {
	applied lockstitch.LSN
	at      time.Time // when this replica applied the report
}

// applyScratch is reused across Update calls.
type applyScratch struct {
	recs    []wal.Record
	ops     []Op
	results [][]byte
	outcome []opOutcome
}

type opOutcome struct {
	status byte
	lsn    lockstitch.LSN
	epoch  lockstitch.Epoch
	plugin int // index into ops/results, or -1
}

var _ sm.IOnDiskStateMachine = (*stateMachine)(nil)

func newStateMachine(p *partition) *stateMachine {
	return &stateMachine{
		id:       p.id,
		replica:  p.replica,
		dir:      p.dir,
		cfg:      &p.r.cfg,
		log:      p.log,
		metrics:  p.r.metrics,
		factory:  p.factory,
		options:  p.meta.Options,
		progress: make(map[lockstitch.ReplicaID]progressReport),

		wantSnapshot: p.wantSnapshot,
		opened:       p.changed,
		throttle:     p.r.throttle,
	}
}

// Open implements sm.IOnDiskStateMachine.
func (s *stateMachine) Open(stopc <-chan struct{}) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	index, err := s.open(stopc)
	if err != nil {
		if errors.Is(err, sm.ErrOpenStopped) {
			return 0, err
		}
		s.log.Error("replica failed to open", "err", err)
		return 0, fmt.Errorf("partition %d replica %d: open: %w", s.id, s.replica, err)
	}
	return index, nil
}

func (s *stateMachine) open(stopc <-chan struct{}) (uint64, error) {
	o := s.pending
	s.pending = nil
	if o == nil {
		// Not opened before dragonboat started the replica: open it now
		// (an error then stops the node).
		plugin, err := s.factory(PluginContext{Partition: s.id, Replica: s.replica, Dir: filepath.Join(s.dir, "plugin"), Options: s.options, Logger: s.log})
		if err != nil {
			return 0, fmt.Errorf("plugin: %w", err)
		}
		ctx, cancel := contextFromStop(stopc)
		defer cancel()
		if o, err = openReplica(ctx, s.dir, s.cfg.SegmentBytes, s.log, plugin); err != nil {
			if ctx.Err() != nil {
				return 0, sm.ErrOpenStopped
			}
			return 0, err
		}
	}
	state := o.state
	s.state, s.wal, s.plugin, s.skipTo = state, o.wal, o.plugin, o.skipTo
	s.pluginDurable.Store(uint64(o.durable))
	s.publish()
	s.ckptIndex, s.ckptLSN, s.ckptAt = state.index, state.lsn, time.Now()
	s.ready.Store(true)
	s.opened()
	s.log.Info("replica opened", "lsn", state.lsn, "index", state.index, "plugin_lsn", o.durable, "log_first", o.wal.First())
	return state.index, nil
}

// publish makes the applied position visible to lock-free readers.
func (s *stateMachine) publish() {
	s.applied.Store(uint64(s.state.lsn))
	s.appliedIndex.Store(s.state.index)
	s.epoch.Store(uint64(s.state.epoch))
}

// Update implements sm.IOnDiskStateMachine: it applies committed entries.
// An error stops the node (dragonboat panics), so it returns one only for
// what must stop it: a failed disk write, a plugin error, corruption.
func (s *stateMachine) Update(entries []sm.Entry) ([]sm.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.update(entries); err != nil {
		s.log.Error("replica failed to apply entries; stopping", "err", err)
		return nil, fmt.Errorf("partition %d replica %d: %w", s.id, s.replica, err)
	}
	s.publish()
	return entries, nil
}

func (s *stateMachine) update(entries []sm.Entry) error {
	sc := &s.scratch
	sc.recs, sc.ops, sc.outcome = sc.recs[:0], sc.ops[:0], sc.outcome[:0]
	// Pass 1: decode, drop duplicates, assign LSNs.
	for i := range entries {
		e := &entries[i]
		s.entryBytes += int64(len(e.Cmd))
		if len(e.Cmd) == 0 {
			s.state.index = e.Index
			continue
		}
		switch e.Cmd[0] {
		case entryOps:
			if err := s.assign(e); err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
		case entryAddr:
			id, addr, err := readAddrEntry(e.Cmd)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			s.state.addrs[id] = addr
		case entryProgress:
			id, lsn, err := readProgressEntry(e.Cmd)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			s.progressMu.Lock()
			s.progress[id] = progressReport{applied: lsn, at: time.Now()}
			s.progressMu.Unlock()
		case entryCursor:
			op, name, lsn, err := readCursorEntry(e.Cmd)
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.Index, err)
			}
			e.Result = sm.Result{Value: s.state.applyCursor(op, name, lsn)}
		default:
			return fmt.Errorf("entry %d: %w: unknown kind %d", e.Index, errBadEntry, e.Cmd[0])
		}
		s.state.index = e.Index
	}
	// Pass 2: one write to the log, one call to the plugin.
	if len(sc.recs) > 0 {
		if err := s.wal.AppendBatch(sc.recs); err != nil {
			return fmt.Errorf("operation log: %w", err)
		}
	}
	if len(sc.ops) > 0 {
		if cap(sc.results) < len(sc.ops) {
			sc.results = make([][]byte, len(sc.ops))
		}
		results := sc.results[:len(sc.ops)]
		clear(results)
		if err := s.plugin.Apply(sc.ops, results); err != nil {
			return fmt.Errorf("plugin apply: %w", err)
		}
	}
	if limit := s.cfg.SnapshotBytes; limit > 0 && s.entryBytes >= limit && s.wantSnapshot != nil {
		s.entryBytes = 0
		s.wantSnapshot()
	}
	// Pass 3: the results the proposers get back.
	k := 0
	for i := range entries {
		e := &entries[i]
		if len(e.Cmd) == 0 || e.Cmd[0] != entryOps {
			if len(e.Cmd) == 0 || e.Cmd[0] != entryCursor {
				e.Result = sm.Result{}
			}
			continue
		}
		n := int(binary.LittleEndian.Uint32(e.Cmd[4:]))
		size := resultHeaderSize
		for _, o := range sc.outcome[k : k+n] {
			size += opResultHeaderSize
			if o.plugin >= 0 {
				size += len(sc.results[o.plugin])
			}
		}
		data := appendResultHeader(make([]byte, 0, size), n)
		for _, o := range sc.outcome[k : k+n] {
			var res []byte
			if o.plugin >= 0 {
				res = sc.results[o.plugin]
			}
			data = appendOpResult(data, o.status, o.lsn, o.epoch, res)
		}
		k += n
		e.Result = sm.Result{Value: uint64(n), Data: data}
	}
	return nil
}

// assign processes the ops of one entry: checks each op's checksum,
// drops duplicates, and gives the others LSNs and log records.
func (s *stateMachine) assign(e *sm.Entry) error {
	r, err := readOps(e.Cmd)
	if err != nil {
		return err
	}
	if lockstitch.Epoch(r.term) > s.state.epoch {
		s.state.epoch = lockstitch.Epoch(r.term)
	}
	sc := &s.scratch
	var op entryOp
	for {
		ok, err := r.next(&op)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		if got := wal.Checksum(op.Payload); got != op.CRC {
			return fmt.Errorf("%w: op checksum %08x, payload checksum %08x", errBadEntry, op.CRC, got)
		}
		if op.Producer != 0 {
			if status, lsn, epoch := s.state.dedupe.check(op.Producer, op.Seq); status != statusApplied {
				sc.outcome = append(sc.outcome, opOutcome{status: status, lsn: lsn, epoch: epoch, plugin: -1})
				continue
			}
		}
		s.state.lsn++
		lsn := s.state.lsn
		if op.Producer != 0 {
			s.state.dedupe.record(op.Producer, op.Seq, lsn, s.state.epoch)
		}
		sc.recs = append(sc.recs, wal.Record{LSN: lsn, Epoch: uint64(s.state.epoch), Aux: recordAux(r.time, e.Index), Payload: op.Payload})
		out := opOutcome{status: statusApplied, lsn: lsn, epoch: s.state.epoch, plugin: -1}
		if lsn > s.skipTo {
			out.plugin = len(sc.ops)
			sc.ops = append(sc.ops, Op{LSN: lsn, Epoch: s.state.epoch, Time: r.time, Payload: op.Payload})
		}
		sc.outcome = append(sc.outcome, out)
	}
}

// queryRequest and queryResponse travel through dragonboat's Lookup.
type queryRequest struct {
	ctx context.Context
	req []byte
}

type queryResponse struct {
	result []byte
	lsn    lockstitch.LSN
}

// Lookup implements sm.IOnDiskStateMachine: a plugin query, answered
// against the state between two Update calls, with the LSN it reflects.
func (s *stateMachine) Lookup(q interface{}) (interface{}, error) {
	req, ok := q.(*queryRequest)
	if !ok {
		return nil, fmt.Errorf("replicator: unexpected lookup %T", q)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed || s.plugin == nil {
		return nil, lockstitch.ErrUnavailable
	}
	res, err := s.plugin.Query(req.ctx, req.req)
	if err != nil {
		return nil, err
	}
	return &queryResponse{result: res, lsn: s.state.lsn}, nil
}

// Sync implements sm.IOnDiskStateMachine: the plugin and the partition
// state become durable up to the last entry applied.
func (s *stateMachine) Sync() error {
	if err := s.syncPlugin(); err != nil {
		return err
	}
	if err := s.checkpoint(); err != nil {
		return fmt.Errorf("partition %d replica %d: checkpoint: %w", s.id, s.replica, err)
	}
	return nil
}

func (s *stateMachine) syncPlugin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	durable, err := s.plugin.Sync()
	if err != nil {
		return fmt.Errorf("partition %d replica %d: plugin sync: %w", s.id, s.replica, err)
	}
	s.pluginDurable.Store(uint64(durable))
	return nil
}

// checkpoint makes the partition state durable: the operation log is
// synced up to the state's LSN, then the state is written. It writes
// nothing if nothing was applied since the last checkpoint.
func (s *stateMachine) checkpoint() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	return s.checkpointLocked()
}

func (s *stateMachine) checkpointLocked() error {
	s.mu.RLock()
	if s.closed || s.state == nil || s.state.index == s.ckptIndex {
		s.mu.RUnlock()
		return nil
	}
	encoded := s.state.appendTo(nil)
	index, lsn := s.state.index, s.state.lsn
	s.mu.RUnlock()
	start := time.Now()
	if err := s.wal.Sync(); err != nil {
		return err
	}
	if err := writeCheckpoint(s.dir, encoded); err != nil {
		return err
	}
	s.ckptIndex, s.ckptLSN, s.ckptAt = index, lsn, time.Now()
	s.metrics.checkpointed(start)
	return nil
}

// checkpointDue reports whether a timed checkpoint should run.
func (s *stateMachine) checkpointDue(now time.Time) bool {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	return s.appliedIndex.Load() != s.ckptIndex && now.Sub(s.ckptAt) >= s.cfg.CheckpointInterval
}

// retentionFloor is the last LSN recovery may still need from the log:
// what the checkpoint or the plugin has not made durable comes after it.
func (s *stateMachine) retentionFloor() lockstitch.LSN {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	return min(s.ckptLSN, lockstitch.LSN(s.pluginDurable.Load()))
}

// snapshot is what PrepareSnapshot captures: the partition state at LSN
// last, the plugin's snapshot, and the first LSN the log retained then.
type snapshot struct {
	state       []byte
	plugin      Snapshot
	first, last lockstitch.LSN
	epoch       lockstitch.Epoch // of the op at last
}

// Snapshot stream layout (part of the format): magic "lstchsnp", version
// (4), zero (4), the encoded partition state, then the plugin snapshot as
// a chunked stream (package copy), then, from version 2, the log section
// (package copy): the retained operation log up to the state's LSN, so
// that a replica rebuilt from the snapshot serves the same history as its
// peers. Version 1 snapshots, with no log section, are still read: the
// replica's log then starts after the snapshot.
const (
	snapshotMagic   = "lstchsnp"
	snapshotVersion = 2
)

// PrepareSnapshot implements sm.IOnDiskStateMachine.
func (s *stateMachine) PrepareSnapshot() (interface{}, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.captureLocked()
}

// captureLocked captures the partition state and the plugin's snapshot as
// of the last op applied, for a replica (PrepareSnapshot) or a consumer
// (Partition.Copy). The caller holds mu for writing.
func (s *stateMachine) captureLocked() (*snapshot, error) {
	ps, err := s.plugin.PrepareSnapshot()
	if err != nil {
		return nil, fmt.Errorf("partition %d replica %d: plugin snapshot: %w", s.id, s.replica, err)
	}
	last := s.state.lsn
	return &snapshot{state: s.state.appendTo(nil), plugin: ps, first: min(s.wal.First(), last+1), last: last, epoch: s.state.epoch}, nil
}

// writePluginSnapshot writes the plugin's part of snap to w as a chunked
// stream (package copy): what a replica restores with the plugin's
// Restore, and what a consumer's copy carries.
func (s *stateMachine) writePluginSnapshot(ctx context.Context, snap *snapshot, w io.Writer) error {
	chunks := catchup.NewChunkWriter(w)
	if err := snap.plugin.WriteTo(ctx, chunks); err != nil {
		return fmt.Errorf("partition %d replica %d: plugin snapshot: %w", s.id, s.replica, err)
	}
	return chunks.Close()
}

// SaveSnapshot implements sm.IOnDiskStateMachine: it streams a snapshot to
// a replica that needs one, concurrently with Update.
func (s *stateMachine) SaveSnapshot(c interface{}, w io.Writer, done <-chan struct{}) (err error) {
	snap := c.(*snapshot)
	defer snap.plugin.Release()
	cw := &countingWriter{w: w}
	s.metrics.copyStarted()
	start := time.Now()
	s.log.Info("copy send started", "lsn", snap.last, "log_first", snap.first)
	defer func() {
		s.metrics.copyEnded("sent", cw.n.Load(), err)
		s.log.Info("copy send ended", "lsn", snap.last, "bytes", cw.n.Load(), "elapsed", time.Since(start), "err", err)
	}()
	return s.saveSnapshot(snap, cw, done)
}

func (s *stateMachine) saveSnapshot(snap *snapshot, w io.Writer, done <-chan struct{}) error {
	ctx, cancel := contextFromStop(done)
	defer cancel()
	w = s.throttle.Writer(ctx, w)
	var h [16]byte
	copy(h[:], snapshotMagic)
	binary.LittleEndian.PutUint32(h[8:], snapshotVersion)
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if _, err := w.Write(snap.state); err != nil {
		return err
	}
	if err := s.writePluginSnapshot(ctx, snap, w); err != nil {
		if ctx.Err() != nil {
			return sm.ErrSnapshotStopped
		}
		return err
	}
	// The retained log up to the snapshot's LSN. Retention may have
	// dropped the start of what PrepareSnapshot saw: send what is
	// retained now (WriteLog writes nothing when the range is gone).
	var err error
	for range 3 {
		first := min(max(snap.first, s.wal.First()), snap.last+1)
		if err = catchup.WriteLog(ctx, w, s.wal, first, snap.last); !errors.Is(err, wal.ErrTruncated) {
			break
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return sm.ErrSnapshotStopped
		}
		return fmt.Errorf("partition %d replica %d: operation log for the snapshot: %w", s.id, s.replica, err)
	}
	return nil
}

// RecoverFromSnapshot implements sm.IOnDiskStateMachine: the replica's
// state is replaced by a snapshot streamed from the leader. The plugin is
// restored and synced; then a marker file, the checkpoint, and only then
// the log is restarted after the snapshot's LSN and the marker removed. A
// crash part way is finished by Open (see open), which tells an
// interrupted restore from a damaged log by the marker.
func (s *stateMachine) RecoverFromSnapshot(r io.Reader, done <-chan struct{}) error {
	// ckptMu first (the lock order checkpoint and Close use): a timed
	// checkpoint must not write the state it copied before the restore
	// over the restored one.
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	cr := &countingReader{r: r}
	s.metrics.copyStarted()
	start := time.Now()
	s.log.Info("copy restore started")
	err := s.recoverFromSnapshot(cr, done)
	s.metrics.copyEnded("received", cr.n, err)
	s.log.Info("copy restore ended", "bytes", cr.n, "elapsed", time.Since(start), "err", err)
	if err != nil {
		if errors.Is(err, sm.ErrSnapshotStopped) {
			return err
		}
		s.log.Error("snapshot recovery failed", "err", err)
		return fmt.Errorf("partition %d replica %d: recover from snapshot: %w", s.id, s.replica, err)
	}
	return nil
}

func (s *stateMachine) recoverFromSnapshot(r io.Reader, done <-chan struct{}) error {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	version := binary.LittleEndian.Uint32(h[8:])
	if string(h[:8]) != snapshotMagic || version < 1 || version > snapshotVersion {
		return fmt.Errorf("%w: not a snapshot (magic %q, version %d)", errBadState, h[:8], version)
	}
	var sh [16]byte
	if _, err := io.ReadFull(r, sh[:]); err != nil {
		return err
	}
	size, err := stateSize(sh[:])
	if err != nil {
		return err
	}
	buf := make([]byte, size)
	copy(buf, sh[:])
	if _, err := io.ReadFull(r, buf[16:]); err != nil {
		return err
	}
	state, err := decodePartitionState(buf)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return sm.ErrSnapshotStopped
	default:
	}
	cr := catchup.NewChunkReader(r)
	if err := s.plugin.Restore(cr, state.lsn); err != nil {
		return fmt.Errorf("plugin restore: %w", err)
	}
	if err := cr.Drain(); err != nil {
		return fmt.Errorf("plugin snapshot: %w", err)
	}
	durable, err := s.plugin.Sync()
	if err != nil {
		return fmt.Errorf("plugin sync: %w", err)
	}
	s.pluginDurable.Store(uint64(durable))
	marker := filepath.Join(s.dir, restoringName)
	if err := writeFileAtomic(marker, nil); err != nil {
		return fmt.Errorf("restore marker: %w", err)
	}
	if err := writeCheckpoint(s.dir, buf); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if version == 1 {
		if err := s.wal.Reset(state.lsn + 1); err != nil {
			return fmt.Errorf("operation log: %w", err)
		}
	} else if err := s.restoreLog(r, state.lsn); err != nil {
		return err
	}
	if err := removeFileDurable(marker); err != nil {
		return fmt.Errorf("restore marker: %w", err)
	}
	s.state, s.skipTo = state, 0
	s.publish()
	s.ckptIndex, s.ckptLSN, s.ckptAt = state.index, state.lsn, time.Now()
	s.log.Info("replica restored from a snapshot", "lsn", state.lsn, "index", state.index, "log_first", s.wal.First())
	return nil
}

// restoreLog replaces the operation log with the snapshot's log section,
// which must end at LSN last, and makes it durable. A failure part way
// leaves the restore marker in place: Open then starts the log after the
// snapshot instead (see open).
//
// The verified frames are written as the sender's log held them, and
// synced every restoreSyncBytes, so that the disk never holds hundreds
// of megabytes of the copy to write back at once: one fsync of all of
// them stalls the other fsyncs of its file system (live appends) for as
// long as it takes. Each sync runs while the next restoreSyncBytes are
// read, verified and written; one runs at a time.
func (s *stateMachine) restoreLog(r io.Reader, last lockstitch.LSN) error {
	reset := false
	var unsynced int
	var syncing chan error // the sync in flight, if any
	waitSync := func() error {
		if syncing == nil {
			return nil
		}
		err := <-syncing
		syncing = nil
		return err
	}
	first, end, err := catchup.ReadLogFrames(r, s.cfg.MaxOpBytes, func(frames []byte, batchFirst, _ wal.LSN) error {
		if !reset {
			if err := s.wal.Reset(batchFirst); err != nil {
				return err
			}
			reset = true
		}
		if _, err := s.wal.AppendFrames(frames); err != nil {
			return err
		}
		if unsynced += len(frames); unsynced >= restoreSyncBytes {
			unsynced = 0
			if err := waitSync(); err != nil {
				return err
			}
			syncing = make(chan error, 1)
			go func(done chan<- error) { done <- s.wal.Sync() }(syncing)
		}
		return nil
	})
	if serr := waitSync(); err == nil && serr != nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("operation log from the snapshot: %w", err)
	}
	if end != last {
		return fmt.Errorf("%w: the snapshot's log ends at LSN %d, its state at %d", catchup.ErrCorrupt, end, last)
	}
	if !reset {
		if err := s.wal.Reset(last + 1); err != nil {
			return fmt.Errorf("operation log: %w", err)
		}
	}
	if err := s.wal.Sync(); err != nil {
		return fmt.Errorf("operation log: %w", err)
	}
	s.log.Info("operation log restored from the snapshot", "first", first, "last", end)
	return nil
}

// restoreSyncBytes is how much of a copy's log restoreLog writes between
// fsyncs.
const restoreSyncBytes = 8 << 20

// Close implements sm.IOnDiskStateMachine: what was applied becomes
// durable, so a clean restart replays nothing.
func (s *stateMachine) Close() error {
	if s.wal == nil {
		// Never opened: the state opened for it (if dragonboat stopped
		// the replica before its Open) is released here.
		if o := s.pending; o != nil {
			s.pending = nil
			return o.close()
		}
		return nil
	}
	// Holding ckptMu keeps a timed checkpoint from racing with the close.
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	var errs []error
	if err := s.syncPlugin(); err != nil {
		errs = append(errs, err)
	}
	if err := s.checkpointLocked(); err != nil {
		errs = append(errs, fmt.Errorf("checkpoint: %w", err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.ready.Store(false)
	if err := s.plugin.Close(); err != nil {
		errs = append(errs, fmt.Errorf("plugin close: %w", err))
	}
	if err := s.wal.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		// Close errors do not stop the node; what was not made durable
		// is replayed by Raft at the next start.
		s.log.Error("closing replica", "err", err)
	}
	return nil
}

// contextFromStop returns a context cancelled when stop is closed.
func contextFromStop(stop <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
