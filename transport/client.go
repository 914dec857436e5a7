package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Client is a connection to a Lockstitch cluster. It keeps one connection
// per node it talks to, routes each partition's requests to the
// partition's leader (learnt from NotLeader answers), reconnects with
// backoff and retries requests that failed for a retryable reason; an
// append is retried with its producer id and sequence number, so the
// partition never applies it twice. A Client is safe for concurrent use
// by many goroutines; a connection carries up to MaxInFlight requests at
// once.
type Client struct {
	cfg      ClientConfig
	log      *slog.Logger
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	seeds    []string
	producer uint64

	mu        sync.RWMutex
	parts     map[lockstitch.PartitionID]*partState
	endpoints map[string]*endpoint
	conns     map[*clientConn]struct{} // every open connection, draining ones too

	closed atomic.Bool
	done   chan struct{} // closed by Close
	next   atomic.Uint32 // round robin over seeds
	calls  sync.Pool     // *call
	wg     sync.WaitGroup
}

// partState is what the Client knows of a partition.
type partState struct {
	seq  atomic.Uint64              // last sequence number used
	conn atomic.Pointer[clientConn] // the leader's connection, when known
	mu   sync.Mutex
	hint string // the leader's address from the last NotLeader
}

// endpoint is one server address and its current connection.
type endpoint struct {
	addr     string
	mu       sync.Mutex
	conn     *clientConn
	dialing  chan struct{} // closed when the dial in progress ends
	failures int
	retryAt  time.Time
	lastErr  error
}

// Dial returns a Client for the cluster reachable at addrs ("host:port"
// or "unix:/path"). It connects to the first address that answers and
// fails if none does; the others are tried as needed, as are the leader
// addresses that servers name.
func Dial(ctx context.Context, cfg ClientConfig, addrs ...string) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, errors.New("transport: Dial needs at least one address")
	}
	cl := &Client{
		cfg:       cfg,
		log:       cfg.Logger,
		dial:      cfg.Dial,
		seeds:     append([]string(nil), addrs...),
		producer:  cfg.ProducerID,
		parts:     make(map[lockstitch.PartitionID]*partState),
		endpoints: make(map[string]*endpoint),
		conns:     make(map[*clientConn]struct{}),
		done:      make(chan struct{}),
	}
	if cl.log == nil {
		cl.log = slog.New(slog.DiscardHandler)
	}
	if cl.dial == nil {
		var d net.Dialer
		cl.dial = d.DialContext
	}
	for cl.producer == 0 {
		cl.producer = rand.Uint64()
	}
	var errs []error
	for _, a := range cl.seeds {
		if _, err := cl.connect(ctx, a); err != nil {
			errs = append(errs, err)
			continue
		}
		return cl, nil
	}
	cl.Close()
	return nil, fmt.Errorf("transport: no address answered: %w", errors.Join(errs...))
}

// Producer returns the producer id of the Client's appends.
func (cl *Client) Producer() uint64 { return cl.producer }

// SetSequence makes next (at least 1) the sequence number of the next op
// appended to partition p through this Client; each op takes the next
// one, a batch one per op. The sequences of a Client's appends start at
// 1. A producer that restarts with its id (ClientConfig.ProducerID)
// resends an op it is unsure of under the sequence it had: the partition
// answers with the original LSN (Duplicate) if it committed it, and
// applies it otherwise (see ProducerStatus and docs/guarantees.md).
func (cl *Client) SetSequence(p lockstitch.PartitionID, next uint64) {
	cl.part(p).seq.Store(max(next, 1) - 1)
}

// Close closes every connection. Calls in progress fail with ErrClosed.
// Close is idempotent.
func (cl *Client) Close() error {
	if cl.closed.Swap(true) {
		return nil
	}
	close(cl.done)
	cl.mu.Lock()
	conns := make([]*clientConn, 0, len(cl.conns))
	for cc := range cl.conns {
		conns = append(conns, cc)
	}
	cl.mu.Unlock()
	for _, cc := range conns {
		cc.close()
	}
	cl.wg.Wait()
	return nil
}

