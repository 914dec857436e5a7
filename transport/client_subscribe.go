package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// subPool holds received Data frames waiting to be consumed.
var subPool bytebufferpool.Pool

// Subscription follows a partition's committed records from a marker,
// with flow control: it grants the server credit for
// ClientConfig.SubscribeWindowOps ops and SubscribeWindowBytes bytes and
// renews it as records are consumed, so it never buffers more than that.
// When the connection is lost or the server stops serving it (NotLeader,
// ShuttingDown, Unavailable), it subscribes again from the last record it
// delivered, so Next sees every LSN once, in order.
//
// Next must be called from one goroutine at a time; Close may be called
// from any.
type Subscription struct {
	cl        *Client
	partition lockstitch.PartitionID
	winOps    uint32
	winBytes  uint64
	restoreFn func(lsn wal.LSN, r io.Reader) error

	// Owned by the goroutine calling Next.
	marker    wal.LSN // last LSN delivered
	epoch     uint64  // epoch of the last record delivered
	committed wal.LSN
	cur       *bytebufferpool.ByteBuffer // Data frame being consumed
	off       int
	usedOps   uint32 // consumed since the last Credit
	usedBytes uint64
	failures  int         // consecutive failed attempts
	lastConn  *clientConn // connection of the last attempt, for routing

	mu     sync.Mutex
	att    *subAttempt // the attempt in progress, nil between attempts
	closed bool
	done   chan struct{} // closed by Close
}

// subAttempt is one Subscribe request on one connection.
type subAttempt struct {
	cc *clientConn
	id uint64
	ch chan subMsg // Data frames, then one End or Error

	mu         sync.Mutex // guards the credit the server still holds
	availOps   uint64
	availBytes uint64
}

// subMsg is one frame of a subscription's stream.
type subMsg struct {
	buf       *bytebufferpool.ByteBuffer // records, for a Data frame; the body, for a Snapshot frame
	snapshot  bool                       // buf is a Snapshot frame's body
	committed wal.LSN
	err       error // for an Error frame or a lost connection
	end       bool  // for End
}

// Subscribe starts following partition p after marker: Next returns the
// record at marker+1 first. The subscription goes to the partition's
// leader. It is SubscribeWith with no options: a marker whose next record
// is no longer retained fails Next with a *lockstitch.TruncatedError.
func (cl *Client) Subscribe(ctx context.Context, p lockstitch.PartitionID, marker wal.LSN) (*Subscription, error) {
	return cl.SubscribeWith(ctx, p, marker, SubscribeOptions{})
}

// SubscribeOptions are the options of SubscribeWith.
type SubscribeOptions struct {
	// Restore, if set, lets the server catch the subscriber up through a
	// snapshot when marker+1 is no longer retained: Next calls Restore
	// with the snapshot's LSN S and its bytes (the partition plugin's
	// snapshot, each chunk verified before Restore reads it), and then
	// delivers the records from S+1. Restore must discard the
	// subscriber's state and replace it with the snapshot's. It runs on
	// the goroutine calling Next, and may run again (a lost connection
	// sends the snapshot anew): a damaged chunk makes its reader fail
	// with an error matching lockstitch.ErrChecksum, which Next returns
	// (the next call subscribes again from the old marker). An error
	// Restore returns is returned by Next.
	//
	// Without Restore, the Subscribe frame has the short form any server
	// understands.
	Restore func(lsn wal.LSN, r io.Reader) error
}

// SubscribeWith starts following partition p after marker, as Subscribe
// does, with opts. A marker ahead of everything the partition committed
// fails Next with a *lockstitch.DivergedError carrying the committed LSN
// and epoch.
func (cl *Client) SubscribeWith(ctx context.Context, p lockstitch.PartitionID, marker wal.LSN, opts SubscribeOptions) (*Subscription, error) {
	s := &Subscription{
		cl:        cl,
		partition: p,
		winOps:    uint32(cl.cfg.SubscribeWindowOps),
		winBytes:  uint64(max(cl.cfg.SubscribeWindowBytes, int64(cl.cfg.MaxFrameBytes))),
		restoreFn: opts.Restore,
		marker:    marker,
		committed: marker,
		done:      make(chan struct{}),
	}
	for {
		err := s.start(ctx)
		if err == nil {
			return s, nil
		}
		if !s.retry(ctx, err) {
			return nil, s.gaveUp(ctx, err)
		}
	}
}

