package replicator

import (
	"context"
	"fmt"
	"log/slog"
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
var (
	dbLoggerOnce sync.Once
	dbLogger     atomic.Pointer[slog.Logger]
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
	if int32(l) > d.min.Load() {
		return
	}
	if lg := dbLogger.Load(); lg != nil && lg.Enabled(context.Background(), level) {
		lg.Log(context.Background(), level, fmt.Sprintf(format, args...), "pkg", d.pkg)
	}
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
