package replicator

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lni/dragonboat/v4"
	"github.com/lni/dragonboat/v4/config"
	"github.com/lni/dragonboat/v4/raftio"
	pb "github.com/lni/dragonboat/v4/raftpb"
	"github.com/lni/vfs"

	"github.com/lockstitch/lockstitch/internal/testutil"
)

// recordingLogDB records what reaches the LogDB behind a lazyCommitLogDB,
// every method of raftio.ILogDB.
type recordingLogDB struct {
	calls []string
}

var _ raftio.ILogDB = (*recordingLogDB)(nil)

func (r *recordingLogDB) record(format string, args ...any) {
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func describeUpdates(updates []pb.Update) string {
	var parts []string
	for _, ud := range updates {
		s := fmt.Sprintf("%d/%d", ud.ShardID, ud.ReplicaID)
		if n := len(ud.EntriesToSave); n > 0 {
			s += fmt.Sprintf(" e%d-%d", ud.EntriesToSave[0].Index, ud.EntriesToSave[n-1].Index)
		}
		if !pb.IsEmptyState(ud.State) {
			s += fmt.Sprintf(" t%d v%d c%d", ud.State.Term, ud.State.Vote, ud.State.Commit)
		}
		if !pb.IsEmptySnapshot(ud.Snapshot) {
			s += fmt.Sprintf(" ss%d", ud.Snapshot.Index)
		}
		parts = append(parts, s)
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

func (r *recordingLogDB) Name() string {
	r.record("name")
	return pebbleLogDBName
}

func (r *recordingLogDB) Close() error {
	r.record("close")
	return nil
}

func (r *recordingLogDB) BinaryFormat() uint32 {
	r.record("binary format")
	return raftio.PlainLogDBBinVersion
}

func (r *recordingLogDB) ListNodeInfo() ([]raftio.NodeInfo, error) {
	r.record("list nodes")
	return nil, nil
}

func (r *recordingLogDB) SaveBootstrapInfo(shard, replica uint64, _ pb.Bootstrap) error {
	r.record("save bootstrap %d/%d", shard, replica)
	return nil
}

func (r *recordingLogDB) GetBootstrapInfo(shard, replica uint64) (pb.Bootstrap, error) {
	r.record("bootstrap %d/%d", shard, replica)
	return pb.Bootstrap{}, nil
}

func (r *recordingLogDB) SaveRaftState(updates []pb.Update, worker uint64) error {
	r.record("save w%d: %s", worker, describeUpdates(updates))
	return nil
}

func (r *recordingLogDB) IterateEntries(ents []pb.Entry, size, shard, replica, low, high, _ uint64) ([]pb.Entry, uint64, error) {
	r.record("entries %d/%d [%d,%d)", shard, replica, low, high)
	return ents, size, nil
}

func (r *recordingLogDB) ReadRaftState(shard, replica, _ uint64) (raftio.RaftState, error) {
	r.record("read %d/%d", shard, replica)
	return raftio.RaftState{}, nil
}

func (r *recordingLogDB) RemoveEntriesTo(shard, replica, index uint64) error {
	r.record("remove entries %d/%d to %d", shard, replica, index)
	return nil
}

func (r *recordingLogDB) CompactEntriesTo(shard, replica, index uint64) (<-chan struct{}, error) {
	r.record("compact %d/%d to %d", shard, replica, index)
	done := make(chan struct{})
	close(done)
	return done, nil
}

func (r *recordingLogDB) SaveSnapshots(updates []pb.Update) error {
	r.record("snapshots: %s", describeUpdates(updates))
	return nil
}

func (r *recordingLogDB) GetSnapshot(shard, replica uint64) (pb.Snapshot, error) {
	r.record("snapshot %d/%d", shard, replica)
	return pb.Snapshot{}, nil
}

func (r *recordingLogDB) RemoveNodeData(shard, replica uint64) error {
	r.record("remove %d/%d", shard, replica)
	return nil
}

func (r *recordingLogDB) ImportSnapshot(ss pb.Snapshot, replica uint64) error {
	r.record("import %d/%d", ss.ShardID, replica)
	return nil
}

// take returns the calls recorded since the last take.
func (r *recordingLogDB) take() []string {
	c := r.calls
	r.calls = nil
	return c
}

func entries(from, to uint64) []pb.Entry {
	var es []pb.Entry
	for i := from; i <= to; i++ {
		es = append(es, pb.Entry{Index: i, Term: 2})
	}
	return es
}

func st(term, vote, commit uint64) pb.State { return pb.State{Term: term, Vote: vote, Commit: commit} }

type lazyFixture struct {
	t     *testing.T
	inner *recordingLogDB
	db    *lazyCommitLogDB
	clock time.Time
}

func newLazyFixture(t *testing.T) *lazyFixture {
	f := &lazyFixture{t: t, inner: &recordingLogDB{}, clock: time.Unix(1000, 0)}
	f.db = newLazyCommitLogDB(f.inner)
	f.db.now = func() time.Time { return f.clock }
	return f
}

func (f *lazyFixture) save(worker uint64, updates ...pb.Update) {
	f.t.Helper()
	if err := f.db.SaveRaftState(updates, worker); err != nil {
		f.t.Fatal(err)
	}
}

func (f *lazyFixture) expect(want ...string) {
	f.t.Helper()
	if got := f.inner.take(); !slices.Equal(got, want) {
		f.t.Fatalf("the LogDB got\n  %q\nwant\n  %q", got, want)
	}
}

// known writes a first state for replica shard/1 through worker 1, so
// that its term and vote are known.
func (f *lazyFixture) known(shard uint64, s pb.State) {
	f.t.Helper()
	f.save(1, pb.Update{ShardID: shard, ReplicaID: 1, State: s})
	f.expect(fmt.Sprintf("save w1: %d/1 t%d v%d c%d", shard, s.Term, s.Vote, s.Commit))
}

func TestLazyCommitLogDBHoldsCommitOnlyStates(t *testing.T) {
	t.Parallel()
	f := newLazyFixture(t)
	// A replica's first state is written as it comes: nothing is known
	// of its term and vote yet.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 0), EntriesToSave: entries(1, 1)})
	f.expect("save w1: 7/1 e1-1 t2 v1 c0")
	// The commit index moves: held, nothing written.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 1)})
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1}) // messages only
	f.expect()
	// The next entries carry it.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, EntriesToSave: entries(2, 2)})
	f.expect("save w1: 7/1 e2-2 t2 v1 c1")
	// A newer state in the same write wins over the held one.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 2)})
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 3), EntriesToSave: entries(3, 3)})
	f.expect("save w1: 7/1 e3-3 t2 v1 c3")
	// A held state of another replica of the same worker rides along.
	f.save(1, pb.Update{ShardID: 9, ReplicaID: 1, State: st(5, 0, 0), EntriesToSave: entries(1, 1)})
	f.expect("save w1: 9/1 e1-1 t5 v0 c0")
	f.save(1, pb.Update{ShardID: 9, ReplicaID: 1, State: st(5, 0, 1)})
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, EntriesToSave: entries(4, 4)})
	f.expect("save w1: 7/1 e4-4, 9/1 t5 v0 c1")
	// Nothing is held by a worker for another's replicas.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 4)})
	f.save(2, pb.Update{ShardID: 8, ReplicaID: 1, State: st(1, 1, 0), EntriesToSave: entries(1, 1)})
	f.expect("save w2: 8/1 e1-1 t1 v1 c0")
}

