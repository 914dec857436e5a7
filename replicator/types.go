package replicator

import (
	"fmt"

	"github.com/lockstitch/lockstitch/wal"
)

// LSN is a log sequence number: dense per partition, starting at 1,
// assigned when an op is committed; never reused, never reordered.
type LSN = wal.LSN

// Epoch is the Raft term of the leader that proposed an op, made
// non-decreasing along a partition's stream: ops proposed by a newer
// leader carry a higher epoch than every op before them, while ops an
// old leader proposed and its successor committed keep the old one. A
// plugin that compares epochs can fence work started under an older
// leader.
type Epoch uint64

// PartitionID names a partition: one ordered stream with its own replica
// set (a dragonboat shard).
type PartitionID uint64

// ReplicaID names one replica of a partition. It is unique within the
// partition and never reused after the replica is removed.
type ReplicaID uint64

// ProducerID names an idempotent producer; zero means none.
type ProducerID uint64

// Role is a replica's role in its partition.
type Role uint8

// Roles.
const (
	RoleUnknown Role = iota
	RoleLeader
	RoleFollower
	RoleNonVoting
	RoleWitness
)

func (r Role) String() string {
	switch r {
	case RoleLeader:
		return "leader"
	case RoleFollower:
		return "follower"
	case RoleNonVoting:
		return "non-voting"
	case RoleWitness:
		return "witness"
	}
	return "unknown"
}

// Kind is the kind of a replica in a replica set.
type Kind uint8

// Replica kinds.
const (
	// Voter replicas hold data and vote.
	Voter Kind = iota
	// NonVoting replicas hold data and follow the stream without voting:
	// they catch up before promotion, serve reads, or mirror a partition.
	NonVoting
	// Witness replicas vote but hold no data, so two data replicas and a
	// witness tolerate one failure.
	Witness
)

func (k Kind) String() string {
	switch k {
	case Voter:
		return "voter"
	case NonVoting:
		return "non-voting"
	case Witness:
		return "witness"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Consistency is the consistency level of a query.
type Consistency uint8

// Consistency levels.
const (
	// Linearizable queries see every op committed before they started:
	// the replica confirms the commit point with the leader (Raft read
	// index) and waits until it has applied it. Any replica can answer.
	Linearizable Consistency = iota
	// LeaderLocal queries run on the leader against what it has applied,
	// without a quorum round trip. A leader that has just lost its
	// leadership without knowing it may answer from a stale state.
	LeaderLocal
	// AnyReplica queries run on the replica they reach, if its state holds
	// every op committed more than QueryOptions.MaxStaleness ago.
	AnyReplica
)

func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case LeaderLocal:
		return "leader-local"
	case AnyReplica:
		return "any-replica"
	}
	return fmt.Sprintf("Consistency(%d)", uint8(c))
}