// Marker returns the LSN of the last record Next delivered.
func (s *Subscription) Marker() wal.LSN { return s.marker }

// Committed returns the highest commit LSN the serving replica reported.
func (s *Subscription) Committed() wal.LSN { return s.committed }

// Next fills rec with the next record, waiting for one to commit. The
// record's payload aliases the Subscription's buffer: it is valid until
// the next call to Next. Each record's frame and payload CRC-32C are
// verified (a damaged record fails with an error matching ErrChecksum, and
// the next call subscribes again from the marker), as are consecutive
// LSNs and non-decreasing epochs. Next returns io.EOF if the server ended
// the stream, ErrClosed after Close, and a non-retryable error (such as a
// *TruncatedError when marker+1 is no longer retained and the
// subscription has no Restore option, or a *DivergedError when the marker
// is beyond the partition's commit point) as it is. With a Restore option
// (SubscribeWith), Next restores a snapshot first when the server sends
// one, and then delivers the records after it. In steady state it does
// not allocate.
func (s *Subscription) Next(ctx context.Context, rec *wal.Record) error {
	for {
		if s.cur != nil {
			if s.off < len(s.cur.B) {
				return s.decode(rec)
			}
			subPool.Put(s.cur)
			s.cur = nil
		}
		s.mu.Lock()
		att, closed := s.att, s.closed
		s.mu.Unlock()
		if closed {
			return lockstitch.ErrClosed
		}
		if att == nil {
			if err := s.start(ctx); err != nil {
				if s.retry(ctx, err) {
					continue
				}
				if s.isClosed() {
					return lockstitch.ErrClosed // closed while it waited to retry
				}
				return s.gaveUp(ctx, err)
			}
			continue
		}
		select {
		case m := <-att.ch:
			switch {
			case m.snapshot:
				ended, err := s.restore(ctx, att, m)
				if err == nil {
					continue
				}
				if ended {
					s.endAttempt(att)
				} else {
					s.restart()
				}
				if s.isClosed() {
					return lockstitch.ErrClosed
				}
				if ended && s.retry(ctx, err) {
					continue
				}
				if s.isClosed() {
					return lockstitch.ErrClosed
				}
				var dv *lockstitch.DivergedError
				if errors.As(err, &dv) {
					dv.Partition, dv.Marker = s.partition, s.marker
				}
				return s.gaveUp(ctx, err)
			case m.buf != nil:
				s.cur, s.off = m.buf, 0
				s.committed = max(s.committed, m.committed)
			case m.end:
				s.endAttempt(att)
				if s.isClosed() {
					return lockstitch.ErrClosed
				}
				return io.EOF
			default:
				s.endAttempt(att)
				if s.isClosed() {
					return lockstitch.ErrClosed
				}
				if !s.retry(ctx, m.err) {
					if s.isClosed() {
						return lockstitch.ErrClosed // closed while it waited to retry
					}
					var dv *lockstitch.DivergedError
					if errors.As(m.err, &dv) {
						dv.Partition, dv.Marker = s.partition, s.marker
					}
					return s.gaveUp(ctx, m.err)
				}
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return lockstitch.ErrClosed
		}
	}
}

// decode delivers the next record of the current frame.
func (s *Subscription) decode(rec *wal.Record) error {
	n, err := wal.DecodeRecord(s.cur.B[s.off:], s.cl.cfg.MaxFrameBytes, rec)
	if err == nil && (rec.LSN != s.marker+1 || rec.Epoch < s.epoch) {
		err = fmt.Errorf("%w: received LSN %d epoch %d after LSN %d epoch %d", ErrProtocol, rec.LSN, rec.Epoch, s.marker, s.epoch)
	}
	if err != nil {
		if !errors.Is(err, ErrProtocol) {
			err = fmt.Errorf("%w: record %d received damaged: %w", lockstitch.ErrChecksum, s.marker+1, err)
		}
		s.restart()
		return err
	}
	s.off += n
	s.marker, s.epoch = rec.LSN, rec.Epoch
	s.failures = 0
	s.usedOps++
	s.usedBytes += uint64(n)
	if s.usedOps >= (s.winOps+1)/2 || s.usedBytes >= (s.winBytes+1)/2 {
		s.grant()
	}
	return nil
}

// grant renews the server's credit by what has been consumed.
func (s *Subscription) grant() {
	s.mu.Lock()
	a := s.att
	s.mu.Unlock()
	if a == nil {
		return
	}
	m := creditMsg{Bytes: s.usedBytes, Ops: s.usedOps}
	s.usedOps, s.usedBytes = 0, 0
	a.mu.Lock()
	a.availOps += uint64(m.Ops)
	a.availBytes += m.Bytes
	a.mu.Unlock()
	b, open := a.cc.out.lock()
	if open {
		b = appendCredit(b, a.id, m)
	}
	a.cc.out.unlock(b)
}

// start subscribes from the marker on the partition leader's connection.
func (s *Subscription) start(ctx context.Context) error {
	cl := s.cl
	if cl.isClosed() {
		return lockstitch.ErrClosed
	}
	cc, err := cl.route(ctx, s.partition, "", false)
	if err != nil {
		// No attempt went out: the last connection's node did not answer
		// this one, so it must not steer the next (route has moved the
		// partition's hint past a node it could not reach).
		s.lastConn = nil
		return err
	}
	a := &subAttempt{cc: cc, ch: make(chan subMsg, int(s.winOps)+2), availOps: uint64(s.winOps), availBytes: s.winBytes}
	slot, err := cc.acquire(ctx)
	if err != nil {
		s.lastConn = cc // the attempt's connection failed it
		return err
	}
	b, open := cc.out.lock()
	if !open || cc.closed.Load() {
		cc.out.unlock(b)
		cc.free <- slot
		s.lastConn = cc
		return cc.lostErr()
	}
	sl := &cc.slots[slot]
	sl.sub = a
	cc.subs++
	a.id = sl.next(slot)
	b = appendSubscribe(b, a.id, &SubscribeRequest{Partition: s.partition, Marker: s.marker, CreditBytes: s.winBytes, CreditOps: s.winOps, Snapshot: s.restoreFn != nil})
	cc.out.unlock(b)
	s.mu.Lock()
	closed := s.closed
	s.att = a
	s.mu.Unlock()
	if closed {
		s.cancel(a)
	}
	s.usedOps, s.usedBytes = 0, 0
	return nil
}

// retry decides whether to subscribe again after err, with a backoff,
// updating the partition's routing.
func (s *Subscription) retry(ctx context.Context, err error) bool {
	cl := s.cl
	if !retryable(err) || ctx.Err() != nil || cl.isClosed() || s.isClosed() {
		return false
	}
	s.failures++
	if s.failures >= cl.cfg.MaxAttempts {
		return false
	}
	if cl.reroute(s.partition, s.lastConn, false, err) && s.failures == 1 {
		return true
	}
	t := time.NewTimer(cl.backoff(s.failures))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-cl.done:
	case <-s.done:
	}
	return false
}

