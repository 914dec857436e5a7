package transport

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Admin (0x0B) carries an AdminRequest and AdminResult (0x8B) its answer.
// They administer the cluster (create and delete partitions, change
// their replica sets, move leadership, report status) and carry the
// requests nodes send each other to start and stop replicas. They are not
// on a hot path: the decoders allocate.
//
// Admin body, every field present whatever the op (part of the format,
// never change; a later version appends fields):
//
//	op          1   AdminOp
//	partition   8   PartitionID
//	replica     8   ReplicaID
//	node        8   NodeID
//	kind        1   lockstitch.Kind, 0 when not given
//	flags       1   bit 0: join; bit 1: forwarded
//	replicas    4   how many replicas (create), 0 for the default
//	plugin      uvarint length + bytes, at most 255
//	options     uvarint count, then per option: key, value (uvarint
//	            length + bytes each, at most 255 and 4096), keys sorted
//	nodes       uvarint count, then 8 bytes per NodeID
//	members     uvarint count, then per member: replica (8), Raft
//	            address (uvarint length + bytes, at most 255)
//	timeout     8   microseconds the caller waits for the answer, 0 for
//	            no limit: the serving node gives up on the op after it
//
// AdminResult body:
//
//	placement   uvarint count, then per replica: replica (8), node (8)
//	replica     8   ReplicaID (add and repair replica), 0 otherwise
//	partitions  uvarint count, then per partition: partition (8),
//	            plugin (string), leader node (8), leader replica (8),
//	            epoch (8), committed LSN (8), replica count (uvarint),
//	            then per replica: node (8), replica (8), role (1),
//	            applied LSN (8)
//	nodes       uvarint count, then per node: node (8), Raft address,
//	            client address (strings), reachable (1), error (string,
//	            at most 1024), partitions (4), leading (4)

// AdminOp says what an Admin request asks for. Part of the wire format:
// never renumber.
type AdminOp uint8

// Admin ops. Every op is safe to repeat: creating what exists as asked,
// deleting what is gone, adding a replica that is there all succeed.
const (
	// AdminCreatePartition creates partition Partition with Plugin and
	// Options, placing Replicas replicas (0: three, or the cluster size
	// if smaller) or one on each of Nodes. It returns once every replica
	// has started and knows its leader, so an append sent anywhere next
	// succeeds; the result's Placement says which node hosts which
	// replica.
	AdminCreatePartition AdminOp = 1
	// AdminDeletePartition deletes every replica of Partition.
	AdminDeletePartition AdminOp = 2
	// AdminListPartitions lists every partition of the cluster, with the
	// view of each node that hosts a replica of it.
	AdminListPartitions AdminOp = 3
	// AdminAddReplica adds a replica of Partition on Node, of Kind (a
	// voter joins as non-voting and is promoted once it has caught up);
	// the result's Replica is its id.
	AdminAddReplica AdminOp = 4
	// AdminRemoveReplica removes Replica from Partition and deletes it
	// from its node.
	AdminRemoveReplica AdminOp = 5
	// AdminTransferLeader asks Partition's leadership to move to Replica
	// and returns once it has, or fails when ctx ends first.
	AdminTransferLeader AdminOp = 6
	// AdminClusterStatus describes every node of the cluster, as the node
	// that serves the request can reach it.
	AdminClusterStatus AdminOp = 7
	// AdminStartReplica, between nodes: start this node's replica Replica
	// of Partition, with Plugin and Options, as one of Members (a new
	// partition) or joining (Join) as Kind.
	AdminStartReplica AdminOp = 8
	// AdminStopReplica, between nodes: delete this node's replica of
	// Partition (only if it is Replica, when Replica is not 0).
	AdminStopReplica AdminOp = 9
	// AdminAwaitReplica, between nodes: wait until this node's replica of
	// Partition is open and knows its leader.
	AdminAwaitReplica AdminOp = 10
	// AdminPrepareReplica, between nodes: check that this node could
	// start replica Replica of Partition with Plugin (Replica 0: that it
	// hosts no replica of Partition and never deleted one), without
	// starting it.
	AdminPrepareReplica AdminOp = 11
	// AdminRepairReplica rebuilds Node's replica of Partition from its
	// peers when the replica is quarantined (its state failed to open):
	// the replica is removed from the partition and deleted, and a new
	// replica of the same kind is added on the same node, which catches
	// up with a copy. The result's Replica is the new replica's id (the
	// id of the replica there already, when it is not quarantined).
	AdminRepairReplica AdminOp = 12

	lastAdminOp = AdminRepairReplica
)

