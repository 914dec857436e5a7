package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/vfs"

	"github.com/lockstitch/lockstitch"
	kvops "github.com/lockstitch/lockstitch/ops/kv"
	"github.com/lockstitch/lockstitch/replicator"
)

// harness drives one plugin as a replicator would.
type harness struct {
	t   *testing.T
	fs  vfs.FS
	p   *Plugin
	lsn lockstitch.LSN
}

func newHarness(t *testing.T, fs vfs.FS) *harness {
	t.Helper()
	h := &harness{t: t, fs: fs}
	// The replicator creates the plugin's directory, durably.
	if err := fs.MkdirAll("/kv", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syncDir(fs, "/"); err != nil {
		t.Fatal(err)
	}
	h.open()
	t.Cleanup(func() { h.p.Close() })
	return h
}

// open opens a new plugin instance on the harness's files and returns
// the LSN it reports.
func (h *harness) open() lockstitch.LSN {
	h.t.Helper()
	sm, err := New(replicator.PluginContext{Dir: "/kv", Options: nil})
	if err != nil {
		h.t.Fatal(err)
	}
	h.p = sm.(*Plugin)
	h.p.fs = h.fs
	lsn, err := h.p.Open(context.Background())
	if err != nil {
		h.t.Fatalf("Open: %v", err)
	}
	h.lsn = lsn
	return lsn
}

// apply applies payloads as one Apply call with the next LSNs and returns
// their decoded results.
func (h *harness) apply(payloads ...[]byte) []kvops.Result {
	h.t.Helper()
	ops := make([]replicator.Op, len(payloads))
	for i, pl := range payloads {
		h.lsn++
		ops[i] = replicator.Op{LSN: h.lsn, Epoch: 1, Payload: pl}
	}
	results := make([][]byte, len(ops))
	if err := h.p.Apply(ops, results); err != nil {
		h.t.Fatalf("Apply: %v", err)
	}
	out := make([]kvops.Result, len(results))
	for i, b := range results {
		if err := kvops.DecodeResult(bytes.Clone(b), &out[i]); err != nil {
			h.t.Fatalf("result %d: %v", i, err)
		}
		if out[i].LSN != ops[i].LSN {
			h.t.Fatalf("result %d at LSN %d, applied at %d", i, out[i].LSN, ops[i].LSN)
		}
	}
	return out
}

func (h *harness) one(payload []byte) kvops.Result {
	h.t.Helper()
	return h.apply(payload)[0]
}

func (h *harness) query(req []byte) kvops.Result {
	h.t.Helper()
	b, err := h.p.Query(context.Background(), req)
	if err != nil {
		h.t.Fatalf("Query: %v", err)
	}
	var res kvops.Result
	if err := kvops.DecodeResult(b, &res); err != nil {
		h.t.Fatalf("query result: %v", err)
	}
	return res
}

func (h *harness) get(key string) kvops.Result {
	h.t.Helper()
	return h.query(kvops.AppendGet(nil, []byte(key)))
}

// scan returns a scan's items as "key=value@version" and its More.
func (h *harness) scan(prefix, start string, limit int) ([]string, bool) {
	h.t.Helper()
	res := h.query(kvops.AppendScan(nil, []byte(prefix), []byte(start), limit))
	if res.Status != kvops.StatusOK {
		h.t.Fatalf("scan: %s", res.Status)
	}
	var out []string
	rest := res.Items
	for range res.Count {
		var it kvops.Item
		var err error
		if rest, err = kvops.NextItem(rest, &it); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%s@%d", it.Key, it.Value, it.Version))
	}
	return out, res.More
}

// dump is every key as "key=value@version" (a value of more than 16
// bytes as its length), in order, scanned page by page.
func (h *harness) dump() []string {
	h.t.Helper()
	var out []string
	start := []byte(nil)
	for range 1000 {
		res := h.query(kvops.AppendScan(nil, nil, start, kvops.MaxScanLimit))
		rest := res.Items
		for range res.Count {
			var it kvops.Item
			var err error
			if rest, err = kvops.NextItem(rest, &it); err != nil {
				h.t.Fatal(err)
			}
			v := string(it.Value)
			if len(v) > 16 {
				v = fmt.Sprintf("(%d bytes)", len(v))
			}
			out = append(out, fmt.Sprintf("%s=%s@%d", it.Key, v, it.Version))
			start = append(bytes.Clone(it.Key), 0)
		}
		if !res.More {
			return out
		}
	}
	h.t.Fatal("a scan that never ends")
	return nil
}

func TestApplyResultsAndVersions(t *testing.T) {
	h := newHarness(t, vfs.NewMem())
	r := h.one(kvops.AppendPut(nil, []byte("k"), []byte("v1")))
	if r.Op != kvops.OpPut || r.Status != kvops.StatusOK || r.Version != 1 {
		t.Fatalf("put: %+v", r)
	}
	if g := h.get("k"); g.Status != kvops.StatusOK || string(g.Value) != "v1" || g.Version != 1 || g.LSN != 1 {
		t.Fatalf("get: %+v", g)
	}
	// A cas on a stale version is rejected, says the current version,
	// changes nothing, and is still applied (its LSN counts).
	r = h.one(kvops.AppendCAS(nil, []byte("k"), []byte("v2"), 7))
	if r.Status != kvops.StatusMismatch || r.Version != 1 || r.LSN != 2 {
		t.Fatalf("stale cas: %+v", r)
	}
	if g := h.get("k"); string(g.Value) != "v1" || g.Version != 1 || g.LSN != 2 {
		t.Fatalf("get after a stale cas: %+v", g)
	}
	r = h.one(kvops.AppendCAS(nil, []byte("k"), []byte("v2"), 1))
	if r.Status != kvops.StatusOK || r.Version != 3 {
		t.Fatalf("cas: %+v", r)
	}
	// cas with version 0: create only if absent.
	if r = h.one(kvops.AppendCAS(nil, []byte("k"), []byte("x"), 0)); r.Status != kvops.StatusMismatch || r.Version != 3 {
		t.Fatalf("create over an existing key: %+v", r)
	}
	if r = h.one(kvops.AppendCAS(nil, []byte("new"), []byte("x"), 0)); r.Status != kvops.StatusOK || r.Version != 5 {
		t.Fatalf("create: %+v", r)
	}
	if r = h.one(kvops.AppendCASDelete(nil, []byte("new"), 4)); r.Status != kvops.StatusMismatch || r.Version != 5 {
		t.Fatalf("stale cas delete: %+v", r)
	}
	if r = h.one(kvops.AppendCASDelete(nil, []byte("new"), 5)); r.Status != kvops.StatusOK {
		t.Fatalf("cas delete: %+v", r)
	}
	if r = h.one(kvops.AppendDelete(nil, []byte("k"))); r.Status != kvops.StatusOK || r.Version != 8 {
		t.Fatalf("delete: %+v", r)
	}
	if r = h.one(kvops.AppendDelete(nil, []byte("k"))); r.Status != kvops.StatusNotFound || r.Version != 0 {
		t.Fatalf("delete of an absent key: %+v", r)
	}
	if g := h.get("k"); g.Status != kvops.StatusNotFound || g.LSN != 9 {
		t.Fatalf("get of a deleted key: %+v", g)
	}
	// Bad requests are results, not errors, and change nothing.
	for _, bad := range [][]byte{{1}, {9, 9}, kvops.AppendGet(nil, []byte("k")), kvops.AppendPut(nil, nil, nil)} {
		if r = h.one(bad); r.Status != kvops.StatusBadRequest || len(r.Value) == 0 {
			t.Fatalf("bad request %x: %+v", bad, r)
		}
	}
	if g := h.query(kvops.AppendPut(nil, []byte("k"), nil)); g.Status != kvops.StatusBadRequest {
		t.Fatalf("put as a query: %+v", g)
	}
	if d := h.dump(); len(d) != 0 {
		t.Fatalf("state %v, want none", d)
	}
}

func TestScan(t *testing.T) {
	h := newHarness(t, vfs.NewMem())
	for _, k := range []string{"a/1", "a/2", "a/3", "a/4", "b/1", "a", "a\xff", "a\xff\xff"} {
		h.one(kvops.AppendPut(nil, []byte(k), []byte("v")))
	}
	check := func(prefix, start string, limit int, wantMore bool, want ...string) {
		t.Helper()
		got, more := h.scan(prefix, start, limit)
		var keys []string
		for _, s := range got {
			keys = append(keys, s[:bytes.IndexByte([]byte(s), '=')])
		}
		if fmt.Sprint(keys) != fmt.Sprint(want) || more != wantMore {
			t.Fatalf("scan(%q, %q, %d) = %q more %v, want %q more %v", prefix, start, limit, keys, more, want, wantMore)
		}
	}
	check("a/", "", 0, false, "a/1", "a/2", "a/3", "a/4")
	check("a/", "", 2, true, "a/1", "a/2")
	check("a/", "a/2\x00", 2, false, "a/3", "a/4")
	check("a/", "a/4", 1, false, "a/4")
	check("a/", "z", 0, false)
	check("", "a/3", 3, true, "a/3", "a/4", "a\xff")
	check("a\xff", "", 0, false, "a\xff", "a\xff\xff")
	check("b", "", 0, false, "b/1")
	check("c", "", 0, false)
	if items, _ := h.scan("a/1", "", 0); items[0] != "a/1=v@1" {
		t.Fatalf("item %q", items[0])
	}
}

func TestBatchAtomic(t *testing.T) {
	h := newHarness(t, vfs.NewMem())
	h.one(kvops.AppendPut(nil, []byte("y"), []byte("0"))) // version 1
	// A batch whose cas does not match changes nothing.
	r := h.one(kvops.AppendBatch(nil, []kvops.BatchOp{
		{Op: kvops.OpPut, Key: []byte("x"), Value: []byte("1")},
		{Op: kvops.OpCAS, Key: []byte("y"), Value: []byte("1"), Version: 5},
		{Op: kvops.OpDelete, Key: []byte("y")},
	}))
	if r.Status != kvops.StatusMismatch || r.Count != 3 {
		t.Fatalf("batch: %+v", r)
	}
	want := []kvops.OpResult{{Status: kvops.StatusAborted}, {Status: kvops.StatusMismatch, Version: 1}, {Status: kvops.StatusAborted}}
	rest := r.Items
	for i, w := range want {
		o, rr, err := kvops.NextOpResult(rest)
		if err != nil || o != w {
			t.Fatalf("batch op %d: %+v, %v; want %+v", i, o, err, w)
		}
		rest = rr
	}
	if d := h.dump(); fmt.Sprint(d) != "[y=0@1]" {
		t.Fatalf("after an aborted batch: %v", d)
	}
	// A batch sees its own earlier ops: a cas on a key it put matches the
	// batch's LSN, a create-if-absent of that key does not.
	r = h.one(kvops.AppendBatch(nil, []kvops.BatchOp{
		{Op: kvops.OpPut, Key: []byte("x"), Value: []byte("1")},
		{Op: kvops.OpCAS, Key: []byte("x"), Value: []byte("2"), Version: 3},
		{Op: kvops.OpCAS, Key: []byte("y"), Version: 1, Delete: true},
		{Op: kvops.OpDelete, Key: []byte("gone")},
	}))
	if r.Status != kvops.StatusOK || r.Version != 3 {
		t.Fatalf("batch: %+v", r)
	}
	want = []kvops.OpResult{{Status: kvops.StatusOK, Version: 3}, {Status: kvops.StatusOK, Version: 3}, {Status: kvops.StatusOK, Version: 3}, {Status: kvops.StatusNotFound}}
	rest = r.Items
	for i, w := range want {
		o, rr, _ := kvops.NextOpResult(rest)
		if o != w {
			t.Fatalf("batch op %d: %+v, want %+v", i, o, w)
		}
		rest = rr
	}
	if d := h.dump(); fmt.Sprint(d) != "[x=2@3]" {
		t.Fatalf("after a batch: %v", d)
	}
	r = h.one(kvops.AppendBatch(nil, []kvops.BatchOp{
		{Op: kvops.OpDelete, Key: []byte("x")},
		{Op: kvops.OpCAS, Key: []byte("x"), Value: []byte("3"), Version: 0},
	}))
	if r.Status != kvops.StatusOK {
		t.Fatalf("delete then create in a batch: %+v", r)
	}
	if d := h.dump(); fmt.Sprint(d) != "[x=3@4]" {
		t.Fatalf("after delete and create: %v", d)
	}
}

// TestOpenAfterCrash: ops applied after the last Sync are lost in a crash;
// Open reports the last synced LSN, and replaying the rest gives the same
// state and results as without the crash.
func TestOpenAfterCrash(t *testing.T) {
	fs := vfs.NewStrictMem()
	h := newHarness(t, fs)
	h.apply(kvops.AppendPut(nil, []byte("a"), []byte("1")), kvops.AppendPut(nil, []byte("b"), []byte("1")))
	if lsn, err := h.p.Sync(); err != nil || lsn != 2 {
		t.Fatalf("Sync = %d, %v; want 2", lsn, err)
	}
	lost := [][]byte{
		kvops.AppendCAS(nil, []byte("a"), []byte("2"), 1),
		kvops.AppendDelete(nil, []byte("b")),
		kvops.AppendPut(nil, []byte("c"), []byte("3")),
	}
	before := h.apply(lost...)
	want := h.dump()

	// Crash: nothing after the last sync survives.
	fs.SetIgnoreSyncs(true)
	h.p.Close()
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)
	if lsn := h.open(); lsn != 2 {
		t.Fatalf("Open after a crash = %d, want 2 (the last synced LSN)", lsn)
	}
	if d := h.dump(); fmt.Sprint(d) != "[a=1@1 b=1@2]" {
		t.Fatalf("state after the crash: %v", d)
	}
	after := h.apply(lost...)
	for i := range before {
		if before[i].Status != after[i].Status || before[i].Version != after[i].Version {
			t.Fatalf("replayed op %d: %+v, first time %+v", i, after[i], before[i])
		}
	}
	if d := h.dump(); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Fatalf("state after replay %v, want %v", d, want)
	}
	// A clean close and open keeps what was synced.
	if _, err := h.p.Sync(); err != nil {
		t.Fatal(err)
	}
	h.p.Close()
	if lsn := h.open(); lsn != 5 {
		t.Fatalf("Open = %d, want 5", lsn)
	}
}

