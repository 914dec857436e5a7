package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/wal"
)

// TestStallCheck steps the stall policy: a ping after two silent ticks
// with calls waiting, death after four; any frame or an idle connection
// resets it.
func TestStallCheck(t *testing.T) {
	var s stallCheck
	steps := []struct {
		busy  bool
		reads uint64
		want  int
	}{
		{true, 0, stallNone}, {true, 0, stallPing}, // silent: ping
		{true, 1, stallNone}, // the pong: reset
		{true, 1, stallNone}, {true, 1, stallPing}, {true, 1, stallNone}, {true, 1, stallDead},
	}
	for i, st := range steps {
		if got := s.observe(st.busy, st.reads); got != st.want {
			t.Fatalf("step %d: %d, want %d", i, got, st.want)
		}
	}
	s = stallCheck{}
	for i := 0; i < 10; i++ {
		if got := s.observe(false, 0); got != stallNone {
			t.Fatalf("idle tick %d: %d", i, got)
		}
	}
}

// silentServer accepts connections, answers Hello with Welcome, then
// reads and answers nothing, as a paused process would.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { nc.Close() })
			go func() {
				var h [HeaderSize]byte
				if _, err := io.ReadFull(nc, h[:]); err != nil {
					return
				}
				var hdr Header
				if DecodeHeader(h[:], &hdr) != nil {
					return
				}
				if _, err := io.CopyN(io.Discard, nc, int64(hdr.Length)); err != nil {
					return
				}
				nc.Write(appendWelcome(nil, &welcomeMsg{NodeID: 9, MaxFrameBytes: 1 << 20, MaxInFlight: 64}))
				io.Copy(io.Discard, nc) // and never answer
			}()
		}
	}()
	return l.Addr().String()
}

// TestStalledServerIsLeft: an append sent to a server that stopped
// answering moves to the next node after about two StallTimeouts, not
// after the caller's deadline; with the check off it waits for the
// deadline.
func TestStalledServerIsLeft(t *testing.T) {
	silent := silentServer(t)
	_, live := startServer(t, newFakeHandler(), testServerConfig())
	for _, stall := range []time.Duration{100 * time.Millisecond, 0} {
		cfg := testClientConfig()
		cfg.StallTimeout = stall
		cl := dialTest(t, cfg, silent, live)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		res, err := cl.Append(ctx, 1, []byte("x"))
		cancel()
		took := time.Since(start)
		if stall > 0 {
			if err != nil || res.LSN == 0 {
				t.Fatalf("stall check %v: append: %v, after %v", stall, err, took)
			}
			t.Logf("stall check %v: appended on the live node after %v", stall, took)
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("stall check off: append: %v after %v, want the deadline", err, took)
		}
	}
}

// unavailableSubs refuses every subscription with ErrUnavailable.
type unavailableSubs struct {
	*fakeHandler
	calls atomic.Int32
}

func (h *unavailableSubs) Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error {
	h.calls.Add(1)
	return lockstitch.ErrUnavailable
}

// TestSubscriptionClosedWhileRetrying: a Subscription closed while Next
// waits to retry returns ErrClosed, not the error it was retrying.
func TestSubscriptionClosedWhileRetrying(t *testing.T) {
	h := &unavailableSubs{fakeHandler: newFakeHandler()}
	_, addr := startServer(t, h, testServerConfig())
	cfg := testClientConfig()
	cfg.BackoffMin, cfg.BackoffMax = 10*time.Second, 10*time.Second
	cl := dialTest(t, cfg, addr)
	ctx := testContext(t)
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- sub.Next(ctx, new(wal.Record)) }()
	for h.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	sub.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, lockstitch.ErrClosed) {
			t.Fatalf("Next after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next still waiting 5 s after Close")
	}
}

// pausableProxy forwards TCP connections to a server until paused; then
// it holds every byte in both directions, as a paused server process
// would (its kernel still accepts and buffers).
type pausableProxy struct {
	addr   string
	paused atomic.Bool
	resume chan struct{}
}

func startPausableProxy(t *testing.T, target string) *pausableProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausableProxy{addr: l.Addr().String(), resume: make(chan struct{})}
	t.Cleanup(func() { l.Close(); p.unpause() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", target)
			if err != nil {
				nc.Close()
				continue
			}
			t.Cleanup(func() { nc.Close(); sc.Close() })
			go p.pipe(nc, sc)
			go p.pipe(sc, nc)
		}
	}()
	return p
}