func TestLazyCommitLogDBSyncsTermAndVote(t *testing.T) {
	t.Parallel()
	f := newLazyFixture(t)
	f.known(7, st(2, 1, 5))
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 6)})
	f.expect()
	// A new term, or a vote, is written at once, with the state held.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(3, 0, 6)})
	f.expect("save w1: 7/1 t3 v0 c6")
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(3, 2, 6)})
	f.expect("save w1: 7/1 t3 v2 c6")
	// A commit index that goes back (a snapshot restored over the log)
	// is written too.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(3, 2, 4)})
	f.expect("save w1: 7/1 t3 v2 c4")
	// A snapshot is written at once, and a held state with it.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(3, 2, 9)})
	f.save(1, pb.Update{ShardID: 8, ReplicaID: 1, Snapshot: pb.Snapshot{Index: 20, Term: 3}})
	f.expect("save w1: 7/1 t3 v2 c9, 8/1 ss20")
}

func TestLazyCommitLogDBWritesOldHeldStates(t *testing.T) {
	t.Parallel()
	f := newLazyFixture(t)
	f.known(7, st(2, 1, 5))
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 6)})
	f.clock = f.clock.Add(maxCommitDelay / 2)
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 7)})
	f.save(1) // a Raft tick with nothing to save
	f.expect()
	// The age counts from the first state held, not the last.
	f.clock = f.clock.Add(maxCommitDelay / 2)
	f.save(1)
	f.expect("save w1: 7/1 t2 v1 c7")
	f.save(1)
	f.expect()
}

