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
// ActionAppend; Read, Subscribe, Query, a Status of one partition, and a
// cursor's Ack and List (a consumer's marker) are ActionRead; the Admin
// ops on a partition and a cursor's Reset and Delete are ActionAdmin, on
// every partition (0) for the ops between nodes (AdminStartReplica,
// AdminStopReplica, AdminAwaitReplica, AdminPrepareReplica). The node-wide views (a Status of every
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

// adminScope is the partition an Admin request is authorized on: its
// own, or 0 (every partition) for the ops that nodes send each other to
// start, stop, prepare or await a replica, which bypass the partition's
// membership and may cost it its quorum.
func adminScope(req *AdminRequest) lockstitch.PartitionID {
	switch req.Op {
	case AdminStartReplica, AdminStopReplica, AdminAwaitReplica, AdminPrepareReplica:
		return 0
	}
	return req.Partition
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
	// Allowed reports whether the principal may do a on partition p; p
	// 0 asks whether it may do a on every partition.
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

// source is the key of a remote TCP address for the failure bound: its
// IPv4 address, or its IPv6 /64 (one host's share of a network); "" for
// any other address (a Unix socket's peers, whom the socket file's
// permissions admit, are not limited).
func source(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return ""
	}
	if ip4 := tcp.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return tcp.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
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
