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

// TestDragonboatSnapshotLines feeds dbLog the lines dragonboat's
// transport logs when it cannot send a snapshot to a replica on a peer
// that is down: one WARN for each target the first time, debug lines for
// the retries, a new WARN after a stream to it was established; no ERROR.
func TestDragonboatSnapshotLines(t *testing.T) {
	var buf lockedBuffer
	installDragonboatLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() {
		dbLogger.Store(slog.New(slog.DiscardHandler).With("component", "dragonboat"))
		dbSnapshots.reset()
	})
	d := &dbLog{pkg: "transport"}
	d.min.Store(int32(logger.ERROR)) // as installDragonboatLogger sets it
	const target, other, peer = "[00007:00002]", "[00008:00002]", "test-snap-peer:1"
	refused := errors.New("connection refused")
	for range 4 {
		d.Errorf(dbSnapConnect, target)
		d.Errorf(dbSnapSend, target)
		d.Errorf(dbSnapConnect, other)
		d.Errorf(dbSnapJob, peer, refused)
	}
	d.Debugf(dbSnapEstablished, target, peer)
	d.Errorf(dbSnapConnect, target) // down again: a new WARN

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	count := func(subs ...string) int {
		n := 0
	line:
		for _, l := range lines {
			for _, s := range subs {
				if !strings.Contains(l, s) {
					continue line
				}
			}
			n++
		}
		return n
	}
	const warn, debug = `level=WARN msg="raft snapshot not sent: peer unreachable; retrying"`, `level=DEBUG msg="raft snapshot still not sent"`
	for _, c := range []struct {
		subs []string
		want int
	}{
		{[]string{"level=ERROR"}, 0},
		{[]string{warn, "target=" + target}, 2},
		{[]string{debug, "target=" + target, "attempts=8"}, 1},
		{[]string{warn, "target=" + other}, 1},
		{[]string{debug, "target=" + other}, 3},
		{[]string{warn, "peer=" + peer, "err=" + `"connection refused"`}, 1},
		{[]string{debug, "peer=" + peer}, 3},
		{[]string{`level=DEBUG msg="raft snapshot stream established"`, "target=" + target}, 1},
	} {
		if got := count(c.subs...); got != c.want {
			t.Errorf("%d lines with %q, want %d:\n%s", got, c.subs, c.want, buf.String())
		}
	}
}