func TestLazyCommitLogDBWritesBeforeSnapshotsReadsAndClose(t *testing.T) {
	t.Parallel()
	f := newLazyFixture(t)
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 5)}, pb.Update{ShardID: 9, ReplicaID: 1, State: st(2, 1, 5)})
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 30)}, pb.Update{ShardID: 9, ReplicaID: 1, State: st(2, 1, 40)})
	f.expect("save w1: 7/1 t2 v1 c5, 9/1 t2 v1 c5")
	// Dragonboat checks on restart that a recorded snapshot is not above
	// the commit index on disk.
	if err := f.db.SaveSnapshots([]pb.Update{{ShardID: 7, ReplicaID: 1, Snapshot: pb.Snapshot{Index: 25, Term: 2}}}); err != nil {
		t.Fatal(err)
	}
	f.expect("save w1: 7/1 t2 v1 c30", "snapshots: 7/1 ss25")
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 31)})
	if _, err := f.db.ReadRaftState(7, 1, 0); err != nil {
		t.Fatal(err)
	}
	f.expect("save w1: 7/1 t2 v1 c31", "read 7/1")
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 32)})
	if err := f.db.Close(); err != nil {
		t.Fatal(err)
	}
	f.expect("save w1: 7/1 t2 v1 c32, 9/1 t2 v1 c40", "close")
}

func TestLazyCommitLogDBForgetsRemovedReplicas(t *testing.T) {
	t.Parallel()
	f := newLazyFixture(t)
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 5)}, pb.Update{ShardID: 8, ReplicaID: 1, State: st(2, 1, 5)})
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 6)}, pb.Update{ShardID: 8, ReplicaID: 1, State: st(2, 1, 6)})
	f.inner.take()
	if err := f.db.RemoveNodeData(7, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.db.ImportSnapshot(pb.Snapshot{ShardID: 8, Index: 3}, 1); err != nil {
		t.Fatal(err)
	}
	f.expect("remove 7/1", "import 8/1")
	// No state of theirs is written after: removed data stays removed.
	f.clock = f.clock.Add(time.Second)
	f.save(1, pb.Update{ShardID: 9, ReplicaID: 1, EntriesToSave: entries(1, 1)})
	f.expect("save w1: 9/1 e1-1")
	// And what is known of them is forgotten: a new replica's first
	// state is written.
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 6)}, pb.Update{ShardID: 8, ReplicaID: 1, State: st(2, 1, 6)})
	f.expect("save w1: 7/1 t2 v1 c6, 8/1 t2 v1 c6")
}

func TestLazyCommitLogDBKeepsNoEntries(t *testing.T) {
	t.Parallel()
	f := newLazyFixture(t)
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 5), EntriesToSave: entries(1, 64)})
	w := f.db.worker(1, nil)
	for _, ud := range w.buf[:cap(w.buf)] {
		if ud.EntriesToSave != nil {
			t.Fatal("the worker's buffer keeps entries alive after the save")
		}
	}
}

