package replicator

import (
	"context"
	"errors"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstitch/lockstitch"
)

// maintain is the node's housekeeping goroutine: timed checkpoints,
// progress reports, client address registration, promotion of joining
// voters, and log retention, for every partition.
func (r *Replicator) maintain() {
	defer r.wg.Done()
	tick := min(r.cfg.ProgressInterval, r.cfg.CheckpointInterval) / 4
	tick = max(tick, 10*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-r.snapshotKick:
			for _, p := range r.partitions() {
				if p.snapshotWanted.Swap(false) {
					p.requestSnapshot()
				}
			}
		case now := <-t.C:
			for _, p := range r.partitions() {
				p.maintain(now)
			}
		}
	}
}

// partitions returns the partitions this node hosts.
func (r *Replicator) partitions() []*partition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	parts := make([]*partition, 0, len(r.parts))
	for _, p := range r.parts {
		parts = append(parts, p)
	}
	return parts
}

// wantSnapshot is called by the state machine, from Update, once it has
// applied Config.SnapshotBytes of Raft entries since it last called it:
// the maintenance goroutine requests the snapshot.
func (p *partition) wantSnapshot() {
	p.snapshotWanted.Store(true)
	select {
	case p.r.snapshotKick <- struct{}{}:
	default:
	}
}

// requestSnapshot asks dragonboat for a snapshot of this replica (which
// syncs the state machine first) and to compact Raft's log up to the
// previous size-triggered snapshot, or by CompactionOverhead if there was
// none. One request runs at a time: one made while another runs is
// dropped, and the next SnapshotBytes of entries asks again.
func (p *partition) requestSnapshot() {
	if p.meta.Kind == lockstitch.Witness || p.snapshotting.Swap(true) {
		return
	}
	var opt dragonboat.SnapshotOption
	if prev := p.sizeSnapshot.Load(); prev > 0 {
		opt.OverrideCompactionOverhead, opt.CompactionIndex = true, prev
	}
	rs, err := p.r.nh.RequestSnapshot(uint64(p.id), opt, p.r.cfg.ProposalTimeout)
	if err != nil {
		p.snapshotting.Store(false)
		p.log.Debug("size-triggered snapshot not requested", "err", err)
		return
	}
	p.r.wg.Add(1) // maintain holds the group open, so Close waits for this
	go func() {
		defer p.r.wg.Done()
		defer p.snapshotting.Store(false)
		var res dragonboat.RequestResult
		select {
		case res = <-rs.ResultC():
			rs.Release()
		case <-p.r.quit:
			return // closing: the NodeHost closes after this returns
		}
		if res.Completed() {
			p.sizeSnapshot.Store(res.SnapshotIndex())
		} else {
			p.log.Debug("size-triggered snapshot not taken", "rejected", res.Rejected(), "timeout", res.Timeout())
		}
	}()
}

func (p *partition) maintain(now time.Time) {
	s, err := p.state()
	if err != nil {
		return
	}
	if s.checkpointDue(now) {
		if err := s.checkpoint(); err != nil {
			p.log.Error("checkpoint failed", "err", err)
		}
	}
	// A role change reported before the replica opened reaches the
	// plugin here; otherwise this only compares roles.
	p.notifyRole()
	p.reportProgress(s, now)
	p.registerAddress(s, now)
	if p.meta.Join && p.meta.Kind == lockstitch.Voter && !p.voter.Load() && !p.promoting.Swap(true) {
		p.r.wg.Add(1)
		go p.promote()
	}
	// Retention runs every five checkpoint intervals: it is cheap when
	// there is nothing to drop, and segments fill slowly.
	if now.Sub(p.lastRetention) >= 5*p.r.cfg.CheckpointInterval {
		p.lastRetention = now
		p.retain(s, now)
		p.compactLogDB()
	}
}

// compactLogDB asks the LogDB to reclaim the space of removed Raft log
// entries, when more were removed since the last time. Its own
// compactions drop them as they go (partition.raftConfig disables the
// one dragonboat forces after each snapshot); this bounds how long the
// space of an idle partition's entries stays taken.
func (p *partition) compactLogDB() {
	removed := p.logRemoved.Load()
	if removed <= p.logCompacted {
		return
	}
	if _, err := p.r.nh.RequestCompaction(uint64(p.id), uint64(p.replica)); err != nil && !errors.Is(err, dragonboat.ErrRejected) {
		p.log.Debug("log compaction not requested", "err", err)
		return
	}
	p.logCompacted = removed
}

// reportProgress proposes a progress entry when this replica's applied
// LSN differs from its last committed report, at most once per
// ProgressInterval; a report that does not commit is sent again.
func (p *partition) reportProgress(s *stateMachine, now time.Time) {
	applied := lockstitch.LSN(s.applied.Load())
	if applied == lockstitch.LSN(p.reported.Load()) || now.Sub(p.lastReportAt) < p.r.cfg.ProgressInterval ||
		p.meta.Kind == lockstitch.Witness || p.leader.Load() == 0 {
		return
	}
	p.lastReportAt = now
	p.proposeInternal(appendProgressEntry(nil, p.replica, applied), func() {
		p.reported.Store(uint64(applied))
	})
}

