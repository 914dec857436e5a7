package replicator

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstitch/lockstitch"
)

// PartitionSpec describes a new partition.
type PartitionSpec struct {
	ID      lockstitch.PartitionID
	Plugin  string
	Options map[string]string
	// Replicas is the initial replica set, all voters: each replica's id
	// and the Raft address of the node that hosts it.
	Replicas map[lockstitch.ReplicaID]string
}

// CreatePartition starts this node's replica of a new partition: the one
// in spec.Replicas at this node's Raft address. Every node in
// spec.Replicas must be given the same spec; the partition elects a leader
// once a quorum of them has started.
func (r *Replicator) CreatePartition(spec PartitionSpec) (*Partition, error) {
	if spec.ID == 0 {
		return nil, fmt.Errorf("%w: partition id 0 is reserved", lockstitch.ErrInvalidArgument)
	}
	if _, ok := r.cfg.Plugins[spec.Plugin]; !ok {
		return nil, fmt.Errorf("%w: %q", lockstitch.ErrPluginNotFound, spec.Plugin)
	}
	var self lockstitch.ReplicaID
	for id, addr := range spec.Replicas {
		if id == 0 {
			return nil, fmt.Errorf("%w: replica id 0 is reserved", lockstitch.ErrInvalidArgument)
		}
		if addr == r.cfg.RaftAddress {
			if self != 0 {
				return nil, fmt.Errorf("%w: replicas %d and %d both at this node's address %s", lockstitch.ErrInvalidArgument, self, id, addr)
			}
			self = id
		}
	}
	if self == 0 {
		return nil, fmt.Errorf("%w: no replica of partition %d at this node's address %s", lockstitch.ErrInvalidArgument, spec.ID, r.cfg.RaftAddress)
	}
	if slices.Contains(r.Retired(spec.ID), self) {
		return nil, fmt.Errorf("%w: partition %d replica %d", lockstitch.ErrReplicaDeleted, spec.ID, self)
	}
	return r.create(partitionMeta{
		Partition: spec.ID, Replica: self, Plugin: spec.Plugin, Options: spec.Options,
		Kind: lockstitch.Voter, Members: spec.Replicas,
	})
}

// JoinSpec describes a replica that AddReplica added to a partition.
type JoinSpec struct {
	Partition lockstitch.PartitionID
	Replica   lockstitch.ReplicaID
	// Kind is what the replica is to become (zero means Voter). A voter
	// joins as non-voting, catches up, then promotes itself.
	Kind    lockstitch.Kind
	Plugin  string
	Options map[string]string
}

// JoinPartition starts this node's replica of an existing partition, after
// AddReplica has added it to the membership. It catches up from the other
// replicas (from their logs, or with a copy of the state if it is too far
// behind); a voter is promoted once it has.
func (r *Replicator) JoinPartition(spec JoinSpec) (*Partition, error) {
	if spec.Partition == 0 || spec.Replica == 0 {
		return nil, fmt.Errorf("%w: partition and replica ids must not be 0", lockstitch.ErrInvalidArgument)
	}
	if spec.Kind == 0 {
		spec.Kind = lockstitch.Voter
	}
	if !spec.Kind.Valid() {
		return nil, fmt.Errorf("%w: replica kind %d", lockstitch.ErrInvalidArgument, spec.Kind)
	}
	if _, ok := r.cfg.Plugins[spec.Plugin]; !ok {
		return nil, fmt.Errorf("%w: %q", lockstitch.ErrPluginNotFound, spec.Plugin)
	}
	if slices.Contains(r.Retired(spec.Partition), spec.Replica) {
		return nil, fmt.Errorf("%w: partition %d replica %d", lockstitch.ErrReplicaDeleted, spec.Partition, spec.Replica)
	}
	return r.create(partitionMeta{
		Partition: spec.Partition, Replica: spec.Replica, Plugin: spec.Plugin, Options: spec.Options,
		Kind: spec.Kind, Join: true,
	})
}