// String returns the op's name.
func (o AdminOp) String() string {
	switch o {
	case AdminCreatePartition:
		return "create-partition"
	case AdminDeletePartition:
		return "delete-partition"
	case AdminListPartitions:
		return "list-partitions"
	case AdminAddReplica:
		return "add-replica"
	case AdminRemoveReplica:
		return "remove-replica"
	case AdminTransferLeader:
		return "transfer-leader"
	case AdminClusterStatus:
		return "cluster-status"
	case AdminStartReplica:
		return "start-replica"
	case AdminStopReplica:
		return "stop-replica"
	case AdminAwaitReplica:
		return "await-replica"
	case AdminPrepareReplica:
		return "prepare-replica"
	case AdminRepairReplica:
		return "repair-replica"
	}
	return fmt.Sprintf("AdminOp(%d)", uint8(o))
}

// Valid reports whether o is a known op.
func (o AdminOp) Valid() bool { return o >= AdminCreatePartition && o <= lastAdminOp }

// AdminRequest is an administrative request. Op says which fields count;
// see the AdminOp constants.
type AdminRequest struct {
	Op        AdminOp
	Partition lockstitch.PartitionID
	Replica   lockstitch.ReplicaID
	Node      lockstitch.NodeID
	Kind      lockstitch.Kind
	Join      bool
	// Forwarded marks a request that a node passed on to another because
	// it does not host the partition: the receiver serves it itself.
	Forwarded bool
	// Replicas is how many replicas a new partition gets (0: the
	// default).
	Replicas uint32
	Plugin   string
	Options  map[string]string
	// Nodes are the nodes to place a new partition's replicas on, in
	// replica order.
	Nodes []lockstitch.NodeID
	// Members is the initial replica set of a new partition, for
	// AdminStartReplica.
	Members []Member
	// Timeout is how long the caller waits for the answer (0: no limit):
	// the node that serves the request gives up on it after that, since
	// nobody waits any more. Client.Admin sets it from ctx's deadline.
	Timeout time.Duration
	// Witnesses is how many witnesses a new partition gets besides its
	// voters, on nodes that get no voter; WitnessNodes, if set, says
	// which nodes instead. Encoded after Timeout, only when set.
	Witnesses    uint32
	WitnessNodes []lockstitch.NodeID
}

// Member is one replica of a new partition's initial replica set.
type Member struct {
	Replica  lockstitch.ReplicaID
	RaftAddr string
}

// AdminResult is the answer to an AdminRequest.
type AdminResult struct {
	// Placement says where a created partition's replicas are: its
	// voters.
	Placement []Placement
	// Witnesses says where a created partition's witnesses are. Encoded
	// last, only when there are any.
	Witnesses []Placement
	// Replica is the id of the replica AdminAddReplica added.
	Replica lockstitch.ReplicaID
	// Partitions are the partitions AdminListPartitions lists, by id.
	Partitions []PartitionInfo
	// Nodes are the nodes AdminClusterStatus describes, by id.
	Nodes []NodeInfo
}

// Placement is one replica of a partition and the node that hosts it.
type Placement struct {
	Replica lockstitch.ReplicaID
	Node    lockstitch.NodeID
	// Kind is lockstitch.Voter or lockstitch.Witness. It is not on the
	// wire: the list a placement is in says it (AdminResult.Placement or
	// AdminResult.Witnesses), and decoding sets it.
	Kind lockstitch.Kind
}

// PartitionInfo describes a partition across the cluster.
type PartitionInfo struct {
	Partition lockstitch.PartitionID
	Plugin    string
	// Leader and LeaderReplica locate the leader; 0 when no reachable
	// node leads it.
	Leader        lockstitch.NodeID
	LeaderReplica lockstitch.ReplicaID
	Epoch         lockstitch.Epoch
	// Committed is the highest commit LSN any reachable replica knows.
	Committed lockstitch.LSN
	// Replicas are the replicas on reachable nodes, by node.
	Replicas []ReplicaInfo
}

