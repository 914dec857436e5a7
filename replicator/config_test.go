package replicator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/replicator"
)

// TestConfigValidate checks that the defaults, given a directory and an
// address, are valid, and that each bad setting is reported by name.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	base := func() replicator.Config {
		cfg := replicator.DefaultConfig()
		cfg.DataDir = t.TempDir()
		cfg.RaftAddress = "127.0.0.1:7000"
		return cfg
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name  string
		tweak func(*replicator.Config)
		want  string
	}{
		{"no dir", func(c *replicator.Config) { c.DataDir = "" }, "DataDir"},
		{"bad address", func(c *replicator.Config) { c.RaftAddress = "nowhere" }, "RaftAddress"},
		{"sub-ms tick", func(c *replicator.Config) { c.RTT = 500 * time.Microsecond }, "RTT"},
		{"short election", func(c *replicator.Config) { c.ElectionRTT = 5 }, "ElectionRTT"},
		{"overhead above snapshots", func(c *replicator.Config) { c.CompactionOverhead = c.SnapshotEntries }, "CompactionOverhead"},
		{"tiny size snapshots", func(c *replicator.Config) { c.SnapshotBytes = 64 << 10 }, "SnapshotBytes"},
		{"negative size snapshots", func(c *replicator.Config) { c.SnapshotBytes = -1 }, "SnapshotBytes"},
		{"unknown logdb", func(c *replicator.Config) { c.LogDB = "rocks" }, "LogDB"},
		{"gap above a second", func(c *replicator.Config) { c.BatchGap = 2 * time.Second }, "BatchGap"},
		{"negative gap", func(c *replicator.Config) { c.BatchGap = -1 }, "BatchGap"},
		{"no cursor bound", func(c *replicator.Config) { c.CursorRetainOps = 0 }, "CursorRetainOps"},
	} {
		cfg := base()
		tc.tweak(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	cfg := base()
	cfg.SnapshotBytes = 0 // off: entry counts only
	if err := cfg.Validate(); err != nil {
		t.Fatalf("SnapshotBytes 0: %v", err)
	}
	cfg = base()
	// Propose at once; the default gap then has no effect. (A rule that
	// the gap be at most the linger once rejected this.)
	cfg.BatchLinger = 0
	if err := cfg.Validate(); err != nil {
		t.Fatalf("BatchLinger 0: %v", err)
	}
}

// TestDefaultCopyLimit: copies are throttled unless configured otherwise
// (see docs/decisions.md), and 0 still turns the limit off.
func TestDefaultCopyLimit(t *testing.T) {
	cfg := replicator.DefaultConfig()
	if cfg.CopyBytesPerSecond != 100<<20 {
		t.Fatalf("default CopyBytesPerSecond %d, want 100 MiB/s", cfg.CopyBytesPerSecond)
	}
	cfg.DataDir, cfg.RaftAddress = t.TempDir(), "127.0.0.1:7000"
	cfg.CopyBytesPerSecond = 0
	if err := cfg.Validate(); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}