// create records m on disk and starts the replica.
func (r *Replicator) create(m partitionMeta) (*Partition, error) {
	dir := partitionDir(r.cfg.DataDir, m.Partition)
	if _, err := readMeta(dir); err == nil {
		return nil, fmt.Errorf("%w: %d", lockstitch.ErrPartitionExists, m.Partition)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("replicator: %w", err)
	}
	if err := writeMeta(dir, m); err != nil {
		return nil, fmt.Errorf("replicator: record partition %d: %w", m.Partition, err)
	}
	p, err := r.start(m, false)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &Partition{p}, nil
}

// AddReplica adds a replica, hosted by the node at raftAddr, to a partition
// this node hosts; that node must then call JoinPartition. A voter is added
// as non-voting and promotes itself once it has caught up (a zero kind
// means Voter). Adding a replica that is already a member at raftAddr
// succeeds.
func (r *Replicator) AddReplica(ctx context.Context, id lockstitch.PartitionID, replica lockstitch.ReplicaID, raftAddr string, kind lockstitch.Kind) error {
	if kind != 0 && !kind.Valid() {
		return fmt.Errorf("%w: replica kind %d", lockstitch.ErrInvalidArgument, kind)
	}
	rid := uint64(replica)
	done := func(m *dragonboat.Membership) (bool, error) {
		if _, gone := m.Removed[rid]; gone {
			return false, fmt.Errorf("%w: replica %d was removed from partition %d", lockstitch.ErrReplicaDeleted, replica, id)
		}
		for _, set := range []map[uint64]string{m.Nodes, m.NonVotings, m.Witnesses} {
			if addr, ok := set[rid]; ok {
				if addr != raftAddr {
					return false, fmt.Errorf("%w: partition %d: replica %d is already a member at %s", lockstitch.ErrInvalidArgument, id, replica, addr)
				}
				return true, nil
			}
		}
		return false, nil
	}
	return r.changeMembership(ctx, id, done, func(ctx context.Context, ccid uint64) error {
		if kind == lockstitch.Witness {
			return r.nh.SyncRequestAddWitness(ctx, uint64(id), rid, raftAddr, ccid)
		}
		return r.nh.SyncRequestAddNonVoting(ctx, uint64(id), rid, raftAddr, ccid)
	})
}

// RemoveReplica removes a replica from a partition this node hosts; its id
// is never reused. Removing a replica that is not a member succeeds. The
// removed replica deletes its data if it applies its own removal, which
// is not certain: the other replicas stop sending it the log once they
// have applied it. Call DeletePartition on its node to be sure. Removing
// this node's own replica succeeds once the replica has applied its
// removal and stopped.
func (r *Replicator) RemoveReplica(ctx context.Context, id lockstitch.PartitionID, replica lockstitch.ReplicaID) error {
	rid := uint64(replica)
	self := false
	if p, err := r.Partition(id); err == nil {
		self = p.Replica() == replica
	}
	done := func(m *dragonboat.Membership) (bool, error) {
		for _, set := range []map[uint64]string{m.Nodes, m.NonVotings, m.Witnesses} {
			if _, ok := set[rid]; ok {
				return false, nil
			}
		}
		return true, nil
	}
	err := r.changeMembership(ctx, id, done, func(ctx context.Context, ccid uint64) error {
		return r.nh.SyncRequestDeleteReplica(ctx, uint64(id), rid, ccid)
	})
	if self && errors.Is(err, lockstitch.ErrPartitionNotFound) {
		return nil // the replica applied its own removal and stopped
	}
	return err
}

