package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
)

// tokenPrincipal may do the actions of its map on the partitions listed
// (0: every partition).
type tokenPrincipal struct {
	name  string
	perms map[Action][]lockstitch.PartitionID
}

func (p *tokenPrincipal) Name() string { return p.name }

func (p *tokenPrincipal) Allowed(a Action, id lockstitch.PartitionID) bool {
	for _, q := range p.perms[a] {
		if q == 0 || q == id {
			return true
		}
	}
	return false
}

type tokenAuth struct {
	mu     sync.Mutex
	tokens map[string]*tokenPrincipal
	calls  int
}

func (a *tokenAuth) Authenticate(_ context.Context, c Credentials) (Principal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if p := a.tokens[string(c.Token)]; p != nil {
		return p, nil
	}
	return nil, errors.New("unknown token")
}

func newAuthServer(t *testing.T, burst int) (*Server, string, *tokenAuth, *countingMetrics) {
	t.Helper()
	auth := &tokenAuth{tokens: map[string]*tokenPrincipal{
		"app": {name: "app", perms: map[Action][]lockstitch.PartitionID{ActionAppend: {1}, ActionRead: {1}}},
		"ops": {name: "ops", perms: map[Action][]lockstitch.PartitionID{ActionAdmin: {0}, ActionRead: {0}}},
		"p1":  {name: "p1", perms: map[Action][]lockstitch.PartitionID{ActionAdmin: {1}, ActionRead: {1}}},
	}}
	cfg := testServerConfig()
	m := newCountingMetrics()
	cfg.Authenticator, cfg.AuthFailureBurst, cfg.AuthFailureEvery, cfg.Metrics = auth, burst, time.Minute, m
	srv, addr := startServer(t, newFakeHandler(), cfg)
	return srv, addr, auth, m
}

func withToken(tok string) ClientConfig {
	cfg := testClientConfig()
	cfg.Credentials = []byte(tok)
	return cfg
}

// TestAuthorization: each principal may make the requests its
// permissions allow, on the partitions they name, and is answered
// PermissionDenied, at once and naming what it asked, for the others.
func TestAuthorization(t *testing.T) {
	_, addr, _, m := newAuthServer(t, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	app := dialTest(t, withToken("app"), addr)
	if _, err := app.Append(ctx, 1, []byte("allowed")); err != nil {
		t.Fatalf("append to a permitted partition: %v", err)
	}
	var recs Records
	if err := app.Read(ctx, 1, 1, ReadOptions{}, &recs); err != nil {
		t.Fatalf("read of a permitted partition: %v", err)
	}
	denied := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "app may not") {
			t.Fatalf("%s: %v, want PermissionDenied naming the principal", what, err)
		}
	}
	_, err := app.Append(ctx, 2, []byte("no"))
	denied("append to another partition", err)
	_, err = app.AppendBatch(ctx, 2, [][]byte{[]byte("no")}, nil)
	denied("a batch to another partition", err)
	denied("read of another partition", app.Read(ctx, 2, 1, ReadOptions{}, &recs))
	_, err = app.Query(ctx, 2, QueryOptions{}, nil, nil)
	denied("query of another partition", err)
	_, err = app.CreatePartition(ctx, PartitionSpec{ID: 1})
	denied("create", err)
	if _, err := app.Status(ctx, ""); err != nil {
		t.Fatalf("a node-wide status needs no permission: %v", err)
	}

	ops := dialTest(t, withToken("ops"), addr)
	// The fake handler creates nothing: the administrator's create gets
	// past authorization to it, and it refuses.
	if _, err := ops.CreatePartition(ctx, PartitionSpec{ID: 3}); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("create by an administrator: %v, want the handler's answer", err)
	}
	if ps, err := app.ListPartitions(ctx); err != nil || len(ps) != 1 {
		t.Fatalf("listing needs no permission: %v, %v", ps, err)
	}
	_, err = ops.Append(ctx, 1, []byte("no"))
	if !errors.Is(err, ErrPermissionDenied) {
		t.Fatalf("append by a principal without append: %v", err)
	}
	m.mu.Lock()
	n := m.errors[CodePermissionDenied]
	m.mu.Unlock()
	if n != 6 {
		t.Fatalf("%d PermissionDenied errors counted, want 6", n)
	}

	// A consumer acknowledges its cursor with read; moving one back is
	// administration.
	if err := app.AckCursor(ctx, 1, "billing", 1); err != nil {
		t.Fatalf("cursor ack with read: %v", err)
	}
	err = app.ResetCursor(ctx, 1, "billing", 0)
	denied("cursor reset with read", err)
	// The ops nodes send each other need admin on every partition: one
	// partition's administrator cannot stop a replica behind its
	// membership's back.
	p1 := dialTest(t, withToken("p1"), addr)
	if _, err := p1.Admin(ctx, "", &AdminRequest{Op: AdminStopReplica, Partition: 1}); !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "p1 may not administer every partition") {
		t.Fatalf("stop-replica by a partition's administrator: %v", err)
	}
	if err := p1.ResetCursor(ctx, 1, "billing", 0); err != nil {
		t.Fatalf("cursor reset by the partition's administrator: %v", err)
	}
}

