package transport

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// StatusRequest asks a node for its status: every partition it hosts, or
// one.
type StatusRequest struct {
	// OnePartition limits the answer to Partition.
	OnePartition bool
	// Partition is the partition asked about when OnePartition is set.
	Partition lockstitch.PartitionID
	// Producer, when not 0 (with OnePartition), also asks what the
	// partition remembers of that producer (NodeStatus.Producer). It is
	// sent in a longer body, which servers before it refuse.
	Producer lockstitch.ProducerID
	// ReportAges asks for the age of each replica's progress report
	// (ReplicaStatus.ReportAge). Servers that predate it ignore it and
	// answer without ages.
	ReportAges bool
}

// Status body sizes: the original form, and the one asking about a
// producer too.
const (
	statusSize         = 16
	statusProducerSize = 24
)

// appendStatus appends a Status frame.
func appendStatus(dst []byte, id uint64, r *StatusRequest) []byte {
	size := statusSize
	if r.Producer != 0 {
		size = statusProducerSize
	}
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeStatus, Length: uint32(size), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	scope := byte(0)
	if r.OnePartition {
		scope = 1
	}
	var flags byte
	if r.ReportAges {
		flags |= 1
	}
	dst = append(dst, scope, flags, 0, 0, 0, 0, 0, 0)
	if r.Producer != 0 {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Producer))
	}
	return dst
}

// decodeStatus decodes a Status body into r.
func decodeStatus(body []byte, r *StatusRequest) error {
	if len(body) != statusSize && len(body) != statusProducerSize {
		return fmt.Errorf("%w: Status body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	switch body[8] {
	case 0:
		r.OnePartition = false
	case 1:
		r.OnePartition = true
	default:
		return fmt.Errorf("%w: Status scope %d", ErrProtocol, body[8])
	}
	// Other flag bits are ignored, as servers before flags ignored the
	// whole byte: a later client may ask for more than this server knows.
	r.ReportAges = body[9]&1 != 0
	r.Producer = 0
	if len(body) == statusProducerSize {
		r.Producer = lockstitch.ProducerID(binary.LittleEndian.Uint64(body[16:]))
		if r.Producer == 0 || !r.OnePartition {
			return fmt.Errorf("%w: Status asks about producer %d with scope %d (a producer of one partition)", ErrProtocol, r.Producer, body[8])
		}
	}
	return nil
}

// NodeStatus is a node's view of itself and the partitions it hosts.
type NodeStatus struct {
	// NodeID identifies the node.
	NodeID uint64
	// Partitions lists the partitions asked about.
	Partitions []PartitionStatus
	// Producer is what the partition remembers of the producer the
	// request asked about; nil when it did not ask.
	Producer *ProducerStatus
}

// ProducerStatus is what a partition remembers of an idempotent producer
// (replicator.ProducerState): enough for a producer that restarts to
// resume with no gap and no duplicate.
type ProducerStatus struct {
	Producer lockstitch.ProducerID
	// Known: the partition remembers the producer. Forgotten: it has
	// forgotten producers (MaxProducers), maybe this one.
	Known, Forgotten bool
	// Floor: every applied sequence at or above it is remembered (0:
	// every one). Last: the highest applied, at LastLSN in LastEpoch.
	Floor, Last uint64
	LastLSN     wal.LSN
	LastEpoch   uint64
}

// PartitionStatus is a node's view of one partition.
type PartitionStatus struct {
	// Partition identifies the partition.
	Partition lockstitch.PartitionID
	// Role is what this node's replica does.
	Role lockstitch.Role
	// Leader is the leader's replica id, 0 when unknown.
	Leader lockstitch.ReplicaID
	// LeaderAddr is the leader's client address, "" when unknown.
	LeaderAddr string
	// Epoch is the partition's current epoch.
	Epoch uint64
	// Committed is the highest committed LSN this replica knows.
	Committed wal.LSN
	// Applied is the highest LSN this replica has applied.
	Applied wal.LSN
	// Replicas lists the configuration, with progress as the leader sees
	// it (zero progress when this node is not the leader).
	Replicas []ReplicaStatus
}

// ReplicaStatus is one replica of a partition.
type ReplicaStatus struct {
	// Replica identifies the replica.
	Replica lockstitch.ReplicaID
	// Addr is the client address of the replica's node.
	Addr string
	// Kind is the replica's kind in the configuration.
	Kind lockstitch.Kind
	// Match is the highest LSN the leader knows the replica holds.
	Match wal.LSN
	// Lag is how many ops the replica trails the leader's commit LSN, as
	// the leader sees it.
	Lag uint64
	// Reported says whether ReportAge is known: the server was asked
	// (StatusRequest.ReportAges), knows it, and received a report from
	// the replica. ReportAge is how long before the answer the node
	// received the replica's progress report that Match and Lag come
	// from (0 for the answering replica itself), to the millisecond.
	Reported  bool
	ReportAge time.Duration
}

// Minimum encoded sizes, used to check counts before allocating.
const (
	partitionStatusMin = 8 + 1 + 8 + 1 + 8 + 8 + 8 + 1
	replicaStatusMin   = 8 + 1 + 1 + 8 + 8
)

// appendStatusResult appends a StatusResult frame answering req.
// Addresses longer than the format allows are cut.
func appendStatusResult(dst []byte, id uint64, req *StatusRequest, s *NodeStatus) []byte {
	dst, start := beginFrame(dst, TypeStatusResult, id)
	dst = binary.LittleEndian.AppendUint64(dst, s.NodeID)
	dst = binary.AppendUvarint(dst, uint64(len(s.Partitions)))
	for i := range s.Partitions {
		p := &s.Partitions[i]
		dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Partition))
		dst = append(dst, byte(p.Role))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Leader))
		dst = appendString(dst, truncateUTF8(p.LeaderAddr, maxAddr))
		dst = binary.LittleEndian.AppendUint64(dst, p.Epoch)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Committed))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(p.Applied))
		dst = binary.AppendUvarint(dst, uint64(len(p.Replicas)))
		for j := range p.Replicas {
			r := &p.Replicas[j]
			dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Replica))
			dst = appendString(dst, truncateUTF8(r.Addr, maxAddr))
			dst = append(dst, byte(r.Kind))
			dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Match))
			dst = binary.LittleEndian.AppendUint64(dst, r.Lag)
		}
	}
	if req.Producer != 0 {
		// Asked about a producer: the section is there, whatever the
		// Handler answered (a nil Producer is one the partition does not
		// know).
		ps := s.Producer
		if ps == nil {
			ps = &ProducerStatus{Producer: req.Producer}
		}
		dst = binary.LittleEndian.AppendUint64(dst, uint64(ps.Producer))
		var flags byte
		if ps.Known {
			flags |= 1
		}
		if ps.Forgotten {
			flags |= 2
		}
		dst = append(dst, flags)
		dst = binary.LittleEndian.AppendUint64(dst, ps.Floor)
		dst = binary.LittleEndian.AppendUint64(dst, ps.Last)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(ps.LastLSN))
		dst = binary.LittleEndian.AppendUint64(dst, ps.LastEpoch)
	}
	if req.ReportAges {
		for i := range s.Partitions {
			for _, r := range s.Partitions[i].Replicas {
				var age uint64
				if r.Reported {
					age = uint64(max(r.ReportAge, 0)/time.Millisecond) + 1
				}
				dst = binary.AppendUvarint(dst, age)
			}
		}
	}
	return endFrame(dst, start)
}

