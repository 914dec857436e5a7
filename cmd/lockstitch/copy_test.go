package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// serveProcess is a `lockstitch serve` child process: this test binary
// run as the CLI (see TestMain).
type serveProcess struct {
	cmd  *exec.Cmd
	args []string
	log  *syncBuffer
}

// syncBuffer is a bytes.Buffer that a child's output goroutine writes
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func startServe(t *testing.T, args []string) *serveProcess {
	t.Helper()
	p := &serveProcess{args: args, log: new(syncBuffer)}
	p.cmd = exec.Command(os.Args[0], append([]string{"serve"}, args...)...)
	p.cmd.Env = append(os.Environ(), "LOCKSTITCH_TEST_MAIN=1")
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	return p
}

// kill stops the process with SIGKILL, as a crash would.
func (p *serveProcess) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// TestCopyKeepsHistory runs three `serve` processes with small Raft
// snapshots, kills a follower (SIGKILL), appends megabytes while it is
// down so that it can only catch up through a copy, restarts it, and
// checks that every node then serves every LSN from 1, byte for byte the
// same: the copy carried the retained operation log.
func TestCopyKeepsHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three processes")
	}
	t.Parallel()
	base := 20000 + rand.IntN(35000)
	addr := func(off, i int) string { return fmt.Sprintf("127.0.0.1:%d", base+off+i) }
	var peers []string
	for i := 1; i <= 3; i++ {
		peers = append(peers, fmt.Sprintf("%d=%s/%s", i, addr(10, i), addr(0, i)))
	}
	dir := t.TempDir()
	args := func(i int) []string {
		return []string{"--id", fmt.Sprint(i), "--data-dir", filepath.Join(dir, fmt.Sprint("node", i)),
			"--raft-addr", addr(10, i), "--client-addr", addr(0, i), "--admin-addr", "", "--peers", strings.Join(peers, ","),
			"--rtt", "5ms", "--snapshot-bytes", fmt.Sprint(1 << 20), "--log-level", "info"}
	}
	nodes := make([]*serveProcess, 3)
	for i := range nodes {
		nodes[i] = startServe(t, args(i+1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var cl *transport.Client
	testutil.WaitFor(t, "a node to answer", 30*time.Second, func() bool {
		var err error
		cl, err = transport.Dial(ctx, transport.DefaultClientConfig(), addr(0, 1), addr(0, 2), addr(0, 3))
		return err == nil
	})
	defer cl.Close()
	// Creating the partition needs every node: under load the processes
	// start listening seconds apart.
	testutil.WaitFor(t, "every node to answer", 60*time.Second, func() bool {
		for i := 1; i <= 3; i++ {
			if cl.Ping(ctx, addr(0, i)) != nil {
				return false
			}
		}
		return true
	})
	// Partition 1 on nodes 1, 2 and 3; node 1's replica leads first.
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1}); err != nil {
		t.Fatalf("%v\n%s", err, nodes[0].log)
	}
	payload := func(i int) []byte {
		return append([]byte(fmt.Sprintf("op %d ", i)), bytes.Repeat([]byte{byte(i)}, 2000)...)
	}
	appendRange := func(from, to int) {
		t.Helper()
		futures := make([]transport.AppendFuture, 0, to-from)
		for i := from; i < to; i++ {
			futures = append(futures, cl.AppendAsync(ctx, 1, payload(i)))
			if len(futures) == 64 || i == to-1 {
				for _, f := range futures {
					if _, err := f.Wait(ctx); err != nil {
						t.Fatalf("append: %v", err)
					}
				}
				futures = futures[:0]
			}
		}
	}
	appendRange(0, 100)
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	follower := 0
	for _, r := range st.Replicas {
		if r.Replica != st.Leader {
			follower = int(r.Replica) - 1 // replica i is on node i
			break
		}
	}
	nodes[follower].kill()
	appendRange(100, 4000) // about 8 MiB, past several 1 MiB snapshots
	nodes[follower] = startServe(t, args(follower+1))

	// Every node serves LSNs 1..4000, the same bytes.
	const total = 4000
	for i := range nodes {
		var ncl *transport.Client
		testutil.WaitFor(t, fmt.Sprintf("node %d to answer", i+1), 30*time.Second, func() bool {
			var err error
			ncl, err = transport.Dial(ctx, transport.DefaultClientConfig(), addr(0, i+1))
			return err == nil
		})
		testutil.WaitFor(t, fmt.Sprintf("node %d to apply LSN %d", i+1, total), time.Minute, func() bool {
			ns, err := ncl.Status(ctx, addr(0, i+1))
			return err == nil && len(ns.Partitions) == 1 && ns.Partitions[0].Applied >= total
		})
		var recs transport.Records
		var rec wal.Record
		for from := lockstitch.LSN(1); from <= total; {
			if err := ncl.Read(ctx, 1, from, transport.ReadOptions{MaxOps: 500, MaxBytes: 4 << 20}, &recs); err != nil {
				t.Fatalf("node %d: read from %d: %v\n%s", i+1, from, err, nodes[i].log)
			}
			n := 0
			for recs.Next(&rec) == nil {
				if rec.LSN != from || !bytes.Equal(rec.Payload, payload(int(from)-1)) {
					t.Fatalf("node %d: LSN %d holds %.20q, want LSN %d %.20q", i+1, rec.LSN, rec.Payload, from, payload(int(from)-1))
				}
				from++
				n++
			}
			if n == 0 {
				t.Fatalf("node %d: no record at LSN %d", i+1, from)
			}
		}
		ncl.Close()
	}
	if !strings.Contains(nodes[follower].log.String(), "operation log restored from the snapshot") {
		t.Fatalf("node %d caught up without a copy (the test did not exercise the copy):\n%s", follower+1, nodes[follower].log)
	}
}
