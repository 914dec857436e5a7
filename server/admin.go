package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
)

// Cluster administration. Any node serves every admin op (see
// transport.AdminOp): it coordinates cluster-wide ops itself, asking the
// other nodes with the internal ops (start, stop, await, prepare), and
// forwards a partition's membership and leadership ops to a node that
// hosts the partition. Every op is safe to repeat. Errors are package
// lockstitch's sentinels: a bad request is lockstitch.ErrInvalidArgument,
// a node that cannot be reached lockstitch.ErrUnavailable.

// invalid returns an ErrInvalidArgument error.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", lockstitch.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// admin serves one admin request; it is the Handler's Admin.
func (n *Node) admin(ctx context.Context, req *transport.AdminRequest, res *transport.AdminResult) error {
	if !req.Op.Valid() {
		return invalid("unknown admin op %d", uint8(req.Op))
	}
	if req.Kind != 0 && !req.Kind.Valid() {
		return invalid("replica kind %d", req.Kind)
	}
	if needsPartition(req.Op) && req.Partition == 0 {
		return invalid("%v needs a partition id (0 is reserved)", req.Op)
	}
	var err error
	switch req.Op {
	case transport.AdminCreatePartition:
		var placed []transport.Placement
		placed, err = n.createPartition(ctx, req)
		for _, p := range placed {
			if p.Kind == lockstitch.Witness {
				res.Witnesses = append(res.Witnesses, p)
			} else {
				res.Placement = append(res.Placement, p)
			}
		}
	case transport.AdminDeletePartition:
		err = n.deletePartition(ctx, req.Partition)
	case transport.AdminListPartitions:
		res.Partitions, err = n.listPartitions(ctx, req.Node, req.Forwarded)
	case transport.AdminAddReplica:
		res.Replica, err = n.addReplica(ctx, req)
	case transport.AdminRemoveReplica:
		err = n.removeReplica(ctx, req)
	case transport.AdminTransferLeader:
		err = n.transferLeader(ctx, req)
	case transport.AdminClusterStatus:
		res.Nodes = n.clusterStatus(ctx)
	case transport.AdminStartReplica:
		err = n.startReplica(ctx, req)
	case transport.AdminStopReplica:
		err = n.stopReplica(ctx, req.Partition, req.Replica)
	case transport.AdminAwaitReplica:
		err = n.awaitReplica(ctx, req.Partition)
	case transport.AdminPrepareReplica:
		err = n.prepareReplica(req, res)
	case transport.AdminRepairReplica:
		res.Replica, err = n.repairReplica(ctx, req)
	}
	return err
}

// needsPartition reports whether op is about one partition.
func needsPartition(op transport.AdminOp) bool {
	switch op {
	case transport.AdminListPartitions, transport.AdminClusterStatus:
		return false
	}
	return true
}

// peer returns the cluster's node id, or an ErrInvalidArgument error.
func (n *Node) peer(id lockstitch.NodeID) (Peer, error) {
	for _, p := range n.cfg.peers() {
		if p.ID == id {
			return p, nil
		}
	}
	return Peer{}, invalid("node %d is not in the cluster", id)
}

// placement chooses the nodes of a new partition's replicas: those named,
// or Replicas of them (default three, or the cluster size) spread so that
// partition p starts at node (p-1) mod N.
func (n *Node) placement(req *transport.AdminRequest) ([]Peer, error) {
	peers := n.cfg.peers()
	if len(req.Nodes) > 0 {
		if req.Replicas != 0 && int(req.Replicas) != len(req.Nodes) {
			return nil, invalid("%d replicas asked for on %d nodes", req.Replicas, len(req.Nodes))
		}
		var chosen []Peer
		for _, id := range req.Nodes {
			p, err := n.peer(id)
			if err != nil {
				return nil, err
			}
			if slices.ContainsFunc(chosen, func(c Peer) bool { return c.ID == id }) {
				return nil, invalid("node %d is listed twice", id)
			}
			chosen = append(chosen, p)
		}
		return chosen, nil
	}
	count := int(req.Replicas)
	if count == 0 {
		count = min(3, len(peers))
	}
	if count > len(peers) {
		return nil, invalid("%d replicas asked for, the cluster has %d nodes", count, len(peers))
	}
	start := int((uint64(req.Partition) - 1) % uint64(len(peers)))
	chosen := make([]Peer, count)
	for i := range chosen {
		chosen[i] = peers[(start+i)%len(peers)]
	}
	return chosen, nil
}