func TestLazyCommitLogDBOneWorkerPerShard(t *testing.T) {
	t.Parallel()
	f := newLazyFixture(t)
	f.known(7, st(2, 1, 5))
	f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 6)})
	f.save(2, pb.Update{ShardID: 8, ReplicaID: 1, State: st(2, 1, 6)})
	f.inner.take()
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "one step worker per shard") || !strings.Contains(msg, "step worker 2 saves shard 7, which step worker 1 saved before") {
			t.Fatalf("a save of shard 7 by step worker 2 after step worker 1: recovered %q, want a panic naming the invariant", msg)
		}
		// Panicked before anything was written: worker 1 still holds
		// 7/1, and worker 2 wrote nothing.
		f.expect()
	}()
	f.save(2, pb.Update{ShardID: 8, ReplicaID: 1, EntriesToSave: entries(1, 1)}, pb.Update{ShardID: 7, ReplicaID: 1, State: st(3, 0, 6)})
}

// lazyMethods is every method of raftio.ILogDB, the list lazyCommitLogDB
// was reviewed against (TestLazyCommitLogDBMethodSet), each called on a
// wrapper that holds a state of replica 7/1 and one of 9/1, both of step
// worker 1, then Close: want is what reaches the LogDB behind it.
var lazyMethods = []struct {
	name string
	call func(raftio.ILogDB) error
	want []string
}{
	{"Name", func(db raftio.ILogDB) error { db.Name(); return nil },
		[]string{"name", heldBoth, "close"}},
	{"Close", func(db raftio.ILogDB) error { return db.Close() },
		[]string{heldBoth, "close", "close"}},
	{"BinaryFormat", func(db raftio.ILogDB) error { db.BinaryFormat(); return nil },
		[]string{"binary format", heldBoth, "close"}},
	{"ListNodeInfo", func(db raftio.ILogDB) error { _, err := db.ListNodeInfo(); return err },
		[]string{"list nodes", heldBoth, "close"}},
	{"SaveBootstrapInfo", func(db raftio.ILogDB) error { return db.SaveBootstrapInfo(7, 1, pb.Bootstrap{Join: true}) },
		[]string{"save bootstrap 7/1", heldBoth, "close"}},
	{"GetBootstrapInfo", func(db raftio.ILogDB) error { _, err := db.GetBootstrapInfo(7, 1); return err },
		[]string{"bootstrap 7/1", heldBoth, "close"}},
	{"SaveRaftState", func(db raftio.ILogDB) error {
		return db.SaveRaftState([]pb.Update{{ShardID: 7, ReplicaID: 1, EntriesToSave: entries(3, 3)}}, 1)
	}, []string{"save w1: 7/1 e3-3 t2 v1 c6, 9/1 t2 v1 c6", "close"}},
	{"IterateEntries", func(db raftio.ILogDB) error { _, _, err := db.IterateEntries(nil, 0, 7, 1, 1, 3, 1<<20); return err },
		[]string{"entries 7/1 [1,3)", heldBoth, "close"}},
	{"ReadRaftState", func(db raftio.ILogDB) error { _, err := db.ReadRaftState(7, 1, 0); return err },
		[]string{"save w1: 7/1 t2 v1 c6", "read 7/1", "save w1: 9/1 t2 v1 c6", "close"}},
	{"RemoveEntriesTo", func(db raftio.ILogDB) error { return db.RemoveEntriesTo(7, 1, 2) },
		[]string{"remove entries 7/1 to 2", heldBoth, "close"}},
	{"CompactEntriesTo", func(db raftio.ILogDB) error { _, err := db.CompactEntriesTo(7, 1, 2); return err },
		[]string{"compact 7/1 to 2", heldBoth, "close"}},
	{"SaveSnapshots", func(db raftio.ILogDB) error {
		return db.SaveSnapshots([]pb.Update{{ShardID: 7, ReplicaID: 1, Snapshot: pb.Snapshot{Index: 6, Term: 2}}})
	}, []string{"save w1: 7/1 t2 v1 c6", "snapshots: 7/1 ss6", "save w1: 9/1 t2 v1 c6", "close"}},
	{"GetSnapshot", func(db raftio.ILogDB) error { _, err := db.GetSnapshot(7, 1); return err },
		[]string{"snapshot 7/1", heldBoth, "close"}},
	{"RemoveNodeData", func(db raftio.ILogDB) error { return db.RemoveNodeData(7, 1) },
		[]string{"remove 7/1", "save w1: 9/1 t2 v1 c6", "close"}},
	{"ImportSnapshot", func(db raftio.ILogDB) error {
		return db.ImportSnapshot(pb.Snapshot{ShardID: 7, Index: 6, Term: 2, Type: pb.OnDiskStateMachine}, 1)
	}, []string{"import 7/1", "save w1: 9/1 t2 v1 c6", "close"}},
}

