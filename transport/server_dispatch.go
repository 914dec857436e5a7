package transport

import (
	"context"
	"errors"
	"fmt"

	"github.com/valyala/bytebufferpool"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// resultPool holds the answers that handlers build: Read results, Query
// results, Query requests copied off the read buffer.
var resultPool bytebufferpool.Pool

// dispatch serves one request frame. It returns an error only for a
// protocol violation, after which the connection closes; every other
// failure is answered with an Error frame.
func (c *serverConn) dispatch(h *Header, body []byte) error {
	// h is the reader's, reused for the next frame: closures that run on
	// their own goroutines take the correlation id, not h.
	id := h.ID
	switch h.Type {
	case TypePing:
		if err := decodeEmpty(h.Type, body); err != nil {
			return err
		}
		b, open := c.out.lock()
		if open {
			b = appendPong(b, h.ID)
			c.m.FrameSent(TypePong, HeaderSize)
		}
		c.out.unlock(b)
	case TypeAppend:
		req := &c.appendReq
		if err := decodeAppend(body, req); err != nil {
			return err
		}
		if !c.allowed(h.ID, ActionAppend, req.Partition) {
			return nil
		}
		ref, ok := c.begin(h.ID, 0, false)
		if !ok {
			return nil
		}
		if wal.Checksum(req.Payload) != req.CRC {
			ref.fail(fmt.Errorf("%w: payload CRC-32C %08x, sent %08x", lockstitch.ErrChecksum, wal.Checksum(req.Payload), req.CRC), "checksum")
			return nil
		}
		if c.grouper != nil {
			c.groupAppend(req, AppendCompletion{ref: ref})
		} else {
			c.srv.h.Append(req, AppendCompletion{ref: ref})
		}
	case TypeAppendBatch:
		req := &c.batchReq
		if err := decodeAppendBatch(body, req); err != nil {
			return err
		}
		if !c.allowed(h.ID, ActionAppend, req.Partition) {
			return nil
		}
		ref, ok := c.begin(h.ID, req.Len(), false)
		if !ok {
			return nil
		}
		if err := req.verify(); err != nil {
			ref.fail(err, "checksum")
			return nil
		}
		c.srv.h.AppendBatch(req, BatchCompletion{ref: ref})
	case TypeRead:
		var req ReadRequest
		if err := decodeRead(body, &req); err != nil {
			return err
		}
		if !c.allowed(h.ID, ActionRead, req.Partition) {
			return nil
		}
		if (req.From == 0 && !req.Reverse) || req.MaxOps == 0 || req.MaxBytes == 0 {
			c.sendError(h.ID, &errorMsg{Code: CodeInvalidArgument, Message: "Read needs a first LSN and limits of at least 1"})
			return nil
		}
		return c.startAsync(h.ID, func(ctx context.Context, ref callRef) { c.serveRead(ctx, ref, id, &req) })
	case TypeQuery:
		var req QueryRequest
		if err := decodeQuery(body, &req); err != nil {
			return err
		}
		if !c.allowed(h.ID, ActionRead, req.Partition) {
			return nil
		}
		if req.Consistency < lockstitch.Linearizable || req.Consistency > lockstitch.Bounded {
			c.sendError(h.ID, &errorMsg{Code: CodeInvalidArgument, Message: fmt.Sprintf("unknown consistency level %d", req.Consistency)})
			return nil
		}
		q := resultPool.Get()
		q.B = append(q.B[:0], req.Request...)
		req.Request = q.B
		return c.startAsync(h.ID, func(ctx context.Context, ref callRef) {
			defer resultPool.Put(q)
			c.serveQuery(ctx, ref, id, &req)
		})
	case TypeStatus:
		var req StatusRequest
		if err := decodeStatus(body, &req); err != nil {
			return err
		}
		if req.OnePartition && !c.allowed(h.ID, ActionRead, req.Partition) {
			return nil
		}
		return c.startAsync(h.ID, func(ctx context.Context, ref callRef) { c.serveStatus(ctx, ref, id, &req) })
	case TypeAdmin:
		req := new(AdminRequest)
		if err := req.UnmarshalBinary(body); err != nil {
			return err
		}
		if req.Op != AdminListPartitions && req.Op != AdminClusterStatus && !c.allowed(h.ID, ActionAdmin, adminScope(req)) {
			return nil
		}
		return c.startAsync(h.ID, func(ctx context.Context, ref callRef) { c.serveAdmin(ctx, ref, id, req) })
	case TypeCursor:
		var req CursorRequest
		if err := decodeCursorReq(body, &req); err != nil {
			return err
		}
		// A consumer acknowledges and lists with read; moving or deleting
		// a cursor (another consumer's, perhaps) is administration.
		a := ActionRead
		if req.Op == CursorReset || req.Op == CursorDelete {
			a = ActionAdmin
		}
		if !c.allowed(h.ID, a, req.Partition) {
			return nil
		}
		return c.startAsync(h.ID, func(ctx context.Context, ref callRef) { c.serveCursor(ctx, ref, id, &req) })
	case TypeSubscribe:
		var req SubscribeRequest
		if err := decodeSubscribe(body, &req); err != nil {
			return err
		}
		if !c.allowed(h.ID, ActionRead, req.Partition) {
			return nil
		}
		return c.startSubscribe(h.ID, &req)
	case TypeCredit:
		var m creditMsg
		if err := decodeCredit(body, &m); err != nil {
			return err
		}
		c.out.mu.Lock()
		if a := c.calls[h.ID]; a != nil && a.stream != nil {
			a.stream.addCredit(m)
		}
		c.out.mu.Unlock()
	case TypeCancel:
		if err := decodeEmpty(h.Type, body); err != nil {
			return err
		}
		c.out.mu.Lock()
		if a := c.calls[h.ID]; a != nil {
			a.cancel(errCanceledByClient)
		}
		c.out.mu.Unlock()
	default:
		return fmt.Errorf("%w: unexpected %v frame", ErrProtocol, h.Type)
	}
	return nil
}

// startAsync begins request id and runs serve on its own goroutine with a
// context that Cancel, the connection's end and the server's end cancel.
func (c *serverConn) startAsync(id uint64, serve func(context.Context, callRef)) error {
	ctx, err := c.register(id, nil)
	if err != nil {
		return err
	}
	ref, ok := c.begin(id, 0, true)
	if !ok {
		c.unregister(id)
		return nil
	}
	c.handlers.Add(1)
	go func() {
		defer c.handlers.Done()
		serve(ctx, ref) // ending the call unregisters it
	}()
	return nil
}

// serveRead runs the Handler's Read and answers.
func (c *serverConn) serveRead(ctx context.Context, ref callRef, id uint64, req *ReadRequest) {
	bb := resultPool.Get()
	var res ReadResult
	res.reset(bb.B[:0], req, c.maxOut-readResultFixed)
	err := c.srv.h.Read(ctx, req, &res)
	if err == nil && res.err != nil {
		err = res.err
	}
	if err == nil && res.ops == 0 && res.tooLarge {
		err = fmt.Errorf("%w: record %d does not fit in a frame the client accepts", lockstitch.ErrTooLarge, req.From)
	}
	if err != nil {
		ref.fail(err, "Read")
	} else {
		ref.send(TypeReadResult, res.finish(id))
	}
	bb.B = res.buf[:0]
	resultPool.Put(bb)
}

// serveQuery runs the Handler's Query and answers.
func (c *serverConn) serveQuery(ctx context.Context, ref callRef, id uint64, req *QueryRequest) {
	bb := resultPool.Get()
	res := QueryResult{Result: bb.B[:0]}
	err := c.srv.h.Query(ctx, req, &res)
	if err == nil && queryResultFixed+len(res.Result) > c.maxOut {
		err = fmt.Errorf("%w: query result of %d bytes exceeds the client's frame limit", lockstitch.ErrTooLarge, len(res.Result))
	}
	if err != nil {
		ref.fail(err, "Query")
	} else {
		// The frame goes into a buffer of its own: res.Result may alias
		// bb, and the header would overwrite it before it is copied.
		out := resultPool.Get()
		out.B = appendQueryResult(out.B[:0], id, &res)
		ref.send(TypeQueryResult, out.B)
		resultPool.Put(out)
	}
	if cap(res.Result) > cap(bb.B) {
		bb.B = res.Result // the handler grew it: keep the larger buffer
	}
	bb.B = bb.B[:0]
	resultPool.Put(bb)
}

// serveCursor runs the Handler's Cursor and answers.
func (c *serverConn) serveCursor(ctx context.Context, ref callRef, id uint64, req *CursorRequest) {
	var res CursorResult
	err := c.srv.h.Cursor(ctx, req, &res)
	var frame []byte
	if err == nil {
		frame = appendCursorResult(nil, id, &res)
		if len(frame)-HeaderSize > c.maxOut {
			err = fmt.Errorf("%w: cursor answer of %d bytes exceeds the client's frame limit", lockstitch.ErrTooLarge, len(frame)-HeaderSize)
		}
	}
	if err != nil {
		ref.fail(err, "Cursor")
		return
	}
	ref.send(TypeCursorResult, frame)
}

// serveStatus runs the Handler's Status and answers.
func (c *serverConn) serveStatus(ctx context.Context, ref callRef, id uint64, req *StatusRequest) {
	st, err := c.srv.h.Status(ctx, req)
	if err == nil && st == nil {
		err = fmt.Errorf("%w: Status returned no status", ErrInternal)
	}
	if err != nil {
		ref.fail(err, "Status")
		return
	}
	frame := appendStatusResult(nil, id, req, st)
	if len(frame)-HeaderSize > c.maxOut {
		ref.fail(fmt.Errorf("%w: status of %d bytes exceeds the client's frame limit", lockstitch.ErrTooLarge, len(frame)), "Status")
		return
	}
	ref.send(TypeStatusResult, frame)
}

// serveAdmin runs the Handler's Admin and answers.
func (c *serverConn) serveAdmin(ctx context.Context, ref callRef, id uint64, req *AdminRequest) {
	var res AdminResult
	if err := c.srv.h.Admin(ctx, req, &res); err != nil {
		ref.fail(err, "Admin")
		return
	}
	frame := appendAdminResult(nil, id, &res)
	if len(frame)-HeaderSize > c.maxOut {
		ref.fail(fmt.Errorf("%w: admin answer of %d bytes exceeds the client's frame limit", lockstitch.ErrTooLarge, len(frame)-HeaderSize), "Admin")
		return
	}
	ref.send(TypeAdminResult, frame)
}

// startSubscribe begins subscription id and runs the Handler's Subscribe
// on its own goroutine.
func (c *serverConn) startSubscribe(id uint64, req *SubscribeRequest) error {
	s := newStream(c, id, req)
	ctx, err := c.register(id, s)
	if err != nil {
		s.release()
		return err
	}
	s.ctx = ctx
	ref, ok := c.begin(id, 0, true)
	if !ok {
		c.unregister(id)
		s.release()
		return nil
	}
	r := *req
	c.handlers.Add(1)
	go func() {
		defer c.handlers.Done()
		defer s.release()
		c.serveSubscribe(ctx, ref, id, &r, s) // ending the call unregisters it
	}()
	return nil
}

// serveSubscribe runs the Handler's Subscribe and ends the stream: End
// when the subscriber cancelled or the handler finished, Error otherwise.
func (c *serverConn) serveSubscribe(ctx context.Context, ref callRef, id uint64, req *SubscribeRequest, s *Stream) {
	err := c.srv.h.Subscribe(ctx, req, s)
	if err == nil {
		err = s.Flush()
	}
	if ctx.Err() != nil {
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errCanceledByClient):
			err = nil
		case errors.Is(cause, lockstitch.ErrShuttingDown):
			err = lockstitch.ErrShuttingDown
		default: // the connection is closing: nobody to tell
			err = cause
		}
	}
	if err != nil {
		ref.fail(err, "Subscribe")
		return
	}
	ref.send(TypeEnd, appendEnd(make([]byte, 0, HeaderSize), id))
}