// pipe copies src to dst, holding what it reads while the proxy is paused.
func (p *pausableProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.paused.Load() {
			<-p.resume
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (p *pausableProxy) pause() { p.paused.Store(true) }

func (p *pausableProxy) unpause() {
	if p.paused.CompareAndSwap(true, false) {
		close(p.resume)
	}
}

// TestStalledSubscriptionMoves: a subscription whose server pauses while
// the partition is quiet (nothing to send, so silence proves nothing by
// itself) is moved to another node by the stall check's ping, and goes on
// from its marker, well before the idle check (PingInterval) would act.
func TestStalledSubscriptionMoves(t *testing.T) {
	h := newFakeHandler()
	_, first := startServer(t, h, testServerConfig())
	_, second := startServer(t, h, testServerConfig())
	proxy := startPausableProxy(t, first)
	cfg := testClientConfig()
	cfg.StallTimeout = 100 * time.Millisecond
	cl := dialTest(t, cfg, proxy.addr, second)
	ctx := testContext(t)
	if _, err := cl.Append(ctx, 1, []byte("one")); err != nil {
		t.Fatal(err)
	}
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	if err := sub.Next(ctx, &rec); err != nil || string(rec.Payload) != "one" {
		t.Fatalf("first record: %q %v", rec.Payload, err)
	}
	if sub.att == nil || sub.att.cc.ep.addr != proxy.addr {
		t.Fatal("the subscription did not go to the first address, the node to pause")
	}
	proxy.pause()
	// Quiet for a few stall timeouts, then a new op: it must come from the
	// other node.
	time.Sleep(5 * cfg.StallTimeout)
	h2 := dialTest(t, testClientConfig(), second)
	if _, err := h2.Append(ctx, 1, []byte("two")); err != nil {
		t.Fatal(err)
	}
	nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := sub.Next(nctx, &rec); err != nil || string(rec.Payload) != "two" || rec.LSN != 2 {
		t.Fatalf("after the pause: %q at %d, %v (after %v)", rec.Payload, rec.LSN, err, time.Since(start))
	}
	t.Logf("the next record arrived %v after it was appended", time.Since(start))
}

// TestSubscriptionLeavesAnUnavailableNode: a node that answers a
// subscription Unavailable (its replica lost touch with its leader, say)
// while its connection stays up is left for the next node, not asked
// again because its connection is the one the client has.
func TestSubscriptionLeavesAnUnavailableNode(t *testing.T) {
	bad := &unavailableSubs{fakeHandler: newFakeHandler()}
	_, first := startServer(t, bad, testServerConfig())
	_, second := startServer(t, newFakeHandler(), testServerConfig())
	ctx := testContext(t)
	if _, err := dialTest(t, testClientConfig(), second).Append(ctx, 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	cfg := testClientConfig()
	cfg.BackoffMin, cfg.BackoffMax = time.Second, time.Second
	cl := dialTest(t, cfg, first, second)
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	if err := sub.Next(ctx, &rec); err != nil || string(rec.Payload) != "x" {
		t.Fatalf("Next: %q %v", rec.Payload, err)
	}
	if n := bad.calls.Load(); n != 1 {
		t.Fatalf("the unavailable node was asked %d times", n)
	}
}

// TestSubscriptionPassesADeadNode: the node after an unavailable one in
// the seeds' order is down (its dial is refused): the subscription goes
// on to the node after it instead of naming the dead node again after
// every failed dial (seen by the fault-injection suite: a subscription
// whose node was killed spent its attempts on it).
func TestSubscriptionPassesADeadNode(t *testing.T) {
	bad := &unavailableSubs{fakeHandler: newFakeHandler()}
	_, lost := startServer(t, bad, testServerConfig())
	_, good := startServer(t, newFakeHandler(), testServerConfig())
	dead := testutil.FreeAddr(t) // nothing listens there
	ctx := testContext(t)
	if _, err := dialTest(t, testClientConfig(), good).Append(ctx, 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	cl := dialTest(t, testClientConfig(), lost, dead, good)
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	if err := sub.Next(ctx, &rec); err != nil || string(rec.Payload) != "x" {
		t.Fatalf("Next: %q %v (the unavailable node was asked %d times)", rec.Payload, err, bad.calls.Load())
	}
}

// TestSubscriptionGivesUpWithContext: a Next whose context ends
// while it waits to retry says so (context.DeadlineExceeded), with the
// last attempt's error (Unavailable) beside it.
func TestSubscriptionGivesUpWithContext(t *testing.T) {
	_, addr := startServer(t, &unavailableSubs{fakeHandler: newFakeHandler()}, testServerConfig())
	cfg := testClientConfig()
	cfg.BackoffMin, cfg.BackoffMax = time.Minute, time.Minute
	cl := dialTest(t, cfg, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	err = sub.Next(ctx, new(wal.Record))
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("Next past its deadline: %v", err)
	}
}
