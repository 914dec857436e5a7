package replicator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/plugin/tan"
	"github.com/lni/dragonboat/v4/raftio"
	"github.com/lni/vfs"

	"github.com/lockstitch/lockstitch"
	catchup "github.com/lockstitch/lockstitch/copy"
)

// Replicator is one Lockstitch node: a dragonboat NodeHost hosting replicas
// of many partitions. It is safe for concurrent use.
type Replicator struct {
	cfg     Config
	log     *slog.Logger
	nh      *dragonboat.NodeHost
	metrics *Metrics

	mu     sync.RWMutex
	parts  map[lockstitch.PartitionID]*partition
	closed bool
	// retired records the replicas this node deleted.
	retired *retired
	// throttle bounds the rate of the copies this node sends.
	throttle *catchup.Throttle

	quit chan struct{}
	wg   sync.WaitGroup
	// snapshotKick wakes the maintenance goroutine when a state machine
	// wants a size-triggered snapshot (partition.snapshotWanted).
	snapshotKick chan struct{}
	// shards is a recent copy of dragonboat's local shard list, for the
	// status of quiet partitions (quiesce.go).
	shards shardInfoCache
	// pendingBytes counts the payload bytes of the appends every
	// partition's batcher holds (Config.MaxNodePendingBytes).
	pendingBytes atomic.Int64
}

// Open starts a node: its NodeHost, then every partition replica recorded
// under cfg.DataDir, which catch up by themselves.
func Open(cfg Config) (*Replicator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, partitionsDir), 0o755); err != nil {
		return nil, fmt.Errorf("replicator: %w", err)
	}
	installDragonboatLogger(logger)
	r := &Replicator{
		cfg:   cfg,
		log:   logger,
		parts: make(map[lockstitch.PartitionID]*partition),
		quit:  make(chan struct{}),

		snapshotKick: make(chan struct{}, 1),
		throttle:     catchup.NewThrottle(cfg.CopyBytesPerSecond),
	}
	events := &listener{r: r}
	nhc := config.NodeHostConfig{
		NodeHostDir:         filepath.Join(cfg.DataDir, "raft"),
		RTTMillisecond:      uint64(cfg.RTT / time.Millisecond),
		RaftAddress:         cfg.RaftAddress,
		ListenAddress:       cfg.RaftListenAddress,
		DeploymentID:        cfg.DeploymentID,
		RaftEventListener:   events,
		SystemEventListener: events,
	}
	if t := cfg.RaftTLS; t.Enabled() {
		nhc.MutualTLS, nhc.CAFile, nhc.CertFile, nhc.KeyFile = true, t.CAFile, t.CertFile, t.KeyFile
	}
	nhc.Expert.FS = newRecvFS(vfs.Default)
	nhc.Expert.LogDB = config.GetSmallMemLogDBConfig()
	nhc.Expert.LogDBFactory = pebbleLogDB{}
	if cfg.LogDB == LogDBTan {
		nhc.Expert.LogDBFactory = tan.Factory
		nhc.Expert.LogDB = config.GetTinyMemLogDBConfig()
	}
	if n := uint64(cfg.EngineWorkers); n > 0 {
		nhc.Expert.Engine = config.EngineConfig{ExecShards: n, CommitShards: n, ApplyShards: n, SnapshotShards: n, CloseShards: n}
	}
	nh, err := dragonboat.NewNodeHost(nhc)
	if err != nil {
		return nil, fmt.Errorf("replicator: start node at %s: %w", cfg.DataDir, err)
	}
	r.nh = nh
	if r.retired, err = loadRetired(cfg.DataDir); err != nil {
		r.closeNodeHost()
		return nil, fmt.Errorf("replicator: %w", err)
	}
	r.metrics = newMetrics(cfg.Registerer, r)
	metas, pending, err := listMeta(cfg.DataDir)
	if err != nil {
		r.closeNodeHost()
		return nil, fmt.Errorf("replicator: list partitions: %w", err)
	}
	if err := r.finishDeletions(pending); err != nil {
		r.closeNodeHost()
		return nil, fmt.Errorf("replicator: finish deleting replicas: %w", err)
	}
	for _, m := range metas {
		if _, err := r.start(m, true); err != nil {
			r.mu.Lock()
			r.closed = true
			started := make([]*partition, 0, len(r.parts))
			for _, p := range r.parts {
				started = append(started, p)
			}
			r.mu.Unlock()
			for _, p := range started {
				p.close()
			}
			r.closeNodeHost()
			return nil, fmt.Errorf("replicator: restart partition %d: %w", m.Partition, err)
		}
	}
	r.wg.Add(1)
	go r.maintain()
	r.log.Info("replicator started", "raft_addr", cfg.RaftAddress, "partitions", len(metas), "logdb", string(cfg.LogDB))
	return r, nil
}

