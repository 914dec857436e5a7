package queue

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	qops "github.com/lockstitch/lockstitch/ops/queue"
	"github.com/lockstitch/lockstitch/replicator"
)

// The tests drive the plugin with ops whose times they choose: the op
// time is the queue's only clock, so that is its fake clock.

var seedFlag = flag.Uint64("seed", 0, "seed of TestChunkingDoesNotMatter (0: random)")

// t0 is an arbitrary start of the queue's clock.
var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

type harness struct {
	t   *testing.T
	q   *Queue
	dir string
	lsn lockstitch.LSN
}

func newHarness(t *testing.T, opts map[string]string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir()}
	h.open(opts)
	t.Cleanup(func() { h.q.Close() })
	return h
}

func (h *harness) open(opts map[string]string) lockstitch.LSN {
	h.t.Helper()
	sm, err := New(replicator.PluginContext{Dir: h.dir, Options: opts})
	if err != nil {
		h.t.Fatal(err)
	}
	h.q = sm.(*Queue)
	lsn, err := h.q.Open(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return lsn
}

// apply applies one op at time at and returns its decoded result.
func (h *harness) apply(at time.Time, payload []byte) qops.Result {
	h.t.Helper()
	h.lsn++
	res := make([][]byte, 1)
	if err := h.q.Apply([]replicator.Op{{LSN: h.lsn, Epoch: 1, Time: at, Payload: payload}}, res); err != nil {
		h.t.Fatal(err)
	}
	var r qops.Result
	if err := qops.DecodeResult(res[0], &r); err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *harness) enqueue(at time.Time, item string) uint64 {
	h.t.Helper()
	r := h.apply(at, qops.AppendEnqueue(nil, []byte(item)))
	if r.Status != qops.StatusOK {
		h.t.Fatalf("enqueue %q: %v", item, r.Status)
	}
	return r.ID
}

func (h *harness) dequeue(at time.Time, lease time.Duration) qops.Result {
	h.t.Helper()
	return h.apply(at, qops.AppendDequeue(nil, lease))
}

// wantDequeue dequeues and checks what comes out.
func (h *harness) wantDequeue(at time.Time, lease time.Duration, item string, delivery uint32) qops.Result {
	h.t.Helper()
	r := h.dequeue(at, lease)
	if r.Status != qops.StatusOK || string(r.Payload) != item || r.Delivery != delivery || !r.Deadline.Equal(at.Add(lease)) && at.After(h.clock()) {
		h.t.Fatalf("dequeue at %v: %v %q delivery %d deadline %v, want %q delivery %d", at.Sub(t0), r.Status, r.Payload, r.Delivery, r.Deadline, item, delivery)
	}
	return r
}

func (h *harness) lengths() qops.Lengths {
	h.t.Helper()
	b, err := h.q.Query(context.Background(), qops.AppendLenQuery(nil))
	if err != nil {
		h.t.Fatal(err)
	}
	var l qops.Lengths
	if err := qops.DecodeLengths(b, &l); err != nil {
		h.t.Fatal(err)
	}
	return l
}

// keys counts the keys in the queue's store.
func (h *harness) keys() int {
	h.t.Helper()
	it := h.q.db.NewIter(nil)
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	return n
}

func (h *harness) clock() time.Time { return qops.TimeOf(h.q.meta.clock) }

func (h *harness) wantLengths(ready, leased, dead uint64) {
	h.t.Helper()
	if l := h.lengths(); l.Ready != ready || l.Leased != leased || l.Dead != dead {
		h.t.Fatalf("lengths %d ready, %d leased, %d dead; want %d, %d, %d", l.Ready, l.Leased, l.Dead, ready, leased, dead)
	}
}

func (h *harness) peek(list qops.List) []qops.Item {
	h.t.Helper()
	b, err := h.q.Query(context.Background(), qops.AppendPeekQuery(nil, list, qops.MaxPeek))
	if err != nil {
		h.t.Fatal(err)
	}
	items, err := qops.DecodePeek(b)
	if err != nil {
		h.t.Fatal(err)
	}
	return items
}

// state is every list's items, for comparing two queues.
func (h *harness) state() string {
	h.t.Helper()
	l := h.lengths()
	s := fmt.Sprintf("%d/%d/%d clock %v;", l.Ready, l.Leased, l.Dead, l.Clock)
	for _, list := range []qops.List{qops.ListReady, qops.ListLeased, qops.ListDead} {
		s += list.String() + ":"
		for _, it := range h.peek(list) {
			s += fmt.Sprintf(" %d/%d/%v/%q", it.ID, it.Deliveries, it.Deadline, it.Payload)
		}
		s += ";"
	}
	return s
}

func TestFIFOAndAck(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for i, s := range []string{"a", "b", "c"} {
		if id := h.enqueue(t0, s); id != uint64(i+1) {
			t.Fatalf("item %q got id %d", s, id)
		}
	}
	h.wantLengths(3, 0, 0)
	a := h.wantDequeue(t0, time.Minute, "a", 1)
	b := h.wantDequeue(t0, time.Minute, "b", 1)
	h.wantLengths(1, 2, 0)
	if r := h.apply(t0, qops.AppendAck(nil, a.ID, a.Delivery)); r.Status != qops.StatusOK {
		t.Fatalf("ack: %v", r.Status)
	}
	// A second ack, or one under another delivery number, finds nothing.
	if r := h.apply(t0, qops.AppendAck(nil, a.ID, a.Delivery)); r.Status != qops.StatusLost {
		t.Fatalf("second ack: %v", r.Status)
	}
	if r := h.apply(t0, qops.AppendAck(nil, b.ID, 2)); r.Status != qops.StatusLost {
		t.Fatalf("ack of another delivery: %v", r.Status)
	}
	h.wantLengths(1, 1, 0)
	if items := h.peek(qops.ListReady); len(items) != 1 || string(items[0].Payload) != "c" || items[0].Deliveries != 0 {
		t.Fatalf("ready list %+v", items)
	}
	if items := h.peek(qops.ListLeased); len(items) != 1 || items[0].ID != b.ID || !items[0].Deadline.Equal(t0.Add(time.Minute)) {
		t.Fatalf("leased list %+v", items)
	}
	h.wantDequeue(t0, time.Minute, "c", 1)
	if r := h.dequeue(t0, time.Minute); r.Status != qops.StatusEmpty {
		t.Fatalf("dequeue of an empty queue: %v", r.Status)
	}
}

// TestLeaseExpiry: an item comes back, at its place, once an op's time
// reaches its deadline, and not before.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.enqueue(t0, "a")
	h.enqueue(t0, "b")
	a := h.wantDequeue(t0, 10*time.Second, "a", 1)
	h.wantDequeue(t0.Add(time.Second), time.Hour, "b", 1)
	h.enqueue(t0.Add(2*time.Second), "c")
	// 1ns before the deadline: still leased, c comes next.
	if r := h.dequeue(t0.Add(10*time.Second-1), time.Hour); string(r.Payload) != "c" {
		t.Fatalf("before the deadline: %v %q", r.Status, r.Payload)
	}
	h.enqueue(t0.Add(10*time.Second-1), "d")
	h.wantLengths(1, 3, 0)
	// At the deadline, a is ready again, ahead of d (enqueue order), and an
	// ack of its first delivery is too late.
	if r := h.apply(t0.Add(10*time.Second), qops.AppendAck(nil, a.ID, 1)); r.Status != qops.StatusLost {
		t.Fatalf("ack after the deadline: %v", r.Status)
	}
	h.wantLengths(2, 2, 0)
	h.wantDequeue(t0.Add(11*time.Second), time.Second, "a", 2)
	h.wantDequeue(t0.Add(11*time.Second), time.Second, "d", 1)
}

