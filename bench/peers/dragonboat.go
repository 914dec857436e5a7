package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/client"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/logger"
	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/lockstitch/lockstitch/bench/harness"
	"github.com/lockstitch/lockstitch/replicator"
)

// dragonboatCluster is raw dragonboat: three NodeHosts in this process on
// loopback, one shard of three replicas with a state machine that only
// counts entries, one Raft entry per op, proposed on the leader's
// NodeHost with a no-op session. Its Raft settings are Lockstitch's
// defaults (replicator.DefaultConfig), its LogDB dragonboat's own pebble
// LogDB with the small memory preset, as in replicator's BenchmarkAppend
// (a _test file, so not importable; this is the same setup).
type dragonboatCluster struct {
	hosts   []*dragonboat.NodeHost
	leader  *dragonboat.NodeHost
	session *client.Session
}

const dragonboatShard = 1

// dragonboatLoggers are the names of dragonboat's package loggers.
var dragonboatLoggers = []string{"config", "dragonboat", "gossip", "logdb", "LogDB", "pebblekv", "raft", "raftpb", "registry", "rsm", "server", "settings", "tan", "transport"}

func (c *dragonboatCluster) info() systemInfo {
	return systemInfo{
		Name: "dragonboat", Version: "v4 (076c7f6497dc)",
		Durability: "ack after a majority fsynced the entry in its Raft log (pebble LogDB) and the leader applied it",
		Short:      "quorum fsync",
		Setup:      "3 NodeHosts in the harness's process (so its CPU and RSS include the load generator); SyncPropose / Propose on the leader, one entry per op; a proposal refused as busy is tried again after 1 ms",
	}
}

// busyBackoff is the pause before a proposal refused as busy is tried
// again, as a client of dragonboat would (Lockstitch's client retries its
// server's Busy answers by itself).
const busyBackoff = time.Millisecond

// retryBusy calls f until it returns something other than
// dragonboat.ErrSystemBusy (the proposal queue or the in-memory log is
// full) or ctx ends.
func retryBusy(ctx context.Context, f func() error) error {
	for {
		err := f()
		if !errors.Is(err, dragonboat.ErrSystemBusy) {
			return err
		}
		t := time.NewTimer(busyBackoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (c *dragonboatCluster) do(ctx context.Context, _ int, payload []byte) error {
	return retryBusy(ctx, func() error {
		_, err := c.leader.SyncPropose(ctx, c.session, payload)
		return err
	})
}

func (c *dragonboatCluster) start(ctx context.Context, _ int, payload []byte) waiter {
	timeout := opTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	var rs *dragonboat.RequestState
	err := retryBusy(ctx, func() error {
		var err error
		rs, err = c.leader.Propose(c.session, payload, timeout)
		return err
	})
	return func(ctx context.Context) error {
		if err != nil {
			return err
		}
		defer rs.Release()
		select {
		case r := <-rs.ResultC():
			if !r.Completed() {
				return fmt.Errorf("dragonboat proposal: not completed (timeout %v, dropped %v, aborted %v)", r.Timeout(), r.Dropped(), r.Aborted())
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *dragonboatCluster) pipelined() bool { return true }
func (c *dragonboatCluster) pids() []int     { return []int{os.Getpid()} }
func (c *dragonboatCluster) inProcess() bool { return true }

func (c *dragonboatCluster) stop() {
	// Hosts closed one after the other log failed sends to those gone.
	for _, name := range dragonboatLoggers {
		logger.GetLogger(name).SetLevel(logger.CRITICAL)
	}
	for _, nh := range c.hosts {
		nh.Close()
	}
}

func startDragonboat(ctx context.Context, work string) (*dragonboatCluster, error) {
	for _, name := range dragonboatLoggers {
		logger.GetLogger(name).SetLevel(logger.ERROR)
	}
	def := replicator.DefaultConfig()
	ports, err := harness.FreePorts(3)
	if err != nil {
		return nil, err
	}
	members := map[uint64]dragonboat.Target{}
	for i := range 3 {
		members[uint64(i+1)] = fmt.Sprintf("127.0.0.1:%d", ports[i])
	}
	c := &dragonboatCluster{}
	for i := range 3 {
		nhc := config.NodeHostConfig{
			NodeHostDir:    filepath.Join(work, fmt.Sprintf("nh%d", i+1)),
			RTTMillisecond: uint64(def.RTT / time.Millisecond),
			RaftAddress:    members[uint64(i+1)],
			DeploymentID:   def.DeploymentID,
		}
		nhc.Expert.LogDB = config.GetSmallMemLogDBConfig()
		nh, err := dragonboat.NewNodeHost(nhc)
		if err != nil {
			return c, err
		}
		c.hosts = append(c.hosts, nh)
		rc := config.Config{
			ShardID: dragonboatShard, ReplicaID: uint64(i + 1),
			ElectionRTT: def.ElectionRTT, HeartbeatRTT: def.HeartbeatRTT, CheckQuorum: true, PreVote: true,
			SnapshotEntries: def.SnapshotEntries, CompactionOverhead: def.CompactionOverhead, OrderedConfigChange: true,
			DisableAutoCompactions: true,
		}
		if err := nh.StartOnDiskReplica(members, false, newCountingSM, rc); err != nil {
			return c, err
		}
	}
	var errs []error
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(20 * time.Millisecond) {
		for i, nh := range c.hosts {
			if leader, _, ok, err := nh.GetLeaderID(dragonboatShard); err == nil && ok && leader == uint64(i+1) {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := nh.SyncPropose(pctx, nh.GetNoOPSession(dragonboatShard), nil)
				cancel()
				if err == nil {
					c.leader, c.session = nh, nh.GetNoOPSession(dragonboatShard)
					return c, nil
				}
				errs = append(errs, err)
			}
		}
	}
	return c, fmt.Errorf("no dragonboat leader in 30 s: %w", errors.Join(errs...))
}

// countingSM is the raw side's state machine: it counts entries and
// snapshots the count.
type countingSM struct {
	mu    sync.Mutex
	index uint64
}

func newCountingSM(uint64, uint64) sm.IOnDiskStateMachine { return &countingSM{} }

func (s *countingSM) Open(<-chan struct{}) (uint64, error) { return 0, nil }

func (s *countingSM) Update(es []sm.Entry) ([]sm.Entry, error) {
	s.mu.Lock()
	s.index = es[len(es)-1].Index
	s.mu.Unlock()
	for i := range es {
		es[i].Result = sm.Result{Value: es[i].Index}
	}
	return es, nil
}

func (s *countingSM) Lookup(any) (any, error)       { return nil, nil }
func (s *countingSM) Sync() error                   { return nil }
func (s *countingSM) PrepareSnapshot() (any, error) { return nil, nil }
func (s *countingSM) Close() error                  { return nil }

// SaveSnapshot writes the index: a snapshot with no data is taken for a
// shrunk one, which a follower refuses.
func (s *countingSM) SaveSnapshot(_ any, w io.Writer, _ <-chan struct{}) error {
	s.mu.Lock()
	index := s.index
	s.mu.Unlock()
	_, err := w.Write(binary.LittleEndian.AppendUint64(nil, index))
	return err
}

func (s *countingSM) RecoverFromSnapshot(r io.Reader, _ <-chan struct{}) error {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	s.mu.Lock()
	s.index = binary.LittleEndian.Uint64(b[:])
	s.mu.Unlock()
	return nil
}
