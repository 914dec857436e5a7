package transport

import "fmt"

// PartitionID identifies a partition: one ordered stream with its own
// replica set.
type PartitionID uint64

// ReplicaID identifies a replica of a partition.
type ReplicaID uint64

// Consistency is the consistency level a Query asks for.
type Consistency uint8

// Consistency levels.
const (
	// Linearizable answers reflect every op committed before the query
	// was received: the leader confirms it still leads (a read index)
	// before answering.
	Linearizable Consistency = 1
	// LeaderLocal answers from the leader's applied state without a
	// quorum round trip; a deposed leader may answer stale data for up to
	// an election timeout.
	LeaderLocal Consistency = 2
	// Bounded answers from any replica whose state holds every op
	// committed more than QueryRequest.MaxStaleness ago; a replica that
	// cannot show it refuses with ErrUnavailable.
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

// Role is what a node's replica of a partition currently does.
type Role uint8

// Roles.
const (
	RoleUnknown   Role = 0
	RoleLeader    Role = 1
	RoleFollower  Role = 2
	RoleNonVoting Role = 3
	RoleWitness   Role = 4
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
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

// Membership is the kind of a replica in a partition's configuration.
type Membership uint8

// Memberships.
const (
	Voter     Membership = 1
	NonVoting Membership = 2
	Witness   Membership = 3
)

// String returns the membership's name.
func (m Membership) String() string {
	switch m {
	case Voter:
		return "voter"
	case NonVoting:
		return "non-voting"
	case Witness:
		return "witness"
	}
	return fmt.Sprintf("Membership(%d)", uint8(m))
}
