package replicator

import (
	"fmt"
	"testing"
	"time"
)

// The gather scenarios run on a fake clock: each step happens at a time
// in microseconds from its start. A step is an event the batcher reports
// (arrive, release, tell, arm) or a check of what gather decides or holds
// then (decide, awayIs, kick).

// gatherEpoch is the fake clock's start; a time.Time with no monotonic
// reading, as a test clock would give.
var gatherEpoch = time.Unix(1_700_000_000, 0)

// clockAt is the fake clock at us microseconds.
func clockAt(us int) time.Time { return gatherEpoch.Add(time.Duration(us) * time.Microsecond) }

// none, as the end of a hold, means the hold is not on a timer.
const none = -1

type gatherStep struct {
	at    int // microseconds
	what  string
	check func(g *gather, now time.Time) error
}

func arrive(at, n int) gatherStep {
	return gatherStep{at, fmt.Sprintf("arrive %d", n), func(g *gather, now time.Time) error {
		g.arrived(now, n)
		return nil
	}}
}

func release(at, n int) gatherStep {
	return gatherStep{at, fmt.Sprintf("release %d", n), func(g *gather, now time.Time) error {
		g.released(now, n)
		return nil
	}}
}

func tell(at int) gatherStep {
	return gatherStep{at, "tell", func(g *gather, now time.Time) error {
		g.told(now)
		return nil
	}}
}

// decide checks what gather.next says with q queued: the move and, for a
// hold on the linger's timer, when it ends (none if not on a timer).
func decide(at int, q gatherQueue, move gatherMove, until int) gatherStep {
	what := fmt.Sprintf("next %+v", q)
	return gatherStep{at, what, func(g *gather, now time.Time) error {
		want := time.Time{}
		if until != none {
			want = clockAt(until)
		}
		m, u := g.next(now, q)
		if m != move || !u.Equal(want) {
			return fmt.Errorf("got %s until %s, want %s until %s", moveName(m), onClock(u), moveName(move), onClock(want))
		}
		return nil
	}}
}

func awayIs(n int) gatherStep {
	return gatherStep{0, fmt.Sprintf("away is %d", n), func(g *gather, _ time.Time) error {
		if g.away != n {
			return fmt.Errorf("away %d, want %d", g.away, n)
		}
		return nil
	}}
}

// kick checks gather.mustKick for an append after which the open batch
// waits wait microseconds.
func kick(at, wait int, want bool) gatherStep {
	return gatherStep{at, fmt.Sprintf("kick after a wait of %dµs", wait), func(g *gather, now time.Time) error {
		if got := g.mustKick(now, time.Duration(wait)*time.Microsecond); got != want {
			return fmt.Errorf("kick %v, want %v (armed at %s)", got, want, onClock(g.armed))
		}
		return nil
	}}
}

func arm(at, wait int) gatherStep {
	return gatherStep{at, fmt.Sprintf("arm for %dµs", wait), func(g *gather, now time.Time) error {
		g.arm(now, time.Duration(wait)*time.Microsecond)
		return nil
	}}
}

func moveName(m gatherMove) string {
	switch m {
	case gatherHold:
		return "hold"
	case gatherReady:
		return "ready"
	case gatherOpen:
		return "open"
	}
	return fmt.Sprintf("move(%d)", m)
}

// onClock prints a fake-clock time, or none for the zero time.
func onClock(t time.Time) string {
	if t.IsZero() {
		return "none"
	}
	return fmt.Sprintf("%dµs", t.Sub(gatherEpoch).Microseconds())
}

