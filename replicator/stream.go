package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// Record is one op of a partition's stream as read back.
type Record struct {
	LSN   lockstitch.LSN
	Epoch lockstitch.Epoch
	// CRC is the CRC-32C of Payload that its producer computed, verified
	// on the way in and again when read from disk; a consumer that checks
	// it has integrity end to end.
	CRC     uint32
	Payload []byte
}

// Subscription follows a partition's stream on this replica: it delivers
// the retained ops from a marker on, then each op as it commits, in LSN
// order, with no gap and no duplicate. It is not safe for concurrent use.
//
// The ops it delivers are lent, not copied: a Record's Payload aliases the
// subscription's read buffer (the bytes as the operation log holds them)
// until the next call of Next or TryNext, so a server can send them on
// without a copy. A caller that keeps a payload copies it.
type Subscription struct {
	p      *partition
	l      *wal.Log
	it     *wal.Iterator // nil while the log has not reached next
	next   lockstitch.LSN
	rec    wal.Record
	closed bool
}

// Subscribe starts a subscription whose first op is from (a consumer
// that holds everything up to marker M subscribes from M+1). It fails with
// lockstitch.ErrTruncated (a *lockstitch.TruncatedError) if retention has
// dropped from. from may be one past the last op, to follow only new
// ones, or further: the subscription then waits until this replica's log
// reaches it (a consumer ahead of a lagging replica).
func (p *Partition) Subscribe(from lockstitch.LSN) (*Subscription, error) {
	if from == 0 {
		return nil, fmt.Errorf("%w: partition %d: subscribe from LSN 0 (the first LSN is 1)", lockstitch.ErrInvalidArgument, p.id)
	}
	s, err := p.state()
	if err != nil {
		return nil, err
	}
	sub := &Subscription{p: p.partition, l: s.wal, next: from}
	if err := sub.open(); err != nil {
		return nil, err
	}
	return sub, nil
}

// open opens the iterator once the log holds the op before next.
func (s *Subscription) open() error {
	if s.closed {
		return fmt.Errorf("%w: subscription to partition %d", lockstitch.ErrClosed, s.p.id)
	}
	if s.it != nil || s.l.Last()+1 < s.next {
		return nil
	}
	it, err := s.l.NewIterator(s.next)
	if err != nil {
		return s.p.streamError(s.l, err, s.next)
	}
	s.it = it
	return nil
}

// Next fills r with the next op, waiting for it to commit if need be. The
// payload aliases the subscription's buffer until the next call. It fails
// with lockstitch.ErrTruncated if the replica dropped what comes next (it
// installed a snapshot past it), and with ctx's error when ctx ends.
func (s *Subscription) Next(ctx context.Context, r *Record) error {
	for {
		ok, err := s.TryNext(r)
		if ok || err != nil {
			return err
		}
		if err := s.Wait(ctx); err != nil {
			return err
		}
	}
}

// TryNext fills r with the next op if it has committed already; it
// returns false if there is none yet. The payload aliases the
// subscription's buffer until the next call.
func (s *Subscription) TryNext(r *Record) (bool, error) {
	if err := s.open(); err != nil || s.it == nil {
		return false, err
	}
	err := s.it.Next(&s.rec)
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, s.p.streamError(s.l, err, s.it.Position())
	}
	s.next = s.rec.LSN + 1
	*r = Record{LSN: s.rec.LSN, Epoch: lockstitch.Epoch(s.rec.Epoch), CRC: s.rec.CRC, Payload: s.rec.Payload}
	return true, nil
}

// Wait waits until the op Next delivers next has committed on this
// replica, or ctx ends (its error is returned), or the replica stops
// (lockstitch.ErrUnavailable).
func (s *Subscription) Wait(ctx context.Context) error {
	return s.wait(ctx, ctx)
}

// WaitInTouch is Wait, except on a voting follower that has lost touch
// with its leader (it knew one and knows none: it is cut off, or the
// partition has no quorum): then it fails with lockstitch.ErrUnavailable,
// at once or when that happens, rather than wait for ops that may not
// come for long. A server whose consumer can follow from another replica
// uses it (Lockstitch's server does: the Go client then subscribes again
// elsewhere, from Position); an election in progress ends it too.
func (s *Subscription) WaitInTouch(ctx context.Context) error {
	if err := s.p.lostLeader(); err != nil {
		s.p.r.metrics.subscriptionLeft()
		return err
	}
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		for {
			ch := s.p.changes()
			if err := s.p.lostLeader(); err != nil {
				cancel(err)
				return
			}
			select {
			case <-ch:
			case <-wctx.Done():
				return
			}
		}
	}()
	err := s.wait(ctx, wctx)
	if err != nil && ctx.Err() == nil && err == context.Cause(wctx) {
		s.p.r.metrics.subscriptionLeft() // ended by the watch above
	}
	return err
}

// wait waits on the log under wctx, a context derived from ctx whose
// cause, when it is an ErrUnavailable, is the error returned.
func (s *Subscription) wait(ctx, wctx context.Context) error {
	if err := s.l.Wait(wctx, s.next); err != nil {
		if ctx.Err() != nil {
			return err
		}
		if cause := context.Cause(wctx); wctx != ctx && errors.Is(cause, lockstitch.ErrUnavailable) {
			return cause
		}
		return s.p.streamError(s.l, err, s.next)
	}
	return nil
}