// ReplicaInfo is one node's replica of a partition.
type ReplicaInfo struct {
	Node    lockstitch.NodeID
	Replica lockstitch.ReplicaID
	Role    lockstitch.Role
	Applied lockstitch.LSN
}

// NodeInfo describes one node of the cluster.
type NodeInfo struct {
	Node                 lockstitch.NodeID
	RaftAddr, ClientAddr string
	// Reachable says whether the node answered; Error says why not.
	Reachable bool
	Error     string
	// Partitions and Leading count the replicas the node hosts and those
	// that lead.
	Partitions, Leading uint32
}

// Field limits of admin messages. Part of the wire format.
const (
	maxPlugin      = 255
	maxOptionKey   = 255
	maxOptionValue = 4096
)

// Minimum encoded sizes, to check counts before allocating.
const (
	adminFixed       = 1 + 8 + 8 + 8 + 1 + 1 + 4
	optionMin        = 2
	memberMin        = 8 + 1
	placementSize    = 16
	partitionInfoMin = 8 + 1 + 8 + 8 + 8 + 8 + 1
	replicaInfoSize  = 8 + 8 + 1 + 8
	nodeInfoMin      = 8 + 1 + 1 + 1 + 1 + 4 + 4
)

// AppendBinary appends r's Admin body to b (encoding.BinaryAppender).
// Strings longer than the format allows fail with ErrInvalidArgument.
func (r *AdminRequest) AppendBinary(b []byte) ([]byte, error) {
	if len(r.Plugin) > maxPlugin {
		return b, fmt.Errorf("%w: plugin name of %d bytes, limit %d", lockstitch.ErrInvalidArgument, len(r.Plugin), maxPlugin)
	}
	b = append(b, byte(r.Op))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Partition))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Replica))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Node))
	var flags byte
	if r.Join {
		flags |= 1
	}
	if r.Forwarded {
		flags |= 2
	}
	b = append(b, byte(r.Kind), flags)
	b = binary.LittleEndian.AppendUint32(b, r.Replicas)
	b = appendString(b, r.Plugin)
	keys := make([]string, 0, len(r.Options))
	for k, v := range r.Options {
		if len(k) > maxOptionKey || len(v) > maxOptionValue {
			return b, fmt.Errorf("%w: option %.32q: key or value too long (limits %d and %d bytes)", lockstitch.ErrInvalidArgument, k, maxOptionKey, maxOptionValue)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, r.Options[k])
	}
	b = appendNodes(b, r.Nodes)
	b = binary.AppendUvarint(b, uint64(len(r.Members)))
	for _, m := range r.Members {
		if len(m.RaftAddr) > maxAddr {
			return b, fmt.Errorf("%w: Raft address of %d bytes, limit %d", lockstitch.ErrInvalidArgument, len(m.RaftAddr), maxAddr)
		}
		b = binary.LittleEndian.AppendUint64(b, uint64(m.Replica))
		b = appendString(b, m.RaftAddr)
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(max(r.Timeout, 0)/time.Microsecond))
	if r.Witnesses != 0 || len(r.WitnessNodes) > 0 {
		b = binary.LittleEndian.AppendUint32(b, r.Witnesses)
		b = appendNodes(b, r.WitnessNodes)
	}
	return b, nil
}

// appendNodes appends a count and the node ids.
func appendNodes(b []byte, nodes []lockstitch.NodeID) []byte {
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	for _, n := range nodes {
		b = binary.LittleEndian.AppendUint64(b, uint64(n))
	}
	return b
}

// nodes decodes what appendNodes appended.
func (d *decoder) nodes() []lockstitch.NodeID {
	n := d.count(8)
	if n == 0 {
		return nil
	}
	nodes := make([]lockstitch.NodeID, n)
	for i := range nodes {
		nodes[i] = lockstitch.NodeID(d.u64())
	}
	return nodes
}

