package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Causes of a handler context's cancellation.
var (
	errCanceledByClient = errors.New("transport: cancelled by the client")
	errConnClosed       = errors.New("transport: connection closed")
)

// serverConn is one client connection of a Server: a reader goroutine (the
// connection's own) that decodes requests and dispatches them, and a
// writer goroutine (outbox.run) that writes answers.
type serverConn struct {
	srv    *Server
	nc     net.Conn
	log    *slog.Logger
	m      Metrics
	fr     frameReader
	out    outbox
	maxOut int // largest body the client accepts

	// ctx is the parent of every handler context of the connection; it is
	// cancelled with errConnClosed when the connection ends.
	ctx    context.Context
	cancel context.CancelCauseFunc

	// principal is who the connection acts for, nil without an
	// Authenticator. Set by the handshake, read by dispatch (both on the
	// reader goroutine).
	principal Principal

	// Owned by the reader goroutine: decode targets reused per frame.
	appendReq AppendRequest
	batchReq  AppendBatchRequest

	// Owned by the reader goroutine: with a GroupAppender, the Append
	// requests of one partition decoded in a row and not yet handed over,
	// with their completions. Their payloads alias the read buffer, which
	// stays put while the next frame is already buffered; the group is
	// handed over before a read that may move it (flushAppends).
	grouper   GroupAppender
	group     []AppendRequest
	groupDone []AppendCompletion

	// Guarded by out.mu.
	slots    []slotState
	free     []uint32
	busy     int
	calls    map[uint64]*asyncCall // Read, Query, Status, Subscribe in progress
	draining bool
	idle     chan struct{} // closed when busy drops to 0 while draining

	handlers sync.WaitGroup // goroutines running Read, Query, Status, Subscribe
}

// asyncCall is a request served on its own goroutine, which a Cancel frame
// (or a drain, for a subscription) can cancel.
type asyncCall struct {
	cancel context.CancelCauseFunc
	stream *Stream // for a subscription
}

// newServerConn prepares a connection accepted at accepted.
func newServerConn(s *Server, nc net.Conn) *serverConn {
	cfg := &s.cfg
	c := &serverConn{
		srv:   s,
		nc:    nc,
		log:   s.log.With("remote", nc.RemoteAddr().String()),
		m:     s.metrics,
		slots: make([]slotState, cfg.MaxInFlight),
		free:  make([]uint32, cfg.MaxInFlight),
		calls: make(map[uint64]*asyncCall),
	}
	for i := range c.free {
		c.free[i] = uint32(len(c.free) - 1 - i)
	}
	c.grouper, _ = s.h.(GroupAppender)
	c.ctx, c.cancel = context.WithCancelCause(s.ctx)
	c.fr.init(nc, cfg.ReadBufferBytes, cfg.MaxFrameBytes, cfg.IdleTimeout, cfg.FrameTimeout)
	c.out.init(cfg.MaxQueuedBytes)
	return c
}

// serve runs the connection until it ends, then releases it.
func (c *serverConn) serve(accepted time.Time) {
	go func() {
		if err := c.out.run(c.nc, c.srv.cfg.WriteTimeout, 0, nil); err != nil {
			c.log.Info("transport: write failed, closing the connection", "err", err)
			c.abort()
		}
	}()
	graceful := false
	if c.tlsHandshake(accepted) && c.handshake(accepted) {
		graceful = c.readLoop()
	}
	c.finish(graceful)
}

// tlsHandshake runs the TLS handshake of a TLS connection, bounded by
// HandshakeTimeout; it reports whether the connection may go on. A client
// that speaks the protocol without TLS is told so in plain text (an Error
// frame, Protocol), so that it does not retry.
func (c *serverConn) tlsHandshake(accepted time.Time) bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	ctx, cancel := context.WithDeadline(c.ctx, accepted.Add(c.srv.cfg.HandshakeTimeout))
	defer cancel()
	err := tc.HandshakeContext(ctx)
	if err == nil {
		return true
	}
	c.log.Info("transport: TLS handshake failed, closing the connection", "err", err)
	c.m.TLSHandshakeFailed()
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) && rhe.Conn != nil {
		rhe.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		rhe.Conn.Write(appendError(nil, 0, &errorMsg{Code: CodeProtocol, Message: "this port requires TLS"}))
	}
	return false
}

