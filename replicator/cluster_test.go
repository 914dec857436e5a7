package replicator_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

// node is one Replicator of a test cluster, with what it needs to restart.
type node struct {
	cfg replicator.Config
	r   *replicator.Replicator
}

// cluster is a set of Replicators in one test process: separate
// NodeHosts, directories and 127.0.0.1 ports.
type cluster struct {
	t     testing.TB
	mu    sync.Mutex // guards each node's r: tests stop nodes under load
	nodes []*node
	seq   atomic.Uint64 // the last sequence appendRetry gave clusterProducer
}

// clusterProducer is the producer id appendRetry gives ops without one.
const clusterProducer lockstitch.ProducerID = 0x7e57

// get returns node i's Replicator, nil while it is stopped.
func (c *cluster) get(i int) *replicator.Replicator {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].r
}

// testConfig is a node configuration for tests: a 5 ms tick, the cheap tan
// LogDB and small worker pools.
func testConfig(t testing.TB, dir string) replicator.Config {
	return testConfigAt(dir, testutil.FreeAddr(t))
}

func testConfigAt(dir, raftAddr string) replicator.Config {
	cfg := replicator.DefaultConfig()
	cfg.DataDir = dir
	cfg.RaftAddress = raftAddr
	cfg.ClientAddress = "client-of-" + cfg.RaftAddress
	cfg.RTT = 5 * time.Millisecond
	cfg.LogDB = replicator.LogDBTan
	cfg.EngineWorkers = 4
	cfg.SegmentBytes = 256 << 10
	cfg.ProgressInterval = 50 * time.Millisecond
	cfg.CheckpointInterval = 200 * time.Millisecond
	if os.Getenv("LOCKSTITCH_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", raftAddr)
	}
	return cfg
}

func newCluster(t testing.TB, n int, tweak func(*replicator.Config)) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := 0; i < n; i++ {
		cfg := testConfig(t, filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i+1)))
		cfg.Registerer = prometheus.NewRegistry() // each node's own, for copiesReceived
		if tweak != nil {
			tweak(&cfg)
		}
		c.nodes = append(c.nodes, &node{cfg: cfg})
		c.start(i)
	}
	t.Cleanup(c.close)
	return c
}

// counter returns the value of node i's counter name (no labels).
func (c *cluster) counter(i int, name string) float64 {
	c.t.Helper()
	g, ok := c.nodes[i].cfg.Registerer.(prometheus.Gatherer)
	if !ok {
		c.t.Fatalf("node %d has no registry of its own", i+1)
	}
	mfs, err := g.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	c.t.Fatalf("node %d has no counter %s", i+1, name)
	return 0
}

// copiesReceived returns how many state copies node i has restored
// (lockstitch_copies_total{direction="received",result="ok"}).
func (c *cluster) copiesReceived(i int) float64 {
	c.t.Helper()
	g, ok := c.nodes[i].cfg.Registerer.(prometheus.Gatherer)
	if !ok {
		c.t.Fatalf("node %d has no registry of its own", i+1)
	}
	mfs, err := g.Gather()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lockstitch_copies_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["direction"] == "received" && labels["result"] == "ok" {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func (c *cluster) start(i int) {
	c.t.Helper()
	r, err := replicator.Open(c.nodes[i].cfg)
	if err != nil {
		c.t.Fatalf("open node %d: %v", i+1, err)
	}
	c.mu.Lock()
	c.nodes[i].r = r
	c.mu.Unlock()
}

func (c *cluster) stop(i int) {
	c.t.Helper()
	c.mu.Lock()
	r := c.nodes[i].r
	c.nodes[i].r = nil
	c.mu.Unlock()
	if r != nil {
		if err := r.Close(); err != nil {
			c.t.Errorf("close node %d: %v", i+1, err)
		}
	}
}

func (c *cluster) close() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// spec returns a partition spec with replica i+1 on node i.
func (c *cluster) spec(id lockstitch.PartitionID) replicator.PartitionSpec {
	s := replicator.PartitionSpec{ID: id, Plugin: replicator.LogPluginName, Replicas: map[lockstitch.ReplicaID]string{}}
	for i, n := range c.nodes {
		s.Replicas[lockstitch.ReplicaID(i+1)] = n.cfg.RaftAddress
	}
	return s
}

// create creates partition id on every node.
func (c *cluster) create(id lockstitch.PartitionID) {
	c.t.Helper()
	spec := c.spec(id)
	for i := range c.nodes {
		if _, err := c.get(i).CreatePartition(spec); err != nil {
			c.t.Fatalf("node %d: create partition %d: %v", i+1, id, err)
		}
	}
}

func (c *cluster) partition(i int, id lockstitch.PartitionID) *replicator.Partition {
	c.t.Helper()
	p, err := c.get(i).Partition(id)
	if err != nil {
		c.t.Fatalf("node %d: %v", i+1, err)
	}
	return p
}

// appenders runs f(0) to f(n-1), each on its own goroutine, as a test's
// concurrent producers do; wait waits for them and fails the test with
// the error each returned.
type appenders struct {
	errs chan error // one slot per goroutine
	done chan struct{}
}

func goAppenders(n int, f func(g int) error) *appenders {
	a := &appenders{errs: make(chan error, n), done: make(chan struct{})}
	var wg sync.WaitGroup
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(g); err != nil {
				a.errs <- err
			}
		}()
	}
	go func() {
		wg.Wait()
		close(a.errs)
		close(a.done)
	}()
	return a
}

