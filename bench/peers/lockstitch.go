package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/bench/harness"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
)

// lockstitchCluster is three `lockstitch serve` processes with a log
// partition of three replicas, driven through the Go client.
type lockstitchCluster struct {
	procs   []*harness.Proc
	clients []*transport.Client
	version string
	// kv is set when the cluster also has a kv partition.
	kv *lockstitchKV
}

const (
	logPartition lockstitch.PartitionID = 1
	kvPartition  lockstitch.PartitionID = 2
)

// lockstitchKV is the same cluster's kv partition (3 replicas), driven by
// transport/kvclient: puts of one key, overwritten, as etcd's are.
type lockstitchKV struct {
	c       *lockstitchCluster
	clients []*kvclient.Client
}

func (k *lockstitchKV) info() systemInfo {
	return systemInfo{
		Name: "lockstitch-kv", Version: k.c.version,
		Durability: "as lockstitch: ack after a majority fsynced the op in its Raft log and the leader applied it to its pebble store (synced at the next checkpoint)",
		Short:      "quorum fsync",
		Setup:      "the same 3 processes; a `kv` partition of 3 replicas; transport/kvclient Put of one key, overwritten (as etcd's); kvclient has no async put, so no pipelined cells",
	}
}

func (k *lockstitchKV) do(ctx context.Context, client int, payload []byte) error {
	_, err := k.clients[client].Put(ctx, kvKey, payload)
	return err
}

var kvKey = []byte("w")

func (k *lockstitchKV) start(context.Context, int, []byte) waiter { return nil }
func (k *lockstitchKV) pipelined() bool                           { return false }
func (k *lockstitchKV) pids() []int                               { return k.c.pids() }
func (k *lockstitchKV) inProcess() bool                           { return false }

func (c *lockstitchCluster) info() systemInfo {
	return systemInfo{
		Name: "lockstitch", Version: c.version,
		Durability: "ack after a majority fsynced the op in its Raft log (dragonboat's pebble LogDB) and the leader applied it; the op log itself is fsynced at the next checkpoint",
		Short:      "quorum fsync",
		Setup:      "3 `lockstitch serve` processes; a `log` partition of 3 replicas; the Go client (one connection per node), Append / AppendAsync",
	}
}

func (c *lockstitchCluster) do(ctx context.Context, client int, payload []byte) error {
	_, err := c.clients[client].Append(ctx, logPartition, payload)
	return err
}

func (c *lockstitchCluster) start(ctx context.Context, client int, payload []byte) waiter {
	f := c.clients[client].AppendAsync(ctx, logPartition, payload)
	return func(ctx context.Context) error { _, err := f.Wait(ctx); return err }
}

func (c *lockstitchCluster) pipelined() bool { return true }
func (c *lockstitchCluster) pids() []int     { return harness.PIDs(c.procs) }
func (c *lockstitchCluster) inProcess() bool { return false }

func (c *lockstitchCluster) stop() {
	for _, cl := range c.clients {
		cl.Close()
	}
	for _, p := range c.procs {
		p.Stop()
	}
}

// startLockstitch starts the cluster with its log partition and, if kv,
// a kv partition too.
func startLockstitch(ctx context.Context, o *options, work string, kv bool) (*lockstitchCluster, error) {
	c := &lockstitchCluster{version: "?"}
	if out, err := exec.CommandContext(ctx, o.lockstitchBin, "version").Output(); err == nil {
		c.version = strings.TrimSpace(string(out))
	}
	ports, err := harness.FreePorts(9)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	var peers, addrs []string
	for id := 1; id <= 3; id++ {
		peers = append(peers, fmt.Sprintf("%d=127.0.0.1:%d/127.0.0.1:%d", id, ports[id+2], ports[id-1]))
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", ports[id-1]))
	}
	for id := 1; id <= 3; id++ {
		args := []string{"serve", "--id", fmt.Sprint(id), "--data-dir", filepath.Join(work, fmt.Sprintf("node%d", id)),
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", ports[id+2]), "--client-addr", addrs[id-1],
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", ports[id+5]),
			"--peers", strings.Join(peers, ","), "--log-level", "warn"}
		p, err := harness.StartProc(fmt.Sprintf("lockstitch node %d", id), o.lockstitchBin, args, filepath.Join(work, fmt.Sprintf("node%d.log", id)))
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
	}
	fail := func(err error) (*lockstitchCluster, error) {
		return c, fmt.Errorf("%w\n%s", err, harness.Tails(c.procs))
	}
	cfg := transport.DefaultClientConfig()
	cfg.Name = "bench-peers"
	var status *transport.Client
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if status, err = transport.Dial(ctx, cfg, addrs...); err == nil {
			if _, err = status.ClusterStatus(ctx); err == nil {
				break
			}
			status.Close()
		}
		if time.Since(start) > 30*time.Second {
			return fail(fmt.Errorf("nodes do not answer: %w", err))
		}
	}
	defer status.Close()
	for _, a := range addrs { // every node up before the create
		for start := time.Now(); status.Ping(ctx, a) != nil; time.Sleep(100 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				return fail(fmt.Errorf("node %s does not answer", a))
			}
		}
	}
	if _, err := status.CreatePartition(ctx, transport.PartitionSpec{ID: logPartition, Plugin: "log", Replicas: 3}); err != nil {
		return fail(fmt.Errorf("create the log partition: %w", err))
	}
	if kv {
		if _, err := status.CreatePartition(ctx, transport.PartitionSpec{ID: kvPartition, Plugin: "kv", Replicas: 3}); err != nil {
			return fail(fmt.Errorf("create the kv partition: %w", err))
		}
	}
	for range o.clients {
		cl, err := transport.Dial(ctx, cfg, addrs...)
		if err != nil {
			return fail(err)
		}
		c.clients = append(c.clients, cl)
	}
	// The partition answers once it has a leader.
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.clients[0].Append(actx, logPartition, []byte("ready"))
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(fmt.Errorf("the log partition does not answer: %w", err))
		}
	}
	if !kv {
		return c, nil
	}
	c.kv = &lockstitchKV{c: c}
	for _, cl := range c.clients {
		c.kv.clients = append(c.kv.clients, kvclient.New(cl, kvPartition))
	}
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.kv.clients[0].Put(pctx, kvKey, []byte("ready"))
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(fmt.Errorf("the kv partition does not answer: %w", err))
		}
	}
	return c, nil
}
