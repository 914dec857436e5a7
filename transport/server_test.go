package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// rawClient speaks the protocol by hand, to send what a Client never
// would.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	fr frameReader
}

func newRawClient(t testing.TB, nc net.Conn) *rawClient {
	t.Helper()
	rc := &rawClient{t: t, nc: nc}
	rc.fr.init(nc, 4096, 64<<20, 0, 0)
	t.Cleanup(func() { nc.Close() })
	return rc
}

// dialRaw connects to addr over TCP.
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second)) // bounds every wait of the test
	return newRawClient(t, nc)
}

func (rc *rawClient) write(b []byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// hello performs the handshake.
func (rc *rawClient) hello() welcomeMsg {
	rc.t.Helper()
	rc.write(appendHello(nil, &helloMsg{MaxVersion: Version, MinVersion: Version, MaxFrameBytes: 1 << 20, Name: "raw"}))
	h, body := rc.read()
	if h.Type != TypeWelcome {
		rc.t.Fatalf("got %v instead of Welcome", h.Type)
	}
	var w welcomeMsg
	if err := decodeWelcome(body, &w); err != nil {
		rc.t.Fatal(err)
	}
	return w
}

// read reads one frame; the body is a copy.
func (rc *rawClient) read() (Header, []byte) {
	rc.t.Helper()
	var h Header
	body, err := rc.fr.next(&h)
	if err != nil {
		rc.t.Fatalf("read: %v", err)
	}
	return h, append([]byte(nil), body...)
}

// expectError reads an Error frame with code and correlation id id.
func (rc *rawClient) expectError(code Code, id uint64) errorMsg {
	rc.t.Helper()
	h, body := rc.read()
	if h.Type != TypeError {
		rc.t.Fatalf("got %v, want Error %v", h.Type, code)
	}
	var m errorMsg
	if err := decodeError(body, &m); err != nil {
		rc.t.Fatal(err)
	}
	if m.Code != code || h.ID != id {
		rc.t.Fatalf("got Error %v (%q) for id %d, want %v for id %d", m.Code, m.Message, h.ID, code, id)
	}
	return m
}

// expectClosed checks that the server closes the connection.
func (rc *rawClient) expectClosed() {
	rc.t.Helper()
	var h Header
	if body, err := rc.fr.next(&h); err == nil {
		rc.t.Fatalf("got a %v frame (%d bytes) instead of the connection closing", h.Type, len(body))
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.ErrClosedPipe) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			rc.t.Fatalf("the server did not close the connection: %v", err)
		}
	}
}

// appendFrame returns an Append frame with a correct CRC.
func appendFrame(id uint64, p lockstitch.PartitionID, payload []byte) []byte {
	return appendAppend(nil, id, &AppendRequest{Partition: p, CRC: wal.Checksum(payload), Payload: payload})
}

// checkServing checks that a fresh client can still append.
func checkServing(t *testing.T, addr string) {
	t.Helper()
	cl := dialTest(t, testClientConfig(), addr)
	if _, err := cl.Append(testContext(t), 99, []byte("still serving")); err != nil {
		t.Fatalf("the server stopped serving others: %v", err)
	}
}

