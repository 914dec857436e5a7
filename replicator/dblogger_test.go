package replicator

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/lni/dragonboat/v4/logger"
)

// lockedBuffer is a bytes.Buffer safe for a handler shared by goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestDragonboatTransportLines feeds dbLog the lines dragonboat's
// transport logs while a peer is down, comes back and resets a
// connection, and checks what reaches slog: one WARN when the peer goes
// down, debug lines for the retries, one WARN when it is back, INFO for
// the reset; no ERROR.
func TestDragonboatTransportLines(t *testing.T) {
	var buf lockedBuffer
	installDragonboatLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { dbLogger.Store(slog.New(slog.DiscardHandler).With("component", "dragonboat")) })
	d := &dbLog{pkg: "transport"}
	d.min.Store(int32(logger.ERROR)) // as installDragonboatLogger sets it
	const src, peer = "test-src:1", "test-peer:1"
	refused := errors.New("connection refused")
	d.Errorf(dbSendFailed+"target %s (%v), %d", peer, errors.New("connection reset by peer"), 1)
	for range 5 {
		d.Errorf(dbConnectFailed, src, peer, refused)
		d.Warningf(dbBreakerFailed, src, peer, refused.Error())
	}
	d.Debugf(dbEstablished, peer)
	d.Errorf(dbConnectFailed, src, peer, refused) // down again: a new WARN

	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, peer) {
			lines = append(lines, l)
		}
	}
	count := func(s string) int {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, s) {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		s    string
		want int
	}{
		{"level=ERROR", 0},
		{`level=INFO msg="raft connection to peer lost"`, 1},
		{`level=WARN msg="raft peer unreachable; retrying"`, 2},
		{`level=DEBUG msg="raft peer still unreachable"`, 4},
		{" attempts=5", 1},
		{`level=WARN msg="raft peer reachable again"`, 1},
		{"failed_attempts=5", 1},
	} {
		if got := count(c.s); got != c.want {
			t.Errorf("%d lines with %s, want %d:\n%s", got, c.s, c.want, strings.Join(lines, "\n"))
		}
	}
}
