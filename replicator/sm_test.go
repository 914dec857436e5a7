package replicator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sm "github.com/lni/dragonboat/v4/statemachine"

	"github.com/lockstitch/lockstitch"
	catchup "github.com/lockstitch/lockstitch/copy"
	"github.com/lockstitch/lockstitch/wal"
)

// newTestSM is a replica state machine in dir with the log plugin, outside
// any NodeHost: the tests drive dragonboat's calls themselves.
// saveSnapshot saves a snapshot of s, as dragonboat streams one to a
// replica that needs it, and closes s.
func saveSnapshot(t *testing.T, s *stateMachine) *bytes.Buffer {
	t.Helper()
	snap, err := s.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.SaveSnapshot(snap, &buf, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	return &buf
}

func newTestSM(t *testing.T, dir string) *stateMachine {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SegmentBytes = 1 << 20
	return &stateMachine{
		id:       1,
		replica:  1,
		dir:      dir,
		cfg:      &cfg,
		log:      slog.New(slog.DiscardHandler),
		factory:  NewLogPlugin,
		progress: make(map[lockstitch.ReplicaID]progressReport),
		opened:   func() {},
	}
}

// opsEntries makes n Raft entries from index first on, each with one op.
func opsEntries(first uint64, n int) []sm.Entry {
	es := make([]sm.Entry, n)
	for i := range es {
		p := []byte(fmt.Sprintf("op %d", first+uint64(i)))
		b := appendBatchHeader(nil, 1)
		es[i] = sm.Entry{Index: first + uint64(i), Cmd: appendBatchOp(b, p, wal.Checksum(p), 0, 0)}
	}
	return es
}

// applyAndClose opens a replica in dir, applies n ops (a checkpoint at
// the end), and closes it.
func applyAndClose(t *testing.T, dir string, n int) {
	t.Helper()
	s := newTestSM(t, dir)
	if _, err := s.Open(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(opsEntries(s.state.index+1, n)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func walBounds(t *testing.T, dir string) (first, last lockstitch.LSN) {
	t.Helper()
	l, err := wal.Open(filepath.Join(dir, "wal"), wal.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.First(), l.Last()
}

func TestOpenCutsLogBackToCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	applyAndClose(t, dir, 5)
	// Ops past the checkpoint: logged, but the checkpoint was not written.
	l, err := wal.Open(filepath.Join(dir, "wal"), wal.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for lsn := lockstitch.LSN(6); lsn <= 8; lsn++ {
		if err := l.Append(&wal.Record{LSN: lsn, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s := newTestSM(t, dir)
	index, err := s.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	if index != 5 || s.wal.Last() != 5 {
		t.Fatalf("open returned index %d with the log at %d, want 5 and 5", index, s.wal.Last())
	}
	s.Close()
}

func TestOpenRefusesLogShorterThanCheckpoint(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	applyAndClose(t, dir, 5)
	if err := os.RemoveAll(filepath.Join(dir, "wal")); err != nil {
		t.Fatal(err)
	}
	s := newTestSM(t, dir)
	if _, err := s.Open(nil); !errors.Is(err, errBadState) {
		t.Fatalf("open with the log lost: %v, want errBadState", err)
	}
}

func TestOpenFinishesInterruptedRestore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	applyAndClose(t, dir, 5)
	// A restore to LSN 20 that crashed after writing its checkpoint: the
	// plugin is restored, the marker is there and the log still ends at 5.
	st, err := readCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.lsn, st.index = 20, 30
	pos := encodePosition(20, 1)
	if err := writeFileAtomic(filepath.Join(dir, "plugin", logPluginFile), pos[:]); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(filepath.Join(dir, restoringName), nil); err != nil {
		t.Fatal(err)
	}
	if err := writeCheckpoint(dir, st.appendTo(nil)); err != nil {
		t.Fatal(err)
	}
	s := newTestSM(t, dir)
	index, err := s.Open(nil)
	if err != nil {
		t.Fatal(err)
	}
	if index != 30 || s.wal.First() != 21 {
		t.Fatalf("open returned index %d with the log starting at %d, want 30 and 21", index, s.wal.First())
	}
	if _, err := os.Stat(filepath.Join(dir, restoringName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("restore marker left behind: %v", err)
	}
	s.Close()
	if first, last := walBounds(t, dir); first != 21 || last != 20 {
		t.Fatalf("log after reopening: first %d last %d, want 21 and 20", first, last)
	}
}

// TestSnapshotCarriesLog saves a snapshot of a replica whose log holds
// LSNs 1..50 through the node's copy throttle and restores it on an empty
// replica: the whole snapshot went through the throttle, and the restored
// log holds 1..50, not only what comes after the snapshot.
func TestSnapshotCarriesLog(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	applyAndClose(t, src, 50)
	from := newTestSM(t, src)
	from.throttle = catchup.NewThrottle(1 << 30)
	if _, err := from.Open(nil); err != nil {
		t.Fatal(err)
	}
	buf := saveSnapshot(t, from)
	if got := from.throttle.Passed(); got != int64(buf.Len()) {
		t.Fatalf("the throttle let %d bytes through, the snapshot is %d", got, buf.Len())
	}
	to := newTestSM(t, dst)
	if _, err := to.Open(nil); err != nil {
		t.Fatal(err)
	}
	if err := to.RecoverFromSnapshot(buf, nil); err != nil {
		t.Fatal(err)
	}
	to.Close()
	if first, last := walBounds(t, dst); first != 1 || last != 50 {
		t.Fatalf("the restored log holds [%d, %d], want [1, 50]", first, last)
	}
}

// TestRestoreNotOverwrittenByCheckpoint races timed checkpoints with a
// snapshot restore: the checkpoint on disk afterwards must be the
// restored state, never the state a checkpoint copied before it.
func TestRestoreNotOverwrittenByCheckpoint(t *testing.T) {
	t.Parallel()
	for round := 0; round < 20; round++ {
		src, dst := t.TempDir(), t.TempDir()
		applyAndClose(t, src, 50)
		from := newTestSM(t, src)
		if _, err := from.Open(nil); err != nil {
			t.Fatal(err)
		}
		buf := saveSnapshot(t, from)

		s := newTestSM(t, dst)
		if _, err := s.Open(nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(opsEntries(1, 3)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := s.checkpoint(); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if err := s.RecoverFromSnapshot(io.Reader(buf), nil); err != nil {
				t.Error(err)
			}
		}()
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: checkpoint and restore deadlocked", round)
		}
		if t.Failed() {
			return
		}
		st, err := readCheckpoint(dst)
		if err != nil {
			t.Fatal(err)
		}
		if st.lsn != 50 || st.index != 50 {
			t.Fatalf("round %d: checkpoint after restore at LSN %d index %d, want 50 and 50", round, st.lsn, st.index)
		}
		s.Close()
	}
}

// TestRestoreLargeLog restores a copy whose log spans several
// restoreSyncBytes, so that syncs run while later frames are written,
// and checks that the restored log holds every record, byte for byte.
func TestRestoreLargeLog(t *testing.T) {
	t.Parallel()
	src, dst := t.TempDir(), t.TempDir()
	const n, size = 3 * restoreSyncBytes / 4096, 4096 // about three syncs
	payload := func(i int) []byte {
		p := bytes.Repeat([]byte{byte(i)}, size)
		copy(p, fmt.Sprintf("op %d", i))
		return p
	}
	from := newTestSM(t, src)
	if _, err := from.Open(nil); err != nil {
		t.Fatal(err)
	}
	es := make([]sm.Entry, n)
	for i := range es {
		p := payload(i + 1)
		es[i] = sm.Entry{Index: uint64(i + 1), Cmd: appendBatchOp(appendBatchHeader(nil, 1), p, wal.Checksum(p), 0, 0)}
	}
	if _, err := from.Update(es); err != nil {
		t.Fatal(err)
	}
	buf := saveSnapshot(t, from)
	to := newTestSM(t, dst)
	if _, err := to.Open(nil); err != nil {
		t.Fatal(err)
	}
	if err := to.RecoverFromSnapshot(buf, nil); err != nil {
		t.Fatal(err)
	}
	to.Close()
	l, err := wal.Open(filepath.Join(dst, "wal"), wal.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.First() != 1 || l.Last() != n {
		t.Fatalf("the restored log holds [%d, %d], want [1, %d]", l.First(), l.Last(), n)
	}
	it, err := l.NewIterator(1)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var rec wal.Record
	for i := 1; i <= n; i++ {
		if err := it.Next(&rec); err != nil || rec.LSN != lockstitch.LSN(i) || !bytes.Equal(rec.Payload, payload(i)) {
			t.Fatalf("restored record %d: LSN %d, %.10q, %v", i, rec.LSN, rec.Payload, err)
		}
	}
}

// timesPlugin records the time of every op it is given. It never makes
// anything durable, so every restart replays the whole log into it.
type timesPlugin struct {
	logPlugin
	times *[]time.Time
}

func (p *timesPlugin) Open(context.Context) (lockstitch.LSN, error) { return 0, nil }
func (p *timesPlugin) Sync() (lockstitch.LSN, error)                { return 0, nil }
func (p *timesPlugin) Apply(ops []Op, results [][]byte) error {
	for _, op := range ops {
		*p.times = append(*p.times, op.Time)
	}
	return nil
}

// TestOpTimeReachesPlugin checks that a plugin sees the proposer's time of
// each op, the same when the op is first applied and when it is replayed
// from the operation log after a restart; an op of a version 2 entry has
// the zero time.
func TestOpTimeReachesPlugin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var times []time.Time
	open := func() *stateMachine {
		s := newTestSM(t, dir)
		s.factory = func(PluginContext) (StateMachine, error) { return &timesPlugin{times: &times}, nil }
		if _, err := s.Open(nil); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t1 := time.Date(2026, 12, 7, 21, 0, 0, 1, time.UTC)
	t3 := t1.Add(-time.Hour) // a later leader's clock may be behind
	entry := func(index uint64, tm time.Time, v2 bool) sm.Entry {
		p := []byte(fmt.Sprintf("op %d", index))
		var b []byte
		if v2 {
			b = appendBatchHeaderV2(nil, 1)
		} else {
			b = appendBatchHeader(nil, 1)
			setBatchTime(b, tm)
		}
		b = appendBatchOp(b, p, wal.Checksum(p), 0, 0)
		return sm.Entry{Index: index, Cmd: appendBatchOp(b, p, wal.Checksum(p), 0, 0)}
	}
	s := open()
	if _, err := s.Update([]sm.Entry{entry(1, t1, false), entry(2, time.Time{}, true), entry(3, t3, false)}); err != nil {
		t.Fatal(err)
	}
	want := []time.Time{t1, t1, {}, {}, t3, t3}
	check := func(when string) {
		t.Helper()
		if len(times) != len(want) {
			t.Fatalf("%s: the plugin saw %d ops, want %d", when, len(times), len(want))
		}
		for i := range want {
			if !times[i].Equal(want[i]) {
				t.Fatalf("%s: op %d has time %v, want %v", when, i+1, times[i], want[i])
			}
		}
	}
	check("applied")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	times = nil
	s = open()
	defer s.Close()
	check("replayed")
}