// handshake reads the Hello and answers it; it reports whether the
// connection may go on.
func (c *serverConn) handshake(accepted time.Time) bool {
	c.fr.setFixed(accepted.Add(c.srv.cfg.HandshakeTimeout))
	var h Header
	body, err := c.fr.next(&h)
	// Before a Hello there is no request: errors carry correlation id 0.
	if err != nil {
		h.ID = 0
		c.readFailed(&h, err)
		return false
	}
	c.m.FrameReceived(h.Type, HeaderSize+len(body))
	if h.Type != TypeHello {
		c.protocolError(0, fmt.Errorf("%w: %v frame before Hello", ErrProtocol, h.Type))
		return false
	}
	var m helloMsg
	if err := decodeHello(body, &m); err != nil {
		c.protocolError(0, err)
		return false
	}
	m.MaxVersion = h.Version
	if m.MinVersion > Version || m.MaxVersion < Version || m.MinVersion > m.MaxVersion {
		c.log.Info("transport: no common protocol version", "client", m.Name, "min", m.MinVersion, "max", m.MaxVersion)
		c.sendError(0, &errorMsg{Code: CodeVersion, Message: fmt.Sprintf("server speaks version %d only", Version)})
		return false
	}
	c.maxOut = int(min(m.MaxFrameBytes, maxFrameLimit))
	if !c.authenticate(accepted, &m) {
		return false
	}
	c.fr.setFixed(time.Time{})
	b, open := c.out.lock()
	if open {
		n := len(b)
		b = appendWelcome(b, &welcomeMsg{NodeID: c.srv.cfg.NodeID, MaxFrameBytes: uint32(c.srv.cfg.MaxFrameBytes), MaxInFlight: uint32(c.srv.cfg.MaxInFlight)})
		c.m.FrameSent(TypeWelcome, len(b)-n)
	}
	c.out.unlock(b)
	c.log.Debug("transport: client connected", "client", m.Name)
	return true
}

// authenticate runs the server's Authenticator, if any, on the Hello's
// credentials and the TLS peer's certificates; it reports whether the
// connection may go on. A refusal is answered Unauthenticated.
func (c *serverConn) authenticate(accepted time.Time, m *helloMsg) bool {
	auth := c.srv.cfg.Authenticator
	if auth == nil {
		return true
	}
	src := source(c.nc.RemoteAddr())
	if src != "" && c.srv.failures.blocked(src, c.srv.now()) {
		c.m.AuthFailed("rate_limited")
		c.log.Warn("transport: connection refused: too many failed authentications from its address", "client", m.Name)
		c.sendError(0, &errorMsg{Code: CodeUnauthenticated, Message: "too many failed authentications from this address; try again later"})
		return false
	}
	cred := Credentials{Token: m.Credentials, Remote: c.nc.RemoteAddr()}
	if tc, ok := c.nc.(*tls.Conn); ok {
		cred.Certificates = tc.ConnectionState().PeerCertificates
	}
	ctx, cancel := context.WithDeadline(c.ctx, accepted.Add(c.srv.cfg.HandshakeTimeout))
	p, err := auth.Authenticate(ctx, cred)
	cancel()
	if err == nil && p == nil {
		err = errors.New("no principal")
	}
	if err != nil {
		if src != "" {
			c.srv.failures.failed(src, c.srv.now())
		}
		c.m.AuthFailed("credentials")
		c.log.Warn("transport: connection refused by authentication", "client", m.Name, "err", err)
		c.sendError(0, &errorMsg{Code: CodeUnauthenticated, Message: err.Error()})
		return false
	}
	c.principal = p
	c.log = c.log.With("principal", p.Name())
	return true
}

