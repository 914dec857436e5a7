package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Server serves the protocol on any number of listeners (TCP, Unix) and
// dispatches requests to a Handler.
type Server struct {
	h       Handler
	cfg     ServerConfig
	log     *slog.Logger
	metrics Metrics
	// failures bounds failed authentications per source; now is its
	// clock (tests replace it).
	failures *failureLimiter
	now      func() time.Time

	// ctx is the parent of every connection's context; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	closed    bool           // Close or Shutdown called: accept nothing more
	wg        sync.WaitGroup // connection goroutines
}

// NewServer returns a Server that dispatches to h. It fails if cfg does
// not validate.
func NewServer(h Handler, cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("transport: NewServer needs a Handler")
	}
	s := &Server{
		h:         h,
		cfg:       cfg,
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		failures:  newFailureLimiter(cfg.AuthFailureEvery, cfg.AuthFailureBurst, maxFailureSources),
		now:       time.Now,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = nopMetrics{}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Serve accepts connections on l and serves each on its own goroutines
// until Close or Shutdown, or until l fails. It may be called for several
// listeners at once. It always returns an error: ErrClosed after Close or
// Shutdown. Serve closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return lockstitch.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()
	useTLS := s.cfg.TLS != nil && l.Addr().Network() == "tcp"
	s.log.Info("transport: serving", "addr", l.Addr().String(), "tls", useTLS)
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return lockstitch.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				// Out of file descriptors or a transient failure: wait and
				// go on, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("transport: accept failed, retrying", "err", err, "after", backoff)
				select {
				case <-time.After(backoff):
				case <-s.ctx.Done():
				}
				continue
			}
			return err
		}
		backoff = 0
		if useTLS {
			nc = tls.Server(nc, s.cfg.TLS)
		}
		s.accept(nc)
	}
}

// accept starts serving nc, or refuses it when the server is closed or
// has MaxConns connections.
func (s *Server) accept(nc net.Conn) {
	accepted := time.Now()
	s.mu.Lock()
	if s.closed || len(s.conns) >= s.cfg.MaxConns {
		closed := s.closed
		s.mu.Unlock()
		if _, ok := nc.(*tls.Conn); ok {
			// The Error frame waits for a TLS handshake: not in the
			// accept loop.
			go s.refuse(nc, closed)
		} else {
			s.refuse(nc, closed)
		}
		return
	}
	c := newServerConn(s, nc)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.metrics.ConnOpened()
	go func() {
		defer s.wg.Done()
		c.serve(accepted)
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.metrics.ConnClosed()
	}()
}

// refuse answers a connection the server will not serve with an Error
// frame and closes it. The frame fits in any socket buffer, so the write
// does not wait, except for a TLS handshake; a deadline bounds it.
func (s *Server) refuse(nc net.Conn, closed bool) {
	m := errorMsg{Code: CodeBusy, Message: "too many connections"}
	if closed {
		m = errorMsg{Code: CodeShuttingDown, Message: "server shutting down"}
	}
	s.log.Warn("transport: connection refused", "remote", nc.RemoteAddr().String(), "reason", m.Message)
	nc.SetDeadline(time.Now().Add(time.Second)) // a TLS handshake reads too
	frame := appendError(nil, 0, &m)
	nc.Write(frame)
	s.metrics.FrameSent(TypeError, len(frame))
	s.metrics.ErrorSent(m.Code)
	nc.Close()
}

// Close stops the server at once: it closes the listeners and every
// connection, cancels the contexts of handler calls in progress and waits
// for them to return. Completions that arrive later are dropped. Close is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.abort()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Shutdown stops the server gracefully: it closes the listeners, tells
// every client it is shutting down (Error ShuttingDown, id 0), ends
// subscriptions with ShuttingDown, stops reading requests, answers those
// in flight and closes each connection once it has. If ctx ends first,
// Shutdown closes what remains as Close does and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Conns returns the number of open connections.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