// heldBoth is the write of both states lazyMethods' wrapper holds.
const heldBoth = "save w1: 7/1 t2 v1 c6, 9/1 t2 v1 c6"

// TestLazyCommitLogDBMethods checks what each method of the wrapper does
// with held states: writes them first, drops them, or leaves them held.
func TestLazyCommitLogDBMethods(t *testing.T) {
	t.Parallel()
	for _, m := range lazyMethods {
		t.Run(m.name, func(t *testing.T) {
			f := newLazyFixture(t)
			f.known(7, st(2, 1, 5))
			f.known(9, st(2, 1, 5))
			f.save(1, pb.Update{ShardID: 7, ReplicaID: 1, State: st(2, 1, 6)}, pb.Update{ShardID: 9, ReplicaID: 1, State: st(2, 1, 6)})
			f.expect()
			if err := m.call(f.db); err != nil {
				t.Fatal(err)
			}
			if err := f.db.Close(); err != nil {
				t.Fatal(err)
			}
			f.expect(m.want...)
		})
	}
}

// TestLazyCommitLogDBMethodSet fails when raftio.ILogDB's methods are not
// the ones lazyCommitLogDB was reviewed against. The wrapper embeds no
// LogDB, so a new method does not compile until it is written; this says
// what to decide when it is.
func TestLazyCommitLogDBMethodSet(t *testing.T) {
	t.Parallel()
	typ := reflect.TypeFor[raftio.ILogDB]()
	var have, reviewed []string
	for i := range typ.NumMethod() {
		have = append(have, typ.Method(i).Name)
	}
	for _, m := range lazyMethods {
		reviewed = append(reviewed, m.name)
	}
	slices.Sort(reviewed)
	if !slices.Equal(have, reviewed) {
		t.Fatalf("raftio.ILogDB has the methods\n  %v\nlazyCommitLogDB was reviewed against\n  %v\n"+
			"For each method added or changed, decide in replicator/logdb.go whether it writes the held Raft "+
			"states first (it reads the Raft state, or records something dragonboat checks against it), drops "+
			"them (it replaces or removes the replica's state) or passes through, and say why beside it; then "+
			"list it in lazyMethods with what reaches the inner LogDB.", have, reviewed)
	}
}

// TestDragonboatVersionReviewed fails when this module requires a
// dragonboat other than the one replicator/logdb.go was reviewed against.
// Test binaries carry no list of modules (debug.ReadBuildInfo has no
// Deps under go test), so it reads go.mod, which names the version every
// build of this module selects.
func TestDragonboatVersionReviewed(t *testing.T) {
	t.Parallel()
	const module = "github.com/lni/dragonboat/v4"
	gomod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	version, err := requiredVersion(gomod, module)
	if err != nil {
		t.Fatal(err)
	}
	if version != reviewedDragonboat {
		t.Fatalf("go.mod requires %s %s, but replicator/logdb.go was reviewed against %s.\n"+
			"Before changing reviewedDragonboat, read in the new version:\n"+
			"  1. internal/logdb.NewDefaultLogDB: its signature must be newPebbleLogDB's exactly (go:linkname "+
			"binds by name only; another signature still builds and corrupts memory at run time), and whether "+
			"dragonboat now exports a way to build its default LogDB, to drop the linkname;\n"+
			"  2. raftio.ILogDB: each method's decision in lazyCommitLogDB (write held states first, drop them, "+
			"pass through), and what NodeHost calls on the LogDB besides (nodehost.go createLogDB);\n"+
			"  3. the step workers' partitioner (engine.go newExecEngine and loadBucketNodes, "+
			"internal/server/partition.go) and the pebble LogDB's use of the worker ID (internal/logdb/sharded.go "+
			"SaveRaftState): a shard's state must still be saved by one step worker only;\n"+
			"  4. quiesce (quiesce.go, node.go tick and handleReadIndex/handleProposals, raft.go quiescedTick): "+
			"the log formats replicator/quiesce.go matches, what wakes a quiesced replica, and whether a quiesced "+
			"follower still never times out (WakeQuiesced, wakeFollower).",
			module, version, reviewedDragonboat)
	}
}

