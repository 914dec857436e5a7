package replicator

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstitch/lockstitch"
)

// QueryOptions say how fresh a query's answer must be.
type QueryOptions struct {
	Consistency lockstitch.Consistency
	// MaxStaleness bounds a Bounded answer: the replica answers only
	// if its state includes every op committed more than MaxStaleness
	// ago. It proves that with a Raft read index, which costs one round
	// trip to the leader, at most once per MaxStaleness; a replica too far
	// behind to catch up before ctx ends fails with ErrTooStale.
	MaxStaleness time.Duration
}

// QueryResult is a plugin's answer.
type QueryResult struct {
	Result []byte
	// LSN is the last op applied in the state that answered.
	LSN lockstitch.LSN
	// Staleness is how long ago the answering state was known to hold
	// every committed op: zero for a linearizable answer or a fresh proof.
	Staleness time.Duration
}

// Query asks the partition's plugin a read-only question.
func (p *Partition) Query(ctx context.Context, req []byte, opts QueryOptions) (QueryResult, error) {
	if _, err := p.state(); err != nil {
		return QueryResult{}, err
	}
	if p.meta.Kind == lockstitch.Witness {
		return QueryResult{}, fmt.Errorf("%w: partition %d: a witness holds no state", lockstitch.ErrUnavailable, p.id)
	}
	q := &queryRequest{ctx: ctx, req: req}
	switch opts.Consistency {
	case 0, lockstitch.Linearizable:
		return p.readIndexQuery(ctx, q)
	case lockstitch.LeaderLocal:
		if err := p.leaderOnly(); err != nil {
			return QueryResult{}, err
		}
		return p.localQuery(q, 0)
	case lockstitch.Bounded:
		if fresh := p.freshAt.Load(); fresh != 0 {
			if age := time.Since(time.Unix(0, fresh)); age <= opts.MaxStaleness {
				return p.localQuery(q, age)
			}
		}
		res, err := p.readIndexQuery(ctx, q)
		if err != nil && !errors.Is(err, lockstitch.ErrPartitionNotFound) && !errors.Is(err, lockstitch.ErrClosed) {
			nl := p.notLeader().(*lockstitch.NotLeaderError)
			err = fmt.Errorf("%w: partition %d replica %d could not prove its state fresh: %w; the leader is replica %d at %q", lockstitch.ErrTooStale, p.id, p.replica, err, nl.Leader, nl.LeaderAddr)
		}
		return res, err
	}
	return QueryResult{}, fmt.Errorf("replicator: unknown consistency %d", opts.Consistency)
}

// readIndexQuery confirms the commit point with the leader, waits until
// this replica has applied it, and then answers locally.
func (p *partition) readIndexQuery(ctx context.Context, q *queryRequest) (QueryResult, error) {
	var out QueryResult
	err := p.readIndex(ctx, func(rs *dragonboat.RequestState) error {
		v, err := p.r.nh.ReadLocalNode(rs, q)
		if err != nil {
			return err
		}
		r := v.(*queryResponse)
		out = QueryResult{Result: r.result, LSN: r.lsn}
		return nil
	})
	return out, err
}

// readIndex confirms the commit point with the leader and waits until
// this replica has applied it; then it calls read, if not nil, with the
// completed request. A fresh leader drops read indexes until it commits
// in its term: those are retried, but not on a replica that has lost
// touch with its leader (lostLeader), which fails at once.
func (p *partition) readIndex(ctx context.Context, read func(*dragonboat.RequestState) error) error {
	p.wakeFollower(ctx)
	timeout := p.r.cfg.ProposalTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	for {
		if timeout < p.r.cfg.RTT {
			return fmt.Errorf("%w: partition %d: deadline too short for a read index", lockstitch.ErrUnavailable, p.id)
		}
		start := time.Now()
		rs, err := p.r.nh.ReadIndex(uint64(p.id), timeout)
		if err != nil {
			return proposeError(p.id, err)
		}
		res, err := p.awaitRead(ctx, rs)
		if err != nil {
			// The request completes on its own within its timeout.
			return err
		}
		if res.Completed() {
			p.markFresh(start)
			if read != nil {
				err = read(rs)
			}
			rs.Release()
			return err
		}
		rs.Release()
		if !res.Dropped() || ctx.Err() != nil {
			return fmt.Errorf("%w: partition %d: read index did not complete", lockstitch.ErrUnavailable, p.id)
		}
		// A replica cut off from its leader (a deposed leader among them)
		// cannot confirm a read until it is back: the caller does better
		// on another replica than retrying here until the timeout.
		if err := p.lostLeader(); err != nil {
			return err
		}
		select {
		case <-time.After(p.r.cfg.RTT):
		case <-ctx.Done():
			return ctx.Err()
		}
		timeout -= time.Since(start)
	}
}

