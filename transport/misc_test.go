package transport

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockstitch/lockstitch"
)

// countingMetrics counts what the server reports.
type countingMetrics struct {
	mu                  sync.Mutex
	opened, closed      int
	framesIn, framesOut map[FrameType]int
	bytesIn, bytesOut   int
	errors              map[Code]int
	tlsFailed           int
	authFailed          map[string]int
}

func newCountingMetrics() *countingMetrics {
	return &countingMetrics{framesIn: map[FrameType]int{}, framesOut: map[FrameType]int{}, errors: map[Code]int{}, authFailed: map[string]int{}}
}

func (m *countingMetrics) ConnOpened() { m.mu.Lock(); m.opened++; m.mu.Unlock() }
func (m *countingMetrics) ConnClosed() { m.mu.Lock(); m.closed++; m.mu.Unlock() }
func (m *countingMetrics) TLSHandshakeFailed() {
	m.mu.Lock()
	m.tlsFailed++
	m.mu.Unlock()
}
func (m *countingMetrics) AuthFailed(reason string) {
	m.mu.Lock()
	m.authFailed[reason]++
	m.mu.Unlock()
}
func (m *countingMetrics) FrameReceived(t FrameType, n int) {
	m.mu.Lock()
	m.framesIn[t]++
	m.bytesIn += n
	m.mu.Unlock()
}
func (m *countingMetrics) FrameSent(t FrameType, n int) {
	m.mu.Lock()
	m.framesOut[t]++
	m.bytesOut += n
	m.mu.Unlock()
}
func (m *countingMetrics) ErrorSent(c Code) { m.mu.Lock(); m.errors[c]++; m.mu.Unlock() }

func TestMetrics(t *testing.T) {
	m := newCountingMetrics()
	cfg := testServerConfig()
	cfg.Metrics = m
	srv, addr := startServer(t, newFakeHandler(), cfg)
	rc := dialRaw(t, addr)
	rc.hello()
	rc.write(appendFrame(1, 1, []byte("ok")))
	rc.read()
	rc.write(appendAppend(nil, 2, &AppendRequest{Partition: 1, CRC: 1, Payload: []byte("bad")}))
	rc.expectError(CodeChecksum, 2)
	rc.nc.Close()
	srv.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.opened != 1 || m.closed != 1 {
		t.Errorf("connections: %d opened, %d closed", m.opened, m.closed)
	}
	if m.framesIn[TypeHello] != 1 || m.framesIn[TypeAppend] != 2 {
		t.Errorf("frames in: %v", m.framesIn)
	}
	if m.framesOut[TypeWelcome] != 1 || m.framesOut[TypeAppendResult] != 1 || m.framesOut[TypeError] != 1 {
		t.Errorf("frames out: %v", m.framesOut)
	}
	if m.errors[CodeChecksum] != 1 || len(m.errors) != 1 {
		t.Errorf("errors: %v", m.errors)
	}
	if m.bytesIn == 0 || m.bytesOut == 0 {
		t.Errorf("bytes: %d in, %d out", m.bytesIn, m.bytesOut)
	}
}

// TestKeepalive leaves a client idle for many server idle timeouts: its
// pings keep the connection open, and it is still usable without a
// reconnect.
func TestKeepalive(t *testing.T) {
	cfg := testServerConfig()
	cfg.IdleTimeout = 60 * time.Second
	synctestServer(t, newFakeHandler(), cfg, func(t *testing.T, srv *Server, l *pipeListener) {
		ccfg := testClientConfig()
		ccfg.PingInterval = 15 * time.Second
		ccfg.Dial = l.dial
		cl, err := Dial(context.Background(), ccfg, "pipe")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		time.Sleep(10 * cfg.IdleTimeout) // fake time: the pings are what happens meanwhile
		if n := srv.Conns(); n != 1 {
			t.Fatalf("%d connections after idling", n)
		}
		ep := cl.endpoint("pipe")
		ep.mu.Lock()
		before := ep.conn
		ep.mu.Unlock()
		if _, err := cl.Append(context.Background(), 1, []byte("after a nap")); err != nil {
			t.Fatal(err)
		}
		ep.mu.Lock()
		after := ep.conn
		ep.mu.Unlock()
		if before == nil || before != after {
			t.Fatal("the client reconnected: its connection did not survive idling")
		}
	})
}

