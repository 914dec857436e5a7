package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
)

// Repair. A replica whose state fails to open when its node starts is
// quarantined by the replicator (see replicator.Quarantine): the node
// serves its other partitions and the replica answers nothing. A repair
// rebuilds it from its peers. Raft does not let a replica come back
// under its own id with less than it acknowledged, so the repair replaces
// it: the quarantined replica is removed from its partition and deleted,
// and a new replica of the same kind is added on the same node, where it
// catches up with a copy (the retained log and the plugin's snapshot)
// like any new replica. It needs the partition to be able to change its
// membership: a quorum of its other replicas up, one of them to copy
// from.

// repairReplica serves AdminRepairReplica: it rebuilds req.Node's
// replica of req.Partition if it is quarantined, on that node.
func (n *Node) repairReplica(ctx context.Context, req *transport.AdminRequest) (lockstitch.ReplicaID, error) {
	if req.Node == 0 {
		return 0, invalid("repair-replica needs the node whose replica to rebuild")
	}
	if req.Node != n.cfg.ID {
		if req.Forwarded {
			return 0, invalid("repair-replica of node %d forwarded to node %d: the nodes' peer lists disagree", req.Node, n.cfg.ID)
		}
		peer, err := n.peer(req.Node)
		if err != nil {
			return 0, err
		}
		fwd := *req
		fwd.Forwarded = true
		res, err := n.onNode(ctx, peer, &fwd)
		if err != nil {
			return 0, err
		}
		return res.Replica, nil
	}
	p, err := n.r.Partition(req.Partition)
	if errors.Is(err, lockstitch.ErrPartitionNotFound) {
		return 0, fmt.Errorf("%w: node %d holds no replica of partition %d to repair (a repair that removed it but could not add its replacement leaves none: add one with add-replica)",
			lockstitch.ErrPartitionNotFound, n.cfg.ID, req.Partition)
	}
	if err != nil {
		return 0, err
	}
	q := p.Quarantine()
	if q == nil {
		return p.Replica(), nil // not quarantined, or repaired already
	}
	return n.rebuild(ctx, *q)
}

// rebuild replaces the quarantined replica q by a new one on this node.
func (n *Node) rebuild(ctx context.Context, q replicator.Quarantine) (lockstitch.ReplicaID, error) {
	log := n.log.With("partition", uint64(q.Partition), "replica", uint64(q.Replica))
	log.Warn("repairing a quarantined replica: removing it, then adding a new replica here", "reason", q.Reason)
	// This node's replica does not run, so hosted passes the removal to
	// a node whose replica does; that node then has every node delete
	// the replica, this one included.
	rm := &transport.AdminRequest{Op: transport.AdminRemoveReplica, Partition: q.Partition, Replica: q.Replica}
	if err := n.removeReplica(ctx, rm); err != nil {
		// The removal may have committed and only some node (one that
		// is down, and hosts nothing of it) failed to confirm its
		// deletion: once this node's replica is gone, the repair goes on.
		if _, perr := n.r.Partition(q.Partition); !errors.Is(perr, lockstitch.ErrPartitionNotFound) {
			return 0, fmt.Errorf("repair of partition %d replica %d: removing it: %w", q.Partition, q.Replica, err)
		}
		log.Warn("the quarantined replica was removed and deleted here, but not every node confirmed it", "err", err)
	}
	id, err := n.replace(ctx, q)
	if err != nil {
		return 0, err
	}
	log.Info("quarantined replica replaced; the new replica catches up from its peers", "new_replica", uint64(id))
	return id, nil
}