// TestExtend: an extended lease expires at its new deadline.
func TestExtend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.enqueue(t0, "a")
	a := h.wantDequeue(t0, 10*time.Second, "a", 1)
	r := h.apply(t0.Add(5*time.Second), qops.AppendExtend(nil, a.ID, a.Delivery, 20*time.Second))
	if r.Status != qops.StatusOK || !r.Deadline.Equal(t0.Add(25*time.Second)) {
		t.Fatalf("extend: %v deadline %v", r.Status, r.Deadline)
	}
	if r := h.dequeue(t0.Add(24*time.Second), time.Second); r.Status != qops.StatusEmpty {
		t.Fatalf("at the old deadline: %v", r.Status)
	}
	h.wantDequeue(t0.Add(25*time.Second), time.Second, "a", 2)
	// Extending a lost delivery does nothing.
	if r := h.apply(t0.Add(25*time.Second), qops.AppendExtend(nil, a.ID, 1, time.Hour)); r.Status != qops.StatusLost {
		t.Fatalf("extend of an old delivery: %v", r.Status)
	}
}

// TestClockNeverGoesBack: an op from a leader whose clock is behind
// neither un-expires a lease nor gets a deadline before the clock.
func TestClockNeverGoesBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.enqueue(t0, "a")
	h.enqueue(t0, "b")
	h.wantDequeue(t0, 10*time.Second, "a", 1)
	// The next leader's clock is an hour behind: its times count as t0.
	r := h.dequeue(t0.Add(-time.Hour), 10*time.Second)
	if string(r.Payload) != "b" || !r.Deadline.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("dequeue behind the clock: %q deadline %v", r.Payload, r.Deadline)
	}
	// An op at t0+10s expires both; one behind the clock afterwards sees
	// them expired still.
	h.enqueue(t0.Add(10*time.Second), "c")
	h.wantLengths(3, 0, 0)
	h.wantDequeue(t0.Add(-time.Hour), time.Second, "a", 2)
	// An op without a time (an older node's) leaves the clock alone.
	h.enqueue(time.Time{}, "d")
	if got := h.lengths().Clock; !got.Equal(t0.Add(10 * time.Second)) {
		t.Fatalf("clock %v", got)
	}
}

