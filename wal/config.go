package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// SyncPolicy says when the log makes appended records durable.
type SyncPolicy int

const (
	// SyncEveryBatch makes every Append and AppendBatch return only after
	// an fsync covers its records. Concurrent appenders share fsyncs
	// (group commit), so durable throughput grows with their number.
	SyncEveryBatch SyncPolicy = iota
	// SyncPeriodic syncs in the background once Config.SyncBytes have
	// been appended since the last sync or Config.SyncInterval has
	// passed, whichever comes first. Appends return once written.
	SyncPeriodic
	// SyncManual syncs only when the caller calls Sync.
	SyncManual
)

func (p SyncPolicy) String() string {
	switch p {
	case SyncEveryBatch:
		return "every-batch"
	case SyncPeriodic:
		return "periodic"
	case SyncManual:
		return "manual"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// Config configures a Log. Start from DefaultConfig.
type Config struct {
	// FS is the file system; nil means OSFS.
	FS FS
	// Logger receives segment cuts, repairs and retention; nil discards.
	Logger *slog.Logger

	// SegmentBytes is the size at which the active segment is sealed and
	// a new one started. A batch never spans segments, so a segment may
	// exceed this size by one batch.
	SegmentBytes int64
	// Preallocate reserves SegmentBytes on disk for each new segment, so
	// appends neither allocate blocks nor grow the file. Sealed segments
	// are trimmed to their data.
	Preallocate bool
	// MaxPayloadBytes is the largest payload accepted by Append and by
	// reads; a larger length on disk is corruption.
	MaxPayloadBytes int64
	// IndexIntervalBytes is the spacing of the sparse per-segment index
	// that makes seeks cheap: a seek reads at most this many bytes past
	// the nearest entry. Memory: 16 bytes per interval of retained log.
	IndexIntervalBytes int64
	// ReadBufferBytes is the buffer size of each Iterator.
	ReadBufferBytes int

	// Sync is the sync policy.
	Sync SyncPolicy
	// SyncInterval bounds the time records stay unsynced (SyncPeriodic).
	SyncInterval time.Duration
	// SyncBytes bounds the bytes that stay unsynced (SyncPeriodic).
	SyncBytes int64
}

// DefaultConfig returns the default configuration: 64 MiB preallocated
// segments, payloads up to 32 MiB, an fsync for every batch.
func DefaultConfig() Config {
	return Config{
		SegmentBytes:       64 << 20,
		Preallocate:        true,
		MaxPayloadBytes:    32 << 20,
		IndexIntervalBytes: 64 << 10,
		ReadBufferBytes:    64 << 10,
		Sync:               SyncEveryBatch,
		SyncInterval:       10 * time.Millisecond,
		SyncBytes:          1 << 20,
	}
}

// Validate reports the first invalid setting. It does not change c.
func (c Config) Validate() error {
	var errs []error
	if c.SegmentBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("SegmentBytes %d is below 4 KiB", c.SegmentBytes))
	}
	if c.MaxPayloadBytes < 1 || c.MaxPayloadBytes > MaxPayloadLimit {
		errs = append(errs, fmt.Errorf("MaxPayloadBytes %d is outside [1, %d]", c.MaxPayloadBytes, MaxPayloadLimit))
	}
	if c.IndexIntervalBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("IndexIntervalBytes %d is below 1 KiB", c.IndexIntervalBytes))
	}
	if c.ReadBufferBytes < 4<<10 {
		errs = append(errs, fmt.Errorf("ReadBufferBytes %d is below 4 KiB", c.ReadBufferBytes))
	}
	switch c.Sync {
	case SyncEveryBatch, SyncManual:
	case SyncPeriodic:
		if c.SyncInterval <= 0 {
			errs = append(errs, fmt.Errorf("SyncInterval %v must be positive with the periodic policy", c.SyncInterval))
		}
		if c.SyncBytes <= 0 {
			errs = append(errs, fmt.Errorf("SyncBytes %d must be positive with the periodic policy", c.SyncBytes))
		}
	default:
		errs = append(errs, fmt.Errorf("unknown sync policy %d", int(c.Sync)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wal: invalid config: %w", err)
	}
	return nil
}
