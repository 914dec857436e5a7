package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/lockstitch/lockstitch/wal"
)

// Record is one op of a partition's stream as read back.
type Record struct {
	LSN   LSN
	Epoch Epoch
	// CRC is the CRC-32C of Payload that its producer computed, verified
	// on the way in and again when read from disk; a consumer that checks
	// it has integrity end to end.
	CRC     uint32
	Payload []byte
}

// Subscription follows a partition's stream on this replica: it delivers
// the retained ops from a marker on, then each op as it commits, in LSN
// order, with no gap and no duplicate. It is not safe for concurrent use.
type Subscription struct {
	p   *partition
	l   *wal.Log
	it  *wal.Iterator
	rec wal.Record
}

// Subscribe starts a subscription whose first op is from (a consumer
// that holds everything up to marker M subscribes from M+1). It fails with
// ErrTruncated if retention has dropped from; from may be one past the
// last op, to follow only new ones.
func (p *Partition) Subscribe(from LSN) (*Subscription, error) {
	s, err := p.state()
	if err != nil {
		return nil, err
	}
	it, err := s.wal.NewIterator(from)
	if err != nil {
		return nil, p.streamError(err, from)
	}
	return &Subscription{p: p.partition, l: s.wal, it: it}, nil
}

// Next fills r with the next op, waiting for it to commit if need be. The
// payload aliases the subscription's buffer until the next call. It fails
// with ErrTruncated if the replica dropped what comes next (it installed a
// snapshot past it), and with ctx's error when ctx ends.
func (s *Subscription) Next(ctx context.Context, r *Record) error {
	for {
		ok, err := s.TryNext(r)
		if ok || err != nil {
			return err
		}
		if err := s.l.Wait(ctx, s.it.Position()); err != nil {
			return s.p.streamError(err, s.it.Position())
		}
	}
}

// TryNext fills r with the next op if it has committed already; it
// returns false if there is none yet.
func (s *Subscription) TryNext(r *Record) (bool, error) {
	err := s.it.Next(&s.rec)
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, s.p.streamError(err, s.it.Position())
	}
	*r = Record{LSN: s.rec.LSN, Epoch: Epoch(s.rec.Epoch), CRC: s.rec.CRC, Payload: s.rec.Payload}
	return true, nil
}

// Position returns the LSN of the op that Next delivers next.
func (s *Subscription) Position() LSN { return s.it.Position() }

// Close ends the subscription.
func (s *Subscription) Close() error { return s.it.Close() }

// Read returns up to maxOps committed ops from from on, holding at most
// maxBytes of payload (at least one op is returned when one is there).
// It does not wait: at the end of the stream it returns what it has.
func (p *Partition) Read(from LSN, maxOps, maxBytes int) ([]Record, error) {
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

// streamError maps a log error to the replicator's.
func (p *partition) streamError(err error, at LSN) error {
	switch {
	case errors.Is(err, wal.ErrTruncated):
		return fmt.Errorf("%w: partition %d: LSN %d is no longer retained on replica %d: %v", ErrTruncated, p.id, at, p.replica, err)
	case errors.Is(err, wal.ErrNotFound):
		return fmt.Errorf("partition %d: LSN %d is beyond the end of the stream: %w", p.id, at, err)
	case errors.Is(err, wal.ErrClosed):
		return fmt.Errorf("%w: partition %d replica %d stopped", ErrUnavailable, p.id, p.replica)
	}
	return fmt.Errorf("partition %d: reading LSN %d: %w", p.id, at, err)
}
