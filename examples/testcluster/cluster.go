// Package testcluster starts a small Lockstitch cluster inside the calling
// process with package server, as examples/embedded does, for the tests
// of the examples: a test starts the cluster here and runs the example
// program against it as a separate process. It uses only what a program
// outside the module can use.
package testcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/server"
	"github.com/lockstitch/lockstitch/transport"
)

// Cluster is a set of nodes running in this process.
type Cluster struct {
	nodes []*server.Node
	addrs []string
}

// Start starts n nodes (1 to 7) with their data under dir, serving
// clients on 127.0.0.1. It returns once every node has started; Close
// stops them.
func Start(dir string, n int) (c *Cluster, err error) {
	if n < 1 || n > 7 {
		return nil, fmt.Errorf("testcluster: %d nodes, want 1 to 7", n)
	}
	c = &Cluster{}
	var peers []server.Peer
	var clients []net.Listener
	defer func() {
		for _, l := range clients[len(c.nodes):] {
			l.Close() // not handed to a running node
		}
		if err != nil {
			err = errors.Join(err, c.Close())
		}
	}()
	for i := 1; i <= n; i++ {
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		clients = append(clients, cl)
		// dragonboat binds the Raft address itself: look up a free port.
		raft, err := freeAddr()
		if err != nil {
			return nil, err
		}
		peers = append(peers, server.Peer{ID: lockstitch.NodeID(i), RaftAddr: raft, ClientAddr: cl.Addr().String()})
		c.addrs = append(c.addrs, cl.Addr().String())
	}
	for i, p := range peers {
		cfg := server.DefaultConfig()
		cfg.ID, cfg.DataDir = p.ID, filepath.Join(dir, fmt.Sprint("node", p.ID))
		cfg.RaftAddr, cfg.ClientListener, cfg.Peers = p.RaftAddr, clients[i], peers
		cfg.Replicator.RTT = 5 * time.Millisecond
		nd, err := server.Start(cfg)
		if err != nil {
			return nil, fmt.Errorf("testcluster: node %d: %w", p.ID, err)
		}
		c.nodes = append(c.nodes, nd)
	}
	return c, nil
}

// Addrs returns the nodes' client addresses.
func (c *Cluster) Addrs() []string { return append([]string(nil), c.addrs...) }

// Close stops every node. It is idempotent.
func (c *Cluster) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	for _, nd := range c.nodes {
		err = errors.Join(err, nd.Shutdown(ctx))
	}
	c.nodes = nil
	return err
}

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartTest starts a cluster of three nodes under a directory of the
// test's, stopped when the test ends (an error closing it fails the
// test), and returns it with a client of every node, closed then too.
func StartTest(ctx context.Context, t testing.TB) (*Cluster, *transport.Client) {
	t.Helper()
	c, err := Start(filepath.Join(t.TempDir(), "cluster"), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), c.Addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return c, cl
}
