package transport

import (
	"context"
	"crypto/x509"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/lockstitch/lockstitch"
)

// Action is what a request does, as authorization sees it.
type Action uint8

// Actions. Requests map to them as follows: Append and AppendBatch are
// ActionAppend; Read, Subscribe, Query, a Status of one partition and the
// Cursor requests (a consumer's marker) are ActionRead; the Admin ops on
// a partition are ActionAdmin. The node-wide views (a Status of every
// partition, AdminListPartitions, AdminClusterStatus) need no permission
// beyond authentication: they show partition ids, leaders and positions,
// never an op.
const (
	ActionAppend Action = iota + 1
	ActionRead
	ActionAdmin
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case ActionAppend:
		return "append"
	case ActionRead:
		return "read"
	case ActionAdmin:
		return "admin"
	}
	return "unknown"
}

// verb is the action's phrase in a refusal: "may not append to ...".
func (a Action) verb() string {
	switch a {
	case ActionAppend:
		return "append to"
	case ActionRead:
		return "read"
	case ActionAdmin:
		return "administer"
	}
	return "use"
}

// Credentials is what a client presents when it connects.
type Credentials struct {
	// Token is the Hello's credentials slot (ClientConfig.Credentials):
	// a bearer token, or empty.
	Token []byte
	// Certificates is the client's verified certificate chain, leaf
	// first, on a TLS connection that asked for one; else empty.
	Certificates []*x509.Certificate
	// Remote is the client's address.
	Remote net.Addr
}

// Principal is who an authenticated connection acts for.
type Principal interface {
	// Name names the principal in logs and errors.
	Name() string
	// Allowed reports whether the principal may do a on partition p.
	Allowed(a Action, p lockstitch.PartitionID) bool
}

// Authenticator decides who a connection acts for
// (ServerConfig.Authenticator). Authenticate is called once per
// connection, after the Hello, on the connection's goroutine; it must be
// safe for concurrent use. An error refuses the connection: the client
// gets Unauthenticated, with the error's text, and the connection closes.
type Authenticator interface {
	Authenticate(ctx context.Context, c Credentials) (Principal, error)
}

// maxFailureSources is how many sources of failed authentications a
// server remembers.
const maxFailureSources = 4096

// failureLimiter bounds the failed authentications per source address:
// each source has a token bucket that failures drain; a source with no
// token left is refused before its credentials are looked at, until the
// bucket refills. It remembers at most max sources, forgetting the one
// seen longest ago. Its clock is the caller's (now), for tests.
type failureLimiter struct {
	every time.Duration // one failure's token comes back after this
	burst int
	max   int

	mu      sync.Mutex
	sources map[string]*sourceBucket
	order   []string // sources, oldest first (a ring would do; max is small)
}

type sourceBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newFailureLimiter(every time.Duration, burst, max int) *failureLimiter {
	return &failureLimiter{every: every, burst: burst, max: max, sources: make(map[string]*sourceBucket)}
}

// source is the key of a remote address: its IP, or the whole address
// when it has no port (a Unix socket's peer).
func source(addr net.Addr) string {
	if addr == nil {
		return ""
	}
	s := addr.String()
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// blocked reports whether src has used up its failures at now.
func (l *failureLimiter) blocked(src string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.sources[src]
	return b != nil && b.lim.TokensAt(now) < 1
}

// failed records a failed authentication from src at now.
func (l *failureLimiter) failed(src string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.sources[src]
	if b == nil {
		if len(l.sources) >= l.max {
			l.forgetOldest()
		}
		b = &sourceBucket{lim: rate.NewLimiter(rate.Every(l.every), l.burst)}
		l.sources[src] = b
		l.order = append(l.order, src)
	}
	b.seen = now
	b.lim.AllowN(now, 1)
}

// forgetOldest drops the source whose last failure is the oldest.
func (l *failureLimiter) forgetOldest() {
	oldest := -1
	for i, src := range l.order {
		if oldest < 0 || l.sources[src].seen.Before(l.sources[l.order[oldest]].seen) {
			oldest = i
		}
	}
	if oldest >= 0 {
		delete(l.sources, l.order[oldest])
		l.order = append(l.order[:oldest], l.order[oldest+1:]...)
	}
}