// gaveUp is the error of a subscription that stopped retrying after
// err: err itself, or, when ctx ended meanwhile, ctx's error with err
// (both match errors.Is).
func (s *Subscription) gaveUp(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%w (the last attempt: %w)", cerr, err)
	}
	return err
}

// restart drops the current attempt and what it buffered; the next Next
// subscribes again from the marker.
func (s *Subscription) restart() {
	if s.cur != nil {
		subPool.Put(s.cur)
		s.cur = nil
	}
	s.mu.Lock()
	a := s.att
	s.mu.Unlock()
	if a != nil {
		s.cancel(a)
		s.endAttempt(a)
	}
}

// endAttempt forgets attempt a, remembering its connection for routing.
func (s *Subscription) endAttempt(a *subAttempt) {
	s.mu.Lock()
	if s.att == a {
		s.att = nil
	}
	s.mu.Unlock()
	s.lastConn = a.cc
}

// cancel asks the server to end attempt a.
func (s *Subscription) cancel(a *subAttempt) {
	b, open := a.cc.out.lock()
	if open {
		b = appendCancel(b, a.id)
	}
	a.cc.out.unlock(b)
}

func (s *Subscription) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close ends the subscription: the server is asked to end the stream and
// Next returns ErrClosed. Close is idempotent and may be called from any
// goroutine.
func (s *Subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	a := s.att
	close(s.done)
	s.mu.Unlock()
	if a != nil {
		s.cancel(a)
	}
	return nil
}

