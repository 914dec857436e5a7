package replicator

import (
	"fmt"

	"github.com/lockstitch/lockstitch"
)

// ProducerState is what a partition remembers of one idempotent producer
// (see DedupeWindow): what a producer that restarts needs to resume with
// no gap and no duplicate.
type ProducerState struct {
	Producer lockstitch.ProducerID
	// Known reports whether the partition remembers the producer. When
	// it does not, Forgotten says whether it may have forgotten it (it
	// has evicted producers, MaxProducers being reached): ops the
	// producer appended before then cannot be told from ops it did not.
	Known, Forgotten bool
	// Floor: every sequence at or above it that was applied is
	// remembered; below it, nothing is known (a resend below it is
	// refused with ErrStaleSequence). 0 while the partition remembers
	// every op of the producer.
	Floor uint64
	// Last is the highest sequence applied, committed at LastLSN in
	// LastEpoch. Sequences below it may be missing (appends that failed
	// while later ones succeeded): a resend of those is applied.
	Last      uint64
	LastLSN   lockstitch.LSN
	LastEpoch lockstitch.Epoch
}

// Producer returns what the partition remembers of producer id. Only the
// leader answers (elsewhere it fails with a *lockstitch.NotLeaderError):
// it has applied every op it acknowledged. A leader deposed without
// knowing it yet may answer with less than was committed since; a
// producer that resumes from that resends ops the partition answers as
// duplicates or, below the floor, refuses with ErrStaleSequence: never
// applies twice.
func (p *Partition) Producer(id lockstitch.ProducerID) (ProducerState, error) {
	if id == 0 {
		return ProducerState{}, fmt.Errorf("%w: producer id 0 is not a producer", lockstitch.ErrInvalidArgument)
	}
	s, err := p.state()
	if err != nil {
		return ProducerState{}, err
	}
	if !p.isLeader() {
		return ProducerState{}, p.notLeader()
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.state.dedupe.producerState(id), nil
}

// producerState describes producer id.
func (d *dedupe) producerState(id lockstitch.ProducerID) ProducerState {
	st := ProducerState{Producer: id, Forgotten: d.forgotten}
	pr := d.byID[id]
	if pr == nil || pr.len() == 0 {
		return st
	}
	last := pr.last()
	st.Known, st.Floor, st.Last, st.LastLSN, st.LastEpoch = true, pr.floor, last.seq, last.lsn, last.epoch
	return st
}