// awaitRead waits for a read index's result. It gives up with ctx's
// error, or with lostLeader's when this replica loses touch with its
// leader meanwhile: a deposed leader keeps a read index pending until its
// timeout.
func (p *partition) awaitRead(ctx context.Context, rs *dragonboat.RequestState) (dragonboat.RequestResult, error) {
	for {
		ch := p.changes()
		if err := p.lostLeader(); err != nil {
			return dragonboat.RequestResult{}, err
		}
		select {
		case res := <-rs.ResultC():
			return res, nil
		case <-ch:
		case <-ctx.Done():
			return dragonboat.RequestResult{}, ctx.Err()
		}
	}
}

func (p *partition) markFresh(at time.Time) {
	ns := at.UnixNano()
	for {
		old := p.freshAt.Load()
		if old >= ns || p.freshAt.CompareAndSwap(old, ns) {
			return
		}
	}
}

// localQuery answers from this replica's applied state.
func (p *partition) localQuery(q *queryRequest, staleness time.Duration) (QueryResult, error) {
	v, err := p.r.nh.StaleRead(uint64(p.id), q)
	if err != nil {
		if errors.Is(err, lockstitch.ErrUnavailable) {
			return QueryResult{}, err
		}
		return QueryResult{}, fmt.Errorf("partition %d: %w", p.id, err)
	}
	r := v.(*queryResponse)
	return QueryResult{Result: r.result, LSN: r.lsn, Staleness: staleness}, nil
}

// PartitionStatus describes a partition as this replica sees it.
type PartitionStatus struct {
	Partition lockstitch.PartitionID
	Replica   lockstitch.ReplicaID
	Role      lockstitch.Role
	Plugin    string
	// Leader is the leader's replica id (zero if unknown) and LeaderAddr
	// its client address.
	Leader     lockstitch.ReplicaID
	LeaderAddr string
	Term       uint64
	Epoch      lockstitch.Epoch
	// AppliedLSN is the last op applied here; CommittedLSN the last op
	// this replica knows to be committed (on the leader, the same).
	AppliedLSN   lockstitch.LSN
	CommittedLSN lockstitch.LSN
	// FirstLSN is the first op this replica's log retains.
	FirstLSN lockstitch.LSN
	// Replicas lists the replica set with each replica's progress.

	Replicas []ReplicaStatus
}

// ReplicaStatus is one replica's progress. Replicas report the LSN they
// have applied every Config.ProgressInterval while it changes; Lag is the
// leader's applied LSN minus that report, so it is as of the report.
type ReplicaStatus struct {
	Replica       lockstitch.ReplicaID
	Kind          lockstitch.Kind
	RaftAddress   string
	ClientAddress string
	// AppliedLSN is the LSN the replica last reported, ReportAge how long
	// ago this node applied that report; Reported is false until a report
	// arrived.
	AppliedLSN lockstitch.LSN
	Reported   bool
	ReportAge  time.Duration
	// Lag is how many ops the replica is behind the leader.
	Lag uint64
}