// receive handles a frame of attempt a's stream on the connection's reader
// goroutine: it checks a Data frame against the credit granted, copies it
// and queues it for Next. It returns an error for a protocol violation.
func (a *subAttempt) receive(t FrameType, body []byte) error {
	switch t {
	case TypeData:
		committed, records, err := decodeRecords(t, body)
		if err != nil {
			return err
		}
		n, ok := countRecords(records)
		if !ok || n == 0 {
			return fmt.Errorf("%w: Data frame with malformed records", ErrProtocol)
		}
		a.mu.Lock()
		over := uint64(n) > a.availOps || uint64(len(records)) > a.availBytes
		if !over {
			a.availOps -= uint64(n)
			a.availBytes -= uint64(len(records))
		}
		a.mu.Unlock()
		if over {
			return fmt.Errorf("%w: Data frame of %d records and %d bytes beyond the credit granted", ErrProtocol, n, len(records))
		}
		buf := subPool.Get()
		buf.B = append(buf.B[:0], records...)
		select {
		case a.ch <- subMsg{buf: buf, committed: committed}:
		default:
			return fmt.Errorf("%w: Data frames beyond the credit granted", ErrProtocol)
		}
	case TypeSnapshot:
		var m snapshotMsg
		if err := decodeSnapshot(body, &m); err != nil {
			return err
		}
		a.mu.Lock()
		over := a.availOps == 0 || uint64(len(m.Data)) > a.availBytes
		if !over {
			a.availOps--
			a.availBytes -= uint64(len(m.Data))
		}
		a.mu.Unlock()
		if over {
			return fmt.Errorf("%w: Snapshot frame of %d bytes beyond the credit granted", ErrProtocol, len(m.Data))
		}
		buf := subPool.Get()
		buf.B = append(buf.B[:0], body...)
		select {
		case a.ch <- subMsg{buf: buf, snapshot: true}:
		default:
			return fmt.Errorf("%w: Snapshot frames beyond the credit granted", ErrProtocol)
		}
	case TypeEnd:
		if err := decodeEmpty(t, body); err != nil {
			return err
		}
		a.end(subMsg{end: true})
	case TypeError:
		var m errorMsg
		if err := decodeError(body, &m); err != nil {
			return err
		}
		a.end(subMsg{err: errorOf(&m)})
	default:
		return fmt.Errorf("%w: %v frame on a subscription", ErrProtocol, t)
	}
	return nil
}

// end queues the last message of the attempt. The channel keeps room for
// it: Data frames never exceed the op credit, which is below its capacity.
func (a *subAttempt) end(m subMsg) {
	select {
	case a.ch <- m:
	default:
	}
}