// createPartition places a new partition's replicas and starts them, in
// three steps: every node checks that it can (the chosen ones must all
// answer; no node may host the partition otherwise or have deleted it),
// the chosen nodes start their replicas, and each waits until its replica
// knows its leader. If a start fails, the replicas this request started
// are deleted again, which spends the id; the first step makes that rare
// (a node down, a plugin missing, an id in use or deleted fail there).
func (n *Node) createPartition(ctx context.Context, req *transport.AdminRequest) ([]transport.Placement, error) {
	if req.Plugin == "" {
		req.Plugin = replicator.LogPluginName
	}
	if req.Kind != 0 || req.Replica != 0 || req.Join || len(req.Members) > 0 {
		return nil, invalid("create-partition takes a partition, a plugin, its options, and replicas or nodes")
	}
	chosen, err := n.placement(req)
	if err != nil {
		return nil, err
	}
	witnesses, err := n.witnessPlacement(req, chosen)
	if err != nil {
		return nil, err
	}
	start := transport.AdminRequest{Op: transport.AdminStartReplica, Partition: req.Partition, Plugin: req.Plugin, Options: req.Options}
	placement := make([]transport.Placement, len(chosen))
	for i, p := range chosen {
		id := lockstitch.ReplicaID(i + 1)
		start.Members = append(start.Members, transport.Member{Replica: id, RaftAddr: p.RaftAddr})
		placement[i] = transport.Placement{Replica: id, Node: p.ID, Kind: lockstitch.Voter}
	}
	isWitness := func(node lockstitch.NodeID) bool {
		return slices.ContainsFunc(witnesses, func(w Peer) bool { return w.ID == node })
	}
	replicaOn := func(node lockstitch.NodeID) lockstitch.ReplicaID {
		for _, pl := range placement {
			if pl.Node == node {
				return pl.Replica
			}
		}
		return 0
	}

	// 1. Prepare: every node checks, in parallel.
	peers := n.cfg.peers()
	existing := map[lockstitch.NodeID]bool{}
	errs := n.onNodesResult(ctx, peers, func(p Peer) *transport.AdminRequest {
		r := start
		r.Op, r.Replica = transport.AdminPrepareReplica, replicaOn(p.ID)
		if isWitness(p.ID) {
			r.Kind = lockstitch.Witness
		}
		return &r
	}, func(i int, res *transport.AdminResult) {
		if res.Replica != 0 {
			existing[peers[i].ID] = true // a repeated request
		}
	})
	var refused []error
	for i, err := range errs {
		p := peers[i]
		switch {
		case err == nil:
		case errors.Is(err, lockstitch.ErrUnavailable) && replicaOn(p.ID) == 0 && !isWitness(p.ID):
			n.log.Warn("create partition: a node that gets no replica cannot be reached", "partition", uint64(req.Partition), "peer", uint64(p.ID), "err", err)
		default:
			refused = append(refused, fmt.Errorf("node %d: %w", p.ID, err))
		}
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("partition %d not created: %w", req.Partition, errors.Join(refused...))
	}

	// 2. Start the replicas, in parallel. From here on the caller going
	// away must not leave the create half done (or roll it back, which
	// spends the id): the steps run to their end, within AdminTimeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.AdminTimeout)
	defer cancel()
	errs = n.onNodes(ctx, chosen, func(p Peer) *transport.AdminRequest {
		r := start
		r.Replica = replicaOn(p.ID)
		return &r
	})
	var failed []error
	for i, err := range errs {
		if err != nil {
			failed = append(failed, fmt.Errorf("starting replica %d on node %d: %w", replicaOn(chosen[i].ID), chosen[i].ID, err))
		}
	}
	if len(failed) > 0 {
		var undo []Peer
		for _, p := range chosen {
			if !existing[p.ID] {
				undo = append(undo, p)
			}
		}
		for i, err := range n.onNodes(ctx, undo, func(p Peer) *transport.AdminRequest {
			return &transport.AdminRequest{Op: transport.AdminStopReplica, Partition: req.Partition, Replica: replicaOn(p.ID)}
		}) {
			if err != nil {
				failed = append(failed, fmt.Errorf("deleting replica %d on node %d again: %w (delete the partition to finish)", replicaOn(undo[i].ID), undo[i].ID, err))
			}
		}
		// Replicas that started may have talked to each other: their ids,
		// and so the partition's, are spent (see Retired).
		// The causes are not wrapped: the answer is ErrReplicaDeleted, not
		// a retryable one of theirs.
		return nil, fmt.Errorf("%w: partition %d not created, and its id is spent (create it under another): %v", lockstitch.ErrReplicaDeleted, req.Partition, errors.Join(failed...))
	}

	// 3. Wait until every replica knows its leader.
	for i, err := range n.onNodes(ctx, chosen, func(Peer) *transport.AdminRequest {
		return &transport.AdminRequest{Op: transport.AdminAwaitReplica, Partition: req.Partition}
	}) {
		if err != nil {
			return placement, fmt.Errorf("%w: partition %d created, but replica %d on node %d does not know its leader yet: %w",
				lockstitch.ErrUnavailable, req.Partition, replicaOn(chosen[i].ID), chosen[i].ID, err)
		}
	}
	// 4. Add the witnesses, one at a time (each is a membership change).
	// add-replica is safe to repeat: a witness added by an earlier try of
	// this request is found and left as it is.
	// A partition just created may drop the membership read until its
	// leader has committed in its term: that is retried.
	for _, w := range witnesses {
		add := &transport.AdminRequest{Op: transport.AdminAddReplica, Partition: req.Partition, Node: w.ID, Kind: lockstitch.Witness}
		id, err := n.addReplica(ctx, add)
		for retry := time.Duration(10 * time.Millisecond); errors.Is(err, lockstitch.ErrUnavailable) && ctx.Err() == nil; retry = min(2*retry, time.Second) {
			select {
			case <-ctx.Done():
			case <-time.After(retry):
				id, err = n.addReplica(ctx, add)
			}
		}
		if err != nil {
			return placement, fmt.Errorf("partition %d created with its voters, but its witness on node %d was not added (repeat the request): %w", req.Partition, w.ID, err)
		}
		placement = append(placement, transport.Placement{Replica: id, Node: w.ID, Kind: lockstitch.Witness})
	}
	n.log.Info("partition created", "partition", uint64(req.Partition), "plugin", req.Plugin, "placement", placement)
	return placement, nil
}

