package replicator

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4/client"
	"github.com/lni/dragonboat/v4/config"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/lockstitch/lockstitch"
)

// Partition is this node's replica of one partition: the handle through
// which its stream is appended to, read, followed and queried. It is safe
// for concurrent use. A Partition is valid until the partition is deleted
// or the Replicator closed; calls then fail with ErrPartitionNotFound or
// ErrClosed.
type Partition struct {
	*partition
}

type partition struct {
	r       *Replicator
	id      lockstitch.PartitionID
	replica lockstitch.ReplicaID
	dir     string
	meta    partitionMeta
	factory PluginFactory
	// opened is the replica's state, opened when the replica was
	// started, handed to the state machine dragonboat creates.
	opened atomic.Pointer[openedReplica]
	// quarantine is why the replica is quarantined: its state failed to
	// open, and dragonboat does not run it (nil: it is not).
	quarantine atomic.Pointer[Quarantine]
	log        *slog.Logger
	session    *client.Session
	batcher    *batcher

	sm atomic.Pointer[stateMachine] // set when dragonboat creates it

	// The leader as last reported by dragonboat's events.
	leader atomic.Uint64
	term   atomic.Uint64
	// leaderLost is set when the replica, having known a leader, knows
	// none (it campaigns), and cleared when it knows one again.
	leaderLost atomic.Bool

	roleMu   sync.Mutex // serializes role notifications to the plugin
	lastRole lockstitch.Role

	// freshAt is when the last read index that this replica has applied
	// was requested: its state includes every op committed before then.
	freshAt atomic.Int64 // unix nanoseconds

	// reported is the applied LSN of this replica's last committed
	// progress report.
	reported atomic.Uint64

	// Maintenance state, used by the maintenance goroutine only.
	lastReportAt  time.Time
	addrAt        time.Time
	lastRetention time.Time

	// For a replica that joined to become a voter: promoting while its
	// promotion runs, voter once the membership lists it as one.
	promoting atomic.Bool
	voter     atomic.Bool

	removed atomic.Bool
	// waking is set while WakeQuiesced wakes the replica (quiesce.go).
	waking atomic.Bool

	// readyC is closed, and replaced, whenever Ready may have changed:
	// the replica opened or closed, or learnt of a leader (see changed).
	readyMu sync.Mutex
	readyC  chan struct{}

	// Size-triggered snapshots (Config.SnapshotBytes): wanted when the
	// state machine asks for one, snapshotting while a request runs, and
	// sizeSnapshot the Raft index of the last one taken.
	snapshotWanted atomic.Bool
	snapshotting   atomic.Bool
	sizeSnapshot   atomic.Uint64
	// logRemoved is how far Raft's log has been removed (dragonboat's
	// LogCompacted event), logCompacted how far the LogDB was last asked
	// to compact it (maintain only).
	logRemoved   atomic.Uint64
	logCompacted uint64

	// forgetMu serializes deleting the replica; forgotten is set once it
	// is deleted.
	forgetMu  sync.Mutex
	forgotten bool
}

func newPartition(r *Replicator, meta partitionMeta, factory PluginFactory) *partition {
	p := &partition{
		r:       r,
		id:      meta.Partition,
		replica: meta.Replica,
		dir:     partitionDir(r.cfg.DataDir, meta.Partition),
		meta:    meta,
		factory: factory,
		log:     r.log.With("partition", uint64(meta.Partition), "replica", uint64(meta.Replica)),
		session: r.nh.GetNoOPSession(uint64(meta.Partition)),
	}
	p.batcher = newBatcher(p)
	return p
}

// create is the dragonboat factory of this replica's state machine; it
// hands it the state opened when the replica started.
func (p *partition) create(shardID, replicaID uint64) sm.IOnDiskStateMachine {
	s := newStateMachine(p)
	s.pending = p.opened.Swap(nil)
	p.sm.Store(s)
	return s
}

// raftConfig is the dragonboat configuration of this replica.
func (p *partition) raftConfig() config.Config {
	c := p.r.cfg
	rc := config.Config{
		ShardID:             uint64(p.id),
		ReplicaID:           uint64(p.replica),
		ElectionRTT:         c.ElectionRTT,
		HeartbeatRTT:        c.HeartbeatRTT,
		CheckQuorum:         true,
		PreVote:             true,
		Quiesce:             c.Quiesce,
		SnapshotEntries:     c.SnapshotEntries,
		CompactionOverhead:  c.CompactionOverhead,
		OrderedConfigChange: true,
		// A replica that joined as non-voting says so at every start,
		// promoted or not (dragonboat requires it).
		IsNonVoting: p.meta.Join && p.meta.Kind != lockstitch.Witness,
		IsWitness:   p.meta.Kind == lockstitch.Witness,
		// Removing entries from Raft's log deletes them in the LogDB;
		// dragonboat would also force a LogDB compaction of the range
		// after every snapshot, flushing live entries with the dead. The
		// LogDB's own compactions drop deleted entries as they go, and
		// retention asks for a compaction now and then (maintain.go).
		DisableAutoCompactions: true,
	}
	if rc.IsWitness {
		rc.SnapshotEntries, rc.CompactionOverhead = 0, 0
	}
	return rc
}

