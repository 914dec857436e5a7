package replicator

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/lni/dragonboat/v4/logger"
)

// dragonboat's logger is process-wide and can be installed once, before
// its first log line. installDragonboatLogger routes it to the logger of
// the most recently opened Replicator, at Warn and above; its raft,
// transport and config packages at Error, as they log every election step,
// every closed connection and, at each start, the absence of TLS (see
// docs/operations.md) as warnings.
//
// Dragonboat's transport logs each failed reconnect to a peer that is down
// at error level (about one a second per peer, for as long as the peer is
// down) and each connection a stopping peer resets at error level too.
// Those lines are rewritten (see dbLog.transport): a peer going down and
// coming back is one warning each, the attempts in between are debug
// lines, and a connection the peer closed is an info line. Its snapshot
// sends to a replica on a peer that is down (a replica that needs a copy)
// fail the same way, at error level on each try: the first failure to a
// target is one warning, the later ones debug lines, until a snapshot
// stream to it is established or any peer's connection comes back.
var (
	dbLoggerOnce sync.Once
	dbLogger     atomic.Pointer[slog.Logger]
	dbPeers      = peerTracker{down: map[peerKey]int{}}
	dbSnapshots  = peerTracker{down: map[peerKey]int{}}
)

func installDragonboatLogger(l *slog.Logger) {
	dbLogger.Store(l.With("component", "dragonboat"))
	dbLoggerOnce.Do(func() {
		logger.SetLoggerFactory(func(pkg string) logger.ILogger {
			min := logger.WARNING
			switch pkg {
			case "transport", "raft", "config":
				min = logger.ERROR
			}
			d := &dbLog{pkg: pkg}
			d.min.Store(int32(min))
			return d
		})
	})
}

// dbLog implements dragonboat's logger.ILogger.
type dbLog struct {
	pkg string
	min atomic.Int32 // logger.LogLevel
}

func (d *dbLog) SetLevel(l logger.LogLevel) { d.min.Store(int32(l)) }

func (d *dbLog) log(l logger.LogLevel, level slog.Level, format string, args []any) {
	if d.pkg == "transport" && d.transport(format, args) {
		return
	}
	if int32(l) > d.min.Load() {
		return
	}
	if lg := dbLogger.Load(); lg != nil && lg.Enabled(context.Background(), level) {
		lg.Log(context.Background(), level, fmt.Sprintf(format, args...), "pkg", d.pkg)
	}
}

// Format strings of dragonboat's transport (internal/transport/transport.go,
// the version in go.mod) that dbLog.transport rewrites.
const (
	dbConnectFailed = "Nodehost %s failed to get a connection to %s, %v" // sourceID, remote, err
	dbEstablished   = "message streaming to %s established"              // remote
	dbBreakerFailed = "breaker %s to %s failed, connect and process failed: %s"
	dbUnreachable   = "%s became unreachable, affected %d nodes"
	dbSendFailed    = "send batch failed, " // target remote (err), count; or "taret node"

	// Snapshot sends: target is dragonboat's "[shard:replica]" (the last
	// five digits of each), remote a Raft address.
	dbSnapConnect     = "failed to connect to %s"                // target
	dbSnapSend        = "failed to send snapshot to %s"          // target
	dbSnapJob         = "failed to get a job to %s, %v"          // remote, err
	dbSnapEstablished = "snapshot stream to %s (%s) established" // target, remote
)