// Position returns the LSN of the op that Next delivers next.
func (s *Subscription) Position() lockstitch.LSN { return s.next }

// Close ends the subscription; later calls fail with lockstitch.ErrClosed.
// It is idempotent.
func (s *Subscription) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.it == nil {
		return nil
	}
	return s.it.Close()
}

// Read returns up to maxOps committed ops from from on, holding at most
// maxBytes of payload (at least one op is returned when one is there).
// It does not wait: at the end of the stream it returns what it has.
func (p *Partition) Read(from lockstitch.LSN, maxOps, maxBytes int) ([]Record, error) {
	sub, err := p.Subscribe(from)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	var out []Record
	var arena []byte
	size := 0
	for len(out) < maxOps {
		var r Record
		ok, err := sub.TryNext(&r)
		if err != nil {
			return out, err
		}
		if !ok || (len(out) > 0 && size+len(r.Payload) > maxBytes) {
			break
		}
		size += len(r.Payload)
		start := len(arena)
		arena = append(arena, r.Payload...)
		r.Payload = arena[start:len(arena):len(arena)]
		out = append(out, r)
	}
	// The arena may have moved while growing: point payloads at its
	// final backing array.
	off := 0
	for i := range out {
		n := len(out[i].Payload)
		out[i].Payload = arena[off : off+n : off+n]
		off += n
	}
	return out, nil
}

// Backward reads a partition's retained stream on this replica from an
// LSN down to the first retained one, as an event store reads a stream
// from its end. Payloads are lent as by Subscription. It is not safe for
// concurrent use.
type Backward struct {
	p    *partition
	l    *wal.Log
	it   *wal.Iterator
	next lockstitch.LSN // the LSN TryNext delivers next; 0 after the first
	rec  wal.Record
}

// ReadBackward starts a backward read whose first op is from, or the last
// op this replica has applied when from is 0 or beyond it. It fails with
// lockstitch.ErrTruncated (a *lockstitch.TruncatedError) when from is
// below the first retained LSN.
func (p *Partition) ReadBackward(from lockstitch.LSN) (*Backward, error) {
	s, err := p.state()
	if err != nil {
		return nil, err
	}
	applied := lockstitch.LSN(s.applied.Load())
	if from == 0 || from > applied {
		from = applied
	}
	it, err := s.wal.NewIterator(from + 1)
	if err != nil {
		return nil, p.streamError(s.wal, err, from)
	}
	return &Backward{p: p.partition, l: s.wal, it: it, next: from}, nil
}

// Next fills r with the next op going back, and returns false once the
// first retained op has been delivered (or there is none). The payload
// aliases the reader's buffer until the next call.
func (b *Backward) Next(r *Record) (bool, error) {
	if b.next == 0 {
		return false, nil
	}
	err := b.it.Prev(&b.rec)
	if err == io.EOF {
		b.next = 0
		return false, nil
	}
	if err != nil {
		return false, b.p.streamError(b.l, err, b.next)
	}
	b.next = b.rec.LSN - 1
	*r = Record{LSN: b.rec.LSN, Epoch: lockstitch.Epoch(b.rec.Epoch), CRC: b.rec.CRC, Payload: b.rec.Payload}
	return true, nil
}

// Close ends the read. It is idempotent.
func (b *Backward) Close() error {
	if b.it == nil {
		return nil
	}
	err := b.it.Close()
	b.it, b.next = nil, 0
	return err
}

// ReadReverse returns up to maxOps committed ops from from down (from 0:
// from the last op applied here), highest LSN first, holding at most
// maxBytes of payload (at least one op is returned when one is there).
func (p *Partition) ReadReverse(from lockstitch.LSN, maxOps, maxBytes int) ([]Record, error) {
	b, err := p.ReadBackward(from)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	var out []Record
	size := 0
	for len(out) < maxOps {
		var r Record
		ok, err := b.Next(&r)
		if err != nil {
			return out, err
		}
		if !ok || (len(out) > 0 && size+len(r.Payload) > maxBytes) {
			break
		}
		size += len(r.Payload)
		r.Payload = append([]byte(nil), r.Payload...)
		out = append(out, r)
	}
	return out, nil
}

// streamError maps an error reading l at LSN at to the replicator's.
func (p *partition) streamError(l *wal.Log, err error, at lockstitch.LSN) error {
	switch {
	case errors.Is(err, wal.ErrTruncated):
		return fmt.Errorf("partition %d: LSN %d is no longer retained on replica %d: %w", p.id, at, p.replica,
			&lockstitch.TruncatedError{Partition: p.id, First: l.First()})
	case errors.Is(err, wal.ErrNotFound):
		return fmt.Errorf("partition %d: LSN %d is beyond the end of the stream: %w", p.id, at, err)
	case errors.Is(err, wal.ErrClosed):
		return fmt.Errorf("%w: partition %d replica %d stopped", lockstitch.ErrUnavailable, p.id, p.replica)
	}
	return fmt.Errorf("partition %d: reading LSN %d: %w", p.id, at, err)
}
