package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
)

// AdminRequest is the JSON body of an Admin request to a node. Op says
// what to do; the other fields are its arguments.
//
//	create_partition  Partition, Plugin, Options, Replicas (how many,
//	                  default 3 or the cluster size) or Nodes (which)
//	delete_partition  Partition: every node deletes its replica
//	list_partitions   every node's partitions, merged
//	add_member        Partition, Node (the node to host the new replica),
//	                  Kind (voter, non-voting, witness): answers Replica; a
//	                  repeat answers the replica already added
//	remove_member     Partition, Replica
//	transfer_leader   Partition, Replica
//	start_replica     Spec (between nodes: start this node's replica)
//	stop_replica      Partition (between nodes: delete this node's replica)
//
// Every op is safe to repeat: creating what exists or deleting what is
// gone succeeds.
type AdminRequest struct {
	Op        string            `json:"op"`
	Partition uint64            `json:"partition,omitempty"`
	Plugin    string            `json:"plugin,omitempty"`
	Options   map[string]string `json:"options,omitempty"`
	Replicas  int               `json:"replicas,omitempty"`
	Nodes     []uint64          `json:"nodes,omitempty"`
	Node      uint64            `json:"node,omitempty"`
	Kind      string            `json:"kind,omitempty"`
	Replica   uint64            `json:"replica,omitempty"`
	Spec      *ReplicaSpec      `json:"spec,omitempty"`
}

// ReplicaSpec tells a node to start its replica of a partition.
type ReplicaSpec struct {
	Partition uint64            `json:"partition"`
	Replica   uint64            `json:"replica"`
	Plugin    string            `json:"plugin"`
	Options   map[string]string `json:"options,omitempty"`
	// Members is the initial replica set (replica id -> Raft address) of
	// a new partition; empty for a replica joining an existing one.
	Members map[uint64]string `json:"members,omitempty"`
	Join    bool              `json:"join,omitempty"`
	Kind    string            `json:"kind,omitempty"`
}

// AdminResponse is the JSON answer of a node to an Admin request.
type AdminResponse struct {
	// Replicas placed by create_partition: replica id -> node id.
	Placement map[uint64]uint64 `json:"placement,omitempty"`
	// Replica added by add_member.
	Replica uint64 `json:"replica,omitempty"`
	// Partitions listed by list_partitions.
	Partitions []PartitionInfo `json:"partitions,omitempty"`
}

// PartitionInfo describes a partition in list_partitions.
type PartitionInfo struct {
	Partition uint64          `json:"partition"`
	Leader    uint64          `json:"leader"`
	Epoch     uint64          `json:"epoch"`
	Committed uint64          `json:"committed"`
	Replicas  []ReplicaOnNode `json:"replicas"`
}

// ReplicaOnNode is one node's replica in list_partitions.
type ReplicaOnNode struct {
	Node    uint64 `json:"node"`
	Role    string `json:"role"`
	Applied uint64 `json:"applied"`
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", transport.ErrInvalidArgument, fmt.Sprintf(format, args...))
}