// allowed reports whether the connection's principal may do a on
// partition p, and answers request id PermissionDenied when it may not.
func (c *serverConn) allowed(id uint64, a Action, p lockstitch.PartitionID) bool {
	if c.principal == nil || c.principal.Allowed(a, p) {
		return true
	}
	what := fmt.Sprintf("partition %d", p)
	if p == 0 {
		what = "every partition"
	}
	c.sendError(id, &errorMsg{Code: CodePermissionDenied, Message: fmt.Sprintf("%s may not %s %s", c.principal.Name(), a.verb(), what)})
	return false
}

// readLoop reads and dispatches requests until the connection fails, the
// client breaks the protocol, or a drain stops it. It reports whether the
// connection should end gracefully (answering what is in flight).
func (c *serverConn) readLoop() bool {
	defer c.flushAppends()
	var h Header
	for {
		if len(c.group) >= maxAppendGroup || (len(c.group) > 0 && !c.fr.buffered()) {
			c.flushAppends()
		}
		if !c.out.waitRoom(c.ctx, nil) {
			return false
		}
		body, err := c.fr.next(&h)
		if err != nil {
			if errors.Is(err, errStopped) {
				return true
			}
			c.readFailed(&h, err)
			return false
		}
		c.m.FrameReceived(h.Type, HeaderSize+len(body))
		if h.Version != Version {
			c.protocolError(h.ID, fmt.Errorf("%w: frame of version %d on a version %d connection", ErrProtocol, h.Version, Version))
			return false
		}
		if h.Type != TypeAppend {
			c.flushAppends() // requests are handed over in the order they came
		}
		if err := c.dispatch(&h, body); err != nil {
			c.protocolError(h.ID, err)
			return false
		}
	}
}

// maxAppendGroup bounds the Append requests handed to a GroupAppender in
// one call.
const maxAppendGroup = 256

// groupAppend adds an Append request to the group, handing over the
// group first if it is of another partition.
func (c *serverConn) groupAppend(req *AppendRequest, done AppendCompletion) {
	if len(c.group) > 0 && c.group[0].Partition != req.Partition {
		c.flushAppends()
	}
	c.group = append(c.group, *req)
	c.groupDone = append(c.groupDone, done)
}

// flushAppends hands the group of Append requests to the GroupAppender.
func (c *serverConn) flushAppends() {
	if len(c.group) == 0 {
		return
	}
	c.grouper.AppendGroup(c.group, c.groupDone)
	clear(c.group) // drop the payloads' references to the read buffer
	clear(c.groupDone)
	c.group, c.groupDone = c.group[:0], c.groupDone[:0]
}

// readFailed handles a failed read: a frame over the limit gets an Error
// frame; a closed or timed-out connection just ends.
func (c *serverConn) readFailed(h *Header, err error) {
	if errors.Is(err, ErrProtocol) {
		c.protocolError(h.ID, err)
		return
	}
	c.log.Debug("transport: connection ended", "err", err)
}

// protocolError answers a protocol violation with an Error frame; the
// connection then closes.
func (c *serverConn) protocolError(id uint64, err error) {
	c.log.Info("transport: protocol violation, closing the connection", "err", err)
	c.sendError(id, &errorMsg{Code: CodeProtocol, Message: err.Error()})
}

// sendError queues an Error frame outside any request.
func (c *serverConn) sendError(id uint64, m *errorMsg) {
	b, open := c.out.lock()
	if open {
		b = c.appendErrorLocked(b, id, m)
	}
	c.out.unlock(b)
}

// appendErrorLocked appends an Error frame and counts it.
func (c *serverConn) appendErrorLocked(b []byte, id uint64, m *errorMsg) []byte {
	n := len(b)
	b = appendError(b, id, m)
	c.m.FrameSent(TypeError, len(b)-n)
	c.m.ErrorSent(m.Code)
	return b
}