// TestDeadLetter: after max_deliveries expired leases an item goes to
// the dead-letter list, and stays there.
func TestDeadLetter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, map[string]string{OptionMaxDeliveries: "2"})
	h.enqueue(t0, "poison")
	h.enqueue(t0, "ok")
	at := t0
	h.wantDequeue(at, time.Second, "poison", 1)
	at = at.Add(time.Second)
	h.wantDequeue(at, time.Second, "poison", 2)
	at = at.Add(time.Second)
	// Its second lease has expired: dead-lettered, not handed out again.
	h.wantDequeue(at, time.Second, "ok", 1)
	h.wantLengths(0, 1, 1)
	dead := h.peek(qops.ListDead)
	if len(dead) != 1 || string(dead[0].Payload) != "poison" || dead[0].Deliveries != 2 || !dead[0].Deadline.IsZero() {
		t.Fatalf("dead letters %+v", dead)
	}
	at = at.Add(time.Hour)
	h.wantDequeue(at, time.Second, "ok", 2)
	at = at.Add(time.Hour)
	if r := h.dequeue(at, time.Second); r.Status != qops.StatusEmpty {
		t.Fatalf("after the dead letters: %v %q", r.Status, r.Payload)
	}
	h.wantLengths(0, 0, 2)
}

// TestInvalidOps: a malformed op is a rejection in its result; it
// changes nothing, and the queue goes on.
func TestInvalidOps(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.enqueue(t0, "a")
	before := h.state()
	for _, p := range [][]byte{nil, {9}, {qops.Version, 77}, qops.AppendDequeue(nil, 0), qops.AppendDequeue(nil, qops.MaxLease+1), qops.AppendAck(nil, 1, 1)[:5]} {
		if r := h.apply(t0, p); r.Status != qops.StatusInvalid {
			t.Fatalf("op % x: %v", p, r.Status)
		}
	}
	if after := h.state(); after != before {
		t.Fatalf("invalid ops changed the state:\n%s\n%s", before, after)
	}
	if _, err := h.q.Query(context.Background(), []byte("nonsense")); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("bad query: %v", err)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	for _, opts := range []map[string]string{
		{OptionMaxDeliveries: "0"}, {OptionMaxDeliveries: "x"}, {OptionMaxDeliveries: "1000001"}, {"lease": "1s"},
	} {
		if _, err := New(replicator.PluginContext{Dir: t.TempDir(), Options: opts}); !errors.Is(err, lockstitch.ErrInvalidArgument) {
			t.Fatalf("options %v: %v", opts, err)
		}
	}
	sm, err := New(replicator.PluginContext{Dir: t.TempDir(), Options: map[string]string{OptionMaxDeliveries: "1"}})
	if err != nil || sm.(*Queue).maxDeliveries != 1 {
		t.Fatalf("max_deliveries=1: %v", err)
	}
	sm.Close() // never opened
}

// TestReopen: Open returns the LSN of the last op applied and the state
// is back as it was.
func TestReopen(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.enqueue(t0, "a")
	h.enqueue(t0, "b")
	h.wantDequeue(t0, time.Minute, "a", 1)
	if lsn, err := h.q.Sync(); err != nil || lsn != 3 {
		t.Fatalf("sync: %d %v", lsn, err)
	}
	h.enqueue(t0, "c") // applied, not synced: a process crash keeps it
	before := h.state()
	if err := h.q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.q.Close(); err != nil {
		t.Fatal("second close:", err)
	}
	if lsn := h.open(nil); lsn != 4 {
		t.Fatalf("reopened at LSN %d, want 4", lsn)
	}
	if after := h.state(); after != before {
		t.Fatalf("reopened state\n%s\nwant\n%s", after, before)
	}
	if id := h.enqueue(t0, "d"); id != 4 {
		t.Fatalf("next id %d after reopening", id)
	}
}