func TestSnapshotRestore(t *testing.T) {
	src := newHarness(t, vfs.NewMem())
	// Enough data for several blocks.
	val := bytes.Repeat([]byte("v"), 1000)
	for i := range 300 {
		src.one(kvops.AppendPut(nil, fmt.Appendf(nil, "key%04d", i), val))
	}
	src.one(kvops.AppendDelete(nil, []byte("key0007")))
	// A value larger than a block.
	src.one(kvops.AppendPut(nil, []byte("key0008"), bytes.Repeat([]byte("x"), 3<<20)))
	snap, err := src.p.PrepareSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := src.dump()
	// Writes after PrepareSnapshot are not in it.
	src.one(kvops.AppendPut(nil, []byte("later"), nil))
	var buf bytes.Buffer
	if err := snap.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	image := buf.Bytes()

	dst := newHarness(t, vfs.NewMem())
	dst.one(kvops.AppendPut(nil, []byte("stale"), nil))
	if err := dst.p.Restore(bytes.NewReader(image), 302); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if d := dst.dump(); fmt.Sprint(d) != fmt.Sprint(want) {
		t.Fatalf("restored %d keys, want %d", len(d), len(want))
	}
	if g := dst.get("key0001"); g.LSN != 302 || g.Version != 2 {
		t.Fatalf("restored get: %+v", g)
	}
	// The restored state is durable and reopens at the snapshot's LSN.
	dst.p.Close()
	if lsn := dst.open(); lsn != 302 {
		t.Fatalf("Open after Restore = %d, want 302", lsn)
	}
	if d := dst.dump(); len(d) != len(want) {
		t.Fatalf("reopened with %d keys, want %d", len(d), len(want))
	}

	// A damaged snapshot is refused and changes nothing.
	bad := map[string][]byte{
		"truncated":   image[:len(image)-9],
		"no end":      image[:len(image)-16],
		"flipped bit": flip(image, len(image)/2),
		"header":      flip(image, 10),
		"count":       flip(image, len(image)-3),
	}
	for name, b := range bad {
		err := dst.p.Restore(bytes.NewReader(b), 302)
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Restore = %v, want ErrCorrupt", name, err)
		}
		if d := dst.dump(); len(d) != len(want) {
			t.Fatalf("%s: a refused restore left %d keys, want %d", name, len(d), len(want))
		}
	}
	if err := dst.p.Restore(bytes.NewReader(image), 303); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Restore at another LSN = %v, want ErrCorrupt", err)
	}
	// An empty state round-trips too.
	empty := newHarness(t, vfs.NewMem())
	s, _ := empty.p.PrepareSnapshot()
	buf.Reset()
	if err := s.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	s.Release()
	if err := dst.p.Restore(&buf, 0); err != nil {
		t.Fatal(err)
	}
	if d := dst.dump(); len(d) != 0 {
		t.Fatalf("after restoring an empty snapshot: %v", d)
	}
}