// start starts the replica described by m on this node. Its state is
// opened first, here, rather than by the state machine dragonboat
// creates, where an error stops the node: when the state of a replica
// the node is restarting (restart) is damaged, it is quarantined (see
// Quarantine) and start returns it, not running, with no error. Other
// errors (the node cannot open files now) fail the start.
func (r *Replicator) start(m partitionMeta, restart bool) (*partition, error) {
	factory, ok := r.cfg.Plugins[m.Plugin]
	if !ok {
		return nil, fmt.Errorf("%w: %q", lockstitch.ErrPluginNotFound, m.Plugin)
	}
	p := newPartition(r, m, factory)
	// Build the plugin now: a factory that rejects its options fails the
	// start here, with an error.
	pluginDir := filepath.Join(p.dir, "plugin")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		p.close()
		return nil, fmt.Errorf("replicator: %w", err)
	}
	inst, err := factory(PluginContext{Partition: m.Partition, Replica: m.Replica, Dir: pluginDir, Options: m.Options, Logger: p.log})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("replicator: plugin %q: %w", m.Plugin, err)
	}
	if inst == nil {
		p.close()
		return nil, fmt.Errorf("replicator: plugin %q: factory returned no plugin", m.Plugin)
	}
	if m.Kind == lockstitch.Witness {
		// A witness holds no state: the plugin only checked the options.
		if err := inst.Close(); err != nil {
			p.log.Warn("closing a witness's plugin", "err", err)
		}
	} else {
		ctx, cancel := r.lifetime()
		o, err := openReplica(ctx, p.dir, r.cfg.SegmentBytes, p.log, inst)
		stopped := ctx.Err() != nil // the node closes: not the replica's fault
		cancel()
		switch {
		case err != nil && restart && !stopped && damaged(err):
			p.quarantine.Store(&Quarantine{Partition: m.Partition, Replica: m.Replica, Plugin: m.Plugin, Kind: m.Kind, Joined: m.Join, Reason: err, Since: time.Now()})
			p.log.Error("replica quarantined: its state failed to open; the node serves its other partitions", "err", err)
		case err != nil:
			p.close()
			return nil, fmt.Errorf("replicator: open partition %d replica %d: %w", m.Partition, m.Replica, err)
		default:
			p.opened.Store(o) // p.close closes it if no state machine takes it
		}
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		p.close()
		return nil, lockstitch.ErrClosed
	}
	if _, ok := r.parts[m.Partition]; ok {
		r.mu.Unlock()
		p.close()
		return nil, fmt.Errorf("%w: %d", lockstitch.ErrPartitionExists, m.Partition)
	}
	r.parts[m.Partition] = p
	r.mu.Unlock()
	if p.quarantine.Load() != nil {
		return p, nil
	}

	var members map[uint64]dragonboat.Target
	join := false
	if m.Join {
		// A joining replica that dragonboat has not bootstrapped yet joins;
		// once bootstrapped it restarts from its own records.
		join = !r.nh.HasNodeInfo(uint64(m.Partition), uint64(m.Replica))
	} else {
		members = make(map[uint64]dragonboat.Target, len(m.Members))
		for id, addr := range m.Members {
			members[uint64(id)] = addr
		}
	}
	err = r.nh.StartOnDiskReplica(members, join, p.create, p.raftConfig())
	for attempt := 0; errors.Is(err, dragonboat.ErrShardAlreadyExist) && attempt < 100; attempt++ {
		// The previous incarnation of this replica is still unloading.
		time.Sleep(10 * time.Millisecond)
		err = r.nh.StartOnDiskReplica(members, join, p.create, p.raftConfig())
	}
	if err != nil {
		r.mu.Lock()
		delete(r.parts, m.Partition)
		r.mu.Unlock()
		p.removed.Store(true) // a WaitReady under way ends
		p.close()
		if errors.Is(err, dragonboat.ErrReplicaRemoved) {
			return nil, fmt.Errorf("%w: partition %d replica %d", lockstitch.ErrReplicaDeleted, m.Partition, m.Replica)
		}
		return nil, fmt.Errorf("replicator: start partition %d replica %d: %w", m.Partition, m.Replica, err)
	}
	p.log.Info("replica started", "plugin", m.Plugin, "kind", m.Kind.String(), "join", m.Join)
	return p, nil
}