// Status describes the partition. The replica set comes from a
// linearizable read of the membership when a leader is reachable within
// ctx, else from this replica's local view (voters only).
func (p *Partition) Status(ctx context.Context) (PartitionStatus, error) {
	s, err := p.state()
	if err != nil {
		return PartitionStatus{}, err
	}
	st := PartitionStatus{
		Partition:  p.id,
		Replica:    p.replica,
		Role:       p.role(),
		Plugin:     p.meta.Plugin,
		Leader:     lockstitch.ReplicaID(p.leader.Load()),
		Term:       p.term.Load(),
		Epoch:      lockstitch.Epoch(s.epoch.Load()),
		AppliedLSN: lockstitch.LSN(s.applied.Load()),
		FirstLSN:   s.wal.First(),
	}
	// The client addresses are under the state machine's lock, which an
	// apply holds for as long as the plugin takes: a status does not wait
	// long for it, and goes without addresses instead.
	addrs := map[lockstitch.ReplicaID]string{}
	if tryRLockFor(&s.mu, statusLockWait) {
		for id, a := range s.state.addrs {
			addrs[id] = a
		}
		s.mu.RUnlock()
	}
	st.LeaderAddr = addrs[st.Leader]

	members, fromLeader := p.members(ctx)
	if fromLeader {
		// Forget the reports of replicas that left the partition.
		s.pruneProgress(members)
	}
	// The leader's applied LSN: its own, or its last report.
	s.progressMu.Lock()
	reports := make(map[lockstitch.ReplicaID]progressReport, len(s.progress))
	for id, r := range s.progress {
		reports[id] = r
	}
	s.progressMu.Unlock()
	leaderLSN := st.AppliedLSN
	if st.Role != lockstitch.RoleLeader {
		if r, ok := reports[st.Leader]; ok && r.applied > leaderLSN {
			leaderLSN = r.applied
		}
	}
	st.CommittedLSN = leaderLSN
	now := time.Now()
	for _, m := range members {
		rs := ReplicaStatus{Replica: m.id, Kind: m.kind, RaftAddress: m.addr, ClientAddress: addrs[m.id]}
		switch r, ok := reports[m.id]; {
		case m.id == p.replica:
			rs.AppliedLSN, rs.Reported = st.AppliedLSN, true
		case m.id == st.Leader && st.Role != lockstitch.RoleLeader:
			rs.AppliedLSN, rs.Reported, rs.ReportAge = leaderLSN, ok, now.Sub(r.at)
		case ok:
			rs.AppliedLSN, rs.Reported, rs.ReportAge = r.applied, true, now.Sub(r.at)
		}
		if rs.Reported && m.kind != lockstitch.Witness && leaderLSN > rs.AppliedLSN {
			rs.Lag = uint64(leaderLSN - rs.AppliedLSN)
		}
		st.Replicas = append(st.Replicas, rs)
	}
	return st, nil
}

type member struct {
	id   lockstitch.ReplicaID
	kind lockstitch.Kind
	addr string
}

// members returns the replica set, sorted by id, and whether it is the
// committed membership (else this replica's local view of the voters).
func (p *partition) members(ctx context.Context) ([]member, bool) {
	var out []member
	committed := false
	// The committed membership needs a read index, which only a leader
	// can serve: with no leader known, the local view is all there is,
	// at once (a status of a partition that lost its quorum must not
	// hang), and a leader that does not answer within two election
	// timeouts is about to be replaced.
	// A quiet partition's membership cannot have changed without waking
	// it: the local view is current, and reading it leaves it quiet.
	var m *dragonboat.Membership
	err := lockstitch.ErrUnavailable
	if p.leader.Load() != 0 && !p.isQuiesced() {
		mctx, cancel := context.WithTimeout(ctx, 2*p.r.cfg.RTT*time.Duration(p.r.cfg.ElectionRTT))
		m, err = p.r.nh.SyncGetShardMembership(mctx, uint64(p.id))
		cancel()
	}
	if err == nil {
		committed = true
		for id, a := range m.Nodes {
			out = append(out, member{lockstitch.ReplicaID(id), lockstitch.Voter, a})
		}
		for id, a := range m.NonVotings {
			out = append(out, member{lockstitch.ReplicaID(id), lockstitch.NonVoting, a})
		}
		for id, a := range m.Witnesses {
			out = append(out, member{lockstitch.ReplicaID(id), lockstitch.Witness, a})
		}
	} else {
		for id, a := range p.localReplicas() {
			out = append(out, member{lockstitch.ReplicaID(id), lockstitch.Voter, a})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out, committed
}

// pruneProgress drops the progress reports of replicas not in members.
func (s *stateMachine) pruneProgress(members []member) {
	keep := make(map[lockstitch.ReplicaID]bool, len(members))
	for _, m := range members {
		keep[m.id] = true
	}
	s.progressMu.Lock()
	defer s.progressMu.Unlock()
	for id := range s.progress {
		if !keep[id] {
			delete(s.progress, id)
		}
	}
}

var nodeHostInfoNoLog = dragonboat.NodeHostInfoOption{SkipLogInfo: true}

// statusLockWait bounds how long Status waits for the state machine's
// lock.
const statusLockWait = 50 * time.Millisecond

// tryRLockFor read-locks mu if it can within d, and reports whether it
// did.
func tryRLockFor(mu *sync.RWMutex, d time.Duration) bool {
	if mu.TryRLock() {
		return true
	}
	deadline := time.Now().Add(d)
	for wait := 50 * time.Microsecond; time.Now().Before(deadline); wait = min(2*wait, 5*time.Millisecond) {
		time.Sleep(wait)
		if mu.TryRLock() {
			return true
		}
	}
	return false
}