// TestSnapshotOutlivesClose: a snapshot being written keeps its database
// open after the plugin closes (the replicator may release it later).
func TestSnapshotOutlivesClose(t *testing.T) {
	h := newHarness(t, vfs.NewMem())
	h.one(kvops.AppendPut(nil, []byte("k"), []byte("v")))
	s, _ := h.p.PrepareSnapshot()
	if err := h.p.Close(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	s.Release()
	if n := binary.LittleEndian.Uint64(buf.Bytes()[buf.Len()-8:]); n != 1 {
		t.Fatalf("snapshot of %d keys, want 1", n)
	}
	h.open()
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func TestOptionsRefused(t *testing.T) {
	if _, err := New(replicator.PluginContext{Options: map[string]string{"x": "1"}}); err == nil {
		t.Fatal("New accepted an unknown option")
	}
}

// FuzzRestore feeds Restore arbitrary bytes: it refuses them or restores
// a state that scans cleanly, and never panics.
func FuzzRestore(f *testing.F) {
	image := docImage()
	f.Add(image)
	f.Fuzz(func(t *testing.T, b []byte) {
		h := newHarness(t, vfs.NewMem())
		if err := h.p.Restore(bytes.NewReader(b), 2); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Restore = %v, want ErrCorrupt", err)
			}
			return
		}
		d := h.dump()
		if bytes.Equal(b, image) && fmt.Sprint(d) != "[a=1@1 b=@2]" {
			t.Fatalf("the seed restores to %v", d)
		}
	})
}