// TestSnapshotRestore: a restored queue is the same as its source, and
// applies the next ops the same way.
func TestSnapshotRestore(t *testing.T) {
	t.Parallel()
	src := newHarness(t, nil)
	for i := range 5 {
		src.enqueue(t0, fmt.Sprint("item", i))
	}
	src.wantDequeue(t0, time.Minute, "item0", 1)
	src.wantDequeue(t0, time.Second, "item1", 1)
	snap, err := src.q.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Later ops do not reach the snapshot.
	src.enqueue(t0, "late")
	var buf bytes.Buffer
	if err := snap.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := newHarness(t, nil)
	dst.enqueue(t0, "discarded")
	if err := dst.q.Restore(bytes.NewReader(buf.Bytes()), 7); err != nil {
		t.Fatal(err)
	}
	dst.lsn = 7
	dst.enqueue(t0, "late")
	if a, b := src.state(), dst.state(); a != b {
		t.Fatalf("restored state\n%s\nsource\n%s", b, a)
	}
	// Both go on alike, and the restore is durable.
	src.wantDequeue(t0.Add(time.Second), time.Minute, "item1", 2)
	dst.wantDequeue(t0.Add(time.Second), time.Minute, "item1", 2)
	dst.q.Close()
	if lsn := dst.open(nil); lsn != 9 {
		t.Fatalf("restored queue reopened at LSN %d", lsn)
	}
	if a, b := src.state(), dst.state(); a != b {
		t.Fatalf("reopened restored state\n%s\nsource\n%s", b, a)
	}
	// A snapshot at another LSN than the one the replicator names, or not
	// a queue's, is refused.
	if err := dst.q.Restore(bytes.NewReader(buf.Bytes()), 8); err == nil {
		t.Fatal("restore at the wrong LSN succeeded")
	}
	if err := dst.q.Restore(bytes.NewReader([]byte("lslog")), 7); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
}

// TestRestoreCutShort: a restore whose stream ends early fails, and the
// next Open discards what it wrote and starts empty, at LSN 0; a
// snapshot being written out meanwhile keeps its view.
func TestRestoreCutShort(t *testing.T) {
	t.Parallel()
	src := newHarness(t, nil)
	big := strings.Repeat("x", 100<<10) // 10 MiB in all: the restore commits some before it fails
	for i := range 100 {
		src.enqueue(t0, fmt.Sprint(i, big))
	}
	snap, err := src.q.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	var full bytes.Buffer
	if err := snap.WriteTo(context.Background(), &full); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := newHarness(t, nil)
	dst.enqueue(t0, "old")
	before := dst.state()
	pending, err := dst.q.PrepareSnapshot() // written out after the restore
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.q.Restore(bytes.NewReader(full.Bytes()[:full.Len()/2]), 100); err == nil {
		t.Fatal("a restore from half a snapshot succeeded")
	}
	var old bytes.Buffer
	if err := pending.WriteTo(context.Background(), &old); err != nil {
		t.Fatal(err)
	}
	pending.Release()
	dst.q.Close()
	if lsn := dst.open(nil); lsn != 0 {
		t.Fatalf("reopened after a restore cut short at LSN %d", lsn)
	}
	if n := dst.keys(); n != 0 {
		t.Fatalf("reopened after a restore cut short with %d keys", n)
	}
	// The snapshot taken before the restore still holds the old state.
	if err := dst.q.Restore(bytes.NewReader(old.Bytes()), 1); err != nil {
		t.Fatal(err)
	}
	if after := dst.state(); after != before {
		t.Fatalf("the snapshot written during the restore holds\n%s\nwant\n%s", after, before)
	}
	// The whole snapshot (written in many batches) restores the source.
	if err := dst.q.Restore(bytes.NewReader(full.Bytes()), 100); err != nil {
		t.Fatal(err)
	}
	if a, b := src.state(), dst.state(); a != b {
		t.Fatal("the restored queue differs from its source")
	}
}

// TestSnapshotOutlivesClose: a snapshot still being written when its
// queue closes fails with ErrClosed, and its release is harmless.
func TestSnapshotOutlivesClose(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.enqueue(t0, "a")
	snap, err := h.q.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	kept, err := h.q.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	kept.Release()
	if err := h.q.Close(); err != nil {
		t.Fatal(err)
	}
	if err := snap.WriteTo(context.Background(), io.Discard); !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("writing a snapshot of a closed queue: %v", err)
	}
	snap.Release()
	if _, err := h.q.PrepareSnapshot(); !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("a snapshot of a closed queue: %v", err)
	}
}

