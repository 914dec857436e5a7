package transport

import (
	"context"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"
)

// outPool holds the write buffers of connections, client and server.
var outPool bytebufferpool.Pool

// yieldBelow is the queue size under which the writer yields once before
// writing, to coalesce frames that producers are about to queue.
const yieldBelow = 16 << 10

// maxKeptWriteBuffer is the capacity above which a write buffer goes back
// to the pool after a write instead of being kept by its connection.
const maxKeptWriteBuffer = 1 << 20

// outbox is a connection's queue of encoded frames and its writer. Frames
// are appended to one buffer under mu; the writer goroutine swaps it for
// an empty one and writes everything queued with one call, so frames queued
// while a write is in progress go out together in the next.
//
// Lock order: outbox.mu is the innermost lock of a connection; the server
// and client connections also guard their request tables with it, so that
// a request is registered and its frame queued in one critical section.
type outbox struct {
	mu      sync.Mutex
	buf     *bytebufferpool.ByteBuffer // frames waiting for the writer; nil once closed
	writing int                        // bytes the writer is writing now
	closed  bool                       // no more frames are accepted
	room    chan struct{}              // closed when the queue drops to limit; nil without waiters
	limit   int                        // queued bytes above which waitRoom waits

	wake chan struct{} // wakes the writer, capacity 1
	done chan struct{} // closed when the writer has returned
}

// init prepares o to queue up to limit bytes before waitRoom blocks.
func (o *outbox) init(limit int) {
	o.buf = outPool.Get()
	o.limit = limit
	o.wake = make(chan struct{}, 1)
	o.done = make(chan struct{})
}

// lock locks o and returns the queue to append frames to, and false if o
// is closed (frames appended then are dropped). Call unlock after.
func (o *outbox) lock() ([]byte, bool) {
	o.mu.Lock()
	if o.closed {
		return nil, false
	}
	return o.buf.B, true
}

// unlock stores the queue b that lock returned, extended with frames,
// unlocks o and wakes the writer.
func (o *outbox) unlock(b []byte) {
	if !o.closed {
		o.buf.B = b
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// queued returns the bytes queued and being written. Call with mu held.
func (o *outbox) queued() int {
	if o.closed {
		return 0
	}
	return len(o.buf.B) + o.writing
}

// waitRoom waits until the queue holds at most limit bytes, done is
// closed, or ctx ends; it returns false in the last two cases or if o is
// closed. done may be nil.
func (o *outbox) waitRoom(ctx context.Context, done <-chan struct{}) bool {
	for {
		o.mu.Lock()
		if o.closed {
			o.mu.Unlock()
			return false
		}
		if o.queued() <= o.limit {
			o.mu.Unlock()
			return true
		}
		if o.room == nil {
			o.room = make(chan struct{})
		}
		room := o.room
		o.mu.Unlock()
		var ctxDone <-chan struct{}
		if ctx != nil {
			ctxDone = ctx.Done()
		}
		select {
		case <-room:
		case <-done:
			return false
		case <-ctxDone:
			return false
		}
	}
}

// signalRoomLocked releases waitRoom's waiters if the queue has room.
func (o *outbox) signalRoomLocked() {
	if o.room != nil && (o.closed || o.queued() <= o.limit) {
		close(o.room)
		o.room = nil
	}
}

// close stops o accepting frames. The writer writes what is queued and
// returns; close the connection to make it stop at once.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	o.signalRoomLocked()
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// run is the writer: it writes queued frames to nc until o is closed and
// drained or a write fails, each write bounded by timeout. When idle is
// positive and nothing has been queued for that long, it calls onIdle
// (which may queue a frame). It returns the write error, if any, and
// gives the buffers back to the pool.
func (o *outbox) run(nc net.Conn, timeout, idle time.Duration, onIdle func()) error {
	defer close(o.done)
	spare := outPool.Get()
	var tick <-chan time.Time
	if idle > 0 {
		t := time.NewTicker(idle)
		defer t.Stop()
		tick = t.C
	}
	wrote := false // since the last tick
	var err error
	for err == nil {
		select {
		case <-o.wake:
		case <-tick:
			if !wrote {
				onIdle()
			}
			wrote = false
			continue
		}
		// Let producers that are running add to a small queue before
		// taking it: one write of many frames instead of many writes.
		o.mu.Lock()
		small := len(o.buf.B) < yieldBelow
		o.mu.Unlock()
		if small {
			runtime.Gosched()
		}
		o.mu.Lock()
		o.buf, spare = spare, o.buf
		o.writing = len(spare.B)
		closed := o.closed
		o.mu.Unlock()
		if len(spare.B) > 0 {
			wrote = true
			if err = nc.SetWriteDeadline(time.Now().Add(timeout)); err == nil {
				_, err = nc.Write(spare.B)
			}
			if cap(spare.B) > maxKeptWriteBuffer {
				outPool.Put(spare)
				spare = outPool.Get()
			}
			spare.B = spare.B[:0]
		}
		o.mu.Lock()
		o.writing = 0
		o.signalRoomLocked()
		drained := closed && len(o.buf.B) == 0
		o.mu.Unlock()
		if drained {
			break
		}
	}
	o.mu.Lock()
	o.closed = true
	o.signalRoomLocked()
	outPool.Put(o.buf)
	o.buf = nil
	o.mu.Unlock()
	outPool.Put(spare)
	return err
}