// witnessPlacement chooses the nodes of a new partition's witnesses:
// those named, or req.Witnesses of them, the next nodes after the voters
// in the order placement uses. A node gets a voter or a witness, not both.
func (n *Node) witnessPlacement(req *transport.AdminRequest, voters []Peer) ([]Peer, error) {
	isVoter := func(id lockstitch.NodeID) bool {
		return slices.ContainsFunc(voters, func(v Peer) bool { return v.ID == id })
	}
	if len(req.WitnessNodes) > 0 {
		if req.Witnesses != 0 && int(req.Witnesses) != len(req.WitnessNodes) {
			return nil, invalid("%d witnesses asked for on %d nodes", req.Witnesses, len(req.WitnessNodes))
		}
		var chosen []Peer
		for _, id := range req.WitnessNodes {
			p, err := n.peer(id)
			if err != nil {
				return nil, err
			}
			if isVoter(id) || slices.ContainsFunc(chosen, func(c Peer) bool { return c.ID == id }) {
				return nil, invalid("node %d is listed twice (a node gets one replica of a partition)", id)
			}
			chosen = append(chosen, p)
		}
		return chosen, nil
	}
	if req.Witnesses == 0 {
		return nil, nil
	}
	peers := n.cfg.peers()
	if len(voters)+int(req.Witnesses) > len(peers) {
		return nil, invalid("%d voters and %d witnesses asked for, the cluster has %d nodes", len(voters), req.Witnesses, len(peers))
	}
	start := int((uint64(req.Partition) - 1) % uint64(len(peers)))
	var chosen []Peer
	for i := 0; len(chosen) < int(req.Witnesses); i++ {
		if p := peers[(start+i)%len(peers)]; !isVoter(p.ID) {
			chosen = append(chosen, p)
		}
	}
	return chosen, nil
}

// prepareReplica checks that this node could start the replica req
// describes, without starting it. For a new partition (not Join), the
// node must host no other replica of it and never have deleted one
// (req.Replica 0 checks that alone, for a node that gets no replica); for
// a replica joining, that replica id must not have been deleted here.
// When the node hosts the replica already, as asked, it says so in
// res.Replica: the request is repeated.
func (n *Node) prepareReplica(req *transport.AdminRequest, res *transport.AdminResult) error {
	if p, err := n.r.Partition(req.Partition); err == nil {
		switch {
		case req.Replica != 0 && sameReplica(p, req):
			res.Replica = p.Replica()
			return nil
		case req.Replica == 0 && !req.Join && req.Kind == lockstitch.Witness && p.Kind() == lockstitch.Witness &&
			p.Plugin() == req.Plugin && maps.Equal(p.Options(), req.Options):
			// A repeated create whose witness was added here.
			res.Replica = p.Replica()
			return nil
		case req.Join && p.Replica() < req.Replica:
			return fmt.Errorf("%w: node %d is still deleting replica %d of partition %d", lockstitch.ErrUnavailable, n.cfg.ID, p.Replica(), req.Partition)
		}
		return fmt.Errorf("%w: node %d hosts replica %d of partition %d (plugin %s), not as asked", lockstitch.ErrPartitionExists, n.cfg.ID, p.Replica(), req.Partition, p.Plugin())
	}
	gone := n.r.Retired(req.Partition)
	switch {
	case req.Join && slices.Contains(gone, req.Replica):
		return fmt.Errorf("%w: node %d deleted replica %d of partition %d", lockstitch.ErrReplicaDeleted, n.cfg.ID, req.Replica, req.Partition)
	case !req.Join && len(gone) > 0:
		return fmt.Errorf("%w: node %d deleted replicas %v of partition %d: a deleted partition's id cannot be used again",
			lockstitch.ErrReplicaDeleted, n.cfg.ID, gone, req.Partition)
	}
	if req.Replica != 0 || req.Kind == lockstitch.Witness {
		if _, ok := n.r.Config().Plugins[req.Plugin]; !ok {
			return fmt.Errorf("%w: node %d has no plugin %q", lockstitch.ErrPluginNotFound, n.cfg.ID, req.Plugin)
		}
	}
	return nil
}