// begin takes an in-flight slot for request id, or answers Busy (no slot
// free) or ShuttingDown (draining) and reports false.
func (c *serverConn) begin(id uint64, ops int, async bool) (callRef, bool) {
	b, open := c.out.lock()
	var ref callRef
	ok := false
	switch {
	case c.draining:
		if open {
			b = c.appendErrorLocked(b, id, &errorMsg{Code: CodeShuttingDown, Message: "server shutting down"})
		}
	case len(c.free) == 0:
		if open {
			b = c.appendErrorLocked(b, id, &errorMsg{Code: CodeBusy, Message: "too many requests in flight on the connection"})
		}
	default:
		s := c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
		st := &c.slots[s]
		st.gen++
		st.id, st.busy, st.ops, st.async = id, true, ops, async
		c.busy++
		ref, ok = callRef{c: c, slot: s, gen: st.gen}, true
	}
	c.out.unlock(b)
	return ref, ok
}

// endCallLocked frees the slot of ref and returns the request's
// correlation id. A stale ref (the request already ended) is a violated
// contract: it unlocks out, storing b, and panics, naming who.
func (c *serverConn) endCallLocked(b []byte, ref callRef, who string) uint64 {
	st := &c.slots[ref.slot]
	if !st.busy || st.gen != ref.gen {
		c.out.unlock(b)
		panic("transport: " + who + " called for a request that has already been completed")
	}
	st.busy = false
	if st.async {
		// Forget the call before its answer is queued, so that the client
		// may reuse the id as soon as it has the answer.
		if a := c.calls[st.id]; a != nil {
			a.cancel(nil)
			delete(c.calls, st.id)
		}
	}
	c.free = append(c.free, ref.slot)
	c.busy--
	if c.busy == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	return st.id
}

// register records an asynchronous call under its correlation id and
// returns its context. A duplicate id is a protocol violation.
func (c *serverConn) register(id uint64, stream *Stream) (context.Context, error) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	c.out.mu.Lock()
	defer c.out.mu.Unlock()
	if _, dup := c.calls[id]; dup {
		cancel(nil)
		return nil, fmt.Errorf("%w: correlation id %d is already in flight", ErrProtocol, id)
	}
	c.calls[id] = &asyncCall{cancel: cancel, stream: stream}
	return ctx, nil
}

// unregister forgets the asynchronous call id.
func (c *serverConn) unregister(id uint64) {
	c.out.mu.Lock()
	if a := c.calls[id]; a != nil {
		a.cancel(nil)
		delete(c.calls, id)
	}
	c.out.mu.Unlock()
}

// drain stops the connection taking requests: it tells the client
// (ShuttingDown, id 0), ends its subscriptions with ShuttingDown and stops
// the reader; the connection closes once the requests in flight are
// answered.
func (c *serverConn) drain() {
	b, open := c.out.lock()
	if c.draining {
		c.out.unlock(b)
		return
	}
	c.draining = true
	if open {
		b = c.appendErrorLocked(b, 0, &errorMsg{Code: CodeShuttingDown, Message: "server shutting down"})
	}
	for _, a := range c.calls {
		if a.stream != nil {
			a.cancel(lockstitch.ErrShuttingDown)
		}
	}
	c.out.unlock(b)
	c.fr.stop()
}

// abort ends the connection at once: handler contexts are cancelled and
// the socket closed, so the reader and writer fail.
func (c *serverConn) abort() {
	c.cancel(errConnClosed)
	c.nc.Close()
}

// finish ends the connection. When graceful, it first waits for the
// requests in flight to be answered (unless aborted meanwhile) and lets
// the writer send what is queued.
func (c *serverConn) finish(graceful bool) {
	if graceful {
		c.out.mu.Lock()
		var idle chan struct{}
		if c.busy > 0 {
			c.idle = make(chan struct{})
			idle = c.idle
		}
		c.out.mu.Unlock()
		if idle != nil {
			select {
			case <-idle:
			case <-c.ctx.Done():
			}
		}
	}
	c.cancel(errConnClosed)
	c.out.close()
	<-c.out.done // each write is bounded by WriteTimeout
	c.nc.Close()
	c.handlers.Wait()
	c.fr.release()
}
