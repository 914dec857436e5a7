package copy

import (
	"fmt"

	"github.com/lockstitch/lockstitch"
)

// PlanKind is how a replica or consumer that holds a marker catches up.
type PlanKind uint8

// Plan kinds.
const (
	// Delta streams the ops after the marker from the retained log.
	Delta PlanKind = 1
	// SnapshotThenDelta sends a snapshot of the state at an LSN S at or
	// above the marker, then streams the ops after S from the retained
	// log: the marker's next op is no longer retained.
	SnapshotThenDelta PlanKind = 2
)

// String returns the kind's name.
func (k PlanKind) String() string {
	switch k {
	case Delta:
		return "delta"
	case SnapshotThenDelta:
		return "snapshot-then-delta"
	}
	return fmt.Sprintf("PlanKind(%d)", uint8(k))
}

// CatchUp is what PlanCatchUp decides from: a marker and what a replica
// has to offer.
//
// Invariants the caller provides: First <= Last+1 (First = Last+1 for an
// empty log), Last <= Committed is not required (a lagging replica's log
// ends before the committed LSN; its stream then waits for the rest).
type CatchUp struct {
	// Partition names the partition in errors.
	Partition lockstitch.PartitionID
	// Marker is the last LSN the receiver holds (0: none).
	Marker lockstitch.LSN
	// First and Last bound the retained log of the replica serving the
	// copy.
	First, Last lockstitch.LSN
	// Committed is the last LSN the partition is known to have committed,
	// and Epoch the partition's epoch then.
	Committed lockstitch.LSN
	Epoch     lockstitch.Epoch
	// Snapshot says whether the receiver accepts a snapshot and the
	// replica can take one; SnapshotLSN is the LSN it would be taken at
	// (the replica's applied LSN).
	Snapshot    bool
	SnapshotLSN lockstitch.LSN
}

// Plan is PlanCatchUp's decision.
type Plan struct {
	Kind PlanKind
	// From is the first op to stream from the log: Marker+1 for Delta,
	// SnapshotLSN+1 for SnapshotThenDelta.
	From lockstitch.LSN
	// SnapshotLSN is the LSN of the snapshot to send first
	// (SnapshotThenDelta only).
	SnapshotLSN lockstitch.LSN
}

// PlanCatchUp decides how the receiver of c catches up. It is pure and
// deterministic. It fails with a *lockstitch.DivergedError when the
// marker is ahead of the committed LSN (checked first: a diverged
// receiver is never streamed to), and with a *lockstitch.TruncatedError
// when the marker's next op is no longer retained and no snapshot can
// bridge the gap (none allowed, or one that would not reach the
// marker or the retained log).
func PlanCatchUp(c CatchUp) (Plan, error) {
	if c.Marker > c.Committed {
		return Plan{}, &lockstitch.DivergedError{Partition: c.Partition, Marker: c.Marker, Committed: c.Committed, Epoch: c.Epoch}
	}
	if c.Marker+1 >= c.First {
		return Plan{Kind: Delta, From: c.Marker + 1}, nil
	}
	// The ops after the marker start before the retained log: only a
	// snapshot at or after the marker, whose next op is retained, helps.
	if c.Snapshot && c.SnapshotLSN >= c.Marker && c.SnapshotLSN+1 >= c.First && c.SnapshotLSN <= c.Last {
		return Plan{Kind: SnapshotThenDelta, From: c.SnapshotLSN + 1, SnapshotLSN: c.SnapshotLSN}, nil
	}
	return Plan{}, &lockstitch.TruncatedError{Partition: c.Partition, First: c.First}
}
