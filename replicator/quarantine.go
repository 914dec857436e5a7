package replicator

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Quarantine describes a replica this node holds but does not run: its
// durable state was found damaged when the node started (a corrupt
// operation log, a checkpoint the log does not reach, a plugin that
// refused its state); an error that says nothing of the state (the node
// cannot open files now) fails the node's start instead. The node serves
// its other partitions. The quarantined replica answers every call with
// lockstitch.ErrUnavailable and keeps its files until it is deleted: a
// replica is rebuilt from its peers by removing it from its partition and
// adding a new replica on the same node (what server's repair does, by
// itself unless told not to). Raft does not allow the replica to
// come back under its own id with its state wiped: its peers remember
// what it acknowledged.
type Quarantine struct {
	Partition lockstitch.PartitionID
	Replica   lockstitch.ReplicaID
	Plugin    string
	Kind      lockstitch.Kind
	// Joined reports whether the replica joined its partition after it
	// was created (then Kind is what it joined as).
	Joined bool
	// Reason is the error that stopped the replica from opening.
	Reason error
	// Since is when the replica was quarantined.
	Since time.Time
}

// Error describes the quarantine as the error calls to the replica
// return.
func (q *Quarantine) Error() string {
	return fmt.Sprintf("partition %d replica %d is quarantined: its state failed to open: %v", q.Partition, q.Replica, q.Reason)
}

// err is the error calls to a quarantined replica return.
func (q *Quarantine) err() error {
	return fmt.Errorf("%w: %s", lockstitch.ErrUnavailable, q.Error())
}

// Quarantine returns why this replica is quarantined, or nil when it is
// not.
func (p *Partition) Quarantine() *Quarantine { return p.quarantine.Load() }

// Quarantined lists the replicas this node has quarantined, by partition.
func (r *Replicator) Quarantined() []Quarantine {
	var out []Quarantine
	for _, p := range r.partitions() {
		if q := p.quarantine.Load(); q != nil {
			out = append(out, *q)
		}
	}
	slices.SortFunc(out, func(a, b Quarantine) int { return cmp.Compare(a.Partition, b.Partition) })
	return out
}
