package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/valyala/bytebufferpool"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// streamPool holds the Data frames under construction of subscriptions.
var streamPool bytebufferpool.Pool

// Stream is the server's end of one subscription. The Handler's Subscribe
// sends records to it in LSN order; the Stream packs them into Data
// frames and sends a frame only when the subscriber's credit covers it.
//
// Send, Flush, SetCommitted and Next must be called only from the
// goroutine running Subscribe, and not after it returns.
type Stream struct {
	c   *serverConn
	id  uint64
	ctx context.Context

	next      wal.LSN // LSN the next record must have
	epoch     uint64  // epoch of the last record sent
	marker    wal.LSN // the subscription's Marker
	snapshot  bool    // the subscriber allows a snapshot
	snapLSN   wal.LSN // LSN of the snapshot being sent, 0 for none
	snapEpoch uint64
	committed wal.LSN
	buf       *bytebufferpool.ByteBuffer // Data frame under construction
	ops       int                        // records in buf
	chunk     int                        // record bytes at which a frame is sent
	max       int                        // record bytes a frame can carry

	mu        sync.Mutex // guards the credits
	credBytes uint64
	credOps   uint64
	credit    chan struct{} // signalled when credit arrives, capacity 1
}

// dataFixed is the part of a Data frame before its records.
const dataFixed = HeaderSize + readResultFixed

// newStream returns the Stream of subscription id on c; the caller sets
// its context.
func newStream(c *serverConn, id uint64, req *SubscribeRequest) *Stream {
	s := &Stream{
		c:         c,
		id:        id,
		next:      req.Marker + 1,
		marker:    req.Marker,
		snapshot:  req.Snapshot,
		committed: req.Marker,
		buf:       streamPool.Get(),
		max:       c.maxOut - readResultFixed,
		credBytes: req.CreditBytes,
		credOps:   uint64(req.CreditOps),
		credit:    make(chan struct{}, 1),
	}
	s.chunk = min(c.srv.cfg.StreamChunkBytes, s.max)
	s.buf.B = append(s.buf.B[:0], make([]byte, dataFixed)...)
	return s
}

// Next returns the LSN the stream expects next: the subscription's
// Marker+1 until a record is sent.
func (s *Stream) Next() wal.LSN { return s.next }

// SetCommitted records the commit LSN the replica knows; each Data frame
// carries the latest value (at least the LSN of its last record).
func (s *Stream) SetCommitted(lsn wal.LSN) {
	if lsn > s.committed {
		s.committed = lsn
	}
}