// replace adds the replica that replaces q, removed, on this node.
func (n *Node) replace(ctx context.Context, q replicator.Quarantine) (lockstitch.ReplicaID, error) {
	kind := q.Kind
	if kind == 0 {
		kind = lockstitch.Voter
	}
	add := &transport.AdminRequest{Op: transport.AdminAddReplica, Partition: q.Partition, Node: n.cfg.ID, Kind: kind}
	id, err := n.addReplica(ctx, add)
	if err != nil {
		return id, fmt.Errorf("repair of partition %d: replica %d was removed, but its replacement was not added (repeat the repair, or add-replica): %w", q.Partition, q.Replica, err)
	}
	return id, nil
}

// RepairPolicy says when a node repairs its quarantined replicas by
// itself. The zero value repairs nothing.
type RepairPolicy struct {
	// Auto turns automatic repair on.
	Auto bool
	// First is how long after the node starts the first attempt is made
	// (its peers elect leaders meanwhile); a failed attempt is retried
	// after twice the previous wait, up to Max.
	First, Max time.Duration
}

// DefaultRepairPolicy repairs automatically, 5 s after the start, then
// retries from 10 s up to every 5 minutes.
func DefaultRepairPolicy() RepairPolicy {
	return RepairPolicy{Auto: true, First: 5 * time.Second, Max: 5 * time.Minute}
}

// validate reports what is wrong with the policy.
func (p RepairPolicy) validate() error {
	if p.Auto && (p.First <= 0 || p.Max < p.First) {
		return fmt.Errorf("repair waits: first %v must be positive and max %v at least first", p.First, p.Max)
	}
	return nil
}

// next returns the wait after one of wait.
func (p RepairPolicy) next(wait time.Duration) time.Duration {
	return min(2*wait, p.Max)
}

// repairLoop repairs this node's quarantined replicas, retrying under
// the policy until none is left or the node closes. Replicas are
// quarantined only when the node opens, so the loop then ends. A
// replica that was removed but not replaced is retried too: the loop
// remembers it (a restart forgets it, and the partition then has one
// replica fewer, as listed, until add-replica).
func (n *Node) repairLoop(quit <-chan struct{}) {
	removed := map[lockstitch.PartitionID]replicator.Quarantine{}
	wait := n.cfg.Repair.First
	// Each step is bounded by AdminTimeout and ends when the node closes.
	stepCtx := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.AdminTimeout)
		go func() {
			select {
			case <-quit:
				cancel()
			case <-ctx.Done():
			}
		}()
		return ctx, cancel
	}
	closing := func() bool {
		select {
		case <-quit:
			return true
		default:
			return false
		}
	}
	for {
		select {
		case <-quit:
			return
		case <-time.After(wait):
		}
		todo := n.r.Quarantined()
		if len(todo) == 0 && len(removed) == 0 {
			return
		}
		failed := false
		for _, q := range todo {
			if closing() {
				return
			}
			ctx, cancel := stepCtx()
			_, err := n.rebuild(ctx, q)
			cancel()
			if err != nil {
				failed = true
				n.log.Error("automatic repair failed; it is retried", "partition", uint64(q.Partition), "replica", uint64(q.Replica), "retry_in", n.cfg.Repair.next(wait), "err", err)
				if _, err := n.r.Partition(q.Partition); errors.Is(err, lockstitch.ErrPartitionNotFound) {
					removed[q.Partition] = q
				}
			}
		}
		for id, q := range removed {
			if closing() {
				return
			}
			if _, err := n.r.Partition(id); err == nil {
				delete(removed, id) // a replica is back, by an operator's hand
				continue
			}
			ctx, cancel := stepCtx()
			nid, err := n.replace(ctx, q)
			cancel()
			if err != nil {
				failed = true
				n.log.Error("automatic repair failed; it is retried", "partition", uint64(id), "replica", uint64(q.Replica), "retry_in", n.cfg.Repair.next(wait), "err", err)
				continue
			}
			delete(removed, id)
			n.log.Info("quarantined replica replaced; the new replica catches up from its peers", "partition", uint64(id), "new_replica", uint64(nid))
		}
		if failed {
			wait = n.cfg.Repair.next(wait)
		}
	}
}