// sameReplica reports whether p is the replica req describes: the same
// id, plugin and options, and the same initial members (a new partition)
// or kind (a replica that joined). Only then is a start or a create a
// repeat: a replica with the same id and other members would give a
// replica id two addresses, which dragonboat answers by stopping the
// process.
func sameReplica(p *replicator.Partition, req *transport.AdminRequest) bool {
	if p.Replica() != req.Replica || p.Plugin() != req.Plugin || !maps.Equal(p.Options(), req.Options) {
		return false
	}
	members := p.InitialMembers()
	if req.Join {
		kind := req.Kind
		if kind == 0 {
			kind = lockstitch.Voter
		}
		return members == nil && p.Kind() == kind
	}
	if len(members) != len(req.Members) {
		return false
	}
	for _, m := range req.Members {
		if a, ok := members[m.Replica]; !ok || a != m.RaftAddr {
			return false
		}
	}
	return true
}

// startReplica starts this node's replica described by req. A replica
// that runs already as described is a repeated request.
func (n *Node) startReplica(ctx context.Context, req *transport.AdminRequest) error {
	if req.Replica == 0 {
		return invalid("start-replica needs a replica id")
	}
	if req.Join == (len(req.Members) > 0) {
		return invalid("start-replica needs members (a new partition) or join, not both")
	}
	if p, err := n.r.Partition(req.Partition); err == nil {
		if sameReplica(p, req) {
			return nil // a repeated request
		}
		if !req.Join || p.Replica() >= req.Replica {
			return fmt.Errorf("%w: node %d hosts replica %d of partition %d, not as asked", lockstitch.ErrPartitionExists, n.cfg.ID, p.Replica(), req.Partition)
		}
		// An older replica of the partition, removed, is still being
		// deleted: the caller retries (the error is retryable).
		return fmt.Errorf("%w: node %d is still deleting replica %d of partition %d", lockstitch.ErrUnavailable, n.cfg.ID, p.Replica(), req.Partition)
	}
	if gone := n.r.Retired(req.Partition); !req.Join && len(gone) > 0 {
		return fmt.Errorf("%w: node %d deleted replicas %v of partition %d: a deleted partition's id cannot be used again",
			lockstitch.ErrReplicaDeleted, n.cfg.ID, gone, req.Partition)
	}
	var err error
	if req.Join {
		_, err = n.r.JoinPartition(replicator.JoinSpec{
			Partition: req.Partition, Replica: req.Replica, Kind: req.Kind, Plugin: req.Plugin, Options: req.Options,
		})
	} else {
		members := make(map[lockstitch.ReplicaID]string, len(req.Members))
		for _, m := range req.Members {
			if _, dup := members[m.Replica]; m.Replica == 0 || dup || m.RaftAddr == "" {
				return invalid("member replica id %d is 0 or listed twice, or has no address", m.Replica)
			}
			members[m.Replica] = m.RaftAddr
		}
		if members[req.Replica] != n.cfg.RaftAddr {
			return invalid("replica %d is not at this node's Raft address %s", req.Replica, n.cfg.RaftAddr)
		}
		_, err = n.r.CreatePartition(replicator.PartitionSpec{ID: req.Partition, Plugin: req.Plugin, Options: req.Options, Replicas: members})
	}
	return err
}

// stopReplica deletes this node's replica of a partition: any replica,
// or only the one replica names.
func (n *Node) stopReplica(ctx context.Context, id lockstitch.PartitionID, replica lockstitch.ReplicaID) error {
	p, err := n.r.Partition(id)
	if errors.Is(err, lockstitch.ErrPartitionNotFound) || err == nil && replica != 0 && p.Replica() != replica {
		return nil // not hosted here
	}
	if err != nil {
		return err
	}
	err = n.r.DeletePartition(ctx, id)
	if errors.Is(err, lockstitch.ErrPartitionNotFound) {
		return nil
	}
	return err
}

// awaitReplica waits until this node's replica of a partition is open
// and knows its leader.
func (n *Node) awaitReplica(ctx context.Context, id lockstitch.PartitionID) error {
	p, err := n.r.Partition(id)
	if err != nil {
		return err
	}
	return p.WaitReady(ctx)
}

