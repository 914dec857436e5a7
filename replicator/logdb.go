package replicator

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
	_ "unsafe" // go:linkname, for newPebbleLogDB

	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
)

// Raft's persistent state is its log, its term and its vote; the commit
// index is volatile (the Raft paper, figure 2): a replica that restarts
// with an older one learns the newer one from the leader. Dragonboat's
// default LogDB, pebble, still syncs every change of the commit index on
// its own, and the commit index moves once per Raft round on every
// replica: on the leader when a quorum has acknowledged, on a follower
// when the leader tells it, with the next entries or an empty Replicate
// message. That is a second fsync per round and replica, on the same disk
// as the first. Dragonboat's tan LogDB writes such a change without
// syncing it (tan's stateSyncChange); lazyCommitLogDB gives the pebble
// LogDB the same rule. See docs/decisions.md.

// pebbleLogDBName is the name dragonboat records for its default LogDB in
// a node's directory: lazyCommitLogDB keeps it, so a directory made with
// or without the wrapper opens with the other.
const pebbleLogDBName = "sharded-pebble"

// maxCommitDelay bounds how long a commit-only state waits for a write
// that syncs anyway. Under load the next entries come within a Raft
// round; an idle replica's held state is written, and synced, at its next
// Raft tick after this.
const maxCommitDelay = 10 * time.Millisecond

// reviewedDragonboat is the version of github.com/lni/dragonboat/v4 this
// file was reviewed against: the signature of the function newPebbleLogDB
// is linked to, the methods of raftio.ILogDB (each has its decision on
// lazyCommitLogDB), and the step workers' partitioner (the invariant on
// lazyCommitLogDB). TestDragonboatVersionReviewed fails when go.mod
// requires another version: read those three again in it first.
const reviewedDragonboat = "v4.0.0-20250723143628-076c7f6497dc"

// newPebbleLogDB is dragonboat's constructor of its default LogDB,
// internal/logdb.NewDefaultLogDB, which NodeHost.createLogDB calls
// (through logdb.NewDefaultFactory) when Expert.LogDBFactory is nil.
// Dragonboat exports nothing that builds this store (plugin/tee builds a
// pebble LogDB only paired with tan, in another directory), so it is
// reached with a body-less go:linkname. The linker binds it by name and
// checks nothing of its type: if dragonboat renames or removes the
// function the link fails, but if it changes its parameters or results
// the program still builds, and the call runs with mismatched arguments
// and results: memory corruption or a crash at run time.
// Only TestDragonboatVersionReviewed stands in the way, and only of an
// upgrade in this module's go.mod: a program that embeds this package
// and selects a newer dragonboat builds against that one unchecked.
//
//go:linkname newPebbleLogDB github.com/lni/dragonboat/v4/internal/logdb.NewDefaultLogDB
func newPebbleLogDB(config.NodeHostConfig, config.LogDBCallback, []string, []string) (raftio.ILogDB, error)

// linkedDragonboat returns the version of dragonboat the running program
// was built with, or "" when the build does not say (test binaries list
// no modules; TestDragonboatVersionReviewed checks go.mod for them).
func linkedDragonboat() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/lni/dragonboat/v4" {
			if d.Replace != nil {
				return d.Replace.Version
			}
			return d.Version
		}
	}
	return ""
}

// pebbleLogDB is the config.LogDBFactory of dragonboat's default pebble
// LogDB wrapped in a lazyCommitLogDB.
type pebbleLogDB struct{}

func (pebbleLogDB) Name() string { return pebbleLogDBName }