func (cl *Client) isClosed() bool { return cl.closed.Load() }

// part returns the state of partition p, creating it.
func (cl *Client) part(p lockstitch.PartitionID) *partState {
	cl.mu.RLock()
	ps := cl.parts[p]
	cl.mu.RUnlock()
	if ps != nil {
		return ps
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if ps = cl.parts[p]; ps == nil {
		ps = &partState{}
		cl.parts[p] = ps
	}
	return ps
}

// endpoint returns the endpoint of addr, creating it.
func (cl *Client) endpoint(addr string) *endpoint {
	cl.mu.RLock()
	ep := cl.endpoints[addr]
	cl.mu.RUnlock()
	if ep != nil {
		return ep
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if ep = cl.endpoints[addr]; ep == nil {
		ep = &endpoint{addr: addr}
		cl.endpoints[addr] = ep
	}
	return ep
}

// connect returns a usable connection to addr, dialing if there is none.
// One goroutine dials an address at a time; the others wait for it. After
// a failed dial, the address is not dialed again before a backoff, and
// calls fail fast (and retryably) meanwhile.
func (cl *Client) connect(ctx context.Context, addr string) (*clientConn, error) {
	ep := cl.endpoint(addr)
	for {
		if cl.isClosed() {
			return nil, lockstitch.ErrClosed
		}
		ep.mu.Lock()
		if cc := ep.conn; cc != nil && !cc.closed.Load() {
			ep.mu.Unlock()
			return cc, nil
		}
		if ch := ep.dialing; ch != nil {
			ep.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if time.Now().Before(ep.retryAt) {
			err := ep.lastErr
			ep.mu.Unlock()
			return nil, fmt.Errorf("%w: %s: %v", lockstitch.ErrUnavailable, addr, err)
		}
		ch := make(chan struct{})
		ep.dialing = ch
		ep.mu.Unlock()

		cc, err := cl.dialConn(ctx, ep)

		ep.mu.Lock()
		ep.dialing = nil
		close(ch)
		switch {
		case err == nil && cl.isClosed():
			ep.mu.Unlock()
			cc.close()
			return nil, lockstitch.ErrClosed
		case err == nil:
			ep.conn, ep.failures, ep.lastErr = cc, 0, nil
		case ctx.Err() == nil:
			// A failure of the address, not of the caller's patience.
			ep.failures++
			ep.retryAt = time.Now().Add(cl.backoff(ep.failures))
			ep.lastErr = err
		}
		ep.mu.Unlock()
		if err != nil {
			if errors.Is(err, ErrVersion) || errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrTLS) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: dial %s: %v", lockstitch.ErrUnavailable, addr, err)
		}
		return cc, nil
	}
}

// forget drops cc as the endpoint's connection.
func (ep *endpoint) forget(cc *clientConn) {
	ep.mu.Lock()
	if ep.conn == cc {
		ep.conn = nil
	}
	ep.mu.Unlock()
}

// route returns the connection an attempt should use: addr's for a
// by-address request (any node's for ""), else partition p's leader's,
// else any seed's.
func (cl *Client) route(ctx context.Context, p lockstitch.PartitionID, addr string, byAddr bool) (*clientConn, error) {
	if byAddr {
		if addr != "" {
			return cl.connect(ctx, addr)
		}
		return cl.anyConn(ctx)
	}
	ps := cl.part(p)
	if cc := ps.conn.Load(); cc != nil && !cc.closed.Load() {
		return cc, nil
	}
	ps.mu.Lock()
	addr = ps.hint
	ps.mu.Unlock()
	var cc *clientConn
	var err error
	if addr != "" {
		cc, err = cl.connect(ctx, addr)
	} else {
		cc, err = cl.anyConn(ctx)
	}
	if err != nil {
		ps.mu.Lock()
		if ps.hint == addr && addr != "" && ctx.Err() == nil && errors.Is(err, lockstitch.ErrUnavailable) {
			// The named node cannot be reached: the next attempt asks
			// the node after it, not the same one again.
			ps.hint = cl.seedAfter(addr)
			if ps.hint == addr {
				ps.hint = ""
			}
		}
		ps.mu.Unlock()
		return nil, err
	}
	ps.conn.Store(cc)
	return cc, nil
}

// seedAfter returns the seed after addr in the seeds' order, or "" when
// there is no other seed (addr not a seed: the next in the round robin).
func (cl *Client) seedAfter(addr string) string {
	n := len(cl.seeds)
	if n < 2 {
		return ""
	}
	for i, a := range cl.seeds {
		if a == addr {
			return cl.seeds[(i+1)%n]
		}
	}
	return cl.seeds[int(cl.next.Load()%uint32(n))]
}

// anyConn returns a connection to some node: a usable existing one of the
// seeds, else the next seed in turn that connects.
func (cl *Client) anyConn(ctx context.Context) (*clientConn, error) {
	n := uint32(len(cl.seeds))
	start := cl.next.Load()
	for i := range n {
		ep := cl.endpoint(cl.seeds[(start+i)%n])
		ep.mu.Lock()
		cc := ep.conn
		ep.mu.Unlock()
		if cc != nil && !cc.closed.Load() {
			return cc, nil
		}
	}
	i := cl.next.Add(1) - 1
	return cl.connect(ctx, cl.seeds[i%n])
}

// reroute updates the routing of partition p after an attempt on conn
// (nil if it was never sent) failed with err, and reports whether the
// next attempt can go at once (a NotLeader hint to another address, or
// another node after one that could not serve).
func (cl *Client) reroute(p lockstitch.PartitionID, conn *clientConn, byAddr bool, err error) bool {
	if byAddr {
		return false
	}
	ps := cl.part(p)
	var nl *lockstitch.NotLeaderError
	switch {
	case errors.As(err, &nl):
		ps.conn.Store(nil)
		hint := nl.LeaderAddr
		if hint == "" && conn != nil {
			// This node knows no leader (it may have lost touch, or an
			// election runs): ask the next node, by name, since a
			// connection to this one may still be up and the seeds'
			// round robin prefers connections that are.
			hint = cl.seedAfter(conn.ep.addr)
		}
		ps.mu.Lock()
		ps.hint = hint
		ps.mu.Unlock()
		if nl.LeaderAddr == "" {
			cl.next.Add(1)
			return false
		}
		return conn == nil || nl.LeaderAddr != conn.ep.addr
	case errors.Is(err, lockstitch.ErrUnavailable), errors.Is(err, lockstitch.ErrShuttingDown):
		// The connection is lost, or the node cannot serve the partition
		// now (its replica opens, or is quarantined, or has lost touch
		// with its leader, or it is stopping): the next attempt tries the
		// next node, which serves it or says where the leader is. Named
		// as the hint: a connection to this node may still be up, and
		// the seeds' round robin prefers connections that are.
		if conn != nil {
			ps.conn.CompareAndSwap(conn, nil)
			next := cl.seedAfter(conn.ep.addr)
			ps.mu.Lock()
			ps.hint = next
			ps.mu.Unlock()
			cl.next.Add(1)
			return next != "" && next != conn.ep.addr
		}
	}
	return false
}

// send starts an attempt of c on the connection its routing picks.
func (cl *Client) send(ctx context.Context, c *call) error {
	if cl.isClosed() {
		return lockstitch.ErrClosed
	}
	c.conn, c.refused = nil, false
	cc, err := cl.route(ctx, c.partition, c.addr, c.byAddr)
	if err != nil {
		return err
	}
	return cc.start(ctx, c)
}
