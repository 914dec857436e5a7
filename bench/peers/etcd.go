package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstitch/lockstitch/bench/harness"
)

// etcdCluster is three etcd processes in one cluster, driven by etcd's Go
// client (v3 puts), which is given the leader's endpoint.
type etcdCluster struct {
	procs   []*harness.Proc
	clients []*clientv3.Client
	version string
}

func (c *etcdCluster) info() systemInfo {
	return systemInfo{
		Name: "etcd", Version: c.version,
		Durability: "ack after a majority fsynced the entry in its WAL and the leader applied it to its backend (whose own commits are batched, not per put)",
		Short:      "quorum fsync",
		Setup:      "3 etcd processes (defaults: fsync on); etcd's Go client v3 on the leader's endpoint; Put of one key, overwritten (each put a new revision, compacted as they pile up); no async API, so no pipelined cells",
	}
}

func (c *etcdCluster) do(ctx context.Context, client int, payload []byte) error {
	_, err := c.clients[client].Put(ctx, "w", string(payload))
	return err
}

func (c *etcdCluster) start(context.Context, int, []byte) waiter { return nil }
func (c *etcdCluster) pipelined() bool                           { return false }
func (c *etcdCluster) pids() []int                               { return harness.PIDs(c.procs) }
func (c *etcdCluster) inProcess() bool                           { return false }

func (c *etcdCluster) stop() {
	for _, cl := range c.clients {
		cl.Close()
	}
	for _, p := range c.procs {
		p.Stop()
	}
}

// etcdLeader returns the client URL, among eps, of the member that leads.
func etcdLeader(ctx context.Context, cl *clientv3.Client, eps []string) (string, error) {
	var errs []error
	for _, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cl.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return ep, nil
		}
	}
	return "", fmt.Errorf("no leader among %v: %w", eps, errors.Join(errs...))
}

func startEtcd(ctx context.Context, o *options, work string) (*etcdCluster, error) {
	c := &etcdCluster{version: "?"}
	if out, err := exec.CommandContext(ctx, o.etcdBin, "--version").Output(); err == nil {
		c.version, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
		c.version = strings.TrimPrefix(c.version, "etcd Version: ")
	}
	ports, err := harness.FreePorts(6)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	var initial, eps []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[3+i]))
		eps = append(eps, fmt.Sprintf("http://127.0.0.1:%d", ports[i]))
	}
	for i := range 3 {
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])
		args := []string{"--name", fmt.Sprintf("e%d", i+1), "--data-dir", filepath.Join(work, fmt.Sprintf("e%d", i+1)),
			"--listen-client-urls", eps[i], "--advertise-client-urls", eps[i],
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "bench-peers",
			"--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
			// Every put is a new revision of one key: compact the history
			// as it grows, and give the backend room for a full run.
			"--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
			"--quota-backend-bytes", fmt.Sprint(int64(8) << 30)}
		p, err := harness.StartProc(fmt.Sprintf("etcd e%d", i+1), o.etcdBin, args, filepath.Join(work, fmt.Sprintf("e%d.log", i+1)))
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
	}
	fail := func(err error) (*etcdCluster, error) { return c, fmt.Errorf("%w\n%s", err, harness.Tails(c.procs)) }
	probe, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fail(err)
	}
	defer probe.Close()
	var leader string
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if leader, err = etcdLeader(ctx, probe, eps); err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(err)
		}
	}
	for range o.clients {
		cl, err := clientv3.New(clientv3.Config{Endpoints: []string{leader}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fail(err)
		}
		c.clients = append(c.clients, cl)
	}
	// The leader's Status may come before it serves writes; one put that
	// succeeds says it does.
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.clients[0].Put(pctx, "ready", "1")
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(err)
		}
	}
	return c, nil
}
