package copy

import (
	"errors"
	"testing"

	"github.com/lockstitch/lockstitch"
)

func TestPlanCatchUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   CatchUp
		want Plan
		// err is the sentinel the error matches; nil for a plan.
		err error
	}{
		{"from the start of a whole log", CatchUp{Marker: 0, First: 1, Last: 100, Committed: 100}, Plan{Kind: Delta, From: 1}, nil},
		{"from the middle", CatchUp{Marker: 50, First: 1, Last: 100, Committed: 100}, Plan{Kind: Delta, From: 51}, nil},
		{"at the first retained op", CatchUp{Marker: 40, First: 41, Last: 100, Committed: 100}, Plan{Kind: Delta, From: 41}, nil},
		{"at the end: follow new ops", CatchUp{Marker: 100, First: 41, Last: 100, Committed: 100}, Plan{Kind: Delta, From: 101}, nil},
		{"empty log, nothing committed", CatchUp{Marker: 0, First: 1, Last: 0, Committed: 0}, Plan{Kind: Delta, From: 1}, nil},
		{"ahead of a lagging replica, within committed", CatchUp{Marker: 120, First: 41, Last: 100, Committed: 150}, Plan{Kind: Delta, From: 121}, nil},
		{"truncated, no snapshot", CatchUp{Marker: 10, First: 41, Last: 100, Committed: 100}, Plan{}, lockstitch.ErrTruncated},
		{"truncated, snapshot not wanted but available", CatchUp{Marker: 10, First: 41, Last: 100, Committed: 100, SnapshotLSN: 100}, Plan{}, lockstitch.ErrTruncated},
		{"truncated, snapshot", CatchUp{Marker: 10, First: 41, Last: 100, Committed: 100, Snapshot: true, SnapshotLSN: 100}, Plan{Kind: SnapshotThenDelta, From: 101, SnapshotLSN: 100}, nil},
		{"marker 0 truncated, snapshot", CatchUp{Marker: 0, First: 41, Last: 100, Committed: 120, Snapshot: true, SnapshotLSN: 100}, Plan{Kind: SnapshotThenDelta, From: 101, SnapshotLSN: 100}, nil},
		{"retained: no snapshot even if allowed", CatchUp{Marker: 60, First: 41, Last: 100, Committed: 100, Snapshot: true, SnapshotLSN: 100}, Plan{Kind: Delta, From: 61}, nil},
		{"snapshot below the marker", CatchUp{Marker: 30, First: 41, Last: 100, Committed: 100, Snapshot: true, SnapshotLSN: 20}, Plan{}, lockstitch.ErrTruncated},
		{"snapshot whose next op is gone", CatchUp{Marker: 10, First: 41, Last: 100, Committed: 100, Snapshot: true, SnapshotLSN: 30}, Plan{}, lockstitch.ErrTruncated},
		{"snapshot beyond the log", CatchUp{Marker: 10, First: 41, Last: 100, Committed: 100, Snapshot: true, SnapshotLSN: 101}, Plan{}, lockstitch.ErrTruncated},
		{"ahead of committed", CatchUp{Marker: 101, First: 1, Last: 100, Committed: 100, Epoch: 7}, Plan{}, lockstitch.ErrDiverged},
		{"ahead of committed, even with a snapshot", CatchUp{Marker: 500, First: 41, Last: 100, Committed: 100, Epoch: 7, Snapshot: true, SnapshotLSN: 100}, Plan{}, lockstitch.ErrDiverged},
		{"anything against an empty partition", CatchUp{Marker: 1, First: 1, Last: 0, Committed: 0}, Plan{}, lockstitch.ErrDiverged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Partition = 9
			got, err := PlanCatchUp(tc.in)
			if tc.err == nil {
				if err != nil || got != tc.want {
					t.Fatalf("PlanCatchUp(%+v) = %+v, %v; want %+v", tc.in, got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("PlanCatchUp(%+v) = %+v, %v; want an error matching %v", tc.in, got, err, tc.err)
			}
			var d *lockstitch.DivergedError
			if errors.As(err, &d) && *d != (lockstitch.DivergedError{Partition: 9, Marker: tc.in.Marker, Committed: tc.in.Committed, Epoch: tc.in.Epoch}) {
				t.Fatalf("diverged error %+v", *d)
			}
			var tr *lockstitch.TruncatedError
			if errors.As(err, &tr) && *tr != (lockstitch.TruncatedError{Partition: 9, First: tc.in.First}) {
				t.Fatalf("truncated error %+v", *tr)
			}
		})
	}
}

// TestPlanCatchUpDeterministic plans every small input twice and checks
// the invariants of each plan.
func TestPlanCatchUpDeterministic(t *testing.T) {
	t.Parallel()
	for first := lockstitch.LSN(1); first <= 6; first++ {
		for last := first - 1; last <= 6; last++ {
			for committed := last; committed <= last+2; committed++ {
				for marker := lockstitch.LSN(0); marker <= committed+1; marker++ {
					for _, snap := range []bool{false, true} {
						in := CatchUp{Marker: marker, First: first, Last: last, Committed: committed, Snapshot: snap, SnapshotLSN: last}
						p1, err1 := PlanCatchUp(in)
						p2, err2 := PlanCatchUp(in)
						if p1 != p2 || (err1 == nil) != (err2 == nil) {
							t.Fatalf("%+v: two answers", in)
						}
						switch {
						case err1 != nil:
						case p1.Kind == Delta && (p1.From != marker+1 || p1.From < first):
							t.Fatalf("%+v: delta %+v", in, p1)
						case p1.Kind == SnapshotThenDelta && (p1.SnapshotLSN < marker || p1.From != p1.SnapshotLSN+1 || p1.From < first):
							t.Fatalf("%+v: snapshot %+v", in, p1)
						}
					}
				}
			}
		}
	}
}
