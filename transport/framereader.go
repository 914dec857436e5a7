package transport

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/valyala/bytebufferpool"
)

// inPool holds the read buffers of connections, client and server.
var inPool bytebufferpool.Pool

// frameReader reads frames from a connection into one buffer. The buffer
// grows only as bytes of a large frame actually arrive (doubling, never
// past the frame's checked length) and shrinks back to its initial size
// once such a frame is handled, so a peer that announces a large frame
// and stalls costs at most what it sent.
type frameReader struct {
	nc      net.Conn
	bb      *bytebufferpool.ByteBuffer
	r, w    int // unread bytes are bb.B[r:w]; bb.B has len == cap
	initial int // initial and shrink-back size
	maxBody int // largest body accepted

	idle  time.Duration // deadline between frames; 0 for none
	frame time.Duration // deadline from a frame's first byte to its last; 0 for none

	partial      bool      // bytes of an incomplete frame are buffered
	partialSince time.Time // when waiting for the rest began

	// mu serializes deadline changes with stop, so that a stop is never
	// overwritten by a later deadline.
	mu       sync.Mutex
	fixed    time.Time // overrides idle and frame when set (handshake)
	deadline time.Time // the read deadline currently set
	force    bool      // set the deadline at the next read even if unchanged
	stopped  bool
}

// init prepares fr to read from nc.
func (fr *frameReader) init(nc net.Conn, initial, maxBody int, idle, frame time.Duration) {
	fr.nc, fr.initial, fr.maxBody, fr.idle, fr.frame = nc, initial, maxBody, idle, frame
	fr.bb = inPool.Get()
	fr.bb.B = fr.bb.B[:cap(fr.bb.B)]
	if len(fr.bb.B) < initial {
		fr.bb.B = make([]byte, initial)
	}
}

// release gives the buffer back to the pool. fr must not be used after.
func (fr *frameReader) release() {
	if fr.bb != nil && len(fr.bb.B) <= 4*fr.initial {
		fr.bb.B = fr.bb.B[:0]
		inPool.Put(fr.bb)
	}
	fr.bb = nil
}

// stop makes a blocked or later read fail at once.
func (fr *frameReader) stop() {
	fr.mu.Lock()
	fr.stopped = true
	fr.nc.SetReadDeadline(time.Unix(1, 0))
	fr.mu.Unlock()
}

// errStopped is returned by next after stop.
var errStopped = fmt.Errorf("transport: reader stopped")

// next reads the next frame into h and returns its body, which aliases the
// buffer until the next call. A frame longer than maxBody is refused with
// an error wrapping ErrProtocol, with h filled, before its body is read.
// Any other error is the connection's.
func (fr *frameReader) next(h *Header) ([]byte, error) {
	for {
		avail := fr.w - fr.r
		need := HeaderSize
		if avail >= HeaderSize {
			_ = DecodeHeader(fr.bb.B[fr.r:fr.w], h)
			if uint64(h.Length) > uint64(fr.maxBody) {
				return nil, fmt.Errorf("%w: %v frame body of %d bytes exceeds the limit of %d", ErrProtocol, h.Type, h.Length, fr.maxBody)
			}
			need = HeaderSize + int(h.Length)
			if avail >= need {
				body := fr.bb.B[fr.r+HeaderSize : fr.r+need : fr.r+need]
				fr.r += need
				fr.partial = false
				return body, nil
			}
		}
		if err := fr.fill(need); err != nil {
			return nil, err
		}
	}
}

// buffered reports whether the next frame has been read whole, so that
// next returns it without reading (and without moving the buffer).
func (fr *frameReader) buffered() bool {
	avail := fr.w - fr.r
	if avail < HeaderSize {
		return false
	}
	var h Header
	_ = DecodeHeader(fr.bb.B[fr.r:fr.w], &h)
	return uint64(h.Length) <= uint64(fr.maxBody) && avail >= HeaderSize+int(h.Length)
}

// fill makes room for need bytes from fr.r and reads once.
func (fr *frameReader) fill(need int) error {
	buf := fr.bb.B
	if fr.r == fr.w {
		fr.r, fr.w = 0, 0
		if len(buf) > 4*fr.initial {
			// Shrink back after a large frame.
			buf = make([]byte, fr.initial)
			fr.bb.B = buf
		}
	}
	if fr.r+need > len(buf) && fr.r > 0 {
		copy(buf, buf[fr.r:fr.w])
		fr.w -= fr.r
		fr.r = 0
	}
	if fr.w == len(buf) {
		// Full of a frame's first bytes: grow, at most doubling.
		n := min(need, 2*len(buf))
		nb := make([]byte, n)
		copy(nb, buf[:fr.w])
		buf = nb
		fr.bb.B = buf
	}
	if err := fr.setDeadline(); err != nil {
		return err
	}
	n, err := fr.nc.Read(buf[fr.w:])
	fr.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("transport: empty read")
	}
	fr.mu.Lock()
	stopped := fr.stopped
	fr.mu.Unlock()
	if stopped {
		return errStopped
	}
	return err
}

// setDeadline sets the read deadline for the next read: the fixed one,
// or the frame timeout from when a partial frame began, or the idle
// timeout from now. To spare a system call per read, an idle deadline is
// moved only once it is an eighth of the timeout old.
func (fr *frameReader) setDeadline() error {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.stopped {
		return errStopped
	}
	var d time.Time
	switch {
	case !fr.fixed.IsZero():
		d = fr.fixed
	case fr.w > fr.r && fr.frame > 0:
		if !fr.partial {
			fr.partial, fr.partialSince = true, time.Now()
		}
		d = fr.partialSince.Add(fr.frame)
	case fr.idle > 0:
		d = time.Now().Add(fr.idle)
		if !fr.force && !fr.deadline.IsZero() && d.After(fr.deadline) && d.Sub(fr.deadline) < fr.idle/8 {
			return nil
		}
	}
	if !fr.force && d.Equal(fr.deadline) {
		return nil
	}
	fr.deadline, fr.force = d, false
	return fr.nc.SetReadDeadline(d)
}

// setFixed sets a deadline that overrides the others until cleared with
// the zero time.
func (fr *frameReader) setFixed(t time.Time) {
	fr.mu.Lock()
	fr.fixed = t
	fr.force = true
	fr.mu.Unlock()
}