func (a *appenders) wait(t testing.TB) {
	t.Helper()
	<-a.done
	for err := range a.errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// waitApplied waits until p has applied LSN lsn and returns its status.
func waitApplied(t testing.TB, p *replicator.Partition, lsn lockstitch.LSN) replicator.PartitionStatus {
	t.Helper()
	var st replicator.PartitionStatus
	testutil.WaitFor(t, fmt.Sprintf("replica %d to apply LSN %d", p.Replica(), lsn), 30*time.Second, func() bool {
		var err error
		st, err = p.Status(context.Background())
		return err == nil && st.AppliedLSN >= lsn
	})
	return st
}

// leader waits until a running node's replica of id leads, and returns
// that node's index.
func (c *cluster) leader(id lockstitch.PartitionID) int {
	c.t.Helper()
	leader := -1
	testutil.WaitFor(c.t, fmt.Sprintf("a leader of partition %d", id), 20*time.Second, func() bool {
		for i := range c.nodes {
			r := c.get(i)
			if r == nil {
				continue
			}
			p, err := r.Partition(id)
			if err != nil {
				continue
			}
			if st, err := p.Status(context.Background()); err == nil && st.Role == lockstitch.RoleLeader {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// appendRetry appends op through whichever node leads, retrying what is
// retryable, the way a client with a producer id does: an op without one
// gets the cluster's producer and its next sequence, so that a retry of
// an append whose outcome was unknown (ErrAborted) is not applied twice.
func (c *cluster) appendRetry(ctx context.Context, id lockstitch.PartitionID, op replicator.AppendOp) (replicator.AppendResult, error) {
	if op.Producer == 0 {
		op.Producer, op.Seq = clusterProducer, c.seq.Add(1)
	}
	var last error
	for {
		for i := range c.nodes {
			r := c.get(i)
			if r == nil {
				continue
			}
			p, err := r.Partition(id)
			if err != nil {
				continue
			}
			res, err := p.Append(ctx, op)
			if err == nil || !retryable(err) {
				return res, err
			}
			last = fmt.Errorf("node %d: %w", i+1, err)
		}
		select {
		case <-ctx.Done():
			return replicator.AppendResult{}, fmt.Errorf("%w (the last attempt: %v)", ctx.Err(), last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// linearizable runs a linearizable query on p, again while p answers
// with a retryable error: a follower that lost its leader for a moment
// (its heartbeats late on a loaded machine) fails a read at once.
func linearizable(ctx context.Context, p *replicator.Partition) (replicator.QueryResult, error) {
	for {
		res, err := p.Query(ctx, nil, replicator.QueryOptions{Consistency: lockstitch.Linearizable})
		if !retryable(err) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("%w (the last attempt: %v)", ctx.Err(), err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, lockstitch.ErrNotLeader) || errors.Is(err, lockstitch.ErrUnavailable) ||
		errors.Is(err, lockstitch.ErrAborted) || errors.Is(err, lockstitch.ErrBusy) ||
		errors.Is(err, lockstitch.ErrClosed)
}

// stream reads a replica's whole stream once it has applied up to last.
func (c *cluster) stream(i int, id lockstitch.PartitionID, last lockstitch.LSN) []replicator.Record {
	c.t.Helper()
	p := c.partition(i, id)
	waitApplied(c.t, p, last)
	recs, err := p.Read(1, int(last)+1, 1<<30)
	if err != nil {
		c.t.Fatalf("node %d: read: %v", i+1, err)
	}
	return recs
}