func (pebbleLogDB) Create(cfg config.NodeHostConfig, cb config.LogDBCallback, dirs, wals []string) (raftio.ILogDB, error) {
	if v := linkedDragonboat(); v != "" && v != reviewedDragonboat {
		// A program that links Lockstitch chose another dragonboat: the
		// linkname's target may have another signature, and calling it
		// would corrupt memory. Refuse instead.
		return nil, fmt.Errorf("replicator: this program links github.com/lni/dragonboat/v4 %s, but the pebble LogDB wrapper was reviewed against %s only; use LogDB %q, or the reviewed dragonboat", v, reviewedDragonboat, LogDBTan)
	}
	// Dragonboat's pebble store panics on a file system other than the
	// OS's (or its test ones): it runs on the one recvFS wraps, as its
	// files are not snapshots anyway.
	if fs, ok := cfg.Expert.FS.(*recvFS); ok {
		cfg.Expert.FS = fs.FS
	}
	db, err := newPebbleLogDB(cfg, cb, dirs, wals)
	if err != nil {
		return nil, err
	}
	// NodeHost runs this check on its own default LogDB only.
	if c, ok := db.(interface{ SelfCheckFailed() (bool, error) }); ok {
		failed, err := c.SelfCheckFailed()
		if err == nil && failed {
			err = errors.New("LogDB self check failed: its entries were written in a format this dragonboat does not read")
		}
		if err != nil {
			return nil, errors.Join(err, db.Close())
		}
	}
	return newLazyCommitLogDB(db), nil
}

// lazyCommitLogDB is a raftio.ILogDB that does not write a Raft state
// whose only change is the commit index on its own: it holds it until the
// same step worker next saves something that is synced anyway (entries, a
// snapshot, a new term or vote), and writes it in that batch. A held state
// is written at once, and synced, when it is older than maxCommitDelay at
// a step worker's call (dragonboat's step workers save at every Raft
// tick), before a snapshot of its replica is recorded or its state read,
// and at Close; it is dropped when the replica's data is removed or a
// snapshot imported.
//
// What is acknowledged does not change: entries, terms and votes are
// synced before SaveRaftState returns, as before. A crash loses at most
// the commit index's last moves, which the replica learns again; and a
// snapshot is never recorded above the commit index on disk, which
// dragonboat checks on restart.
//
// It implements every method of raftio.ILogDB itself, and embeds none: a
// method a dragonboat upgrade adds does not compile until it is written
// here, with a decision on whether it writes the held states first.
//
// Invariant (one step worker per shard): every SaveRaftState call that
// carries a given shard comes from the same step worker, for the life of
// the LogDB. Dragonboat keeps it in its engine (engine.go in the module,
// at reviewedDragonboat): newExecEngine starts Expert.Engine.ExecShards
// step workers, IDs 1 to ExecShards, and splits the shards among them
// with server.NewFixedPartitioner(ExecShards), whose GetPartitionID is
// ShardID % ExecShards (internal/server/partition.go); a step worker's
// loadBucketNodes takes only the shards of partition ID-1, and
// processSteps saves their updates with SaveRaftState(updates, ID).
// ExecShards is read once per NodeHost (one engine, one LogDB, one
// wrapper), and dragonboat also keeps it fixed at a node's first start:
// it is written to the flag file in the node directory, and a later
// start with another value is refused (internal/server/environment.go,
// Env.check). The pebble LogDB leans on the same partition: it keeps a
// write context per worker ID and panics when one call spans two of its
// pebble shards (internal/logdb/sharded.go, getParititionID).
//
// What rests on it: states are held, and written, per worker. If a
// shard's saves moved to another worker, the first could write a state
// it still held after the second had written a newer one, taking the
// commit index, or the term and vote, back on disk: a replica restarted
// then could vote twice in one term. SaveRaftState checks it: the worker
// that first saves a shard is recorded, and a save of that shard by
// another worker panics, naming the invariant. The check costs a map
// lookup per update, under the mutex every call takes anyway.
type lazyCommitLogDB struct {
	inner raftio.ILogDB
	now   func() time.Time

	mu      sync.Mutex
	workers map[uint64]*stateWorker // by the worker ID of SaveRaftState
	owners  map[uint64]uint64       // the worker ID that saves a shard, by shard ID
}