// ID returns the partition's id.
func (p *Partition) ID() lockstitch.PartitionID { return p.id }

// Replica returns this node's replica id in the partition.
func (p *Partition) Replica() lockstitch.ReplicaID { return p.replica }

// Ready reports, from this replica's local state alone, whether it is
// open and knows its partition's leader.
func (p *Partition) Ready() bool {
	_, err := p.state()
	return err == nil && p.leader.Load() != 0
}

// WaitReady waits until Ready is true, ctx ends (its error is returned)
// or the replica is deleted (lockstitch.ErrPartitionNotFound) or closed
// (lockstitch.ErrClosed).
func (p *Partition) WaitReady(ctx context.Context) error {
	for {
		ch := p.changes()
		if p.Ready() {
			return nil
		}
		if err := p.usable(); err != nil {
			return err
		}
		p.r.mu.RLock()
		closed := p.r.closed
		p.r.mu.RUnlock()
		if closed {
			return fmt.Errorf("%w: partition %d", lockstitch.ErrClosed, p.id)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// changes returns a channel that changed closes: a caller takes it, then
// looks at the replica's state, then waits on it.
func (p *partition) changes() <-chan struct{} {
	p.readyMu.Lock()
	defer p.readyMu.Unlock()
	if p.readyC == nil {
		p.readyC = make(chan struct{})
	}
	return p.readyC
}

// lostLeader reports, with an ErrUnavailable error, a voting follower that
// knew a leader and knows none any more: it has missed its leader for an
// election timeout and campaigns (Raft's pre-vote clears the leader), so
// it is cut off or its partition has no quorum. Its log stops growing;
// what it serves may still be read, but a follower of the stream is
// better served elsewhere. A replica that has not yet learnt its first
// leader since it started is not reported.
func (p *partition) lostLeader() error {
	if !p.leaderLost.Load() || p.leader.Load() != 0 || p.meta.Kind == lockstitch.Witness || p.role() == lockstitch.RoleNonVoting {
		return nil
	}
	return fmt.Errorf("%w: partition %d: replica %d has lost touch with its leader", lockstitch.ErrUnavailable, p.id, p.replica)
}

// changed wakes the callers of WaitReady to look again.
func (p *partition) changed() {
	p.readyMu.Lock()
	if p.readyC != nil {
		close(p.readyC)
		p.readyC = nil
	}
	p.readyMu.Unlock()
}

// Committed returns the last LSN this replica knows to be committed: its
// applied LSN, or on a follower the leader's applied LSN as last reported
// when that is higher. It is 0 while the replica opens.
func (p *Partition) Committed() lockstitch.LSN { return p.committed() }

// Applied returns the last LSN this replica has applied (0 while it
// opens). Every op up to it is in the replica's operation log.
func (p *Partition) Applied() lockstitch.LSN {
	s := p.sm.Load()
	if s == nil {
		return 0
	}
	return lockstitch.LSN(s.applied.Load())
}

// committed is the last LSN this replica knows to be committed.
func (p *partition) committed() lockstitch.LSN {
	s := p.sm.Load()
	if s == nil {
		return 0
	}
	c := lockstitch.LSN(s.applied.Load())
	if !p.isLeader() {
		s.progressMu.Lock()
		if r, ok := s.progress[lockstitch.ReplicaID(p.leader.Load())]; ok && r.applied > c {
			c = r.applied
		}
		s.progressMu.Unlock()
	}
	return c
}

// Plugin returns the name of the partition's plugin.
func (p *Partition) Plugin() string { return p.meta.Plugin }

// Kind returns what this replica was created or joined as (a voter that
// joined is non-voting until it is promoted; see Status for its role).
func (p *Partition) Kind() lockstitch.Kind { return p.meta.Kind }

// InitialMembers returns the replica set the partition was created with
// (replica id -> Raft address), when this replica was one of them; nil
// for a replica that joined later.
func (p *Partition) InitialMembers() map[lockstitch.ReplicaID]string {
	if len(p.meta.Members) == 0 {
		return nil
	}
	out := make(map[lockstitch.ReplicaID]string, len(p.meta.Members))
	for id, a := range p.meta.Members {
		out[id] = a
	}
	return out
}

// state returns the open state machine, or ErrUnavailable while it opens.
func (p *partition) state() (*stateMachine, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	s := p.sm.Load()
	if s == nil || !s.ready.Load() {
		return nil, fmt.Errorf("%w: partition %d is not open", lockstitch.ErrUnavailable, p.id)
	}
	return s, nil
}

// usable returns lockstitch.ErrPartitionNotFound for a deleted replica,
// a quarantined replica's error, else nil.
func (p *partition) usable() error {
	if p.removed.Load() {
		return fmt.Errorf("%w: %d", lockstitch.ErrPartitionNotFound, p.id)
	}
	if q := p.quarantine.Load(); q != nil {
		return q.err()
	}
	return nil
}

// isLeader reports whether this replica leads, as far as it knows.
func (p *partition) isLeader() bool { return p.leader.Load() == uint64(p.replica) }

// leaderOnly returns nil on the leader, else a *NotLeaderError.
func (p *partition) leaderOnly() error {
	if p.isLeader() {
		return nil
	}
	return p.notLeader()
}

func (p *partition) notLeader() error {
	e := &lockstitch.NotLeaderError{Partition: p.id, Leader: lockstitch.ReplicaID(p.leader.Load())}
	if s := p.sm.Load(); s != nil && e.Leader != 0 {
		s.mu.RLock()
		if s.state != nil {
			e.LeaderAddr = s.state.addrs[e.Leader]
		}
		s.mu.RUnlock()
	}
	return e
}

// leaderTerm confirms with dragonboat that this replica leads and returns
// its term.
func (p *partition) leaderTerm() (uint64, error) {
	leader, term, valid, err := p.r.nh.GetLeaderID(uint64(p.id))
	if err != nil {
		return 0, fmt.Errorf("%w: partition %d: %v", lockstitch.ErrUnavailable, p.id, err)
	}
	if !valid || leader != uint64(p.replica) {
		return 0, p.notLeader()
	}
	return term, nil
}

// onLeader records a leadership change reported by dragonboat. It runs on
// dragonboat's event goroutine and must return at once.
func (p *partition) onLeader(leader, term uint64) {
	was := p.isLeader()
	p.term.Store(term)
	if leader == 0 && p.leader.Load() != 0 {
		p.leaderLost.Store(true)
	} else if leader != 0 {
		p.leaderLost.Store(false)
	}
	p.leader.Store(leader)
	p.changed()
	if was && leader != uint64(p.replica) {
		// Not on dragonboat's event goroutine: notLeader may wait for
		// the state machine's lock.
		go func() {
			if p.isLeader() {
				return // elected again meanwhile: its batches go on
			}
			nl := p.notLeader()
			p.batcher.failQueued(nl)
			p.batcher.abandonFlying(fmt.Errorf("%w: partition %d: this replica lost its leadership while the append was in flight; it may commit under the new leader (%v)", lockstitch.ErrAborted, p.id, nl))
		}()
	}
	go p.notifyRole()
}

// role returns this replica's role as far as it knows.
func (p *partition) role() lockstitch.Role {
	switch {
	case p.quarantine.Load() != nil:
		return lockstitch.RoleQuarantined
	case p.isLeader():
		return lockstitch.RoleLeader
	case p.meta.Kind == lockstitch.Witness:
		return lockstitch.RoleWitness
	case p.meta.Join && p.meta.Kind == lockstitch.NonVoting:
		return lockstitch.RoleNonVoting
	case p.meta.Join && p.meta.Kind == lockstitch.Voter && !p.voter.Load():
		return lockstitch.RoleNonVoting
	}
	return lockstitch.RoleFollower
}

// notifyRole tells a plugin that implements RoleObserver about a change of
// role. Bursts collapse: it reports the role as of when it runs.
func (p *partition) notifyRole() {
	p.roleMu.Lock()
	defer p.roleMu.Unlock()
	s, err := p.state()
	if err != nil {
		return
	}
	role := p.role()
	if role == p.lastRole {
		return
	}
	p.lastRole = role
	p.log.Info("role changed", "role", role.String(), "leader", p.leader.Load(), "term", p.term.Load())
	s.mu.Lock()
	defer s.mu.Unlock()
	if obs, ok := s.plugin.(RoleObserver); ok && !s.closed {
		// The current term: a new leader's ops will carry it, while the
		// state's epoch is still that of the last op applied.
		obs.RoleChanged(role, max(lockstitch.Epoch(p.term.Load()), s.state.epoch))
	}
}

// Append appends one op and waits until it is committed by a quorum and
// applied on this replica. Only the leader accepts appends; a follower
// returns a *NotLeaderError naming the leader. If ctx has ended, nothing
// is appended; if it ends while the op is queued or in flight, Append
// returns ctx.Err() at once and the op may still commit.
func (p *Partition) Append(ctx context.Context, op AppendOp) (AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return AppendResult{}, err
	}
	w := appendWaiters.Get().(*appendWaiter)
	watched, err := p.enqueueOne(ctx, op, w)
	if err != nil {
		appendWaiters.Put(w)
		return AppendResult{}, err
	}
	if watched || ctx.Done() == nil {
		// The batcher ends the wait if ctx ends first: with many appends
		// sharing a context, that is cheaper than each selecting on it.
		<-w.done
	} else {
		select {
		case <-w.done:
		case <-ctx.Done():
			// The batcher still holds w and will complete it: not reused.
			return AppendResult{}, ctx.Err()
		}
	}
	if w.state.Load() == waiterCanceled {
		return AppendResult{}, w.err // not reused either
	}
	res, err := w.res, w.err
	w.res, w.err = AppendResult{}, nil
	w.state.Store(waiterWaiting)
	appendWaiters.Put(w)
	return res, err
}

// AppendBatch appends ops in order and waits for all of them. They are
// queued together (all or none), so they get increasing LSNs, but may be
// committed in more than one Raft entry. The result of each op, or its
// error, is at its index; the returned error is the first op error.
func (p *Partition) AppendBatch(ctx context.Context, ops []AppendOp) ([]AppendResult, []error, error) {
	fs := make([]*Future, len(ops))
	cs := make([]Completion, len(ops))
	for i := range fs {
		fs[i] = NewFuture()
		cs[i] = fs[i]
	}
	// The futures wait on ctx themselves: the batcher is not to watch it.
	if _, err := p.batcher.enqueue(context.Background(), append([]AppendOp(nil), ops...), cs); err != nil {
		return nil, nil, err
	}
	results := make([]AppendResult, len(ops))
	errs := make([]error, len(ops))
	var first error
	for i, f := range fs {
		results[i], errs[i] = f.Wait(ctx)
		if errs[i] != nil && first == nil {
			first = errs[i]
		}
	}
	return results, errs, first
}

// AppendAsync queues one op and returns a future of its outcome. An error
// that prevents queueing (not the leader, busy, too large) completes the
// future at once.
func (p *Partition) AppendAsync(op AppendOp) *Future {
	f := NewFuture()
	if err := p.AppendTo(op, f); err != nil {
		f.Complete(AppendResult{}, err)
	}
	return f
}

// AppendBatchTo queues ops in order; cs[i] receives the outcome of
// ops[i] once it is committed and applied here, or fails. Either every op
// is queued or, when AppendBatchTo returns an error, none is and no
// completion is called. The ops get increasing LSNs but may be committed
// in more than one Raft entry. The payloads are copied before
// AppendBatchTo returns; cs is kept until every op has completed.
func (p *Partition) AppendBatchTo(ops []AppendOp, cs []Completion) error {
	if len(ops) != len(cs) {
		return fmt.Errorf("%w: %d ops and %d completions", lockstitch.ErrInvalidArgument, len(ops), len(cs))
	}
	_, err := p.batcher.enqueue(context.Background(), ops, cs)
	return err
}

// AppendTo queues one op; c receives its outcome once it is committed and
// applied here, or fails. If AppendTo returns an error the op was not
// queued and c is not called. This is the allocation-free path for
// servers that pool their completions.
func (p *Partition) AppendTo(op AppendOp, c Completion) error {
	_, err := p.enqueueOne(context.Background(), op, c)
	return err
}

// enqueueOne queues one op for c, without allocating; see
// batcher.enqueue for ctx and what it returns.
func (p *Partition) enqueueOne(ctx context.Context, op AppendOp, c Completion) (watched bool, err error) {
	ops := [1]AppendOp{op}
	cs := [1]Completion{c}
	return p.batcher.enqueue(ctx, ops[:], cs[:])
}

// close stops the partition's goroutines; dragonboat stops the replica.
func (p *partition) close() {
	p.batcher.close()
	p.changed()
	// State opened for the replica that no state machine took (the
	// start failed) is closed here.
	if o := p.opened.Swap(nil); o != nil {
		if err := o.close(); err != nil {
			p.log.Warn("closing the state of a replica that did not start", "err", err)
		}
	}
}