// TestChunkingDoesNotMatter: replicas get the same ops in Apply calls of
// different sizes (a replay, a catch-up); they must end in the same
// state. Random ops at random times, applied one by one on one queue and
// in random chunks on another, which is sometimes closed and reopened.
func TestChunkingDoesNotMatter(t *testing.T) {
	t.Parallel()
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	opts := map[string]string{OptionMaxDeliveries: "3"}
	one, chunked := newHarness(t, opts), newHarness(t, opts)
	var ops []replicator.Op
	at := t0
	for i := range 2000 {
		at = at.Add(time.Duration(rng.IntN(2000)-500) * time.Millisecond) // sometimes back
		var p []byte
		switch rng.IntN(5) {
		case 0, 1:
			p = qops.AppendEnqueue(nil, []byte(fmt.Sprint(i)))
		case 2:
			p = qops.AppendDequeue(nil, time.Duration(1+rng.IntN(5))*time.Second)
		case 3:
			p = qops.AppendAck(nil, uint64(1+rng.IntN(i+1)), uint32(1+rng.IntN(3)))
		case 4:
			p = qops.AppendExtend(nil, uint64(1+rng.IntN(i+1)), uint32(1+rng.IntN(3)), time.Second)
		}
		ops = append(ops, replicator.Op{LSN: lockstitch.LSN(i + 1), Time: at, Payload: p})
	}
	want := make([][]byte, len(ops))
	for i := range ops {
		res := make([][]byte, 1)
		if err := one.q.Apply(ops[i:i+1], res); err != nil {
			t.Fatal(err)
		}
		want[i] = append([]byte(nil), res[0]...)
	}
	for i := 0; i < len(ops); {
		if rng.IntN(8) == 0 {
			// A restart: the store is reopened (and the scan bounds kept
			// in memory start over).
			if err := chunked.q.Close(); err != nil {
				t.Fatal(err)
			}
			if lsn := chunked.open(opts); lsn != lockstitch.LSN(i) {
				t.Fatalf("reopened at LSN %d after %d ops", lsn, i)
			}
		}
		n := min(1+rng.IntN(64), len(ops)-i)
		res := make([][]byte, n)
		if err := chunked.q.Apply(ops[i:i+n], res); err != nil {
			t.Fatal(err)
		}
		for j := range res {
			if !bytes.Equal(res[j], want[i+j]) {
				t.Fatalf("op %d: result % x, applied alone % x", i+j+1, res[j], want[i+j])
			}
		}
		i += n
	}
	if a, b := one.state(), chunked.state(); a != b {
		t.Fatalf("states differ:\n%s\n%s", a, b)
	}
	if l := one.lengths(); l.Dead == 0 || l.Ready == 0 {
		t.Fatalf("the ops did not reach the lists: %+v", l)
	}
}

// BenchmarkApply measures items' whole lives in the plugin, in Apply
// calls of 64 ops as a busy partition gets them: an iteration enqueues,
// dequeues and acknowledges 64 items (ns/item divides by them).
func BenchmarkApply(b *testing.B) {
	sm, err := New(replicator.PluginContext{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	q := sm.(*Queue)
	if _, err := q.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	const chunk = 64
	item := bytes.Repeat([]byte("x"), 100)
	ops := make([]replicator.Op, chunk)
	res := make([][]byte, chunk)
	var lsn lockstitch.LSN
	at := t0
	apply := func(p func(i int) []byte) {
		for i := range ops {
			lsn++
			ops[i] = replicator.Op{LSN: lsn, Time: at, Payload: p(i)}
		}
		if err := q.Apply(ops, res); err != nil {
			b.Fatal(err)
		}
	}
	var ids [chunk]uint64
	b.ReportAllocs()
	b.SetBytes(chunk * int64(len(item)))
	for b.Loop() {
		apply(func(int) []byte { return qops.AppendEnqueue(nil, item) })
		apply(func(int) []byte { return qops.AppendDequeue(nil, time.Minute) })
		for i := range res {
			var r qops.Result
			if err := qops.DecodeResult(res[i], &r); err != nil || r.Status != qops.StatusOK {
				b.Fatalf("dequeue: %v %v", r.Status, err)
			}
			ids[i] = r.ID
		}
		apply(func(i int) []byte { return qops.AppendAck(nil, ids[i], 1) })
		at = at.Add(time.Millisecond)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*chunk), "ns/item")
}
