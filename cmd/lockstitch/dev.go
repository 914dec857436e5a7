package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/replicator/kv"
	"github.com/lockstitch/lockstitch/replicator/queue"
	"github.com/lockstitch/lockstitch/server"
	"github.com/lockstitch/lockstitch/transport"
)

// devAddrs returns node i's addresses (i from 1) for base port b: client
// b+i, Raft b+10+i, admin b+20+i.
func devAddrs(base, i int) (client, raft, admin string) {
	return fmt.Sprintf("127.0.0.1:%d", base+i), fmt.Sprintf("127.0.0.1:%d", base+10+i), fmt.Sprintf("127.0.0.1:%d", base+20+i)
}

// cmdDev runs a local cluster of three nodes in this process, with a
// partition of each built-in plugin, until interrupted.
func cmdDev(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "data directory (default: a temporary one, removed at exit)")
	base := fs.Int("base-port", 7400, "node i listens on base+i (clients), base+10+i (Raft), base+20+i (admin HTTP)")
	nodes := fs.Int("nodes", 3, "number of nodes")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "dev takes no arguments, got %q", fs.Args())
	}
	if *nodes < 1 || *nodes > 9 {
		return usageError(stderr, "--nodes must be between 1 and 9")
	}
	logger, err := newLogger(stderr, *logLevel, "text")
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	root := *dir
	if root == "" {
		root, err = os.MkdirTemp("", "lockstitch-dev-")
		if err != nil {
			return fail(stderr, err)
		}
		defer os.RemoveAll(root)
	}

	var peers []server.Peer
	for i := 1; i <= *nodes; i++ {
		client, raft, _ := devAddrs(*base, i)
		peers = append(peers, server.Peer{ID: lockstitch.NodeID(i), RaftAddr: raft, ClientAddr: client})
	}
	var running []*server.Node
	stopAll := func() {
		for _, n := range running {
			n.Close()
		}
	}
	for _, p := range peers {
		_, _, admin := devAddrs(*base, int(p.ID))
		cfg := server.DefaultConfig()
		cfg.ID, cfg.DataDir = p.ID, filepath.Join(root, fmt.Sprintf("node%d", p.ID))
		cfg.RaftAddr, cfg.ClientAddr, cfg.AdminAddr, cfg.Peers = p.RaftAddr, p.ClientAddr, admin, peers
		cfg.Replicator.RTT = 5 * time.Millisecond
		cfg.Logger = logger
		n, err := server.Start(cfg)
		if err != nil {
			stopAll()
			return fail(stderr, err)
		}
		running = append(running, n)
	}

	// A partition of each built-in plugin, numbered from 1: log first (the
	// commands below use partition 1), then the others in name order.
	plugins := make([]string, 0)
	for name := range running[0].Replicator().Config().Plugins {
		if name != replicator.LogPluginName {
			plugins = append(plugins, name)
		}
	}
	sort.Strings(plugins)
	plugins = append([]string{replicator.LogPluginName}, plugins...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), peers[0].ClientAddr)
	if err != nil {
		stopAll()
		return fail(stderr, err)
	}
	// Each create returns once its replicas know their leader, so the
	// commands the banner suggests work at once.
	for i, name := range plugins {
		spec := transport.PartitionSpec{ID: lockstitch.PartitionID(i + 1), Plugin: name, Replicas: min(3, *nodes)}
		if _, err := cl.CreatePartition(ctx, spec); err != nil {
			cl.Close()
			stopAll()
			return fail(stderr, fmt.Errorf("creating partition %d (%s): %w", i+1, name, err))
		}
	}
	cl.Close()

	fmt.Fprintf(stdout, "lockstitch dev: %d nodes on 127.0.0.1, data in %s\n", *nodes, root)
	for _, p := range peers {
		_, _, admin := devAddrs(*base, int(p.ID))
		fmt.Fprintf(stdout, "  node %d  client %s  raft %s  admin http://%s/metrics\n", p.ID, p.ClientAddr, p.RaftAddr, admin)
	}
	for i, name := range plugins {
		fmt.Fprintf(stdout, "  partition %d: plugin %s\n", i+1, name)
	}
	fmt.Fprintf(stdout, `
Talk to it from another terminal (lockstitch, or: go run ./cmd/lockstitch):
  lockstitch append --partition 1 hello world
  lockstitch tail --partition 1 --from 1
  lockstitch status
  lockstitch query --partition 1
`)
	for i, name := range plugins {
		switch name {
		case kv.Name:
			fmt.Fprintf(stdout, "  lockstitch kv put --partition %d greeting hello\n  lockstitch kv get --partition %d greeting\n", i+1, i+1)
		case queue.PluginName:
			fmt.Fprintf(stdout, "  lockstitch queue push --partition %d job-1 && lockstitch queue pop --partition %d\n", i+1, i+1)
		}
	}
	fmt.Fprintf(stdout, "Press Ctrl-C to stop.\n")
	if *base != 7400 {
		fmt.Fprintf(stdout, "(with --base-port %d, pass --addr %s to the client commands)\n", *base, peers[0].ClientAddr)
	}
	return runUntilSignal(logger, 10*time.Second, running)
}