// requiredVersion returns the version of module that gomod requires, or an
// error if it requires none or replaces the module.
func requiredVersion(gomod []byte, module string) (string, error) {
	var version, block string
	for line := range strings.Lines(string(gomod)) {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		verb := block
		switch {
		case len(f) == 0:
			continue
		case block != "" && f[0] == ")":
			block = ""
			continue
		case block != "":
		case len(f) == 2 && f[1] == "(":
			block = f[0]
			continue
		default:
			verb, f = f[0], f[1:]
		}
		if len(f) == 0 || f[0] != module {
			continue
		}
		switch verb {
		case "replace":
			return "", fmt.Errorf("go.mod replaces %s: review replicator/logdb.go against the replacement", module)
		case "require":
			if len(f) < 2 {
				return "", fmt.Errorf("go.mod requires %s without a version", module)
			}
			version = f[1]
		}
	}
	if version == "" {
		return "", fmt.Errorf("go.mod does not require %s", module)
	}
	return version, nil
}

func TestRequiredVersion(t *testing.T) {
	t.Parallel()
	const m = "example.com/a/v4"
	for _, c := range []struct{ gomod, want, err string }{
		{"module x\n\nrequire (\n\texample.com/b v1.0.0\n\texample.com/a/v4 v4.1.0 // indirect\n)\n", "v4.1.0", ""},
		{"module x\nrequire example.com/a/v4 v4.2.0\n", "v4.2.0", ""},
		{"module x\nrequire example.com/a/v40 v4.2.0\n", "", "does not require"},
		{"module x\nrequire example.com/a/v4 v4.2.0\nreplace example.com/a/v4 => ../a\n", "", "replaces"},
		{"module x\nrequire example.com/a/v4 v4.2.0\nreplace (\n\texample.com/a/v4 v4.2.0 => example.com/fork/v4 v4.3.0\n)\n", "", "replaces"},
	} {
		got, err := requiredVersion([]byte(c.gomod), m)
		if got != c.want || (err == nil) != (c.err == "") || err != nil && !strings.Contains(err.Error(), c.err) {
			t.Errorf("requiredVersion(%q) = %q, %v; want %q, an error with %q", c.gomod, got, err, c.want, c.err)
		}
	}
}

// discardLogDB is a LogDB that writes nothing and records nothing saved.
type discardLogDB struct{ recordingLogDB }

func (*discardLogDB) SaveRaftState([]pb.Update, uint64) error { return nil }

