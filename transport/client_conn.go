package transport

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// clientConn is one connection of a Client to a server: a reader goroutine
// that matches answers to calls by correlation id, and a writer goroutine
// (outbox.run) that coalesces queued requests into one write and pings
// when idle.
//
// A correlation id is gen<<32 | slot: slot indexes the in-flight table
// and gen is the slot's use count, so an answer finds its call without a
// map and a stale id is detected.
type clientConn struct {
	cl     *Client
	ep     *endpoint
	nc     net.Conn
	fr     frameReader
	out    outbox
	node   uint64 // the server's node id
	maxOut int    // largest body the server accepts

	free   chan uint32 // free slots: the in-flight semaphore
	closed atomic.Bool // no new calls: failed, closing, or told ShuttingDown
	dead   chan struct{}

	// reads counts the bytes received (the stall check watches it: a
	// large answer arriving slowly is progress, not a stall).
	reads atomic.Uint64

	// Guarded by out.mu.
	slots []clientSlot
	calls int   // slots holding a call (not a subscription)
	subs  int   // slots holding a subscription
	err   error // why the connection failed
}

// clientSlot is one entry of the in-flight table.
type clientSlot struct {
	gen  uint32
	call *call
	sub  *subAttempt
}

// next starts a new use of the slot and returns its correlation id,
// never 0 (reserved): generation 0 is skipped.
func (s *clientSlot) next(slot uint32) uint64 {
	s.gen++
	if s.gen == 0 {
		s.gen = 1
	}
	return uint64(s.gen)<<32 | uint64(slot)
}

// dialConn opens a connection to addr and performs the handshake, bounded
// by DialTimeout and ctx.
func (cl *Client) dialConn(ctx context.Context, ep *endpoint) (*clientConn, error) {
	ctx, cancel := context.WithTimeout(ctx, cl.cfg.DialTimeout)
	defer cancel()
	network, address := splitAddr(ep.addr)
	nc, err := cl.dial(ctx, network, address)
	if err != nil {
		return nil, err
	}
	hctx := ctx
	if st := cl.cfg.StallTimeout; st > 0 {
		// A live server answers Hello at once; one that accepted the
		// connection (its kernel did) but does not answer is paused.
		var hcancel context.CancelFunc
		hctx, hcancel = context.WithTimeout(ctx, 2*st)
		defer hcancel()
	}
	if cl.cfg.TLS != nil && network == "tcp" {
		if nc, err = cl.tlsClient(hctx, nc, address); err != nil {
			return nil, err
		}
	}
	cc := &clientConn{cl: cl, ep: ep, nc: nc, dead: make(chan struct{})}
	if err := cc.handshake(hctx); err != nil {
		nc.Close()
		cc.fr.release()
		if isTLSError(err) {
			err = fmt.Errorf("%w: %s: %w", ErrTLS, ep.addr, err)
		}
		return nil, err
	}
	cl.mu.Lock()
	cl.conns[cc] = struct{}{}
	cl.mu.Unlock()
	cl.wg.Add(2)
	go func() {
		defer cl.wg.Done()
		if err := cc.out.run(nc, cl.cfg.WriteTimeout, cl.cfg.PingInterval, cc.ping); err != nil {
			cc.fail(err)
		}
	}()
	if cl.cfg.StallTimeout > 0 {
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			cc.watchStalls(cl.cfg.StallTimeout)
		}()
	}
	go func() {
		defer cl.wg.Done()
		cc.readLoop()
	}()
	cl.log.Debug("transport: connected", "addr", ep.addr, "node", cc.node)
	return cc, nil
}

// tlsClient runs the TLS handshake on nc, to the server at address.
func (cl *Client) tlsClient(ctx context.Context, nc net.Conn, address string) (net.Conn, error) {
	cfg := cl.cfg.TLS
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			host = address
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrTLS, address, err)
	}
	return tc, nil
}

// isTLSError reports an error of TLS itself, rather than of the network:
// with TLS 1.3 a server refuses a client's certificate after the client's
// handshake is done, so the refusal arrives on the first read.
func isTLSError(err error) bool {
	var (
		rhe tls.RecordHeaderError
		cve *tls.CertificateVerificationError
		ae  tls.AlertError
		oe  *net.OpError
	)
	return errors.As(err, &rhe) || errors.As(err, &cve) || errors.As(err, &ae) ||
		errors.As(err, &oe) && oe.Op == "remote error"
}