// TestGather runs gather through scenarios of appends and completions on
// a fake clock, each checking one part of the policy (gather.go).
//
// Each of these mutations of gather.go fails at least one scenario: the
// slot test off by one; the open batch before full ones; no hold while
// a batch is in flight; the gap ignored, not disabled by 0, or not capped
// by the linger; a hold at the deadline itself; away not reset when the
// wait ends, below zero, or set rather than added to by a release;
// lastArrival not moved by an append or a release; told a no-op, or
// moving the linger; the linger counted from the last arrival; an empty
// queue proposing; a wait with no one away; a hold with no deadline; and
// in the kick: without a wait, with no timer armed, on a later or an
// equal deadline, arm not clearing or not counting from now.
func TestGather(t *testing.T) {
	t.Parallel()
	const (
		linger = 2000 * time.Microsecond
		gap    = 300 * time.Microsecond
	)
	open := gatherQueue{open: true}
	tests := []struct {
		name        string
		linger, gap time.Duration
		slots       int
		steps       []gatherStep
	}{
		{"a lone append goes at once", linger, gap, 4, []gatherStep{
			arrive(0, 1),
			decide(0, open, gatherOpen, none),
		}},
		{"the open batch goes once the callers away are back", linger, gap, 4, []gatherStep{
			release(0, 3),
			tell(10),
			arrive(20, 1),
			awayIs(2),
			decide(20, open, gatherHold, 320),
			arrive(30, 2),
			awayIs(0),
			decide(30, open, gatherOpen, none),
		}},
		{"full batches go first while a slot is free", linger, gap, 4, []gatherStep{
			release(0, 4),
			decide(10, open, gatherHold, 300), // the open batch waits ...
			decide(10, gatherQueue{ready: true, open: true}, gatherReady, none), // ... a full one does not
			decide(10, gatherQueue{inflight: 3, ready: true, open: true}, gatherReady, none),
			decide(10, gatherQueue{inflight: 4, ready: true, open: true}, gatherHold, none),
			decide(10, gatherQueue{inflight: 5, ready: true}, gatherHold, none),
			awayIs(4),
		}},
		{"abandoned batches hold slots, not the open batch", linger, gap, 2, []gatherStep{
			decide(0, gatherQueue{inflight: 1, open: true}, gatherHold, none),
			decide(0, gatherQueue{inflight: 1, abandoned: 1, open: true}, gatherOpen, none),
			decide(0, gatherQueue{inflight: 2, abandoned: 1, open: true}, gatherHold, none),
			decide(0, gatherQueue{inflight: 2, abandoned: 2, ready: true, open: true}, gatherHold, none),
		}},
		{"one slot", linger, gap, 1, []gatherStep{
			decide(0, gatherQueue{ready: true, open: true}, gatherReady, none),
			decide(0, gatherQueue{inflight: 1, ready: true, open: true}, gatherHold, none),
		}},
		{"nothing queued", linger, gap, 4, []gatherStep{
			decide(0, gatherQueue{}, gatherHold, none),
			decide(0, gatherQueue{inflight: 1}, gatherHold, none),
			release(10, 4),
			decide(20, gatherQueue{}, gatherHold, none),
			awayIs(4),
		}},
		{"the open batch waits for the callers away until the linger ends", linger, gap, 4, []gatherStep{
			release(0, 10),
			tell(100),
			// Appends closer than the gap: the linger ends the wait.
			arrive(300, 1),
			arrive(550, 1),
			arrive(800, 1),
			arrive(1050, 1),
			arrive(1300, 1),
			arrive(1550, 1),
			decide(1550, open, gatherHold, 1850),
			arrive(1800, 1),
			awayIs(3),
			decide(1800, open, gatherHold, 2000), // not 2100: the gap ends no later than the linger
			decide(1999, open, gatherHold, 2000),
			decide(2000, open, gatherOpen, none),
			awayIs(0),
		}},
		{"a gap with no append ends the wait", linger, gap, 4, []gatherStep{
			release(0, 10),
			tell(50),
			arrive(100, 1),
			decide(100, open, gatherHold, 400),
			arrive(350, 1), // each append moves the end of the gap
			decide(350, open, gatherHold, 650),
			decide(649, open, gatherHold, 650),
			decide(650, open, gatherOpen, none),
			awayIs(0),
		}},
		{"the linger counts from the last release", linger, 0, 4, []gatherStep{
			release(0, 2),
			tell(100),
			release(1000, 2),
			tell(1100),
			awayIs(4),
			decide(1500, open, gatherHold, 3000),
			decide(2999, open, gatherHold, 3000),
			decide(3000, open, gatherOpen, none),
		}},
		{"the gap counts from the end of telling", linger, gap, 4, []gatherStep{
			release(0, 4),
			decide(100, open, gatherHold, 300), // from the release until told
			tell(200),
			decide(250, open, gatherHold, 500),
			decide(500, open, gatherOpen, none),
		}},
		{"arrivals count callers back, down to none", linger, gap, 4, []gatherStep{
			release(0, 3),
			awayIs(3),
			arrive(10, 2),
			awayIs(1),
			arrive(20, 5),
			awayIs(0),
			decide(20, open, gatherOpen, none),
			release(30, 2),
			awayIs(2),
		}},
		{"the end of the wait takes the callers still away as gone", linger, gap, 4, []gatherStep{
			release(0, 5),
			arrive(100, 1),
			decide(400, open, gatherOpen, none),
			awayIs(0),
			// The next append is not held for them.
			arrive(500, 1),
			decide(500, open, gatherOpen, none),
		}},
		{"an open batch waits while a batch is in flight", linger, gap, 4, []gatherStep{
			arrive(0, 1),
			decide(0, gatherQueue{inflight: 1, open: true}, gatherHold, none),
			release(10, 4),
			// The linger is over, but a batch is in flight: its
			// completion kicks, and the callers away still count.
			decide(5000, gatherQueue{inflight: 1, open: true}, gatherHold, none),
			awayIs(4),
		}},
		{"BatchGap 0 waits the whole linger", linger, 0, 4, []gatherStep{
			release(0, 4),
			tell(10),
			arrive(20, 1),
			decide(1000, open, gatherHold, 2000),
			decide(2000, open, gatherOpen, none),
		}},
		{"a gap above the linger waits the whole linger", linger, 3 * linger, 4, []gatherStep{
			release(0, 4),
			tell(10),
			decide(1000, open, gatherHold, 2000),
			decide(2000, open, gatherOpen, none),
		}},
		{"BatchLinger 0 proposes as soon as nothing is in flight", 0, gap, 4, []gatherStep{
			release(0, 4),
			tell(10),
			decide(10, open, gatherOpen, none),
		}},
		{"an append kicks the run goroutine unless its timer fires by the deadline", linger, gap, 4, []gatherStep{
			kick(0, 0, false),  // not on a timer
			kick(0, 100, true), // no timer set
			arm(0, 300),
			kick(100, 100, true),  // 200 < 300
			kick(100, 200, false), // 300: the timer fires then
			kick(100, 500, false), // the timer fires early and is set again
			arm(400, 0),           // no timer
			kick(400, 500, true),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := gather{linger: tt.linger, gap: tt.gap, slots: tt.slots}
			for i, s := range tt.steps {
				if err := s.check(&g, clockAt(s.at)); err != nil {
					t.Fatalf("step %d, %s at %dµs: %v", i, s.what, s.at, err)
				}
			}
		})
	}
}