// TestBadInput feeds the server malformed input; each connection gets an
// Error frame where the protocol allows one and is closed, and the server
// goes on serving others.
func TestBadInput(t *testing.T) {
	h := newFakeHandler()
	srv, addr := startServer(t, h, testServerConfig())
	header := func(v uint8, typ FrameType, length uint32, id uint64) []byte {
		return AppendHeader(nil, Header{Version: v, Type: typ, Length: length, ID: id})
	}
	cases := []struct {
		name  string
		hello bool   // handshake first
		send  []byte // then this
		code  Code   // Error expected, 0 for none
		id    uint64
	}{
		{"http before hello", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), CodeProtocol, 0},
		{"append before hello", false, appendFrame(1, 1, []byte("x")), CodeProtocol, 0},
		{"bad magic", false, append(header(1, TypeHello, 8, 0), "HTTP/1.1"...), CodeProtocol, 0},
		{"huge length before hello", false, header(1, TypeHello, 0xffffffff, 0), CodeProtocol, 0},
		{"no common version", false, appendHello(nil, &helloMsg{MaxVersion: 9, MinVersion: 9, MaxFrameBytes: 1 << 20}), CodeVersion, 0},
		{"huge length", true, header(1, TypeAppend, 0xffffffff, 3), CodeProtocol, 3},
		{"length over the limit", true, header(1, TypeAppend, 32<<20+4<<10+1, 4), CodeProtocol, 4},
		{"unknown type", true, header(1, 0x42, 0, 5), CodeProtocol, 5},
		{"answer type from a client", true, header(1, TypeAppendResult, 0, 6), CodeProtocol, 6},
		{"wrong version", true, header(2, TypePing, 0, 7), CodeProtocol, 7},
		{"short append", true, append(header(1, TypeAppend, 3, 8), 1, 2, 3), CodeProtocol, 8},
		{"second hello", true, appendHello(nil, &helloMsg{MaxVersion: Version, MinVersion: Version, MaxFrameBytes: 1 << 20}), CodeProtocol, 0},
		{"batch count beyond its bytes", true, append(header(1, TypeAppendBatch, 28, 9), append(make([]byte, 24), 0xff, 0xff, 0xff, 0x7f)...), CodeProtocol, 9},
		{"truncated frame, then EOF", true, appendFrame(10, 1, []byte("cut short"))[:20], 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := dialRaw(t, addr)
			if c.hello {
				rc.hello()
			}
			rc.write(c.send)
			if c.code == 0 {
				rc.nc.(*net.TCPConn).CloseWrite()
			} else {
				rc.expectError(c.code, c.id)
			}
			rc.expectClosed()
			checkServing(t, addr)
		})
	}
	if n := len(h.records(1)); n != 0 {
		t.Fatalf("bad input appended %d records", n)
	}
	_ = srv
}

// TestHugeLengthAllocatesNothing announces the largest frame the limit
// allows and sends only its first bytes: the server's read buffer grows
// with what arrives, not with what was announced.
func TestHugeLengthAllocatesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		cfg := testServerConfig()
		srv, err := NewServer(newFakeHandler(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		nc, _ := l.dial(context.Background(), "", "")
		rc := newRawClient(t, nc)
		rc.hello()
		frame := AppendHeader(nil, Header{Version: 1, Type: TypeAppend, Length: uint32(cfg.MaxFrameBytes), ID: 1})
		rc.write(append(frame, make([]byte, 1000)...))
		synctest.Wait()
		srv.mu.Lock()
		for c := range srv.conns {
			if n := len(c.fr.bb.B); n > 2*cfg.ReadBufferBytes {
				t.Errorf("read buffer of %d bytes after 1 KiB of a %d-byte frame", n, cfg.MaxFrameBytes)
			}
		}
		srv.mu.Unlock()
		srv.Close()
		<-served
	})
}

func TestChecksumMismatch(t *testing.T) {
	h := newFakeHandler()
	_, addr := startServer(t, h, testServerConfig())
	rc := dialRaw(t, addr)
	rc.hello()
	bad := appendAppend(nil, 1, &AppendRequest{Partition: 1, CRC: wal.Checksum([]byte("other")), Payload: []byte("payload")})
	rc.write(bad)
	rc.expectError(CodeChecksum, 1)
	payloads := [][]byte{[]byte("a"), []byte("b")}
	rc.write(appendAppendBatch(nil, 2, &AppendBatchRequest{Partition: 1}, payloads, []uint32{wal.Checksum(payloads[0]), 0}))
	rc.expectError(CodeChecksum, 2)
	// The connection goes on.
	rc.write(appendFrame(3, 1, []byte("good")))
	hd, body := rc.read()
	var r AppendResult
	if hd.Type != TypeAppendResult || hd.ID != 3 || decodeAppendResult(body, &r) != nil || r.LSN != 1 {
		t.Fatalf("after a checksum error: %v %d %+v", hd.Type, hd.ID, r)
	}
}

// holdHandler holds appends until release is closed.
type holdHandler struct {
	*fakeHandler
	held    chan struct{} // one token per held append
	release chan struct{}
}

func newHoldHandler() *holdHandler {
	return &holdHandler{fakeHandler: newFakeHandler(), held: make(chan struct{}, 100), release: make(chan struct{})}
}

func (h *holdHandler) Append(req *AppendRequest, done AppendCompletion) {
	r := *req
	r.Payload = append([]byte(nil), req.Payload...)
	h.held <- struct{}{}
	go func() {
		<-h.release
		h.fakeHandler.Append(&r, done)
	}()
}