// deletePartition deletes every replica of a partition.
func (n *Node) deletePartition(ctx context.Context, id lockstitch.PartitionID) error {
	peers := n.cfg.peers()
	var failed []error
	for i, err := range n.onNodes(ctx, peers, func(Peer) *transport.AdminRequest {
		return &transport.AdminRequest{Op: transport.AdminStopReplica, Partition: id}
	}) {
		if err != nil {
			failed = append(failed, fmt.Errorf("node %d: %w", peers[i].ID, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("partition %d not deleted everywhere (repeat the request): %w", id, errors.Join(failed...))
	}
	n.log.Info("partition deleted", "partition", uint64(id))
	return nil
}

// listPartitions lists the partitions of one node (node != 0), or merges
// every reachable node's list.
func (n *Node) listPartitions(ctx context.Context, node lockstitch.NodeID, forwarded bool) ([]transport.PartitionInfo, error) {
	if node == n.cfg.ID {
		return n.localPartitions(ctx), nil
	}
	if node != 0 {
		if forwarded {
			return nil, invalid("list-partitions of node %d forwarded to node %d: the nodes' peer lists disagree", node, n.cfg.ID)
		}
		p, err := n.peer(node)
		if err != nil {
			return nil, err
		}
		res, err := n.onNode(ctx, p, &transport.AdminRequest{Op: transport.AdminListPartitions, Node: node, Forwarded: true})
		if err != nil {
			return nil, err
		}
		return res.Partitions, nil
	}
	peers := n.cfg.peers()
	lists := make([][]transport.PartitionInfo, len(peers))
	errs := n.onNodesResult(ctx, peers, func(p Peer) *transport.AdminRequest {
		return &transport.AdminRequest{Op: transport.AdminListPartitions, Node: p.ID, Forwarded: p.ID != n.cfg.ID}
	}, func(i int, res *transport.AdminResult) { lists[i] = res.Partitions })
	byID := map[lockstitch.PartitionID]*transport.PartitionInfo{}
	var reached int
	for i, list := range lists {
		if errs[i] != nil {
			continue
		}
		reached++
		for _, pi := range list {
			m := byID[pi.Partition]
			if m == nil {
				m = &transport.PartitionInfo{Partition: pi.Partition, Plugin: pi.Plugin}
				byID[pi.Partition] = m
			}
			m.Replicas = append(m.Replicas, pi.Replicas...)
			if pi.Leader != 0 {
				m.Leader, m.LeaderReplica = pi.Leader, pi.LeaderReplica
			}
			m.Epoch = max(m.Epoch, pi.Epoch)
			m.Committed = max(m.Committed, pi.Committed)
		}
	}
	if reached == 0 {
		return nil, fmt.Errorf("%w: no node answered: %w", lockstitch.ErrUnavailable, errors.Join(errs...))
	}
	out := make([]transport.PartitionInfo, 0, len(byID))
	for _, pi := range byID {
		out = append(out, *pi)
	}
	slices.SortFunc(out, func(a, b transport.PartitionInfo) int { return cmpUint(a.Partition, b.Partition) })
	return out, nil
}

func cmpUint[T ~uint64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// localPartitions lists the replicas this node hosts.
func (n *Node) localPartitions(ctx context.Context) []transport.PartitionInfo {
	var out []transport.PartitionInfo
	for _, id := range n.r.Partitions() {
		p, err := n.r.Partition(id)
		if err != nil {
			continue
		}
		pi := transport.PartitionInfo{Partition: id, Plugin: p.Plugin()}
		ri := transport.ReplicaInfo{Node: n.cfg.ID, Replica: p.Replica(), Role: lockstitch.RoleUnknown}
		if p.Quarantine() != nil {
			ri.Role = lockstitch.RoleQuarantined
		} else if st, err := p.Status(ctx); err == nil {
			ri.Role, ri.Applied = st.Role, st.AppliedLSN
			pi.Epoch, pi.Committed = st.Epoch, st.CommittedLSN
			if st.Role == lockstitch.RoleLeader {
				pi.Leader, pi.LeaderReplica = n.cfg.ID, p.Replica()
			}
		}
		pi.Replicas = []transport.ReplicaInfo{ri}
		out = append(out, pi)
	}
	return out
}

// forward sends a partition's request to another node that can serve
// it: the first that does not answer lockstitch.ErrPartitionNotFound
// (which a node without the partition, or whose replica cannot serve the
// request, answers to a forwarded request) or lockstitch.ErrUnavailable.
// It fails with ErrPartitionNotFound only if every other node said so.
func (n *Node) forward(ctx context.Context, req *transport.AdminRequest) (*transport.AdminResult, error) {
	var errs []error
	notFound := true
	for _, p := range n.cfg.peers() {
		if p.ID == n.cfg.ID {
			continue
		}
		fwd := *req
		fwd.Forwarded = true // p serves it itself
		res, err := n.onNode(ctx, p, &fwd)
		if err == nil || !errors.Is(err, lockstitch.ErrPartitionNotFound) && !errors.Is(err, lockstitch.ErrUnavailable) {
			return res, err
		}
		notFound = notFound && errors.Is(err, lockstitch.ErrPartitionNotFound)
		errs = append(errs, fmt.Errorf("node %d: %v", p.ID, err))
	}
	if notFound {
		return nil, fmt.Errorf("%w: partition %d: no node hosts a replica that can serve %v: %v", lockstitch.ErrPartitionNotFound, req.Partition, req.Op, errors.Join(errs...))
	}
	return nil, fmt.Errorf("%w: partition %d: no node that hosts it can serve %v now: %v", lockstitch.ErrUnavailable, req.Partition, req.Op, errors.Join(errs...))
}

// hosted returns this node's replica of req's partition when it can
// serve a membership or leadership change of it; else, for a request not
// forwarded yet, the answer of a node that can (the other result). A
// witness cannot serve one (it has no state to read the membership
// from), nor can a quarantined replica (it does not run), nor a replica
// whose removal is asked: it may stop in the middle. To a forwarded request, such a node answers
// lockstitch.ErrPartitionNotFound, and the forwarder asks the next.
func (n *Node) hosted(ctx context.Context, req *transport.AdminRequest) (*replicator.Partition, *transport.AdminResult, error) {
	p, err := n.r.Partition(req.Partition)
	switch {
	case err != nil && !errors.Is(err, lockstitch.ErrPartitionNotFound):
		return nil, nil, err
	case err == nil && p.Quarantine() != nil:
		err = fmt.Errorf("%w: node %d holds replica %d of partition %d quarantined, which cannot serve %v", lockstitch.ErrPartitionNotFound, n.cfg.ID, p.Replica(), req.Partition, req.Op)
	case err == nil && p.Kind() == lockstitch.Witness:
		err = fmt.Errorf("%w: node %d hosts a witness of partition %d, which cannot serve %v", lockstitch.ErrPartitionNotFound, n.cfg.ID, req.Partition, req.Op)
	case err == nil && req.Op == transport.AdminRemoveReplica && p.Replica() == req.Replica && !lastReplica(ctx, p):
		err = fmt.Errorf("%w: node %d hosts replica %d of partition %d, the one to remove: another host runs the change", lockstitch.ErrPartitionNotFound, n.cfg.ID, req.Replica, req.Partition)
	case err == nil:
		return p, nil, nil
	}
	if req.Forwarded {
		return nil, nil, err
	}
	res, err := n.forward(ctx, req)
	return nil, res, err
}

// lastReplica reports whether p is its partition's only member (removing
// it is then refused, here).
func lastReplica(ctx context.Context, p *replicator.Partition) bool {
	m, err := p.Membership(ctx)
	return err == nil && len(m.Replicas) == 1
}

// addReplica adds a replica of a partition on another node. It checks
// that the node can host it before changing the membership.
func (n *Node) addReplica(ctx context.Context, req *transport.AdminRequest) (lockstitch.ReplicaID, error) {
	if req.Replica != 0 || req.Join {
		return 0, invalid("add-replica takes a partition, a node and a kind; the replica id is chosen")
	}
	kind := req.Kind
	if kind == 0 {
		kind = lockstitch.Voter
	}
	if req.Node == 0 {
		return 0, invalid("add-replica needs the node to host the replica")
	}
	target, err := n.peer(req.Node)
	if err != nil {
		return 0, err
	}
	p, fwd, err := n.hosted(ctx, req)
	if p == nil {
		if fwd != nil {
			return fwd.Replica, err
		}
		return 0, err
	}
	m, err := p.Membership(ctx)
	if err != nil {
		return 0, err
	}
	id := m.NextReplicaID()
	added := false
	for rid, mem := range m.Replicas {
		if mem.RaftAddress != target.RaftAddr {
			continue
		}
		// A repeated request: the replica is there already; make sure
		// its node has started it.
		joinedAs := kind
		if kind == lockstitch.Voter {
			joinedAs = lockstitch.NonVoting // voters join as non-voting first
		}
		if mem.Kind != kind && mem.Kind != joinedAs {
			return 0, fmt.Errorf("%w: node %d already hosts replica %d of partition %d, a %s", lockstitch.ErrPartitionExists, target.ID, rid, req.Partition, mem.Kind)
		}
		id, added = rid, true
	}
	start := transport.AdminRequest{Op: transport.AdminStartReplica, Partition: req.Partition, Replica: id, Plugin: p.Plugin(), Options: p.Options(), Join: true, Kind: kind}
	if !added {
		check := start
		check.Op = transport.AdminPrepareReplica
		if _, err := n.onNode(ctx, target, &check); err != nil {
			return 0, fmt.Errorf("node %d cannot host a replica of partition %d: %w", target.ID, req.Partition, err)
		}
		if err := n.r.AddReplica(ctx, p.ID(), id, target.RaftAddr, kind); err != nil {
			if errors.Is(err, lockstitch.ErrInvalidArgument) {
				// The id was free in the membership just read: a
				// concurrent change took it. A repeat picks another.
				return 0, fmt.Errorf("%w: partition %d: replica id %d was taken meanwhile (repeat the request): %v", lockstitch.ErrUnavailable, req.Partition, id, err)
			}
			return 0, err
		}
	}
	if _, err := n.onNode(ctx, target, &start); err != nil {
		return id, fmt.Errorf("replica %d added to partition %d, but node %d did not start it (repeat the request): %w", id, req.Partition, target.ID, err)
	}
	return id, nil
}

// removeReplica removes a replica from its partition, then has the node
// that hosts it delete it. A removed replica learns of its removal only
// if it applies the change, which the others stop sending it once they
// have: it cannot be left to find out.
func (n *Node) removeReplica(ctx context.Context, req *transport.AdminRequest) error {
	if req.Replica == 0 {
		return invalid("remove-replica needs a replica id")
	}
	p, _, err := n.hosted(ctx, req)
	if p == nil {
		return err
	}
	m, err := p.Membership(ctx)
	if err != nil {
		return err
	}
	if _, ok := m.Replicas[req.Replica]; !ok && !slices.Contains(m.Removed, req.Replica) {
		return invalid("replica %d is not a member of partition %d", req.Replica, req.Partition)
	}
	if _, ok := m.Replicas[req.Replica]; ok && len(m.Replicas) == 1 {
		return invalid("replica %d is the last of partition %d: delete the partition instead", req.Replica, req.Partition)
	}
	if err := n.r.RemoveReplica(ctx, req.Partition, req.Replica); err != nil {
		return err
	}
	peers := n.cfg.peers()
	var failed []error
	for i, err := range n.onNodes(ctx, peers, func(Peer) *transport.AdminRequest {
		return &transport.AdminRequest{Op: transport.AdminStopReplica, Partition: req.Partition, Replica: req.Replica}
	}) {
		if err != nil {
			failed = append(failed, fmt.Errorf("node %d: %w", peers[i].ID, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("replica %d removed from partition %d, but not yet deleted everywhere (repeat the request): %w", req.Replica, req.Partition, errors.Join(failed...))
	}
	return nil
}

// transferLeader moves a partition's leadership to a voting replica. A
// non-voting target may be a voter still catching up before its
// promotion: the transfer waits for it until ctx ends.
func (n *Node) transferLeader(ctx context.Context, req *transport.AdminRequest) error {
	if req.Replica == 0 {
		return invalid("transfer-leader needs the replica id to lead")
	}
	p, _, err := n.hosted(ctx, req)
	if p == nil {
		return err
	}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		m, err := p.Membership(ctx)
		if err != nil {
			return err
		}
		switch mem, ok := m.Replicas[req.Replica]; {
		case !ok:
			return invalid("replica %d is not a member of partition %d", req.Replica, req.Partition)
		case mem.Kind == lockstitch.Voter:
			return n.r.TransferLeader(ctx, req.Partition, req.Replica)
		case mem.Kind != lockstitch.NonVoting:
			return invalid("replica %d of partition %d is a %s: only a voter can lead", req.Replica, req.Partition, mem.Kind)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: replica %d of partition %d is still non-voting (catching up, if it joined as a voter): only a voter can lead: %w",
				lockstitch.ErrUnavailable, req.Replica, req.Partition, ctx.Err())
		case <-t.C:
		}
	}
}

// clusterStatus describes every node as this one reaches it.
func (n *Node) clusterStatus(ctx context.Context) []transport.NodeInfo {
	peers := n.cfg.peers()
	out := make([]transport.NodeInfo, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		out[i] = transport.NodeInfo{Node: p.ID, RaftAddr: p.RaftAddr, ClientAddr: p.ClientAddr}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := n.peerStatus(ctx, p)
			if err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].Reachable = true
			out[i].Partitions = uint32(len(st.Partitions))
			for _, ps := range st.Partitions {
				if ps.Role == lockstitch.RoleLeader {
					out[i].Leading++
				}
			}
		}()
	}
	wg.Wait()
	return out
}

// onNodes sends each peer its request (nil: none), in parallel, and
// returns each one's error, by index.
func (n *Node) onNodes(ctx context.Context, peers []Peer, req func(Peer) *transport.AdminRequest) []error {
	return n.onNodesResult(ctx, peers, req, nil)
}

// onNodesResult is onNodes that also hands each answer to got, from the
// calling goroutine.
func (n *Node) onNodesResult(ctx context.Context, peers []Peer, req func(Peer) *transport.AdminRequest, got func(int, *transport.AdminResult)) []error {
	errs := make([]error, len(peers))
	results := make([]*transport.AdminResult, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		r := req(p)
		if r == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = n.onNode(ctx, p, r)
		}()
	}
	wg.Wait()
	if got != nil {
		for i, res := range results {
			if errs[i] == nil && res != nil {
				got(i, res)
			}
		}
	}
	return errs
}

// onNode serves req on peer: here if it is this node, else over the
// transport. A node that cannot be reached is lockstitch.ErrUnavailable.
func (n *Node) onNode(ctx context.Context, peer Peer, req *transport.AdminRequest) (*transport.AdminResult, error) {
	if peer.ID == n.cfg.ID {
		var res transport.AdminResult
		if err := n.admin(ctx, req, &res); err != nil {
			return nil, err
		}
		return &res, nil
	}
	cl, err := n.peerClient(ctx, peer)
	if err != nil {
		return nil, err
	}
	res, err := cl.Admin(ctx, peer.ClientAddr, req)
	return res, peerRefusal(peer, err)
}

func (n *Node) peerStatus(ctx context.Context, peer Peer) (*transport.NodeStatus, error) {
	if peer.ID == n.cfg.ID {
		return n.status(ctx, &transport.StatusRequest{})
	}
	cl, err := n.peerClient(ctx, peer)
	if err != nil {
		return nil, err
	}
	st, err := cl.Status(ctx, peer.ClientAddr)
	return st, peerRefusal(peer, err)
}

// peerRefusal turns a peer's refusal of this node's own credentials or
// certificate (Unauthenticated, PermissionDenied, a failed TLS handshake)
// into Unavailable, the cause kept as text: the client that asked this
// node did nothing wrong, and must not be told its token was refused.
func peerRefusal(peer Peer, err error) error {
	if errors.Is(err, transport.ErrUnauthenticated) || errors.Is(err, transport.ErrPermissionDenied) || errors.Is(err, transport.ErrTLS) {
		return fmt.Errorf("%w: node %d at %s refused this node's peer credentials (--peer-token-file, the auth file, the certificates): %v", lockstitch.ErrUnavailable, peer.ID, peer.ClientAddr, err)
	}
	return err
}

// peerClient returns the node's client of another node, dialing it the
// first time: the admin steps of a create (prepare, start, await, on
// every node) and forwarded requests share one connection per peer
// instead of a dial and a handshake each. A client reconnects by itself
// after a lost connection; one that failed to dial is not kept. The
// clients close with the node.
func (n *Node) peerClient(ctx context.Context, peer Peer) (*transport.Client, error) {
	n.peerMu.Lock()
	cl := n.peerClients[peer.ID]
	n.peerMu.Unlock()
	if cl != nil {
		return cl, nil
	}
	cl, err := n.dialPeer(ctx, peer)
	if err != nil {
		return nil, err
	}
	n.peerMu.Lock()
	defer n.peerMu.Unlock()
	switch old := n.peerClients[peer.ID]; {
	case n.peerClients == nil: // the node closed meanwhile
		cl.Close()
		return nil, fmt.Errorf("%w: node %d is closing", lockstitch.ErrShuttingDown, n.cfg.ID)
	case old != nil: // dialed meanwhile by another request
		cl.Close()
		return old, nil
	}
	n.peerClients[peer.ID] = cl
	return cl, nil
}

// closePeerClients closes the clients of peerClient; later calls dial no
// more.
func (n *Node) closePeerClients() {
	n.peerMu.Lock()
	clients := n.peerClients
	n.peerClients = nil
	n.peerMu.Unlock()
	for _, cl := range clients {
		cl.Close()
	}
}

// dialPeer connects to another node; a node that does not answer is
// lockstitch.ErrUnavailable.
func (n *Node) dialPeer(ctx context.Context, peer Peer) (*transport.Client, error) {
	cfg := transport.DefaultClientConfig()
	cfg.Name = fmt.Sprintf("lockstitch-node-%d", n.cfg.ID)
	cfg.MaxAttempts = 3
	cfg.TLS, cfg.Credentials = n.peerTLS, n.peerToken
	cl, err := transport.Dial(ctx, cfg, peer.ClientAddr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		if refused := peerRefusal(peer, err); refused != err {
			return nil, refused
		}
		return nil, fmt.Errorf("%w: node %d at %s cannot be reached: %w", lockstitch.ErrUnavailable, peer.ID, peer.ClientAddr, err)
	}
	return cl, nil
}
