package transport

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Admin sends an administrative request to the node at addr (any
// connected node for "") and returns its answer. It is retried, like
// every call, when the connection is lost or the node is busy (every
// admin op is safe to repeat), but not when the node answered with an
// error. ctx's deadline travels with the request (AdminRequest.Timeout),
// so the node gives up when the caller does. The typed methods below (CreatePartition,
// ...) are the usual way in; they also try the next address when a node
// cannot serve.
func (cl *Client) Admin(ctx context.Context, addr string, req *AdminRequest) (*AdminResult, error) {
	if d, ok := ctx.Deadline(); ok {
		r := *req
		r.Timeout = min(max(time.Until(d), time.Microsecond), maxAdminTimeout)
		req = &r
	}
	body, err := req.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	c := cl.getCall(TypeAdmin)
	c.addr, c.byAddr, c.admin = addr, true, body
	abandoned, err := cl.do(ctx, c)
	if abandoned {
		return nil, err
	}
	var res *AdminResult
	if err == nil {
		res = new(AdminResult)
		if uerr := res.UnmarshalBinary(c.buf); uerr != nil {
			res, err = nil, uerr
		}
	}
	c.admin = nil
	cl.putCall(c)
	return res, err
}

// admin sends req to the Client's addresses in turn until one serves it:
// a node that is down, stopping or cannot serve the request now
// (lockstitch.ErrUnavailable, ErrShuttingDown) is passed over. Any node
// can serve every op; it forwards what it cannot do itself.
func (cl *Client) admin(ctx context.Context, req *AdminRequest) (*AdminResult, error) {
	var errs []error
	n := uint32(len(cl.seeds))
	start := cl.next.Load()
	for i := range n {
		addr := cl.seeds[(start+i)%n]
		res, err := cl.Admin(ctx, addr, req)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, lockstitch.ErrUnavailable) && !errors.Is(err, lockstitch.ErrShuttingDown) || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, errors.Join(errs...)
}

// PartitionSpec describes a partition to create.
type PartitionSpec struct {
	// ID names the new partition; it must not be 0, and an id that was
	// used by a deleted partition cannot be used again.
	ID lockstitch.PartitionID
	// Plugin is the state machine plugin's name (default "log").
	Plugin string
	// Options are the plugin's options.
	Options map[string]string
	// Replicas is how many replicas to place (0: three, or the cluster
	// size if it is smaller); Nodes, if set, says which nodes get one
	// instead, in replica order.
	Replicas int
	Nodes    []lockstitch.NodeID
	// Witnesses is how many witnesses the partition gets besides its
	// voters (a witness votes and keeps Raft's log metadata, but no data
	// or stream): 2 voters and 1 witness survive one node's loss at the
	// cost of two copies of the data. They are placed on nodes that get
	// no voter; WitnessNodes, if set, says which instead. Nodes that
	// predate witnesses in create refuse the request with a protocol
	// error.
	Witnesses    int
	WitnessNodes []lockstitch.NodeID
}

// CreatePartition creates a partition and returns where its replicas are:
// its voters, then its witnesses (Placement.Kind says which). It returns
// once every replica has started and knows its leader, so an append sent
// to any node next succeeds. Creating a partition that
// exists as specified succeeds; one that exists otherwise fails with
// lockstitch.ErrPartitionExists, an id of a deleted partition with
// lockstitch.ErrReplicaDeleted, a node that cannot be reached with
// lockstitch.ErrUnavailable (nothing is left started then).
func (cl *Client) CreatePartition(ctx context.Context, spec PartitionSpec) ([]Placement, error) {
	if spec.Replicas < 0 || spec.Replicas > 1<<16 {
		return nil, fmt.Errorf("%w: %d replicas", lockstitch.ErrInvalidArgument, spec.Replicas)
	}
	if spec.Witnesses < 0 || spec.Witnesses > 1<<16 {
		return nil, fmt.Errorf("%w: %d witnesses", lockstitch.ErrInvalidArgument, spec.Witnesses)
	}
	res, err := cl.admin(ctx, &AdminRequest{
		Op: AdminCreatePartition, Partition: spec.ID, Plugin: spec.Plugin, Options: spec.Options,
		Replicas: uint32(spec.Replicas), Nodes: spec.Nodes,
		Witnesses: uint32(spec.Witnesses), WitnessNodes: spec.WitnessNodes,
	})
	if err != nil {
		return nil, err
	}
	return append(res.Placement, res.Witnesses...), nil
}

// DeletePartition deletes every replica of a partition. Deleting a
// partition that does not exist succeeds. A node that cannot be reached
// keeps its replica: the call fails with lockstitch.ErrUnavailable and
// can be repeated.
func (cl *Client) DeletePartition(ctx context.Context, id lockstitch.PartitionID) error {
	_, err := cl.admin(ctx, &AdminRequest{Op: AdminDeletePartition, Partition: id})
	return err
}

// ListPartitions lists every partition of the cluster, by id, as the
// reachable nodes see them.
func (cl *Client) ListPartitions(ctx context.Context) ([]PartitionInfo, error) {
	res, err := cl.admin(ctx, &AdminRequest{Op: AdminListPartitions})
	if err != nil {
		return nil, err
	}
	return res.Partitions, nil
}

// AddReplica adds a replica of a partition on a node and returns its id.
// A voter joins as non-voting, catches up, then is promoted; kind 0 means
// lockstitch.Voter. Adding a replica the node already hosts returns its
// id.
func (cl *Client) AddReplica(ctx context.Context, p lockstitch.PartitionID, node lockstitch.NodeID, kind lockstitch.Kind) (lockstitch.ReplicaID, error) {
	res, err := cl.admin(ctx, &AdminRequest{Op: AdminAddReplica, Partition: p, Node: node, Kind: kind})
	if err != nil {
		return 0, err
	}
	return res.Replica, nil
}

// RemoveReplica removes a replica from its partition and deletes it from
// its node.
func (cl *Client) RemoveReplica(ctx context.Context, p lockstitch.PartitionID, replica lockstitch.ReplicaID) error {
	_, err := cl.admin(ctx, &AdminRequest{Op: AdminRemoveReplica, Partition: p, Replica: replica})
	return err
}

// RepairReplica rebuilds a node's quarantined replica of a partition (one
// whose state failed to open: see lockstitch.RoleQuarantined) from its
// peers: the replica is removed and deleted and a new one, of the same
// kind, is added on the same node. It returns the new replica's id; a
// replica that is not quarantined is left as it is and its id returned.
// It fails when the partition cannot change its membership (no quorum,
// or no other replica to copy from).
func (cl *Client) RepairReplica(ctx context.Context, p lockstitch.PartitionID, node lockstitch.NodeID) (lockstitch.ReplicaID, error) {
	res, err := cl.admin(ctx, &AdminRequest{Op: AdminRepairReplica, Partition: p, Node: node})
	if err != nil {
		return 0, err
	}
	return res.Replica, nil
}

// TransferLeader moves a partition's leadership to a replica and returns
// once it leads.
func (cl *Client) TransferLeader(ctx context.Context, p lockstitch.PartitionID, to lockstitch.ReplicaID) error {
	_, err := cl.admin(ctx, &AdminRequest{Op: AdminTransferLeader, Partition: p, Replica: to})
	return err
}

// ClusterStatus describes every node of the cluster, by id, as the node
// that answers reaches them.
func (cl *Client) ClusterStatus(ctx context.Context) ([]NodeInfo, error) {
	res, err := cl.admin(ctx, &AdminRequest{Op: AdminClusterStatus})
	if err != nil {
		return nil, err
	}
	return res.Nodes, nil
}