// restore hands the snapshot whose first frame is first to the Restore
// option, and takes its LSN as the marker once Restore returns and the
// snapshot was whole. ended reports that the attempt ended (End, Error,
// a lost connection) inside the snapshot.
func (s *Subscription) restore(ctx context.Context, att *subAttempt, first subMsg) (ended bool, err error) {
	if s.restoreFn == nil {
		subPool.Put(first.buf)
		return false, fmt.Errorf("%w: Snapshot frame on a subscription that allows none", ErrProtocol)
	}
	var head snapshotMsg
	if err := decodeSnapshot(first.buf.B, &head); err != nil {
		subPool.Put(first.buf)
		return false, err
	}
	if head.LSN < s.marker {
		subPool.Put(first.buf)
		return false, fmt.Errorf("%w: snapshot at LSN %d for marker %d", ErrProtocol, head.LSN, s.marker)
	}
	r := &snapshotReader{s: s, att: att, ctx: ctx, lsn: head.LSN, epoch: head.Epoch}
	r.load(first)
	err = s.restoreFn(head.LSN, r)
	if err == nil && r.err == nil {
		// Verify the rest, up to the terminator, even if Restore stopped
		// reading early.
		_, err = io.Copy(io.Discard, r)
	}
	if r.err != nil {
		err = r.err // the stream's failure is the cause
	} else if err != nil {
		err = fmt.Errorf("transport: restoring the snapshot at LSN %d: %w", head.LSN, err)
	}
	r.release()
	if err != nil {
		return r.ended, err
	}
	s.marker, s.epoch = head.LSN, head.Epoch
	s.committed = max(s.committed, head.LSN)
	s.failures = 0
	return false, nil
}

// snapshotReader reads a snapshot's data from its attempt's Snapshot
// frames, verifying each chunk before handing out any of its bytes, and
// renewing the credit as frames are consumed.
type snapshotReader struct {
	s     *Subscription
	att   *subAttempt
	ctx   context.Context
	lsn   wal.LSN
	epoch uint64

	cur   *bytebufferpool.ByteBuffer // frame being read
	data  []byte                     // its unread data
	done  bool                       // the terminator was read
	err   error                      // sticky
	ended bool                       // the attempt ended
}

// Read implements io.Reader; it returns io.EOF after the terminator.
func (r *snapshotReader) Read(p []byte) (int, error) {
	for len(r.data) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
		select {
		case m := <-r.att.ch:
			r.load(m)
		case <-r.ctx.Done():
			r.err = r.ctx.Err()
		case <-r.s.done:
			r.err = lockstitch.ErrClosed
		}
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// load takes the next message of the attempt.
func (r *snapshotReader) load(m subMsg) {
	r.release()
	switch {
	case m.snapshot:
		r.cur = m.buf
		var sm snapshotMsg
		if err := decodeSnapshot(m.buf.B, &sm); err != nil {
			r.err = err
			return
		}
		if sm.LSN != r.lsn || sm.Epoch != r.epoch {
			r.err = fmt.Errorf("%w: snapshot chunk at LSN %d epoch %d inside a snapshot at LSN %d epoch %d", ErrProtocol, sm.LSN, sm.Epoch, r.lsn, r.epoch)
			return
		}
		if err := sm.verify(); err != nil {
			r.err = err
			return
		}
		r.data, r.done = sm.Data, len(sm.Data) == 0
		r.s.usedOps++
		r.s.usedBytes += uint64(len(sm.Data))
		if r.s.usedOps >= (r.s.winOps+1)/2 || r.s.usedBytes >= (r.s.winBytes+1)/2 {
			r.s.grant()
		}
	case m.buf != nil:
		subPool.Put(m.buf)
		r.err = fmt.Errorf("%w: records inside a snapshot", ErrProtocol)
	case m.end:
		r.ended = true
		r.err = fmt.Errorf("%w: the stream ended inside a snapshot", ErrProtocol)
	default:
		r.ended = true
		r.err = m.err
	}
}

// release gives the current frame back to the pool.
func (r *snapshotReader) release() {
	if r.cur != nil {
		subPool.Put(r.cur)
		r.cur, r.data = nil, nil
	}
}