func TestInFlightLimit(t *testing.T) {
	h := newHoldHandler()
	cfg := testServerConfig()
	cfg.MaxInFlight = 2
	_, addr := startServer(t, h, cfg)
	rc := dialRaw(t, addr)
	if w := rc.hello(); w.MaxInFlight != 2 {
		t.Fatalf("Welcome says %d in flight", w.MaxInFlight)
	}
	rc.write(appendFrame(1, 1, []byte("a")))
	rc.write(appendFrame(2, 1, []byte("b")))
	<-h.held
	<-h.held
	rc.write(appendFrame(3, 1, []byte("c")))
	rc.expectError(CodeBusy, 3)
	close(h.release)
	got := map[uint64]bool{}
	for range 2 {
		hd, _ := rc.read()
		if hd.Type != TypeAppendResult {
			t.Fatalf("got %v", hd.Type)
		}
		got[hd.ID] = true
	}
	if !got[1] || !got[2] {
		t.Fatalf("answers for %v", got)
	}
}

func TestMaxConns(t *testing.T) {
	cfg := testServerConfig()
	cfg.MaxConns = 1
	_, addr := startServer(t, newFakeHandler(), cfg)
	first := dialRaw(t, addr)
	first.hello()
	second := dialRaw(t, addr)
	second.expectError(CodeBusy, 0)
	second.expectClosed()
	first.write(appendPing(nil, 1))
	if hd, _ := first.read(); hd.Type != TypePong {
		t.Fatalf("got %v", hd.Type)
	}
}

// TestDoubleCompletionPanics checks that completing twice is detected.
func TestDoubleCompletionPanics(t *testing.T) {
	panicked := make(chan any, 1)
	h := &funcHandler{fakeHandler: newFakeHandler(), append: func(req *AppendRequest, done AppendCompletion) {
		done.Complete(AppendResult{LSN: 1})
		defer func() { panicked <- recover() }()
		done.Complete(AppendResult{LSN: 2})
	}}
	_, addr := startServer(t, h, testServerConfig())
	rc := dialRaw(t, addr)
	rc.hello()
	rc.write(appendFrame(1, 1, []byte("x")))
	if p := <-panicked; p == nil {
		t.Fatal("a second Complete did not panic")
	}
	if hd, _ := rc.read(); hd.Type != TypeAppendResult || hd.ID != 1 {
		t.Fatalf("got %v for %d", hd.Type, hd.ID)
	}
}

// funcHandler overrides Append with a function.
type funcHandler struct {
	*fakeHandler
	append func(*AppendRequest, AppendCompletion)
}

func (h *funcHandler) Append(req *AppendRequest, done AppendCompletion) { h.append(req, done) }

// synctestServer runs a server on a pipe listener inside a synctest bubble
// and passes it, with the listener, to f; it is closed when f returns (or
// fails).
func synctestServer(t *testing.T, h Handler, cfg ServerConfig, f func(t *testing.T, srv *Server, l *pipeListener)) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		srv, err := NewServer(h, cfg)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		defer func() {
			srv.Close()
			if err := <-served; !errors.Is(err, lockstitch.ErrClosed) {
				t.Errorf("Serve: %v", err)
			}
		}()
		f(t, srv, l)
	})
}

// TestTimeouts checks the handshake, frame and idle timeouts: a client
// that stalls is disconnected when its timeout passes, not before, and
// others are served meanwhile.
func TestTimeouts(t *testing.T) {
	cfg := testServerConfig()
	cfg.HandshakeTimeout = 5 * time.Second
	cfg.FrameTimeout = 7 * time.Second
	cfg.IdleTimeout = 60 * time.Second
	cases := []struct {
		name  string
		setup func(rc *rawClient)
		after time.Duration
	}{
		{"no hello", func(rc *rawClient) {}, cfg.HandshakeTimeout},
		{"half a hello", func(rc *rawClient) {
			rc.write(appendHello(nil, &helloMsg{MaxVersion: 1, MinVersion: 1, MaxFrameBytes: 1 << 20})[:10])
		}, cfg.HandshakeTimeout},
		{"stall mid-frame", func(rc *rawClient) {
			rc.hello()
			rc.write(appendFrame(1, 1, make([]byte, 1000))[:500])
		}, cfg.FrameTimeout},
		{"idle", func(rc *rawClient) { rc.hello() }, cfg.IdleTimeout},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctestServer(t, newFakeHandler(), cfg, func(t *testing.T, srv *Server, l *pipeListener) {
				nc, _ := l.dial(context.Background(), "", "")
				rc := newRawClient(t, nc)
				start := time.Now()
				c.setup(rc)
				closed := make(chan time.Duration, 1)
				go func() {
					var h Header
					for {
						if _, err := rc.fr.next(&h); err != nil {
							closed <- time.Since(start)
							return
						}
					}
				}()
				// Another client is served while this one stalls.
				other, _ := l.dial(context.Background(), "", "")
				orc := newRawClient(t, other)
				orc.hello()
				orc.write(appendFrame(1, 1, []byte("other")))
				if hd, _ := orc.read(); hd.Type != TypeAppendResult {
					t.Fatalf("the other client got %v", hd.Type)
				}
				orc.nc.Close()
				if took := <-closed; took < c.after || took > c.after+time.Second {
					t.Fatalf("disconnected after %v, want %v", took, c.after)
				}
			})
		})
	}
}