var _ raftio.ILogDB = (*lazyCommitLogDB)(nil)

type replicaKey struct{ shard, replica uint64 }

// stateWorker is what lazyCommitLogDB keeps for one of dragonboat's step
// workers. Its mutex is held through the inner SaveRaftState calls with
// the worker's ID: the inner LogDB keeps a context per worker ID, and a
// held state must not be written after a newer one.
type stateWorker struct {
	mu     sync.Mutex
	id     uint64
	held   map[replicaKey]pb.State
	since  time.Time               // when the oldest held state was held
	synced map[replicaKey]pb.State // the last state written, per replica
	buf    []pb.Update
}

func newLazyCommitLogDB(db raftio.ILogDB) *lazyCommitLogDB {
	return &lazyCommitLogDB{
		inner:   db,
		now:     time.Now,
		workers: make(map[uint64]*stateWorker),
		owners:  make(map[uint64]uint64),
	}
}

// worker returns the worker of ID id, and panics if another worker saved
// a shard of updates before (the invariant on lazyCommitLogDB).
func (l *lazyCommitLogDB) worker(id uint64, updates []pb.Update) *stateWorker {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range updates {
		shard := updates[i].ShardID
		switch first, ok := l.owners[shard]; {
		case !ok:
			l.owners[shard] = id
		case first != id:
			panic(fmt.Sprintf("replicator: invariant violated, one step worker per shard (lazyCommitLogDB): "+
				"step worker %d saves shard %d, which step worker %d saved before", id, shard, first))
		}
	}
	w := l.workers[id]
	if w == nil {
		w = &stateWorker{id: id, held: make(map[replicaKey]pb.State), synced: make(map[replicaKey]pb.State)}
		l.workers[id] = w
	}
	return w
}

// eachWorker calls f on every worker, with the worker's mutex held.
func (l *lazyCommitLogDB) eachWorker(f func(*stateWorker) error) error {
	l.mu.Lock()
	ws := make([]*stateWorker, 0, len(l.workers))
	for _, w := range l.workers {
		ws = append(ws, w)
	}
	l.mu.Unlock()
	var errs []error
	for _, w := range ws {
		w.mu.Lock()
		errs = append(errs, f(w))
		w.mu.Unlock()
	}
	return errors.Join(errs...)
}

// SaveRaftState implements raftio.ILogDB: it holds a commit-only state,
// and writes the worker's held states with anything else (see the type).
func (l *lazyCommitLogDB) SaveRaftState(updates []pb.Update, workerID uint64) error {
	w := l.worker(workerID, updates)
	w.mu.Lock()
	defer w.mu.Unlock()
	now := l.now()
	syncs := len(w.held) > 0 && now.Sub(w.since) >= maxCommitDelay
	for i := 0; i < len(updates) && !syncs; i++ {
		ud := &updates[i]
		syncs = len(ud.EntriesToSave) > 0 || !pb.IsEmptySnapshot(ud.Snapshot) ||
			!pb.IsEmptyState(ud.State) && !w.commitOnly(ud.ShardID, ud.ReplicaID, ud.State)
	}
	if !syncs {
		for i := range updates {
			if ud := &updates[i]; !pb.IsEmptyState(ud.State) {
				if len(w.held) == 0 {
					w.since = now
				}
				w.held[replicaKey{ud.ShardID, ud.ReplicaID}] = ud.State
			}
		}
		return nil // nothing else in updates is written
	}
	return w.save(l.inner, updates)
}

// commitOnly reports whether st differs from the replica's last written
// state in its commit index alone (moved forward).
func (w *stateWorker) commitOnly(shard, replica uint64, st pb.State) bool {
	last, ok := w.synced[replicaKey{shard, replica}]
	return ok && st.Term == last.Term && st.Vote == last.Vote && st.Commit >= last.Commit
}