// appendPlacements appends a count and the placements.
func appendPlacements(b []byte, ps []Placement) []byte {
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Replica))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Node))
	}
	return b
}

// placements decodes what appendPlacements appended, as replicas of kind.
func (d *decoder) placements(kind lockstitch.Kind) []Placement {
	n := d.count(placementSize)
	if n == 0 {
		return nil
	}
	ps := make([]Placement, n)
	for i := range ps {
		ps[i] = Placement{Replica: lockstitch.ReplicaID(d.u64()), Node: lockstitch.NodeID(d.u64()), Kind: kind}
	}
	return ps
}

// UnmarshalBinary decodes an Admin body into r (encoding.
// BinaryUnmarshaler). It fails with ErrProtocol on a malformed body; it
// does not check that the op is known or its fields make sense, which is
// the Handler's job. r's strings and slices do not alias data.
func (r *AdminRequest) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	*r = AdminRequest{
		Op:        AdminOp(d.u8()),
		Partition: lockstitch.PartitionID(d.u64()),
		Replica:   lockstitch.ReplicaID(d.u64()),
		Node:      lockstitch.NodeID(d.u64()),
		Kind:      lockstitch.Kind(d.u8()),
	}
	flags := d.u8()
	if flags&^3 != 0 && d.err == nil {
		d.err = fmt.Errorf("%w: Admin flags %#x", ErrProtocol, flags)
	}
	r.Join, r.Forwarded = flags&1 != 0, flags&2 != 0
	r.Replicas = d.u32()
	r.Plugin = d.str(maxPlugin)
	if n := d.count(optionMin); n > 0 {
		r.Options = make(map[string]string, n)
		prev := ""
		for i := 0; i < n && d.err == nil; i++ {
			k := d.str(maxOptionKey)
			v := d.str(maxOptionValue)
			if i > 0 && k <= prev && d.err == nil {
				d.err = fmt.Errorf("%w: Admin option keys not sorted and unique", ErrProtocol)
			}
			r.Options[k], prev = v, k
		}
	}
	r.Nodes = d.nodes()
	if n := d.count(memberMin); n > 0 {
		r.Members = make([]Member, n)
		for i := 0; i < n && d.err == nil; i++ {
			r.Members[i] = Member{Replica: lockstitch.ReplicaID(d.u64()), RaftAddr: d.str(maxAddr)}
		}
	}
	if us := d.u64(); us > uint64(maxAdminTimeout/time.Microsecond) {
		if d.err == nil {
			d.err = fmt.Errorf("%w: Admin timeout of %d µs", ErrProtocol, us)
		}
	} else {
		r.Timeout = time.Duration(us) * time.Microsecond
	}
	if d.err == nil && len(d.b) > 0 {
		r.Witnesses = d.u32()
		r.WitnessNodes = d.nodes()
		if r.Witnesses == 0 && len(r.WitnessNodes) == 0 && d.err == nil {
			d.err = fmt.Errorf("%w: Admin witness fields present but empty", ErrProtocol)
		}
	}
	return d.finish()
}

// maxAdminTimeout bounds an Admin request's timeout. Part of the format.
const maxAdminTimeout = 24 * time.Hour