// TestAuthentication: a client without a known token is refused with
// Unauthenticated, not retried; after AuthFailureBurst failures from an
// address, even a good token is refused from it until the bucket refills.
func TestAuthentication(t *testing.T) {
	srv, addr, auth, m := newAuthServer(t, 3)
	clock := time.Now()
	var mu sync.Mutex
	srv.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	dial := func(tok string) error {
		cl, err := Dial(ctx, withToken(tok), addr)
		if err == nil {
			cl.Close()
		}
		return err
	}
	for i, tok := range []string{"", "wrong", "also wrong"} {
		start := time.Now()
		err := dial(tok)
		if !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "unknown token") {
			t.Fatalf("attempt %d with token %q: %v, want Unauthenticated", i, tok, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a refused client took %v: it retried", d)
		}
	}
	if auth.calls != 3 {
		t.Fatalf("the authenticator was asked %d times, want 3", auth.calls)
	}
	// The address has used its failures: a good token is refused unseen.
	if err := dial("app"); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "too many failed") {
		t.Fatalf("a good token after the failures: %v, want Unauthenticated (rate limited)", err)
	}
	if auth.calls != 3 {
		t.Fatalf("the authenticator was asked %d times, want 3: a limited address's credentials were looked at", auth.calls)
	}
	mu.Lock()
	clock = clock.Add(time.Minute) // one failure's token back
	mu.Unlock()
	cl := dialTest(t, withToken("app"), addr)
	if _, err := cl.Append(ctx, 1, []byte("x")); err != nil {
		t.Fatalf("a good token once the bucket refilled: %v", err)
	}
	m.mu.Lock()
	bad, limited := m.authFailed["credentials"], m.authFailed["rate_limited"]
	m.mu.Unlock()
	if bad != 3 || limited != 1 {
		t.Fatalf("auth failures counted: %d credentials, %d rate limited; want 3 and 1", bad, limited)
	}
}

// TestFailureLimiter: buckets per source, a source forgotten when the
// limiter is full (the one whose last failure is oldest), refills by the
// clock.
func TestFailureLimiter(t *testing.T) {
	l := newFailureLimiter(time.Second, 2, 3)
	t0 := time.Unix(1000, 0)
	for i := range 3 {
		l.failed(fmt.Sprintf("10.0.0.%d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	l.failed("10.0.0.0", t0.Add(10*time.Millisecond))
	if !l.blocked("10.0.0.0", t0.Add(10*time.Millisecond)) || l.blocked("10.0.0.1", t0) {
		t.Fatal("two failures should block 10.0.0.0, one should not block 10.0.0.1")
	}
	if l.blocked("10.0.0.0", t0.Add(time.Second+10*time.Millisecond)) {
		t.Fatal("a second later 10.0.0.0 should have a failure back")
	}
	l.failed("10.0.0.9", t0.Add(20*time.Millisecond)) // full: forgets 10.0.0.1, the oldest
	if _, ok := l.sources["10.0.0.1"]; ok || len(l.sources) != 3 {
		t.Fatalf("sources after an eviction: %v", l.order)
	}
	if got := source(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}); got != "127.0.0.1" {
		t.Fatalf("source of a TCP address: %q", got)
	}
}