// decodeStatusResult decodes a StatusResult body answering req into s.
// It allocates.
func decodeStatusResult(body []byte, req *StatusRequest, s *NodeStatus) error {
	d := decoder{b: body}
	s.NodeID = d.u64()
	np := d.count(partitionStatusMin)
	s.Partitions = nil
	if np > 0 {
		s.Partitions = make([]PartitionStatus, np)
	}
	for i := 0; i < np && d.err == nil; i++ {
		p := &s.Partitions[i]
		p.Partition = lockstitch.PartitionID(d.u64())
		p.Role = lockstitch.Role(d.u8())
		p.Leader = lockstitch.ReplicaID(d.u64())
		p.LeaderAddr = d.str(maxAddr)
		p.Epoch = d.u64()
		p.Committed = wal.LSN(d.u64())
		p.Applied = wal.LSN(d.u64())
		nr := d.count(replicaStatusMin)
		if nr > 0 {
			p.Replicas = make([]ReplicaStatus, nr)
		}
		for j := 0; j < nr && d.err == nil; j++ {
			r := &p.Replicas[j]
			r.Replica = lockstitch.ReplicaID(d.u64())
			r.Addr = d.str(maxAddr)
			r.Kind = lockstitch.Kind(d.u8())
			r.Match = wal.LSN(d.u64())
			r.Lag = d.u64()
		}
	}
	s.Producer = nil
	if d.err == nil && req.Producer != 0 {
		ps := new(ProducerStatus)
		ps.Producer = lockstitch.ProducerID(d.u64())
		flags := d.u8()
		if flags&^3 != 0 && d.err == nil {
			return fmt.Errorf("%w: StatusResult producer flags %#x", ErrProtocol, flags)
		}
		ps.Known, ps.Forgotten = flags&1 != 0, flags&2 != 0
		ps.Floor, ps.Last = d.u64(), d.u64()
		ps.LastLSN, ps.LastEpoch = wal.LSN(d.u64()), d.u64()
		s.Producer = ps
	}
	// Report ages, when asked for and the server knows them.
	if d.err == nil && req.ReportAges && len(d.b) > 0 {
		for i := range s.Partitions {
			for j := range s.Partitions[i].Replicas {
				r := &s.Partitions[i].Replicas[j]
				if age := d.uvarint(); age > 0 && d.err == nil {
					if age > uint64(maxReportAge/time.Millisecond) {
						return fmt.Errorf("%w: StatusResult report age of %d ms", ErrProtocol, age-1)
					}
					r.Reported, r.ReportAge = true, time.Duration(age-1)*time.Millisecond
				}
			}
		}
	}
	return d.finish()
}

// maxReportAge bounds a decoded report age (so it fits a Duration).
const maxReportAge = 100 * 365 * 24 * time.Hour