// serveAdmin is the node's replicator.AdminFunc.
func (n *Node) serveAdmin(ctx context.Context, body []byte) ([]byte, error) {
	var req AdminRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, badRequest("admin request: %v", err)
	}
	var res AdminResponse
	var err error
	switch req.Op {
	case "create_partition":
		res.Placement, err = n.createPartition(ctx, req)
	case "delete_partition":
		err = n.onEveryNode(ctx, AdminRequest{Op: "stop_replica", Partition: req.Partition})
	case "list_partitions":
		res.Partitions, err = n.listPartitions(ctx)
	case "add_member":
		res.Replica, err = n.addMember(ctx, req)
	case "remove_member":
		err = n.removeMember(ctx, req)
	case "transfer_leader":
		err = n.r.TransferLeader(ctx, replicator.PartitionID(req.Partition), replicator.ReplicaID(req.Replica))
	case "start_replica":
		err = n.startReplica(ctx, req.Spec)
	case "stop_replica":
		err = n.stopReplica(ctx, req)
	default:
		err = badRequest("unknown admin op %q", req.Op)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

func parseKind(s string) (replicator.Kind, error) {
	switch s {
	case "", "voter":
		return replicator.Voter, nil
	case "non-voting":
		return replicator.NonVoting, nil
	case "witness":
		return replicator.Witness, nil
	}
	return 0, badRequest("replica kind %q is not voter, non-voting or witness", s)
}

// createPartition places a new partition's replicas on nodes and starts
// each one.
func (n *Node) createPartition(ctx context.Context, req AdminRequest) (map[uint64]uint64, error) {
	if req.Partition == 0 {
		return nil, badRequest("partition id must be set and not 0")
	}
	if req.Plugin == "" {
		req.Plugin = replicator.LogPluginName
	}
	if _, ok := n.r.Config().Plugins[req.Plugin]; !ok {
		return nil, badRequest("unknown plugin %q", req.Plugin)
	}
	peers := n.cfg.peers()
	byID := map[uint64]Peer{}
	for _, p := range peers {
		byID[p.ID] = p
	}
	var chosen []Peer
	if len(req.Nodes) > 0 {
		seen := map[uint64]bool{}
		for _, id := range req.Nodes {
			p, ok := byID[id]
			if !ok {
				return nil, badRequest("node %d is not in the cluster", id)
			}
			if seen[id] {
				return nil, badRequest("node %d is listed twice", id)
			}
			seen[id] = true
			chosen = append(chosen, p)
		}
	} else {
		count := req.Replicas
		if count == 0 {
			count = min(3, len(peers))
		}
		if count > len(peers) {
			return nil, badRequest("%d replicas asked for, the cluster has %d nodes", count, len(peers))
		}
		// Spread partitions over the nodes: partition p starts at node
		// (p-1) mod N.
		start := int((req.Partition - 1) % uint64(len(peers)))
		for i := 0; i < count; i++ {
			chosen = append(chosen, peers[(start+i)%len(peers)])
		}
	}
	spec := ReplicaSpec{Partition: req.Partition, Plugin: req.Plugin, Options: req.Options, Members: map[uint64]string{}}
	placement := map[uint64]uint64{}
	for i, p := range chosen {
		spec.Members[uint64(i+1)] = p.RaftAddr
		placement[uint64(i+1)] = p.ID
	}
	for i, p := range chosen {
		s := spec
		s.Replica = uint64(i + 1)
		if err := n.onNode(ctx, p, AdminRequest{Op: "start_replica", Spec: &s}); err != nil {
			return placement, fmt.Errorf("partition %d: starting replica %d on node %d: %w", req.Partition, s.Replica, p.ID, err)
		}
	}
	n.log.Info("partition created", "partition", req.Partition, "plugin", req.Plugin, "placement", placement)
	return placement, nil
}

// startReplica starts this node's replica described by s. If the node
// still hosts an older replica of the partition (being deleted after its
// removal), it waits for that one to go.
func (n *Node) startReplica(ctx context.Context, s *ReplicaSpec) error {
	if s == nil {
		return badRequest("start_replica needs a spec")
	}
	if _, err := parseKind(s.Kind); err != nil {
		return err
	}
	for {
		err := n.tryStartReplica(s)
		if !errors.Is(err, errOtherReplica) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", transport.ErrUnavailable, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var errOtherReplica = errors.New("node hosts another replica of the partition")

func (n *Node) tryStartReplica(s *ReplicaSpec) error {
	if p, err := n.r.Partition(replicator.PartitionID(s.Partition)); err == nil && uint64(p.Replica()) != s.Replica {
		return fmt.Errorf("%w: replica %d, not %d", errOtherReplica, p.Replica(), s.Replica)
	}
	kind, err := parseKind(s.Kind)
	if err != nil {
		return err
	}
	if s.Join {
		_, err = n.r.JoinPartition(replicator.JoinSpec{
			Partition: replicator.PartitionID(s.Partition), Replica: replicator.ReplicaID(s.Replica),
			Kind: kind, Plugin: s.Plugin, Options: s.Options,
		})
	} else {
		members := map[replicator.ReplicaID]string{}
		for id, a := range s.Members {
			members[replicator.ReplicaID(id)] = a
		}
		_, err = n.r.CreatePartition(replicator.PartitionSpec{
			ID: replicator.PartitionID(s.Partition), Plugin: s.Plugin, Options: s.Options, Replicas: members,
		})
	}
	if errors.Is(err, replicator.ErrPartitionExists) {
		if p, perr := n.r.Partition(replicator.PartitionID(s.Partition)); perr == nil && uint64(p.Replica()) != s.Replica {
			return fmt.Errorf("%w: replica %d, not %d", errOtherReplica, p.Replica(), s.Replica)
		}
		return nil // a repeated request
	}
	if errors.Is(err, replicator.ErrReplicaDeleted) && !s.Join {
		return fmt.Errorf("%w (a deleted partition's id cannot be used again: create it under a new id)", err)
	}
	return err
}

// removeMember removes a replica from its partition, then has the node
// that hosts it delete it. A removed replica learns of its removal only
// if it applies the change, which the others stop sending it once they
// have: it cannot be left to find out.
func (n *Node) removeMember(ctx context.Context, req AdminRequest) error {
	if req.Replica == 0 {
		return badRequest("remove_member needs a replica")
	}
	if err := n.r.RemoveReplica(ctx, replicator.PartitionID(req.Partition), replicator.ReplicaID(req.Replica)); err != nil {
		return err
	}
	if err := n.onEveryNode(ctx, AdminRequest{Op: "stop_replica", Partition: req.Partition, Replica: req.Replica}); err != nil {
		return fmt.Errorf("replica %d removed from partition %d, but not yet deleted everywhere (repeat the command): %w", req.Replica, req.Partition, err)
	}
	return nil
}

// stopReplica deletes this node's replica of a partition: any replica,
// or only the one req.Replica names.
func (n *Node) stopReplica(ctx context.Context, req AdminRequest) error {
	if req.Replica != 0 {
		p, err := n.r.Partition(replicator.PartitionID(req.Partition))
		if err != nil || uint64(p.Replica()) != req.Replica {
			return nil // not hosted here
		}
	}
	err := n.r.DeletePartition(ctx, replicator.PartitionID(req.Partition))
	if errors.Is(err, replicator.ErrPartitionNotFound) {
		return nil
	}
	return err
}

// addMember adds a replica on another node to a partition this node hosts.
func (n *Node) addMember(ctx context.Context, req AdminRequest) (uint64, error) {
	kind, err := parseKind(req.Kind)
	if err != nil {
		return 0, err
	}
	p, err := n.r.Partition(replicator.PartitionID(req.Partition))
	if err != nil {
		return 0, err
	}
	var target *Peer
	for _, peer := range n.cfg.peers() {
		if peer.ID == req.Node {
			target = &peer
		}
	}
	if target == nil {
		return 0, badRequest("node %d is not in the cluster", req.Node)
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
		if kind == replicator.Voter {
			joinedAs = replicator.NonVoting // voters join as non-voting first
		}
		if mem.Kind != kind && mem.Kind != joinedAs {
			return 0, badRequest("node %d already hosts replica %d of partition %d, a %s", target.ID, rid, req.Partition, mem.Kind)
		}
		id, added = rid, true
	}
	if !added {
		if err := n.r.AddReplica(ctx, p.ID(), id, target.RaftAddr, kind); err != nil {
			return 0, err
		}
	}
	spec := ReplicaSpec{Partition: req.Partition, Replica: uint64(id), Plugin: p.Plugin(), Options: p.Options(), Join: true, Kind: req.Kind}
	if err := n.onNode(ctx, *target, AdminRequest{Op: "start_replica", Spec: &spec}); err != nil {
		return uint64(id), fmt.Errorf("replica %d added to partition %d, but node %d did not start it: %w", id, req.Partition, target.ID, err)
	}
	return uint64(id), nil
}

// listPartitions merges every node's view of the partitions it hosts.
func (n *Node) listPartitions(ctx context.Context) ([]PartitionInfo, error) {
	parts := map[uint64]*PartitionInfo{}
	var errs []error
	for _, peer := range n.cfg.peers() {
		st, err := n.peerStatus(ctx, peer)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", peer.ID, err))
			continue
		}
		for _, ps := range st.Partitions {
			pi := parts[uint64(ps.Partition)]
			if pi == nil {
				pi = &PartitionInfo{Partition: uint64(ps.Partition)}
				parts[uint64(ps.Partition)] = pi
			}
			pi.Replicas = append(pi.Replicas, ReplicaOnNode{Node: peer.ID, Role: ps.Role.String(), Applied: uint64(ps.Applied)})
			if ps.Role == transport.RoleLeader {
				pi.Leader, pi.Epoch = peer.ID, ps.Epoch
			}
			pi.Committed = max(pi.Committed, uint64(ps.Committed))
		}
	}
	if len(parts) == 0 && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	out := make([]PartitionInfo, 0, len(parts))
	for _, pi := range parts {
		out = append(out, *pi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out, nil
}

// onEveryNode sends req to every node, this one included.
func (n *Node) onEveryNode(ctx context.Context, req AdminRequest) error {
	var errs []error
	for _, peer := range n.cfg.peers() {
		if err := n.onNode(ctx, peer, req); err != nil {
			errs = append(errs, fmt.Errorf("node %d: %w", peer.ID, err))
		}
	}
	return errors.Join(errs...)
}

// onNode serves req on peer: here if it is this node, else over the
// transport.
func (n *Node) onNode(ctx context.Context, peer Peer, req AdminRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	if peer.ID == n.cfg.ID {
		_, err = n.serveAdmin(ctx, body)
		return err
	}
	cl, err := n.dialPeer(ctx, peer)
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Admin(ctx, peer.ClientAddr, body)
	return err
}

func (n *Node) peerStatus(ctx context.Context, peer Peer) (*transport.NodeStatus, error) {
	if peer.ID == n.cfg.ID {
		return replicator.NewHandler(n.r, n.cfg.ID, nil).Status(ctx, &transport.StatusRequest{})
	}
	cl, err := n.dialPeer(ctx, peer)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return cl.Status(ctx, peer.ClientAddr)
}

func (n *Node) dialPeer(ctx context.Context, peer Peer) (*transport.Client, error) {
	cfg := transport.DefaultClientConfig()
	cfg.Name = fmt.Sprintf("lockstitch-node-%d", n.cfg.ID)
	cfg.MaxAttempts = 3
	return transport.Dial(ctx, cfg, peer.ClientAddr)
}
