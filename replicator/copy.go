package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lockstitch/lockstitch"
	catchup "github.com/lockstitch/lockstitch/copy"
)

// CopyOptions say what a catch-up may send.
type CopyOptions struct {
	// Snapshot allows a snapshot of the plugin's state when the ops after
	// the marker are no longer retained: the receiver then restores it and
	// follows the ops after it. Without it such a marker fails with
	// lockstitch.ErrTruncated.
	Snapshot bool
}

// Copy is what a replica or consumer holding a marker gets to catch up,
// as catchup.PlanCatchUp planned it: for a Delta, a Subscription from the
// marker's next op; for a SnapshotThenDelta, the plugin's snapshot at LSN
// Plan.SnapshotLSN (written by WriteSnapshot) and a Subscription from the
// op after it. The Subscription was opened together with the snapshot,
// while appends continued, so no op is missed or repeated. A Copy is not
// safe for concurrent use; Close releases it.
type Copy struct {
	// Plan is the plan the copy follows.
	Plan catchup.Plan
	// Committed is the committed LSN the replica knew when it planned:
	// its applied LSN, or the commit point a read index confirmed when the
	// marker was ahead of what it had applied.
	Committed lockstitch.LSN
	// SnapshotEpoch is the epoch of the op at Plan.SnapshotLSN
	// (SnapshotThenDelta only).
	SnapshotEpoch lockstitch.Epoch

	s    *stateMachine
	snap *snapshot // nil once written or released
	sub  *Subscription
}

// Copy plans how a receiver holding marker (the last LSN it has, 0 for
// none) catches up from this replica, and prepares it: see Copy and
// catchup.PlanCatchUp. A marker beyond what this replica has applied is
// checked against the partition's commit point with a Raft read index
// (which waits until the replica has applied it), so a consumer ahead of
// a lagging replica is not refused; one ahead of everything committed
// fails with a *lockstitch.DivergedError. A marker whose next op is no
// longer retained fails with a *lockstitch.TruncatedError unless
// opts.Snapshot allows a snapshot.
//
// Any replica but a witness serves a copy. Copy waits only for the read
// index, bounded by ctx.
func (p *Partition) Copy(ctx context.Context, marker lockstitch.LSN, opts CopyOptions) (*Copy, error) {
	s, err := p.state()
	if err != nil {
		return nil, err
	}
	if p.meta.Kind == lockstitch.Witness {
		return nil, fmt.Errorf("%w: partition %d: a witness holds no log", lockstitch.ErrUnavailable, p.id)
	}
	committed := lockstitch.LSN(s.applied.Load())
	if marker > committed {
		// Ahead of this replica: learn the commit point, and wait until
		// it is applied here.
		if err := p.readIndex(ctx, nil); err != nil {
			return nil, fmt.Errorf("partition %d: confirming the commit point for marker %d: %w", p.id, marker, err)
		}
		committed = lockstitch.LSN(s.applied.Load())
	}
	// Retention may drop the marker's next op between the plan and the
	// subscription: plan again then (a few times at most).
	for attempt := 0; ; attempt++ {
		c, err := p.prepareCopy(s, marker, committed, opts)
		if err == nil || !errors.Is(err, lockstitch.ErrTruncated) || attempt == 2 {
			return c, err
		}
	}
}

// prepareCopy plans and prepares a copy with mu held, so that a snapshot,
// its LSN and the subscription after it agree.
func (p *Partition) prepareCopy(s *stateMachine, marker, committed lockstitch.LSN, opts CopyOptions) (*Copy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("%w: partition %d replica %d stopped", lockstitch.ErrUnavailable, p.id, p.replica)
	}
	applied := s.state.lsn
	plan, err := catchup.PlanCatchUp(catchup.CatchUp{
		Partition:   p.id,
		Marker:      marker,
		First:       min(s.wal.First(), s.wal.Last()+1),
		Last:        s.wal.Last(),
		Committed:   max(committed, applied),
		Epoch:       s.state.epoch,
		Snapshot:    opts.Snapshot,
		SnapshotLSN: applied,
	})
	if err != nil {
		return nil, fmt.Errorf("partition %d replica %d: copy from marker %d: %w", p.id, p.replica, marker, err)
	}
	c := &Copy{Plan: plan, Committed: max(committed, applied), s: s}
	if plan.Kind == catchup.SnapshotThenDelta {
		if c.snap, err = s.captureLocked(); err != nil {
			return nil, err
		}
		c.SnapshotEpoch = c.snap.epoch
	}
	if c.sub, err = p.Subscribe(plan.From); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Subscription returns the subscription that follows the copy's plan:
// from Plan.From, then each op as it commits. It is the Copy's: Close
// closes it.
func (c *Copy) Subscription() *Subscription { return c.sub }

// WriteSnapshot writes the plugin's snapshot at Plan.SnapshotLSN to w as
// a chunked stream (package copy: read it back with catchup.ChunkReader),
// through the node's copy throttle (Config.CopyBytesPerSecond),
// concurrently with appends. It may be called once, and only for a
// SnapshotThenDelta plan (lockstitch.ErrInvalidArgument otherwise); it
// stops with ctx's error.
func (c *Copy) WriteSnapshot(ctx context.Context, w io.Writer) (err error) {
	snap := c.snap
	if snap == nil {
		return fmt.Errorf("%w: partition %d: no snapshot to write (a %v plan, or written already)", lockstitch.ErrInvalidArgument, c.s.id, c.Plan.Kind)
	}
	c.snap = nil
	defer snap.plugin.Release()
	cw := &countingWriter{w: w}
	c.s.metrics.copyStarted()
	defer func() { c.s.metrics.copyEnded("sent", cw.n.Load(), err) }()
	if err := c.s.writePluginSnapshot(ctx, snap, c.s.throttle.Writer(ctx, cw)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return nil
}

// Close releases a snapshot not written and closes the subscription. It
// is idempotent.
func (c *Copy) Close() error {
	if c.snap != nil {
		c.snap.plugin.Release()
		c.snap = nil
	}
	if c.sub != nil {
		return c.sub.Close()
	}
	return nil
}