// changeMembership applies a membership change with the current config
// change id, unless done reports the membership has it already. It
// retries when another change raced with it or the attempt timed out;
// done tells a timed-out attempt that took effect from one that did not.
// change gets ctx with a deadline, which dragonboat requires.
func (r *Replicator) changeMembership(ctx context.Context, id lockstitch.PartitionID, done func(*dragonboat.Membership) (bool, error), change func(ctx context.Context, ccid uint64) error) error {
	p, err := r.Partition(id)
	if err != nil {
		return err
	}
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	p.wakeFollower(ctx)
	for attempt := 0; attempt < 5; attempt++ {
		var m *dragonboat.Membership
		m, err = r.nh.SyncGetShardMembership(ctx, uint64(id))
		if err == nil {
			var ok bool
			if ok, err = done(m); ok {
				return nil
			}
			if err != nil {
				return err
			}
			err = change(ctx, m.ConfigChangeID)
		}
		if err == nil || ctx.Err() != nil || !(errors.Is(err, dragonboat.ErrRejected) || dragonboat.IsTempError(err)) {
			break
		}
		time.Sleep(r.cfg.RTT)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dragonboat.ErrShardNotFound), errors.Is(err, dragonboat.ErrShardClosed):
		return fmt.Errorf("%w: partition %d: membership change: the replica stopped: %v", lockstitch.ErrPartitionNotFound, id, err)
	case errors.Is(err, dragonboat.ErrRejected), dragonboat.IsTempError(err), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: partition %d: membership change: %v", lockstitch.ErrUnavailable, id, err)
	}
	return fmt.Errorf("replicator: partition %d: membership change: %w", id, err)
}

// TransferLeader makes target the partition's leader. Dragonboat's
// transfer is best effort, so it is retried until target leads or ctx
// ends.
func (r *Replicator) TransferLeader(ctx context.Context, id lockstitch.PartitionID, target lockstitch.ReplicaID) error {
	if _, err := r.Partition(id); err != nil {
		return err
	}
	wait := r.cfg.RTT * time.Duration(2*r.cfg.ElectionRTT)
	for {
		if leader, _, ok, err := r.nh.GetLeaderID(uint64(id)); err == nil && ok && leader == uint64(target) {
			return nil
		}
		if err := r.nh.RequestLeaderTransfer(uint64(id), uint64(target)); err != nil && !dragonboat.IsTempError(err) {
			return fmt.Errorf("%w: partition %d: leader transfer to %d: %v", lockstitch.ErrUnavailable, id, target, err)
		}
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("replicator: partition %d: leader transfer to %d: %w", id, target, ctx.Err())
			case <-time.After(r.cfg.RTT):
			}
			if leader, _, ok, err := r.nh.GetLeaderID(uint64(id)); err == nil && ok && leader == uint64(target) {
				return nil
			}
		}
	}
}

// DeletePartition stops this node's replica of a partition and deletes its
// data. To delete a partition, delete every replica of it.
func (r *Replicator) DeletePartition(ctx context.Context, id lockstitch.PartitionID) error {
	r.mu.RLock()
	p, ok := r.parts[id]
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: %d", lockstitch.ErrPartitionNotFound, id)
	}
	return r.forgetCtx(ctx, p, "deleted")
}

// forget deletes a replica this node no longer hosts.
func (r *Replicator) forget(p *partition, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.forgetCtx(ctx, p, reason); err != nil {
		p.log.Error("deleting replica data", "err", err)
	}
}

// forgetCtx deletes p's replica: its Raft data and its directory. A
// tombstone written first makes the deletion survive a crash: the next
// start finishes it instead of starting the replica (see
// finishDeletions). It may be called again after an error, and
// concurrently: the steps are idempotent and run one caller at a time.
func (r *Replicator) forgetCtx(ctx context.Context, p *partition, reason string) error {
	p.forgetMu.Lock()
	defer p.forgetMu.Unlock()
	if p.forgotten {
		return nil
	}
	if err := r.retired.add(p.id, p.replica); err != nil {
		return fmt.Errorf("replicator: delete partition %d: %w", p.id, err)
	}
	p.removed.Store(true)
	p.close()
	if err := writeFileAtomic(filepath.Join(p.dir, tombstoneName), nil); err != nil {
		return fmt.Errorf("replicator: delete partition %d: tombstone: %w", p.id, err)
	}
	if err := r.nh.StopReplica(uint64(p.id), uint64(p.replica)); err != nil && !errors.Is(err, dragonboat.ErrShardNotFound) {
		return fmt.Errorf("replicator: stop partition %d: %w", p.id, err)
	}
	ctx, cancel := r.withDeadline(ctx)
	defer cancel()
	var err error
	for {
		err = r.nh.SyncRemoveData(ctx, uint64(p.id), uint64(p.replica))
		if !errors.Is(err, dragonboat.ErrShardNotStopped) || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("replicator: remove Raft data of partition %d: %w", p.id, err)
	}
	r.mu.Lock()
	if r.parts[p.id] == p {
		delete(r.parts, p.id)
	}
	r.mu.Unlock()
	if err := removeReplicaDir(p.dir); err != nil {
		return fmt.Errorf("replicator: delete partition %d: %w", p.id, err)
	}
	p.forgotten = true
	p.forgetQuiesced()
	p.log.Info("replica deleted", "reason", reason)
	return nil
}