// BenchmarkLazyCommitLogDBSave measures the wrapper's own cost per
// SaveRaftState, over a LogDB that does nothing: one step worker's call
// with the updates of `shards` replicas, each moving its commit index
// (held, written at most every maxCommitDelay) or saving an entry.
func BenchmarkLazyCommitLogDBSave(b *testing.B) {
	for _, shards := range []int{1, 16} {
		for _, kind := range []string{"commit", "entry"} {
			b.Run(fmt.Sprintf("shards=%d/%s", shards, kind), func(b *testing.B) {
				db := newLazyCommitLogDB(&discardLogDB{})
				ups := make([]pb.Update, shards)
				for i := range ups {
					// The shards step worker 1 of 16 saves.
					ups[i] = pb.Update{ShardID: uint64(i+1) * 16, ReplicaID: 1, State: st(2, 1, 0)}
				}
				if err := db.SaveRaftState(ups, 1); err != nil {
					b.Fatal(err)
				}
				ent := entries(1, 1)
				b.ReportAllocs()
				for i := uint64(1); b.Loop(); i++ {
					for j := range ups {
						ups[j].State.Commit = i
						if kind == "entry" {
							ups[j].EntriesToSave = ent
						}
					}
					if err := db.SaveRaftState(ups, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestLazyCommitLogDBPebble opens dragonboat's pebble LogDB through the
// factory Open uses (newPebbleLogDB, reached with go:linkname), writes
// through the wrapper and reads back after a reopen. The NodeHost's file
// system is recvFS, as in New: dragonboat's pebble store panics on one
// that is not the OS's, so the factory must unwrap it.
func TestLazyCommitLogDBPebble(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	nhc := config.NodeHostConfig{NodeHostDir: dir, RTTMillisecond: 10, RaftAddress: "127.0.0.1:1"}
	nhc.Expert.LogDB = config.GetTinyMemLogDBConfig()
	nhc.Expert.FS = newRecvFS(vfs.Default)
	if err := nhc.Prepare(); err != nil {
		t.Fatal(err)
	}
	open := func() raftio.ILogDB {
		t.Helper()
		db, err := pebbleLogDB{}.Create(nhc, func(config.LogDBInfo) {}, []string{filepath.Join(dir, "db")}, []string{filepath.Join(dir, "wal")})
		if err != nil {
			t.Fatal(err)
		}
		if db.Name() != pebbleLogDBName {
			t.Fatalf("name %q, want %q (dragonboat's own default)", db.Name(), pebbleLogDBName)
		}
		return db
	}
	db := open()
	ents := make([]pb.Entry, 8)
	for i := range ents {
		ents[i] = pb.Entry{Index: uint64(i + 1), Term: 2, Cmd: []byte{byte(i)}}
	}
	if err := db.SaveRaftState([]pb.Update{{ShardID: 3, ReplicaID: 1, State: st(2, 1, 0), EntriesToSave: ents}}, 1); err != nil {
		t.Fatal(err)
	}
	if err := db.SaveRaftState([]pb.Update{{ShardID: 3, ReplicaID: 1, State: st(2, 1, 6)}}, 1); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	defer db.Close()
	rs, err := db.ReadRaftState(3, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rs.State != st(2, 1, 6) || rs.FirstIndex != 1 || rs.EntryCount != 8 {
		t.Fatalf("read state %+v, first %d, %d entries; want t2 v1 c6, 1, 8", rs.State, rs.FirstIndex, rs.EntryCount)
	}
	got, _, err := db.IterateEntries(nil, 0, 3, 1, 1, 9, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 8 || got[7].Index != 8 || !bytes.Equal(got[7].Cmd, []byte{7}) {
		t.Fatalf("read back %v; want the 8 entries written, the last at index 8 with command [7]", got)
	}
	if _, err := db.ReadRaftState(3, 2, 0); !errors.Is(err, raftio.ErrNoSavedLog) {
		t.Fatalf("state of a replica never saved: %v, want ErrNoSavedLog", err)
	}
}

// TestLazyCommitLogDBOpensDragonboatsDirectory checks that the wrapper and
// dragonboat's own pebble LogDB each open a node directory the other made:
// NodeHost refuses a directory written by a LogDB of another name.
func TestLazyCommitLogDBOpensDragonboatsDirectory(t *testing.T) {
	t.Parallel()
	installDragonboatLogger(slog.New(slog.DiscardHandler))
	dir, addr := t.TempDir(), testutil.FreeAddr(t)
	for i, factory := range []config.LogDBFactory{nil, pebbleLogDB{}, nil} {
		nhc := config.NodeHostConfig{NodeHostDir: dir, RTTMillisecond: 10, RaftAddress: addr}
		nhc.Expert.LogDB = config.GetTinyMemLogDBConfig()
		nhc.Expert.LogDBFactory = factory
		nh, err := dragonboat.NewNodeHost(nhc)
		if err != nil {
			t.Fatalf("open %d (factory %T): %v", i, factory, err)
		}
		nh.Close()
	}
}