// save writes updates and every held state with them; a held state gives
// way to a newer one of its replica in updates.
func (w *stateWorker) save(db raftio.ILogDB, updates []pb.Update) error {
	out := append(w.buf[:0], updates...)
	defer func() {
		clear(out) // no entries kept alive
		w.buf = out[:0]
	}()
	for k, st := range w.held {
		i := 0
		for ; i < len(out) && (out[i].ShardID != k.shard || out[i].ReplicaID != k.replica); i++ {
		}
		switch {
		case i == len(out):
			out = append(out, pb.Update{ShardID: k.shard, ReplicaID: k.replica, State: st})
		case pb.IsEmptyState(out[i].State):
			out[i].State = st
		}
	}
	return w.write(db, out) // every held state is in out now
}

// flush writes the held state of one replica, or of every replica if
// match is nil. It is called with w.mu held.
func (w *stateWorker) flush(db raftio.ILogDB, match func(replicaKey) bool) error {
	var updates []pb.Update
	for k, st := range w.held {
		if match == nil || match(k) {
			updates = append(updates, pb.Update{ShardID: k.shard, ReplicaID: k.replica, State: st})
		}
	}
	if len(updates) == 0 {
		return nil
	}
	return w.write(db, updates)
}

// write hands updates to the LogDB; the states in them are then the
// last written of their replicas, and no longer held.
func (w *stateWorker) write(db raftio.ILogDB, updates []pb.Update) error {
	if err := db.SaveRaftState(updates, w.id); err != nil {
		return err
	}
	for i := range updates {
		if st := updates[i].State; !pb.IsEmptyState(st) {
			k := replicaKey{updates[i].ShardID, updates[i].ReplicaID}
			delete(w.held, k)
			w.synced[k] = st
		}
	}
	return nil
}

func (l *lazyCommitLogDB) flushReplica(shard, replica uint64) error {
	k := replicaKey{shard, replica}
	return l.eachWorker(func(w *stateWorker) error {
		if _, ok := w.held[k]; !ok {
			return nil
		}
		return w.flush(l.inner, func(h replicaKey) bool { return h == k })
	})
}

func (l *lazyCommitLogDB) forgetReplica(shard, replica uint64) {
	k := replicaKey{shard, replica}
	_ = l.eachWorker(func(w *stateWorker) error {
		delete(w.held, k)
		delete(w.synced, k)
		return nil
	})
}

// The methods of raftio.ILogDB other than SaveRaftState, in its order.
// Each says why it writes the held states first, drops them, or passes
// through: a held state is a replica's Raft state (term, vote, commit
// index) and nothing else, so only a method that reads or replaces that
// state, or records something dragonboat checks against it, has to care.

// Name implements raftio.ILogDB: passed through, it reads no state. It is
// dragonboat's own name (pebbleLogDBName), recorded in the node directory.
func (l *lazyCommitLogDB) Name() string { return l.inner.Name() }

// Close implements raftio.ILogDB: every held state is written first.
func (l *lazyCommitLogDB) Close() error {
	err := l.eachWorker(func(w *stateWorker) error { return w.flush(l.inner, nil) })
	if err != nil {
		err = fmt.Errorf("write held Raft states: %w", err)
	}
	return errors.Join(err, l.inner.Close())
}

// BinaryFormat implements raftio.ILogDB: passed through, a constant of
// the store's format.
func (l *lazyCommitLogDB) BinaryFormat() uint32 { return l.inner.BinaryFormat() }

// ListNodeInfo implements raftio.ILogDB: passed through, it lists the
// bootstrap records, which nothing held changes.
func (l *lazyCommitLogDB) ListNodeInfo() ([]raftio.NodeInfo, error) { return l.inner.ListNodeInfo() }