// TestDeadServer checks that a client notices a server that stops
// answering (no Pong for three ping intervals), and that its calls fail
// retryably rather than hang.
func TestDeadServer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		defer l.Close()
		// A "server" that completes the handshake, then reads and never
		// answers.
		go func() {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			defer nc.Close()
			rc := &rawClient{t: t, nc: nc}
			rc.fr.init(nc, 4096, 1<<20, 0, 0)
			defer rc.fr.release()
			var h Header
			if _, err := rc.fr.next(&h); err != nil {
				return
			}
			nc.Write(appendWelcome(nil, &welcomeMsg{NodeID: 1, MaxFrameBytes: 1 << 20, MaxInFlight: 16}))
			for {
				if _, err := rc.fr.next(&h); err != nil {
					return
				}
			}
		}()
		ccfg := testClientConfig()
		ccfg.PingInterval = time.Second
		ccfg.MaxAttempts = 1
		ccfg.Dial = l.dial
		cl, err := Dial(context.Background(), ccfg, "pipe")
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		start := time.Now()
		_, err = cl.Append(context.Background(), 1, []byte("into the void"))
		if !errors.Is(err, lockstitch.ErrUnavailable) {
			t.Fatalf("append to a dead server: %v", err)
		}
		if took := time.Since(start); took > 4*ccfg.PingInterval {
			t.Fatalf("took %v to notice", took)
		}
	})
}

// TestTCPAndUnix serves one server on a TCP and a Unix listener at once.
func TestTCPAndUnix(t *testing.T) {
	h := newFakeHandler()
	srv, err := NewServer(h, testServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ls.sock")
	unix, err := Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, l := range []net.Listener{tcp, unix} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); !errors.Is(err, lockstitch.ErrClosed) {
				t.Errorf("Serve(%v): %v", l.Addr(), err)
			}
		}()
	}
	ctx := testContext(t)
	for _, addr := range []string{tcp.Addr().String(), "unix:" + path} {
		cl := dialTest(t, testClientConfig(), addr)
		if _, err := cl.Append(ctx, 1, []byte(addr)); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n := len(h.records(1)); n != 2 {
		t.Fatalf("%d records", n)
	}
	if err := srv.Serve(tcp); !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestClientClose checks that calls fail with ErrClosed once the client
// is closed, including one in flight.
func TestClientClose(t *testing.T) {
	h := newHoldHandler()
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	errc := make(chan error, 1)
	go func() {
		_, err := cl.Append(ctx, 1, []byte("in flight"))
		errc <- err
	}()
	<-h.held
	cl.Close()
	if err := <-errc; !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("append in flight at Close: %v", err)
	}
	if _, err := cl.Append(ctx, 1, []byte("after")); !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("append after Close: %v", err)
	}
	if _, err := cl.AppendAsync(ctx, 1, []byte("after")).Wait(ctx); !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("async append after Close: %v", err)
	}
	close(h.release)
}

// TestCorrelationIDNeverZero checks that a slot's generation skips 0 when
// it wraps, so that a request never gets the reserved id 0.
func TestCorrelationIDNeverZero(t *testing.T) {
	s := clientSlot{gen: ^uint32(0)}
	if id := s.next(0); id == 0 || s.gen != 1 {
		t.Fatalf("after the wrap: id %#x, generation %d", id, s.gen)
	}
	if id := s.next(3); id != 2<<32|3 {
		t.Fatalf("id %#x", id)
	}
}