// Partition returns this node's replica of a partition.
func (r *Replicator) Partition(id lockstitch.PartitionID) (*Partition, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil, lockstitch.ErrClosed
	}
	p, ok := r.parts[id]
	if !ok {
		return nil, fmt.Errorf("%w: %d", lockstitch.ErrPartitionNotFound, id)
	}
	return &Partition{p}, nil
}

// Partitions lists the partitions this node hosts a replica of.
func (r *Replicator) Partitions() []lockstitch.PartitionID {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ids := make([]lockstitch.PartitionID, 0, len(r.parts))
	for id := range r.parts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids
}

// Config returns the node's configuration.
func (r *Replicator) Config() Config { return r.cfg }

// Close stops the node: appends not yet proposed fail with ErrClosed,
// every replica makes what it applied durable, and the NodeHost stops. It
// is idempotent.
func (r *Replicator) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	// Closed, so no partition is added from here on.
	parts := r.partitions()
	close(r.quit)
	r.wg.Wait()
	for _, p := range parts {
		p.close()
	}
	r.closeNodeHost()
	r.log.Debug("replicator stopped")
	return nil
}

func (r *Replicator) closeNodeHost() {
	r.nh.Close()
	r.metrics.unregister()
}

func (r *Replicator) lookup(shardID uint64) *partition {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.parts[lockstitch.PartitionID(shardID)]
}

// listener receives dragonboat's events. Its callbacks run on dragonboat's
// event goroutine and return at once.
type listener struct{ r *Replicator }

var (
	_ raftio.IRaftEventListener   = (*listener)(nil)
	_ raftio.ISystemEventListener = (*listener)(nil)
)

// lifetime returns a context that ends when the node closes.
func (r *Replicator) lifetime() (context.Context, context.CancelFunc) {
	return contextFromStop(r.quit)
}

// background runs f on a goroutine that Close waits for, unless the node
// is closing.
func (r *Replicator) background(f func()) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

func (l *listener) LeaderUpdated(info raftio.LeaderInfo) {
	if p := l.r.lookup(info.ShardID); p != nil && info.ReplicaID == uint64(p.replica) {
		p.onLeader(info.LeaderID, info.Term)
	}
}

func (l *listener) NodeDeleted(info raftio.NodeInfo) {
	if p := l.r.lookup(info.ShardID); p != nil && info.ReplicaID == uint64(p.replica) {
		// This replica was removed from its partition's membership. A
		// closing node leaves the deletion to its next start, where Raft's
		// replay reports the removal again.
		l.r.background(func() { l.r.forget(p, "removed from the partition") })
	}
}

func (l *listener) NodeHostShuttingDown()                       {}
func (l *listener) NodeUnloaded(raftio.NodeInfo)                {}
func (l *listener) NodeReady(raftio.NodeInfo)                   {}
func (l *listener) ConnectionEstablished(raftio.ConnectionInfo) {}
func (l *listener) ConnectionFailed(raftio.ConnectionInfo)      {}
func (l *listener) SendSnapshotStarted(raftio.SnapshotInfo)     {}
func (l *listener) SendSnapshotCompleted(raftio.SnapshotInfo)   {}
func (l *listener) SendSnapshotAborted(raftio.SnapshotInfo)     {}
func (l *listener) SnapshotReceived(raftio.SnapshotInfo)        {}
func (l *listener) SnapshotRecovered(raftio.SnapshotInfo)       {}
func (l *listener) SnapshotCreated(raftio.SnapshotInfo)         {}
func (l *listener) SnapshotCompacted(raftio.SnapshotInfo)       {}

// LogCompacted records how far the replica's Raft log is removed, which
// maintain uses to ask for LogDB compactions.
func (l *listener) LogCompacted(info raftio.EntryInfo) {
	if p := l.r.lookup(info.ShardID); p != nil && info.ReplicaID == uint64(p.replica) {
		p.logRemoved.Store(info.Index)
	}
}

func (l *listener) LogDBCompacted(raftio.EntryInfo) {}

// MembershipChanged drops the progress of replicas that left.
func (l *listener) MembershipChanged(info raftio.NodeInfo) {
	if p := l.r.lookup(info.ShardID); p != nil && info.ReplicaID == uint64(p.replica) {
		l.r.background(func() {
			if s, err := p.state(); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), l.r.cfg.ProposalTimeout)
				defer cancel()
				if members, committed := p.members(ctx); committed {
					s.pruneProgress(members)
				}
			}
		})
	}
}