// TestSnapshotFormat restores a snapshot built by the package doc's
// format, and checks that the plugin writes the same bytes for the state.
func TestSnapshotFormat(t *testing.T) {
	h := newHarness(t, vfs.NewMem())
	if err := h.p.Restore(bytes.NewReader(docImage()), 2); err != nil {
		t.Fatal(err)
	}
	if d := h.dump(); fmt.Sprint(d) != "[a=1@1 b=@2]" {
		t.Fatalf("restored %v", d)
	}
	s, _ := h.p.PrepareSnapshot()
	defer s.Release()
	var buf bytes.Buffer
	if err := s.WriteTo(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), docImage()) {
		t.Fatalf("snapshot\n%x\nwant\n%x", buf.Bytes(), docImage())
	}
}

// docImage is a snapshot at LSN 2, epoch 1, of a=1 at version 1 and b
// (empty) at version 2, built by the format of the package doc.
func docImage() []byte {
	image := append([]byte("LKVS"), 1, 0, 0, 0)
	image = binary.LittleEndian.AppendUint64(image, 2)
	image = binary.LittleEndian.AppendUint64(image, 1)
	image = binary.LittleEndian.AppendUint32(image, kvops.Checksum(image))
	var recs []byte
	for i, kv := range [][2]string{{"a", "1"}, {"b", ""}} {
		recs = binary.AppendUvarint(recs, uint64(len(kv[0])))
		recs = append(recs, kv[0]...)
		recs = binary.AppendUvarint(recs, uint64(8+len(kv[1])))
		recs = binary.LittleEndian.AppendUint64(recs, uint64(i+1))
		recs = append(recs, kv[1]...)
	}
	image = binary.LittleEndian.AppendUint32(image, uint32(len(recs)))
	image = binary.LittleEndian.AppendUint32(image, kvops.Checksum(recs))
	image = append(image, recs...)
	count := binary.LittleEndian.AppendUint64(nil, 2)
	image = binary.LittleEndian.AppendUint32(image, 0)
	image = binary.LittleEndian.AppendUint32(image, kvops.Checksum(count))
	return append(image, count...)
}