// finishDeletions completes the deletions a crash interrupted: replicas
// with a tombstone get their Raft data removed, then their directories.
func (r *Replicator) finishDeletions(pending []pendingDeletion) error {
	for _, d := range pending {
		if d.meta != nil {
			if err := r.retired.add(d.meta.Partition, d.meta.Replica); err != nil {
				return err
			}
			if err := r.nh.RemoveData(uint64(d.meta.Partition), uint64(d.meta.Replica)); err != nil {
				return fmt.Errorf("remove Raft data of partition %d: %w", d.meta.Partition, err)
			}
		}
		if err := removeReplicaDir(d.dir); err != nil {
			return err
		}
		r.log.Info("finished deleting a replica", "dir", d.dir)
	}
	return nil
}

// Membership is a partition's replica set as Raft has committed it.
type Membership struct {
	// Replicas maps each current replica to its Raft address and kind.
	Replicas map[lockstitch.ReplicaID]Member
	// Removed lists replica ids removed from the partition: they can
	// never be used again.
	Removed []lockstitch.ReplicaID
}

// Member is one replica of a Membership.
type Member struct {
	RaftAddress string
	Kind        lockstitch.Kind
}

// NextReplicaID returns the lowest replica id above every id the
// partition has used, current or removed.
func (m Membership) NextReplicaID() lockstitch.ReplicaID {
	var top lockstitch.ReplicaID
	for id := range m.Replicas {
		top = max(top, id)
	}
	for _, id := range m.Removed {
		top = max(top, id)
	}
	return top + 1
}

// Membership returns the partition's replica set, read linearizably
// (through the leader).
func (p *Partition) Membership(ctx context.Context) (Membership, error) {
	ctx, cancel := p.r.withDeadline(ctx)
	defer cancel()
	p.wakeFollower(ctx)
	m, err := p.r.nh.SyncGetShardMembership(ctx, uint64(p.id))
	if err != nil {
		return Membership{}, fmt.Errorf("%w: partition %d: membership: %v", lockstitch.ErrUnavailable, p.id, err)
	}
	out := Membership{Replicas: make(map[lockstitch.ReplicaID]Member)}
	for id, a := range m.Nodes {
		out.Replicas[lockstitch.ReplicaID(id)] = Member{a, lockstitch.Voter}
	}
	for id, a := range m.NonVotings {
		out.Replicas[lockstitch.ReplicaID(id)] = Member{a, lockstitch.NonVoting}
	}
	for id, a := range m.Witnesses {
		out.Replicas[lockstitch.ReplicaID(id)] = Member{a, lockstitch.Witness}
	}
	for id := range m.Removed {
		out.Removed = append(out.Removed, lockstitch.ReplicaID(id))
	}
	return out, nil
}

// Options returns the plugin options the partition was created with.
func (p *Partition) Options() map[string]string {
	out := make(map[string]string, len(p.meta.Options))
	for k, v := range p.meta.Options {
		out[k] = v
	}
	return out
}

// withDeadline gives ctx the proposal timeout as a deadline if it has none:
// dragonboat's synchronous calls need one.
func (r *Replicator) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.cfg.ProposalTimeout)
}