// TestSlowReader checks that a client that does not read its answers is
// disconnected after the write timeout, and that the server does not stop
// reading others meanwhile.
func TestSlowReader(t *testing.T) {
	cfg := testServerConfig()
	cfg.WriteTimeout = 3 * time.Second
	cfg.MaxQueuedBytes = 64 << 10
	synctestServer(t, newFakeHandler(), cfg, func(t *testing.T, srv *Server, l *pipeListener) {
		nc, _ := l.dial(context.Background(), "", "")
		rc := newRawClient(t, nc)
		rc.hello()
		// Pings whose Pongs are never read: net.Pipe has no buffer, so the
		// first Pong blocks the server's writer. The pings stop when the
		// server drops the connection.
		start := time.Now()
		dropped := make(chan time.Duration, 1)
		go func() {
			for i := 1; ; i++ {
				if _, err := nc.Write(appendPing(nil, uint64(i))); err != nil {
					dropped <- time.Since(start)
					return
				}
			}
		}()
		other, _ := l.dial(context.Background(), "", "")
		orc := newRawClient(t, other)
		orc.hello()
		orc.write(appendFrame(1, 1, []byte("other")))
		if hd, _ := orc.read(); hd.Type != TypeAppendResult {
			t.Fatalf("the other client got %v", hd.Type)
		}
		orc.nc.Close()
		if took := <-dropped; took < cfg.WriteTimeout || took > cfg.WriteTimeout+time.Second {
			t.Fatalf("slow reader disconnected after %v, want %v", took, cfg.WriteTimeout)
		}
	})
}

// creditHandler streams n records per subscription and counts, per
// partition, the Sends that returned.
type creditHandler struct {
	*fakeHandler
	n    int
	sent [4]atomic.Int64
}