// handshake sends Hello and reads Welcome.
func (cc *clientConn) handshake(ctx context.Context) error {
	cfg := &cc.cl.cfg
	deadline, _ := ctx.Deadline()
	stop := context.AfterFunc(ctx, func() { cc.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	cc.nc.SetWriteDeadline(deadline)
	hello := appendHello(nil, &helloMsg{MaxVersion: Version, MinVersion: Version, MaxFrameBytes: uint32(cfg.MaxFrameBytes), Name: cfg.Name, Credentials: cfg.Credentials})
	if _, err := cc.nc.Write(hello); err != nil {
		return err
	}
	cc.fr.init(countingConn{cc.nc, &cc.reads}, cfg.ReadBufferBytes, cfg.MaxFrameBytes, 3*cfg.PingInterval, 0)
	cc.fr.setFixed(deadline)
	var h Header
	body, err := cc.fr.next(&h)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	switch h.Type {
	case TypeWelcome:
	case TypeError:
		var m errorMsg
		if err := decodeError(body, &m); err != nil {
			return err
		}
		return errorOf(&m)
	default:
		return fmt.Errorf("%w: %v frame instead of Welcome", ErrProtocol, h.Type)
	}
	if h.Version != Version {
		return fmt.Errorf("%w: Welcome of version %d", ErrProtocol, h.Version)
	}
	var w welcomeMsg
	if err := decodeWelcome(body, &w); err != nil {
		return err
	}
	if w.MaxFrameBytes < minFrameBytes || w.MaxInFlight < 1 {
		return fmt.Errorf("%w: Welcome with frame limit %d and in-flight limit %d", ErrProtocol, w.MaxFrameBytes, w.MaxInFlight)
	}
	cc.fr.setFixed(time.Time{})
	cc.nc.SetWriteDeadline(time.Time{})
	cc.node = w.NodeID
	cc.maxOut = int(min(w.MaxFrameBytes, maxFrameLimit))
	n := min(cfg.MaxInFlight, int(w.MaxInFlight))
	cc.slots = make([]clientSlot, n)
	cc.free = make(chan uint32, n)
	for i := range n {
		cc.free <- uint32(i)
	}
	cc.out.init(cfg.MaxInFlight * 64) // requests wait for slots, not for room
	return nil
}

// ping queues a keepalive Ping, correlation id 0, whose Pong is ignored.
func (cc *clientConn) ping() {
	b, open := cc.out.lock()
	if open {
		b = appendPing(b, 0)
	}
	cc.out.unlock(b)
}

// acquire takes a free slot, waiting for one.
func (cc *clientConn) acquire(ctx context.Context) (uint32, error) {
	select {
	case s := <-cc.free:
		return s, nil
	default:
	}
	select {
	case s := <-cc.free:
		return s, nil
	case <-cc.dead:
		return 0, cc.lostErr()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// lostErr returns the error of calls on a failed connection: retryable.
func (cc *clientConn) lostErr() error {
	cc.out.mu.Lock()
	err := cc.err
	cc.out.mu.Unlock()
	if err == nil {
		err = errors.New("connection closing")
	}
	return fmt.Errorf("%w: connection to %s: %v", lockstitch.ErrUnavailable, cc.ep.addr, err)
}

// start registers c in a free slot and queues its request. It fails,
// with a retryable error, if the connection is closing.
func (cc *clientConn) start(ctx context.Context, c *call) error {
	if size := c.frameSize(); size > cc.maxOut {
		return fmt.Errorf("%w: request of %d bytes exceeds the server's frame limit of %d", lockstitch.ErrTooLarge, size, cc.maxOut)
	}
	slot, err := cc.acquire(ctx)
	if err != nil {
		return err
	}
	b, open := cc.out.lock()
	if !open || cc.closed.Load() {
		cc.out.unlock(b)
		cc.free <- slot
		return cc.lostErr()
	}
	s := &cc.slots[slot]
	s.call = c
	cc.calls++
	id := s.next(slot)
	c.conn = cc
	c.state.Store(callInFlight)
	b = c.encode(b, id, cc.cl.producer)
	cc.out.unlock(b)
	return nil
}

// readLoop reads answers until the connection fails.
func (cc *clientConn) readLoop() {
	var h Header
	for {
		body, err := cc.fr.next(&h)
		if err != nil {
			cc.fail(err)
			return
		}
		if h.Version != Version {
			cc.fail(fmt.Errorf("%w: frame of version %d", ErrProtocol, h.Version))
			return
		}
		if err := cc.handle(&h, body); err != nil {
			cc.fail(err)
			return
		}
	}
}

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	n *atomic.Uint64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(uint64(n))
	return n, err
}

// watchStalls drops the connection when calls wait on it and the server
// has gone silent: no frame for timeout, then none for another timeout
// after a ping (a live server answers a ping at once, however long its
// calls take). It runs until the connection fails.
func (cc *clientConn) watchStalls(timeout time.Duration) {
	tick := time.NewTicker(timeout / 2)
	defer tick.Stop()
	var st stallCheck
	for {
		select {
		case <-cc.dead:
			return
		case <-tick.C:
		}
		cc.out.mu.Lock()
		// A subscription counts: a live server answers the ping even
		// when it has nothing to send (no new op, no credit left).
		busy := cc.calls > 0 || cc.subs > 0
		cc.out.mu.Unlock()
		switch st.observe(busy, cc.reads.Load()) {
		case stallPing:
			cc.ping()
		case stallDead:
			cc.fail(fmt.Errorf("no answer for %v with calls or subscriptions waiting, nor to a ping", 2*timeout))
			return
		}
	}
}

// stallCheck is the stall policy, advanced every half StallTimeout: two
// silent ticks with calls or subscriptions waiting send a ping, two more declare the
// connection dead. Any frame received, or no call waiting, resets it.
type stallCheck struct {
	reads  uint64
	silent int
}

// Outcomes of stallCheck.observe.
const (
	stallNone = iota
	stallPing
	stallDead
)

// observe advances the check by one tick: busy says whether calls wait,
// reads is the count of bytes received so far.
func (s *stallCheck) observe(busy bool, reads uint64) int {
	if !busy || reads != s.reads {
		s.reads, s.silent = reads, 0
		return stallNone
	}
	s.silent++
	switch s.silent {
	case 2:
		return stallPing
	case 4:
		return stallDead
	}
	return stallNone
}

// handle dispatches one frame from the server.
func (cc *clientConn) handle(h *Header, body []byte) error {
	if h.ID == 0 {
		switch h.Type {
		case TypePong:
			return nil
		case TypeError:
			var m errorMsg
			if err := decodeError(body, &m); err != nil {
				return err
			}
			if m.Code == CodeShuttingDown {
				// Answers in flight still come; take no new calls.
				cc.closed.Store(true)
				cc.cl.log.Info("transport: server shutting down", "addr", cc.ep.addr)
				return nil
			}
			return errorOf(&m)
		}
		return fmt.Errorf("%w: %v frame with correlation id 0", ErrProtocol, h.Type)
	}
	slot, gen := uint32(h.ID), uint32(h.ID>>32)
	cc.out.mu.Lock()
	if int(slot) >= len(cc.slots) || cc.slots[slot].gen != gen || (cc.slots[slot].call == nil && cc.slots[slot].sub == nil) {
		cc.out.mu.Unlock()
		return fmt.Errorf("%w: %v frame for unknown correlation id %#x", ErrProtocol, h.Type, h.ID)
	}
	s := &cc.slots[slot]
	if a := s.sub; a != nil {
		end := h.Type == TypeEnd || h.Type == TypeError
		if end {
			s.sub = nil
			cc.subs--
		}
		cc.out.mu.Unlock()
		if end {
			cc.free <- slot
		}
		return a.receive(h.Type, body)
	}
	c := s.call
	s.call = nil
	cc.calls--
	cc.out.mu.Unlock()
	cc.free <- slot
	if err := c.receive(h.Type, h.Flags, body); err != nil {
		c.err = err
		c.deliver()
		return err
	}
	c.deliver()
	return nil
}

// fail ends the connection after err: calls in flight fail with a
// retryable error, subscriptions end, and the endpoint forgets it.
func (cc *clientConn) fail(err error) {
	cc.out.mu.Lock()
	if cc.err != nil {
		cc.out.mu.Unlock()
		return
	}
	cc.err = err
	cc.closed.Store(true)
	var calls []*call
	var subs []*subAttempt
	for i := range cc.slots {
		s := &cc.slots[i]
		if s.call != nil {
			calls = append(calls, s.call)
			s.call = nil
			cc.calls--
		}
		if s.sub != nil {
			subs = append(subs, s.sub)
			s.sub = nil
			cc.subs--
		}
	}
	cc.out.mu.Unlock()
	cc.out.close()
	cc.nc.Close()
	close(cc.dead)
	cc.ep.forget(cc)
	cc.cl.mu.Lock()
	delete(cc.cl.conns, cc)
	cc.cl.mu.Unlock()
	if !cc.cl.isClosed() && !errors.Is(err, net.ErrClosed) {
		cc.cl.log.Info("transport: connection lost", "addr", cc.ep.addr, "err", err)
	}
	lost := cc.lostErr()
	for _, c := range calls {
		c.err = lost
		c.deliver()
	}
	for _, a := range subs {
		a.end(subMsg{err: lost})
	}
}

// close ends the connection on the client's Close.
func (cc *clientConn) close() {
	cc.fail(lockstitch.ErrClosed)
}

// countRecords walks the log frames in records by their length fields
// only (wal.DecodeRecord checks them fully later) and returns their number
// and whether they are well formed.
func countRecords(records []byte) (int, bool) {
	n := 0
	for len(records) > 0 {
		if len(records) < wal.HeaderSize {
			return n, false
		}
		size := uint64(binary.LittleEndian.Uint32(records)) + wal.FrameOverhead
		if size > uint64(len(records)) {
			return n, false
		}
		records = records[size:]
		n++
	}
	return n, true
}