// registerAddress records this node's client address in the partition
// state, so that followers can name the leader to clients.
func (p *partition) registerAddress(s *stateMachine, now time.Time) {
	addr := p.r.cfg.ClientAddress
	if addr == "" || p.meta.Kind == lockstitch.Witness || p.leader.Load() == 0 || now.Sub(p.addrAt) < time.Second {
		return
	}
	s.mu.RLock()
	current := s.state.addrs[p.replica]
	s.mu.RUnlock()
	if current == addr {
		return
	}
	p.addrAt = now
	p.proposeInternal(appendAddrEntry(nil, p.replica, addr), nil)
}

// proposeInternal proposes an entry of the replicator's own, calling
// committed if it commits. These entries are idempotent; the maintenance
// loop proposes them again when they do not take.
func (p *partition) proposeInternal(cmd []byte, committed func()) {
	rs, err := p.r.nh.Propose(p.session, cmd, p.r.cfg.ProposalTimeout)
	if err != nil {
		return
	}
	go func() {
		res := <-rs.ResultC()
		rs.Release()
		if res.Completed() && committed != nil {
			committed()
		}
	}()
}

// promote makes this replica, which joined as non-voting to become a
// voter, a voter: once a read index completes on it (it has caught up),
// it asks for its promotion. It retries with backoff until the membership
// lists it as a voter or the node closes.
func (p *partition) promote() {
	defer p.r.wg.Done()
	defer p.promoting.Store(false)
	backoff := 10 * p.r.cfg.RTT
	for {
		if p.tryPromote() {
			p.voter.Store(true)
			go p.notifyRole()
			return
		}
		select {
		case <-p.r.quit:
			return
		case <-time.After(backoff):
		}
		if p.removed.Load() {
			return
		}
		// At most promoteWait: a replica that just caught up (a copy
		// installed) is promoted within a fraction of a second.
		backoff = min(2*backoff, p.r.cfg.promoteWait())
	}
}

func (p *partition) tryPromote() bool {
	ctx, cancel := context.WithTimeout(context.Background(), p.r.cfg.ProposalTimeout)
	defer cancel()
	// The reads are bounded by promoteWait, not the proposal timeout:
	// both are linearizable, so they wait until this replica has applied
	// the leader's commit point, and one asked while a copy is still
	// being installed may not complete at all. Asked again after the
	// backoff, they do not hold the promotion for seconds after the
	// replica caught up.
	rctx, rcancel := context.WithTimeout(ctx, p.r.cfg.promoteWait())
	defer rcancel()
	m, err := p.r.nh.SyncGetShardMembership(rctx, uint64(p.id))
	if err != nil {
		return false
	}
	if _, ok := m.Nodes[uint64(p.replica)]; ok {
		return true
	}
	if _, ok := m.NonVotings[uint64(p.replica)]; !ok {
		return false
	}
	// Caught up: it has applied everything committed before now.
	if err := p.readIndex(rctx, nil); err != nil {
		return false
	}
	err = p.r.nh.SyncRequestAddReplica(ctx, uint64(p.id), uint64(p.replica), p.r.cfg.RaftAddress, m.ConfigChangeID)
	if err != nil {
		p.log.Debug("promotion to voter not done yet", "err", err)
		return false
	}
	p.log.Info("promoted to voter")
	return true
}

// retain drops whole log segments beyond Config.RetainBytes or older than
// Config.RetainAge, but never one holding an op that recovery may still
// need (after the checkpoint or the plugin's last durable LSN), nor one
// holding an op after a durable cursor that lags by at most
// Config.CursorRetainOps; the leader lapses the cursors that lag more.
func (p *partition) retain(s *stateMachine, now time.Time) {
	cfg := p.r.cfg
	hold, overdue := s.cursorHold(lockstitch.LSN(s.applied.Load()))
	p.lapseCursors(overdue)
	if cfg.RetainBytes == 0 && cfg.RetainAge == 0 {
		return
	}
	segs := s.wal.Segments(nil)
	var total int64
	for _, seg := range segs {
		total += seg.Bytes
	}
	// The last LSN that the limits would drop.
	var want lockstitch.LSN
	for _, seg := range segs[:len(segs)-1] {
		tooBig := cfg.RetainBytes > 0 && total > cfg.RetainBytes
		tooOld := cfg.RetainAge > 0 && now.Sub(seg.SealedAt) > cfg.RetainAge
		if !(tooBig || tooOld) {
			break
		}
		total -= seg.Bytes
		want = seg.Last
	}
	if want == 0 {
		return
	}
	if s.retentionFloor() < want {
		// Make the plugin and the checkpoint durable first, so that
		// recovery no longer needs what the limits drop.
		if err := s.Sync(); err != nil {
			p.log.Error("sync before log retention failed", "err", err)
			return
		}
	}
	var cut lockstitch.LSN
	floor := s.retentionFloor()
	for _, seg := range segs[:len(segs)-1] {
		if seg.Last > min(want, floor, hold) {
			break
		}
		cut = seg.Last + 1
	}
	if cut == 0 {
		return
	}
	if n, err := s.wal.TruncateFront(cut); err != nil {
		p.log.Error("log retention failed", "err", err)
	} else if n > 0 {
		p.log.Debug("log retention dropped segments", "segments", n, "first", s.wal.First())
	}
}
