package lockstitch

import (
	"fmt"

	"github.com/lockstitch/lockstitch/wal"
)

// LSN is a log sequence number: dense per partition, starting at 1,
// assigned when an op is committed; never reused, never reordered. It is
// the operation log's own sequence number.
type LSN = wal.LSN

// Epoch is the Raft term of the leader that proposed an op, made
// non-decreasing along a partition's stream: ops proposed by a newer
// leader carry a higher epoch than every op before them, while ops an old
// leader proposed and its successor committed keep the old one. A plugin
// or consumer that compares epochs can fence work started under an older
// leader.
type Epoch uint64

// PartitionID names a partition: one ordered stream with its own replica
// set (a dragonboat shard). Zero is reserved.
type PartitionID uint64

// ReplicaID names one replica of a partition. It is unique within the
// partition and never reused after the replica is removed. Zero is
// reserved.
type ReplicaID uint64

// ProducerID names an idempotent producer; zero means none.
type ProducerID uint64

// NodeID names a node (one Lockstitch process) in its cluster. Zero is
// reserved.
type NodeID uint64

// Role is what a replica currently does in its partition. The values are
// part of the wire format: never renumber.
type Role uint8

// Roles.
const (
	// RoleUnknown: the replica is starting, stopping or cannot tell.
	RoleUnknown Role = 0
	// RoleLeader: the replica leads; it orders and commits appends.
	RoleLeader Role = 1
	// RoleFollower: a voter that follows the leader.
	RoleFollower Role = 2
	// RoleNonVoting: a replica that follows without voting (a learner
	// catching up before promotion, a read replica, a mirror).
	RoleNonVoting Role = 3
	// RoleWitness: a voter that holds no data.
	RoleWitness Role = 4
	// RoleQuarantined: the node holds the replica but does not run it:
	// its state failed to open (a damaged log, a plugin that refused its
	// state). It is rebuilt from its peers by a repair.
	RoleQuarantined Role = 5
)

// String returns the role's name.
func (r Role) String() string {
	switch r {
	case RoleUnknown:
		return "unknown"
	case RoleLeader:
		return "leader"
	case RoleFollower:
		return "follower"
	case RoleNonVoting:
		return "non-voting"
	case RoleWitness:
		return "witness"
	case RoleQuarantined:
		return "quarantined"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Kind is the kind of a replica in a partition's replica set. The values
// are part of the wire format: never renumber. The zero Kind is not a
// kind; where a Kind may be left out, zero means Voter.
type Kind uint8

// Replica kinds.
const (
	// Voter replicas hold data and vote.
	Voter Kind = 1
	// NonVoting replicas hold data and follow the stream without voting:
	// they catch up before promotion, serve reads, or mirror a partition.
	NonVoting Kind = 2
	// Witness replicas vote but hold no data, so two data replicas and a
	// witness tolerate one failure.
	Witness Kind = 3
)

// String returns the kind's name, as ParseKind reads it.
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

// Valid reports whether k is one of the kinds.
func (k Kind) Valid() bool { return k >= Voter && k <= Witness }

// ParseKind reads a kind's name ("voter", "non-voting", "witness"); the
// empty string is Voter.
func ParseKind(s string) (Kind, error) {
	switch s {
	case "", "voter":
		return Voter, nil
	case "non-voting":
		return NonVoting, nil
	case "witness":
		return Witness, nil
	}
	return 0, fmt.Errorf("%w: replica kind %q is not voter, non-voting or witness", ErrInvalidArgument, s)
}

// Consistency is how fresh a query's answer must be. The values are part
// of the wire format: never renumber. Where a Consistency may be left
// out, zero means Linearizable.
type Consistency uint8

// Consistency levels.
const (
	// Linearizable answers see every op committed before the query
	// started: the replica confirms the commit point with the leader (a
	// Raft read index) and waits until it has applied it. Any replica can
	// answer.
	Linearizable Consistency = 1
	// LeaderLocal answers come from the leader's applied state without a
	// quorum round trip; a leader that has just lost its leadership
	// without knowing it may answer from a stale state, for up to an
	// election timeout.
	LeaderLocal Consistency = 2
	// Bounded answers come from the replica the query reaches, if its
	// state holds every op committed more than a given maximum staleness
	// ago; a replica that cannot show it refuses with ErrTooStale.
	Bounded Consistency = 3
)

// String returns the level's name.
func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case LeaderLocal:
		return "leader-local"
	case Bounded:
		return "bounded"
	}
	return fmt.Sprintf("Consistency(%d)", uint8(c))
}