// Send queues rec for the subscriber. It waits while the subscriber's
// credit does not cover the record (flushing what is queued first), and
// sends a Data frame once StreamChunkBytes of records are queued; call
// Flush when no more records are at hand. rec is copied: rec.Payload may
// be reused once Send returns. The frame is computed from rec as
// wal.AppendRecord does, with the payload's CRC-32C, which the subscriber
// verifies; a record whose rec.CRC (unless 0, unknown) differs from its
// payload's is refused with ErrChecksum.
//
// Records must come in LSN order from the subscription's Marker+1 with
// epochs that never decrease: Send panics otherwise. It fails with
// ErrTooLarge when the record cannot fit in a frame the subscriber
// accepts, and with ctx's error when the subscription ends.
func (s *Stream) Send(rec *wal.Record) error {
	if rec.LSN != s.next {
		panic(fmt.Sprintf("transport: Stream.Send got LSN %d, want %d: records must be consecutive", rec.LSN, s.next))
	}
	if rec.Epoch < s.epoch {
		panic(fmt.Sprintf("transport: Stream.Send got epoch %d after %d at LSN %d: epochs must not decrease", rec.Epoch, s.epoch, rec.LSN))
	}
	size := wal.FrameSize(len(rec.Payload))
	if size > s.max {
		return fmt.Errorf("%w: record %d of %d bytes exceeds the subscriber's frame limit", lockstitch.ErrTooLarge, rec.LSN, size)
	}
	if s.ops > 0 && len(s.buf.B)-dataFixed+size > s.chunk {
		if err := s.Flush(); err != nil {
			return err
		}
	}
	for !s.take(size) {
		if err := s.Flush(); err != nil {
			return err
		}
		select {
		case <-s.credit:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
	var err error
	if s.buf.B, err = appendChecked(s.buf.B, rec); err != nil {
		return err
	}
	s.ops++
	s.next++
	s.epoch = rec.Epoch
	return nil
}

// SendSnapshot sends one chunk of a snapshot of the partition's state
// at LSN lsn (epoch epoch: the op's at lsn) as a Snapshot frame, before
// any record: chunk is one whole chunk of package copy's chunked stream
// format (length, CRC-32C, data), which the subscriber verifies. The
// terminator chunk (length 0) ends the snapshot; the records that follow
// start at lsn+1. A chunk takes one op and its length in bytes of the
// subscriber's credit; SendSnapshot waits for it.
//
// SendSnapshot panics unless the subscriber allowed a snapshot
// (SubscribeRequest.Snapshot), lsn >= Marker, no record was sent yet and
// every chunk of the snapshot has the same lsn and epoch. It fails with
// ErrInvalidArgument for a chunk that is not one whole chunk, with
// ErrTooLarge when the frame exceeds the subscriber's limit, and with
// ctx's error when the subscription ends.
func (s *Stream) SendSnapshot(lsn wal.LSN, epoch uint64, chunk []byte) error {
	switch {
	case !s.snapshot:
		panic("transport: Stream.SendSnapshot on a subscription that allows no snapshot, or after its snapshot")
	case s.next != s.marker+1 || s.ops > 0:
		panic("transport: Stream.SendSnapshot after records or after the snapshot's end")
	case lsn < s.marker:
		panic(fmt.Sprintf("transport: Stream.SendSnapshot at LSN %d, below the marker %d", lsn, s.marker))
	case s.snapLSN != 0 && (lsn != s.snapLSN || epoch != s.snapEpoch):
		panic(fmt.Sprintf("transport: Stream.SendSnapshot at LSN %d epoch %d inside a snapshot at %d epoch %d", lsn, epoch, s.snapLSN, s.snapEpoch))
	}
	if len(chunk) < 8 || int64(binary.LittleEndian.Uint32(chunk)) != int64(len(chunk)-8) || len(chunk)-8 > MaxSnapshotChunk {
		return fmt.Errorf("%w: a snapshot chunk of %d bytes is not one whole chunk", lockstitch.ErrInvalidArgument, len(chunk))
	}
	if snapshotFixed+len(chunk)-8 > s.c.maxOut {
		return fmt.Errorf("%w: snapshot chunk of %d bytes exceeds the subscriber's frame limit", lockstitch.ErrTooLarge, len(chunk))
	}
	s.snapLSN, s.snapEpoch = lsn, epoch
	size := len(chunk) - 8
	for !s.take(size) {
		select {
		case <-s.credit:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
	if !s.c.out.waitRoom(s.ctx, nil) {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		return lockstitch.ErrClosed
	}
	m := snapshotMsg{LSN: lsn, Epoch: epoch, CRC: binary.LittleEndian.Uint32(chunk[4:]), Data: chunk[8:]}
	b, open := s.c.out.lock()
	if open {
		start := len(b)
		b = appendSnapshot(b, s.id, &m)
		s.c.m.FrameSent(TypeSnapshot, len(b)-start)
	}
	s.c.out.unlock(b)
	if !open {
		return lockstitch.ErrClosed
	}
	if size == 0 {
		// The snapshot is whole: records follow from the op after it.
		s.next, s.epoch = lsn+1, epoch
		s.committed = max(s.committed, lsn)
		s.snapshot = false
	}
	return nil
}

// take takes credit for one record of size bytes, if there is enough.
func (s *Stream) take(size int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.credOps == 0 || s.credBytes < uint64(size) {
		return false
	}
	s.credOps--
	s.credBytes -= uint64(size)
	return true
}

// addCredit adds a Credit frame's credits, saturating.
func (s *Stream) addCredit(m creditMsg) {
	s.mu.Lock()
	s.credBytes = satAdd(s.credBytes, m.Bytes)
	s.credOps = satAdd(s.credOps, uint64(m.Ops))
	s.mu.Unlock()
	select {
	case s.credit <- struct{}{}:
	default:
	}
}

func satAdd(a, b uint64) uint64 {
	if a+b < a {
		return ^uint64(0)
	}
	return a + b
}

// Flush sends the queued records as one Data frame. It waits while the
// connection's queue is full, and fails with ctx's error when the
// subscription ends.
func (s *Stream) Flush() error {
	if s.ops == 0 {
		return nil
	}
	if !s.c.out.waitRoom(s.ctx, nil) {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		return lockstitch.ErrClosed
	}
	frame := s.buf.B
	AppendHeader(frame[:0], Header{Version: Version, Type: TypeData, Length: uint32(len(frame) - HeaderSize), ID: s.id})
	binary.LittleEndian.PutUint64(frame[HeaderSize:], uint64(max(s.committed, s.next-1)))
	b, open := s.c.out.lock()
	if open {
		b = append(b, frame...)
		s.c.m.FrameSent(TypeData, len(frame))
	}
	s.c.out.unlock(b)
	if !open {
		return lockstitch.ErrClosed
	}
	s.buf.B = frame[:dataFixed]
	s.ops = 0
	return nil
}

// release gives the stream's buffer back to the pool.
func (s *Stream) release() {
	streamPool.Put(s.buf)
	s.buf = nil
}
