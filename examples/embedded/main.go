// Command embedded runs a three-node Lockstitch cluster inside one Go
// program, as a program that links Lockstitch does: it starts each node
// with package server, creates a partition with the Go client, appends to
// it at once, and reads the ops back. There is no CLI and no
// configuration file; everything is a Go struct.
//
//	go run ./examples/embedded
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/server"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

func main() {
	dir, err := os.MkdirTemp("", "lockstitch-embedded-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, dir, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run starts three nodes under dir, uses them, and stops them.
func run(ctx context.Context, dir string, out io.Writer) (err error) {
	// Each node's client and admin listeners are bound here and handed to
	// the node. Its Raft address must be known before it starts (the
	// other nodes are told it) and dragonboat binds it itself, so a free
	// port is looked up for it.
	const n = 3
	var peers []server.Peer
	var clients []net.Listener
	var nodes []*server.Node
	defer func() {
		for _, l := range clients[len(nodes):] {
			l.Close() // not handed to a running node
		}
	}()
	for i := 1; i <= n; i++ {
		cl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		clients = append(clients, cl)
		raft, err := freeAddr()
		if err != nil {
			return err
		}
		peers = append(peers, server.Peer{ID: lockstitch.NodeID(i), RaftAddr: raft, ClientAddr: cl.Addr().String()})
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, nd := range nodes {
			err = errors.Join(err, nd.Shutdown(sctx))
		}
	}()
	for i, p := range peers {
		cfg := server.DefaultConfig()
		cfg.ID, cfg.DataDir = p.ID, filepath.Join(dir, fmt.Sprint("node", p.ID))
		cfg.RaftAddr, cfg.ClientListener, cfg.Peers = p.RaftAddr, clients[i], peers
		cfg.Replicator.RTT = 5 * time.Millisecond
		nd, err := server.Start(cfg)
		if err != nil {
			return err
		}
		nodes = append(nodes, nd)
	}
	fmt.Fprintf(out, "3 nodes serving clients at %s, %s, %s\n", peers[0].ClientAddr, peers[1].ClientAddr, peers[2].ClientAddr)

	// The Go client reaches the cluster at any of its nodes.
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.ClientAddr)
	}
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), addrs...)
	if err != nil {
		return err
	}
	defer cl.Close()
	placed, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "log", Replicas: 3})
	if err != nil {
		return fmt.Errorf("create partition: %w", err)
	}
	fmt.Fprintf(out, "partition 1 created: %v\n", placed)

	// CreatePartition returned once every replica knew its leader: the
	// first append needs no wait and no retry loop.
	for i := 1; i <= 5; i++ {
		res, err := cl.Append(ctx, 1, []byte(fmt.Sprintf("op %d", i)))
		if err != nil {
			return fmt.Errorf("append %d: %w", i, err)
		}
		fmt.Fprintf(out, "appended op %d at LSN %d, epoch %d\n", i, res.LSN, res.Epoch)
	}
	var recs transport.Records
	if err := cl.Read(ctx, 1, 1, transport.ReadOptions{MaxOps: 100, MaxBytes: 1 << 20}, &recs); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	var rec wal.Record
	for recs.Next(&rec) == nil {
		fmt.Fprintf(out, "read LSN %d: %s\n", rec.LSN, rec.Payload)
	}
	if _, err := cl.Append(ctx, 2, []byte("x")); errors.Is(err, lockstitch.ErrPartitionNotFound) {
		fmt.Fprintln(out, "partition 2 does not exist: lockstitch.ErrPartitionNotFound")
	}
	return nil
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
