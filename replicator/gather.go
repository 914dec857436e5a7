package replicator

import "time"

// gather is the batcher's gathering policy: when the open, partial batch
// may be proposed, and whether an append must wake the batcher's
// goroutine. It is the deterministic core of the batcher, as etcd's
// RawNode is of its Node: it reads no clock (every method is given now),
// takes no lock, starts no goroutine and allocates nothing. The batcher
// (batcher.go, the shell) calls it with its mu held, reads the clock,
// proposes, and keeps the timer; gather_test.go drives it with made-up
// times.
//
// The policy. A full batch is proposed as soon as one of the slots is
// free; the open batch once nothing is in flight (but batches abandoned
// when the replica lost its leadership). When a batch completes,
// its callers tend to append again at once, so the open batch then waits
// for as many ops as the completed batches had (away), but no later than
// the last completion plus linger (gatherUntil), and no later than gap
// after the last append or the end of the last completion (lastArrival):
// callers coming back arrive microseconds apart, so a gap means the rest
// are not coming. Under light load an append is proposed at once.
//
// The times given need not increase from call to call: the shell reads
// the time of an append before it takes its lock, so an append may
// report a time before that of a completion already recorded.
//
// Invariants:
//   - away >= 0.
//   - away > 0 only after released, which set gatherUntil and lastArrival.
//   - armed is zero, or the deadline arm last recorded: the shell's
//     timer is then set to fire no earlier.
type gather struct {
	// linger, gap and slots are Config.BatchLinger, BatchGap and
	// MaxInflightBatches. A gap of 0 waits the whole linger.
	linger, gap time.Duration
	slots       int
	// away counts the ops of completed batches whose callers have not
	// appended again (as far as the batcher can tell: it counts ops, not
	// callers). While it is above zero the open batch waits for them, up
	// to gatherUntil and to lastArrival plus gap.
	away        int
	gatherUntil time.Time
	lastArrival time.Time
	// armed is the deadline the run goroutine's timer is set for, or
	// zero.
	armed time.Time
}

// gatherQueue is what the batcher holds, as the policy sees it.
type gatherQueue struct {
	inflight int // batches proposed and not yet released
	// abandoned counts the batches of inflight whose callers were told
	// already (the replica lost its leadership): they hold their slots
	// until dragonboat gives their outcome, up to ProposalTimeout, but
	// no caller will come back from them, so the open batch does not
	// wait for them.
	abandoned   int
	ready, open bool // a full batch waits for a slot; a partial batch is open
}

// gatherMove is what the batcher is to do next.
type gatherMove uint8

const (
	gatherHold  gatherMove = iota // propose nothing
	gatherReady                   // propose the first full batch
	gatherOpen                    // propose the open batch
)

// arrived records that n ops were appended at now: n callers of the
// batches completed are taken to be back.
func (g *gather) arrived(now time.Time, n int) {
	g.away = max(g.away-n, 0)
	g.lastArrival = now
}

// released records that a batch of n ops completed (or failed) at now,
// before its callers are told: they are away until they append again.
func (g *gather) released(now time.Time, n int) {
	g.away += n
	g.gatherUntil, g.lastArrival = now.Add(g.linger), now
}

// told records that the callers of a batch were told its outcome at now.
// They come back only once all have been told, which takes a while for
// hundreds, so the gap is counted from here.
func (g *gather) told(now time.Time) {
	g.lastArrival = now
}

// next says what to propose now, given what is queued: full batches
// first, in order, while a slot is free; then the open batch once nothing
// is in flight and the callers away are back, or the wait for them is
// over (the callers not back by then are taken to have gone, and away is
// reset). If the open batch is held only by that wait, next returns
// gatherHold and the time the wait ends; otherwise the time is zero (a
// completion or an append moves things on).
func (g *gather) next(now time.Time, q gatherQueue) (gatherMove, time.Time) {
	switch {
	case q.inflight >= g.slots:
		return gatherHold, time.Time{}
	case q.ready:
		return gatherReady, time.Time{}
	case !q.open:
		return gatherHold, time.Time{}
	case q.inflight > q.abandoned:
		return gatherHold, time.Time{} // a completion kicks
	}
	if g.away > 0 {
		until := g.gatherUntil
		if g.gap > 0 && g.lastArrival.Add(g.gap).Before(until) {
			until = g.lastArrival.Add(g.gap)
		}
		if now.Before(until) {
			return gatherHold, until
		}
		g.away = 0
	}
	return gatherOpen, time.Time{}
}

// mustKick says whether an append at now, after which the open batch
// waits for wait (0: not on a timer), must wake the run goroutine: it
// must unless that goroutine's timer is set to fire by then. (Appends
// only move the deadline later: the timer then fires early, and the run
// goroutine sets it again.)
func (g *gather) mustKick(now time.Time, wait time.Duration) bool {
	return wait > 0 && (g.armed.IsZero() || now.Add(wait).Before(g.armed))
}

// arm records that the run goroutine, at now, set its timer for wait, or
// has none if wait is 0.
func (g *gather) arm(now time.Time, wait time.Duration) {
	g.armed = time.Time{}
	if wait > 0 {
		g.armed = now.Add(wait)
	}
}