// SaveBootstrapInfo implements raftio.ILogDB: passed through, a bootstrap
// record is kept apart from the Raft state and never held.
func (l *lazyCommitLogDB) SaveBootstrapInfo(shard, replica uint64, bs pb.Bootstrap) error {
	return l.inner.SaveBootstrapInfo(shard, replica, bs)
}

// GetBootstrapInfo implements raftio.ILogDB: passed through, as
// SaveBootstrapInfo.
func (l *lazyCommitLogDB) GetBootstrapInfo(shard, replica uint64) (pb.Bootstrap, error) {
	return l.inner.GetBootstrapInfo(shard, replica)
}

// IterateEntries implements raftio.ILogDB: passed through. Entries are
// never held (an update with entries is written before SaveRaftState
// returns, with the index of the last one), and it reads nothing else.
func (l *lazyCommitLogDB) IterateEntries(ents []pb.Entry, size, shard, replica, low, high, maxSize uint64) ([]pb.Entry, uint64, error) {
	return l.inner.IterateEntries(ents, size, shard, replica, low, high, maxSize)
}

// ReadRaftState implements raftio.ILogDB: the replica's held state is
// written first, so that it reads what was last saved.
func (l *lazyCommitLogDB) ReadRaftState(shard, replica, lastIndex uint64) (raftio.RaftState, error) {
	if err := l.flushReplica(shard, replica); err != nil {
		return raftio.RaftState{}, fmt.Errorf("write held Raft state: %w", err)
	}
	return l.inner.ReadRaftState(shard, replica, lastIndex)
}

// RemoveEntriesTo implements raftio.ILogDB: passed through. It removes
// entries only, and only at or below a snapshot already recorded
// (node.compactLog sets the point from a snapshot saved or recovered,
// node.removeLog removes); recording that snapshot wrote the replica's
// held state (SaveSnapshots, or the SaveRaftState that carried it), so
// the commit index on disk is at or above it already.
func (l *lazyCommitLogDB) RemoveEntriesTo(shard, replica, index uint64) error {
	return l.inner.RemoveEntriesTo(shard, replica, index)
}

// CompactEntriesTo implements raftio.ILogDB: passed through, it reclaims
// the space of entries already removed.
func (l *lazyCommitLogDB) CompactEntriesTo(shard, replica, index uint64) (<-chan struct{}, error) {
	return l.inner.CompactEntriesTo(shard, replica, index)
}

// SaveSnapshots implements raftio.ILogDB. On restart dragonboat requires
// the commit index on disk to be at or above the snapshot's index
// (raft.loadState): the replicas' held states are written first.
func (l *lazyCommitLogDB) SaveSnapshots(updates []pb.Update) error {
	for _, ud := range updates {
		if err := l.flushReplica(ud.ShardID, ud.ReplicaID); err != nil {
			return fmt.Errorf("write held Raft state: %w", err)
		}
	}
	return l.inner.SaveSnapshots(updates)
}

// GetSnapshot implements raftio.ILogDB: passed through, it reads the
// snapshot record, which nothing held changes (a held state is written
// before a snapshot is recorded, not after).
func (l *lazyCommitLogDB) GetSnapshot(shard, replica uint64) (pb.Snapshot, error) {
	return l.inner.GetSnapshot(shard, replica)
}

// RemoveNodeData implements raftio.ILogDB: the replica's held state is
// dropped first, so that no write brings its state back after the removal.
func (l *lazyCommitLogDB) RemoveNodeData(shard, replica uint64) error {
	l.forgetReplica(shard, replica)
	return l.inner.RemoveNodeData(shard, replica)
}

// ImportSnapshot implements raftio.ILogDB: the replica's held state is
// dropped first. The import writes the replica's state itself (the
// snapshot's term and index): an older held state must not overwrite it.
func (l *lazyCommitLogDB) ImportSnapshot(ss pb.Snapshot, replica uint64) error {
	l.forgetReplica(ss.ShardID, replica)
	return l.inner.ImportSnapshot(ss, replica)
}