// AppendBinary appends r's AdminResult body to b (encoding.
// BinaryAppender). Strings longer than the format allows are cut.
func (r *AdminResult) AppendBinary(b []byte) ([]byte, error) {
	b = appendPlacements(b, r.Placement)
	b = binary.LittleEndian.AppendUint64(b, uint64(r.Replica))
	b = binary.AppendUvarint(b, uint64(len(r.Partitions)))
	for i := range r.Partitions {
		p := &r.Partitions[i]
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Partition))
		b = appendString(b, truncateUTF8(p.Plugin, maxPlugin))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Leader))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.LeaderReplica))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Epoch))
		b = binary.LittleEndian.AppendUint64(b, uint64(p.Committed))
		b = binary.AppendUvarint(b, uint64(len(p.Replicas)))
		for _, rep := range p.Replicas {
			b = binary.LittleEndian.AppendUint64(b, uint64(rep.Node))
			b = binary.LittleEndian.AppendUint64(b, uint64(rep.Replica))
			b = append(b, byte(rep.Role))
			b = binary.LittleEndian.AppendUint64(b, uint64(rep.Applied))
		}
	}
	b = binary.AppendUvarint(b, uint64(len(r.Nodes)))
	for i := range r.Nodes {
		n := &r.Nodes[i]
		b = binary.LittleEndian.AppendUint64(b, uint64(n.Node))
		b = appendString(b, truncateUTF8(n.RaftAddr, maxAddr))
		b = appendString(b, truncateUTF8(n.ClientAddr, maxAddr))
		reachable := byte(0)
		if n.Reachable {
			reachable = 1
		}
		b = append(b, reachable)
		b = appendString(b, truncateUTF8(n.Error, maxErrorMessage))
		b = binary.LittleEndian.AppendUint32(b, n.Partitions)
		b = binary.LittleEndian.AppendUint32(b, n.Leading)
	}
	if len(r.Witnesses) > 0 {
		b = appendPlacements(b, r.Witnesses)
	}
	return b, nil
}

// UnmarshalBinary decodes an AdminResult body into r (encoding.
// BinaryUnmarshaler). It fails with ErrProtocol on a malformed body. r's
// strings and slices do not alias data.
func (r *AdminResult) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	*r = AdminResult{}
	r.Placement = d.placements(lockstitch.Voter)
	r.Replica = lockstitch.ReplicaID(d.u64())
	if n := d.count(partitionInfoMin); n > 0 {
		r.Partitions = make([]PartitionInfo, n)
		for i := 0; i < n && d.err == nil; i++ {
			p := &r.Partitions[i]
			p.Partition = lockstitch.PartitionID(d.u64())
			p.Plugin = d.str(maxPlugin)
			p.Leader = lockstitch.NodeID(d.u64())
			p.LeaderReplica = lockstitch.ReplicaID(d.u64())
			p.Epoch = lockstitch.Epoch(d.u64())
			p.Committed = lockstitch.LSN(d.u64())
			if m := d.count(replicaInfoSize); m > 0 {
				p.Replicas = make([]ReplicaInfo, m)
				for j := range p.Replicas {
					p.Replicas[j] = ReplicaInfo{
						Node:    lockstitch.NodeID(d.u64()),
						Replica: lockstitch.ReplicaID(d.u64()),
						Role:    lockstitch.Role(d.u8()),
						Applied: lockstitch.LSN(d.u64()),
					}
				}
			}
		}
	}
	if n := d.count(nodeInfoMin); n > 0 {
		r.Nodes = make([]NodeInfo, n)
		for i := 0; i < n && d.err == nil; i++ {
			ni := &r.Nodes[i]
			ni.Node = lockstitch.NodeID(d.u64())
			ni.RaftAddr = d.str(maxAddr)
			ni.ClientAddr = d.str(maxAddr)
			switch v := d.u8(); v {
			case 0, 1:
				ni.Reachable = v == 1
			default:
				if d.err == nil {
					d.err = fmt.Errorf("%w: AdminResult reachable %d", ErrProtocol, v)
				}
			}
			ni.Error = d.str(maxErrorMessage)
			ni.Partitions = d.u32()
			ni.Leading = d.u32()
		}
	}
	if d.err == nil && len(d.b) > 0 {
		if r.Witnesses = d.placements(lockstitch.Witness); len(r.Witnesses) == 0 && d.err == nil {
			d.err = fmt.Errorf("%w: AdminResult witnesses present but empty", ErrProtocol)
		}
	}
	return d.finish()
}

// appendAdmin appends an Admin frame carrying the encoded request body.
func appendAdmin(dst []byte, id uint64, body []byte) []byte {
	dst, start := beginFrame(dst, TypeAdmin, id)
	dst = append(dst, body...)
	return endFrame(dst, start)
}

// appendAdminResult appends an AdminResult frame carrying res.
func appendAdminResult(dst []byte, id uint64, res *AdminResult) []byte {
	dst, start := beginFrame(dst, TypeAdminResult, id)
	dst, _ = res.AppendBinary(dst) // cuts what is too long: no error
	return endFrame(dst, start)
}