func (h *creditHandler) Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error {
	for i := 0; i < h.n; i++ {
		if err := s.Send(&wal.Record{LSN: s.Next(), Epoch: 1, Payload: bytes.Repeat([]byte{byte(i)}, 100)}); err != nil {
			return err
		}
		h.sent[req.Partition].Add(1)
		if err := s.Flush(); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestCredit checks that the server never sends a subscriber more than
// its op and byte credit, and sends more when credit is granted.
func TestCredit(t *testing.T) {
	h := &creditHandler{fakeHandler: newFakeHandler(), n: 10}
	size := uint64(wal.FrameSize(100))
	synctestServer(t, h, testServerConfig(), func(t *testing.T, srv *Server, l *pipeListener) {
		nc, _ := l.dial(context.Background(), "", "")
		rc := newRawClient(t, nc)
		rc.hello()
		received := map[uint64]int{}
		// recv reads Data frames of subscription id (partition p) until
		// want records have come, then checks that the handler could send
		// no more.
		recv := func(id uint64, p lockstitch.PartitionID, want int) {
			t.Helper()
			for received[id] < want {
				hd, body := rc.read()
				if hd.Type != TypeData || hd.ID != id {
					t.Fatalf("got %v for %d, want Data for %d", hd.Type, hd.ID, id)
				}
				_, records, err := decodeRecords(hd.Type, body)
				if err != nil {
					t.Fatal(err)
				}
				n, _ := countRecords(records)
				received[id] += n
			}
			synctest.Wait() // every goroutine blocked: the handler is waiting for credit
			if received[id] != want || h.sent[p].Load() != int64(want) {
				t.Fatalf("subscription %d: received %d, handler sent %d, want %d", id, received[id], h.sent[p].Load(), want)
			}
		}
		// Op credit: 3, then 2 more.
		rc.write(appendSubscribe(nil, 7, &SubscribeRequest{Partition: 1, CreditBytes: 1 << 20, CreditOps: 3}))
		recv(7, 1, 3)
		rc.write(appendCredit(nil, 7, creditMsg{Ops: 2}))
		recv(7, 1, 5)
		// Byte credit: two and a half records' worth, then half a record
		// more lets the third through.
		rc.write(appendSubscribe(nil, 9, &SubscribeRequest{Partition: 2, CreditBytes: 2*size + size/2, CreditOps: 100}))
		recv(9, 2, 2)
		rc.write(appendCredit(nil, 9, creditMsg{Bytes: size / 2}))
		recv(9, 2, 3)
		// Credit and Cancel for unknown ids are ignored.
		rc.write(appendCredit(nil, 8, creditMsg{Ops: 5, Bytes: 1 << 20}))
		rc.write(appendCancel(nil, 8))
		// Cancel ends a stream with End.
		rc.write(appendCancel(nil, 9))
		if hd, _ := rc.read(); hd.Type != TypeEnd || hd.ID != 9 {
			t.Fatalf("got %v for %d after Cancel", hd.Type, hd.ID)
		}
		rc.write(appendCancel(nil, 7))
		if hd, _ := rc.read(); hd.Type != TypeEnd || hd.ID != 7 {
			t.Fatalf("got %v for %d after Cancel", hd.Type, hd.ID)
		}
	})
}

// TestShutdown checks a graceful shutdown: clients are told, subscriptions
// end with ShuttingDown, appends in flight are answered, then connections
// close.
func TestShutdown(t *testing.T) {
	h := newHoldHandler()
	srv, addr := startServer(t, h, testServerConfig())
	rc := dialRaw(t, addr)
	rc.hello()
	rc.write(appendSubscribe(nil, 1, &SubscribeRequest{Partition: 1, CreditBytes: 1 << 20, CreditOps: 10}))
	rc.write(appendFrame(2, 1, []byte("in flight")))
	<-h.held
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(testContext(t)) }()
	seen := map[string]bool{}
	for len(seen) < 2 {
		hd, body := rc.read()
		var m errorMsg
		if hd.Type == TypeError {
			decodeError(body, &m)
		}
		switch {
		case hd.Type == TypeError && hd.ID == 0 && m.Code == CodeShuttingDown:
			seen["goaway"] = true
		case hd.Type == TypeError && hd.ID == 1 && m.Code == CodeShuttingDown:
			seen["subscription"] = true
		default:
			t.Fatalf("got %v for %d (%v) before the append was answered", hd.Type, hd.ID, m.Code)
		}
	}
	close(h.release)
	if hd, _ := rc.read(); hd.Type != TypeAppendResult || hd.ID != 2 {
		t.Fatalf("got %v for %d", hd.Type, hd.ID)
	}
	rc.expectClosed()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestClientShutdownFailover checks that a client told ShuttingDown moves
// to another node.
func TestClientShutdownFailover(t *testing.T) {
	h1, h2 := newFakeHandler(), newFakeHandler()
	srv1, addr1 := startServer(t, h1, testServerConfig())
	_, addr2 := startServer(t, h2, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr1, addr2)
	ctx := testContext(t)
	if _, err := cl.Append(ctx, 1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := srv1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Append(ctx, 1, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if len(h1.records(1)) != 1 || len(h2.records(1)) != 1 {
		t.Fatalf("records: %d on the first node, %d on the second", len(h1.records(1)), len(h2.records(1)))
	}
}

// TestManyConnectionsWithGarbage runs well-behaved clients while others
// send random bytes, and checks the well-behaved ones are unaffected.
func TestManyConnectionsWithGarbage(t *testing.T) {
	h := newFakeHandler()
	_, addr := startServer(t, h, testServerConfig())
	ctx := testContext(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			junk := make([]byte, 4096)
			for j := range junk {
				junk[j] = byte(j*31 + i*7)
			}
			if i%2 == 0 {
				nc.Write(appendHello(nil, &helloMsg{MaxVersion: 1, MinVersion: 1, MaxFrameBytes: 1 << 20}))
			}
			nc.Write(junk)
			io.Copy(io.Discard, nc) // until the server closes it
		}()
	}
	cl := dialTest(t, testClientConfig(), addr)
	for i := range 100 {
		if _, err := cl.Append(ctx, 1, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if n := len(h.records(1)); n != 100 {
		t.Fatalf("%d records", n)
	}
	_ = binary.LittleEndian
}