// transport rewrites the lines of dragonboat's transport about a peer's
// connection, reporting whether it handled the line.
func (d *dbLog) transport(format string, args []any) bool {
	lg := dbLogger.Load()
	if lg == nil {
		return false
	}
	ctx := context.Background()
	switch {
	case format == dbConnectFailed && len(args) == 3:
		k := peerKey{fmt.Sprint(args[0]), fmt.Sprint(args[1])}
		if n := dbPeers.fail(k); n == 1 {
			lg.Warn("raft peer unreachable; retrying", "pkg", d.pkg, "peer", k.remote, "err", fmt.Sprint(args[2]))
		} else {
			lg.Debug("raft peer still unreachable", "pkg", d.pkg, "peer", k.remote, "attempts", n, "err", fmt.Sprint(args[2]))
		}
	case format == dbEstablished && len(args) == 1:
		// Logged by dragonboat on a host's first connection to a peer and
		// after failures: the source is not among its arguments, so every
		// source's failures to that peer end.
		remote := fmt.Sprint(args[0])
		dbSnapshots.reset() // the peer's address does not say which targets it holds
		if n := dbPeers.recover(remote); n > 0 {
			lg.Warn("raft peer reachable again", "pkg", d.pkg, "peer", remote, "failed_attempts", n)
		} else {
			lg.Debug("raft peer connected", "pkg", d.pkg, "peer", remote)
		}
	case format == dbBreakerFailed, format == dbUnreachable:
		lg.Log(ctx, slog.LevelDebug, fmt.Sprintf(format, args...), "pkg", d.pkg)
	case strings.HasPrefix(format, dbSendFailed) && len(args) == 3:
		// The peer closed or reset the connection: it stopped (a clean
		// shutdown does that too) or the network failed. Reconnecting
		// says which.
		lg.Info("raft connection to peer lost", "pkg", d.pkg, "peer", fmt.Sprint(args[0]), "err", fmt.Sprint(args[1]))
	case (format == dbSnapConnect || format == dbSnapSend) && len(args) == 1:
		d.snapshotFailed(peerKey{remote: fmt.Sprint(args[0])}, "target", nil)
	case format == dbSnapJob && len(args) == 2:
		d.snapshotFailed(peerKey{source: "job", remote: fmt.Sprint(args[0])}, "peer", args[1])
	case format == dbSnapEstablished && len(args) == 2:
		dbSnapshots.forget(peerKey{remote: fmt.Sprint(args[0])})
		dbSnapshots.forget(peerKey{source: "job", remote: fmt.Sprint(args[1])})
		lg.Debug("raft snapshot stream established", "pkg", d.pkg, "target", fmt.Sprint(args[0]), "peer", fmt.Sprint(args[1]))
	default:
		return false
	}
	return true
}

// snapshotFailed reports a failed snapshot send to k.remote (a target, or
// a peer's address, as attr names): a warning the first time in a row, a
// debug line after.
func (d *dbLog) snapshotFailed(k peerKey, attr string, err any) {
	lg := dbLogger.Load()
	attrs := []any{"pkg", d.pkg, attr, k.remote}
	if err != nil {
		attrs = append(attrs, "err", fmt.Sprint(err))
	}
	if n := dbSnapshots.fail(k); n == 1 {
		lg.Warn("raft snapshot not sent: peer unreachable; retrying", attrs...)
	} else {
		lg.Debug("raft snapshot still not sent", append(attrs, "attempts", n)...)
	}
}

// peerKey is a connection of dragonboat's transport: from the host at a
// Raft address (one per Replicator) to a peer's.
type peerKey struct{ source, remote string }

// peerTracker counts the failed connection attempts of each connection
// since it last worked.
type peerTracker struct {
	mu   sync.Mutex
	down map[peerKey]int
}

// fail records a failed attempt and returns the failures in a row.
func (t *peerTracker) fail(k peerKey) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.down[k]++
	return t.down[k]
}

// recover forgets the failures to remote and returns the most of any
// source (0: it was not down).
func (t *peerTracker) recover(remote string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, f := range t.down {
		if k.remote == remote {
			n = max(n, f)
			delete(t.down, k)
		}
	}
	return n
}

// forget forgets the failures of k.
func (t *peerTracker) forget(k peerKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.down, k)
}

// reset forgets every failure.
func (t *peerTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.down)
}

func (d *dbLog) Debugf(f string, a ...any) { d.log(logger.DEBUG, slog.LevelDebug, f, a) }

// Infof also notes the quiesce changes it logs, whatever the level
// (quiesce.go).
func (d *dbLog) Infof(f string, a ...any) {
	noteQuiesce(f, a)
	d.log(logger.INFO, slog.LevelInfo, f, a)
}
func (d *dbLog) Warningf(f string, a ...any) {
	d.log(logger.WARNING, slog.LevelWarn, f, a)
}
func (d *dbLog) Errorf(f string, a ...any) { d.log(logger.ERROR, slog.LevelError, f, a) }

// Panicf panics: dragonboat uses it for violated invariants.
func (d *dbLog) Panicf(f string, a ...any) {
	msg := fmt.Sprintf(f, a...)
	if lg := dbLogger.Load(); lg != nil {
		lg.Error("dragonboat panic: "+msg, "pkg", d.pkg)
	}
	panic(msg)
}
