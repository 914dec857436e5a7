package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// TestStatusWatch runs status --watch with --count: it shows the status
// that many times, an interval apart, each refresh whole under its own
// header (errors included, so a node that is down does not end the
// watch), and exits with the last refresh's code; with --json, one JSON
// line per refresh. Bad uses of --watch and --count are usage errors.
func TestStatusWatch(t *testing.T) {
	for _, args := range [][]string{
		{"status", "--watch", "soon"},
		{"status", "--watch=0s"},
		{"status", "--watch=-1s"},
		{"status", "--count", "2"},
		{"status", "--watch", "--count", "-1"},
	} {
		if code, _, errOut := cli(t, args...); code != exitUsage || !strings.HasPrefix(errOut, "lockstitch: ") {
			t.Errorf("%q: exit %d, %q; want a usage error", args, code, errOut)
		}
	}

	// No node: every refresh says so, and the watch goes on.
	code, out, errOut := cli(t, "status", "--addr", "127.0.0.1:1", "--watch", "10ms", "--count", "3")
	if code != exitUnavailable || errOut != "" || strings.Count(out, "every 10ms at ") != 3 || strings.Count(out, "no node answered") != 3 {
		t.Errorf("status --watch of no node: exit %d, want %d, 3 refreshes each saying no node answered\nstdout:\n%s\nstderr:\n%s", code, exitUnavailable, out, errOut)
	}

	n, _ := startOneNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), n.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 7, Nodes: []lockstitch.NodeID{1}}); err != nil {
		t.Fatal(err)
	}
	const every = 100 * time.Millisecond
	start := time.Now()
	// The interval as an argument, with a flag after it.
	code, out, errOut = cli(t, "status", "--addr", n.ClientAddr(), "--watch", every.String(), "--count", "3")
	took := time.Since(start)
	frames := strings.Split(out, "every "+every.String()+" at ")
	if code != 0 || len(frames) != 4 || frames[0] != "" {
		t.Fatalf("status --watch: exit %d, %d refreshes, want 0 and 3\nstdout:\n%s\nstderr:\n%s", code, len(frames)-1, out, errOut)
	}
	for i, f := range frames[1:] {
		if !strings.Contains(f, "PARTITION") || !strings.Contains(f, "\n7  ") || !strings.Contains(f, " up\n") {
			t.Errorf("refresh %d does not show node 1 up and partition 7:\n%s", i+1, f)
		}
	}
	if took < 2*every {
		t.Errorf("3 refreshes took %v, less than 2 intervals of %v", took, every)
	}

	code, out, errOut = cli(t, "status", "--addr", n.ClientAddr(), "--watch="+every.String(), "--count", "2", "--json")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("status --watch --json: exit %d, %d lines, want 0 and 2\n%s%s", code, len(lines), out, errOut)
	}
	for _, l := range lines {
		var v struct {
			Partitions []struct{ Partition uint64 }
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || len(v.Partitions) != 1 || v.Partitions[0].Partition != 7 {
			t.Errorf("status --watch --json line %q: %v, want partition 7", l, err)
		}
	}
}
