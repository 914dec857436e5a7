package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/chaos"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
)

func TestKVCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	code, out, _ := cli(t, "kv", "-h")
	if code != 0 || !strings.Contains(out, "cas KEY VALUE --version V") {
		t.Fatalf("kv -h: %d %q", code, out)
	}
	if code, _, errOut := cli(t, "kv", "get"); code != 2 || !strings.Contains(errOut, "usage: lockstitch kv get") {
		t.Fatalf("kv get without a key: %d %q", code, errOut)
	}
	d := startDev(t)
	go io.Copy(io.Discard, d.stdout)
	t.Setenv("LOCKSTITCH_ADDR", fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", d.base+1, d.base+2, d.base+3))

	// dev's partition 2 is a kv partition, the CLI's default.
	if code, out, errOut := cli(t, "kv", "put", "greeting", "hello"); code != 0 || out != "\"greeting\" at version 1\n" {
		t.Fatalf("kv put: %d %q %q", code, out, errOut)
	}
	var got struct {
		Found     bool
		Value     []byte // base64
		ValueText string `json:"value_text"`
		Version   uint64
		LSN       uint64
		OK        bool
	}
	code, out, errOut := cli(t, "kv", "get", "greeting", "--json")
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || !got.Found || string(got.Value) != "hello" || got.ValueText != "hello" || got.Version != 1 || got.LSN != 1 {
		t.Fatalf("kv get --json: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli(t, "kv", "cas", "greeting", "bye", "--version", "7"); code != 1 || !strings.Contains(errOut, "its version is 1, not 7") {
		t.Fatalf("kv cas with a stale version: %d %q", code, errOut)
	}
	code, out, errOut = cli(t, "kv", "cas", "--version", "1", "greeting", "bye", "--json")
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || !got.OK || got.Version != 3 {
		t.Fatalf("kv cas: %d %q %q", code, out, errOut)
	}
	for i := range 5 {
		if code, _, errOut := cli(t, "kv", "put", fmt.Sprint("user/", i), fmt.Sprint("v", i)); code != 0 {
			t.Fatalf("kv put: %d %q", code, errOut)
		}
	}
	code, out, errOut = cli(t, "kv", "scan", "--prefix", "user/", "--limit", "2", "--consistency", "leader")
	if code != 0 || out != "user/0\t4\tv0\nuser/1\t5\tv1\n" || !strings.Contains(errOut, `--after "user/1"`) {
		t.Fatalf("kv scan: %d %q %q", code, out, errOut)
	}
	code, out, errOut = cli(t, "kv", "scan", "--prefix", "user/", "--after", "user/1", "--json")
	if code != 0 || !strings.Contains(out, `"key_text":"user/2"`) || !strings.Contains(out, `"more":false`) || strings.Contains(out, `"user/1"`) {
		t.Fatalf("kv scan --after: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "kv", "del", "greeting"); code != 0 || !strings.Contains(out, "deleted at LSN 9") {
		t.Fatalf("kv del: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli(t, "kv", "get", "greeting", "--consistency", "leader"); code != exitNotFound || !strings.Contains(errOut, "not found") {
		t.Fatalf("kv get of a deleted key: %d %q", code, errOut)
	}
	// Partition 1 runs the log plugin: its answers are not kv results.
	if code, _, errOut := cli(t, "kv", "get", "x", "--partition", "1"); code != 1 || !strings.Contains(errOut, "not a kv result") {
		t.Fatalf("kv get on a log partition: %d %q", code, errOut)
	}
}

// createKV creates kv partition id with replica i on node i.
func createKV(ctx context.Context, t *testing.T, c *serveCluster, cl *transport.Client, id lockstitch.PartitionID) {
	t.Helper()
	spec := transport.PartitionSpec{ID: id, Plugin: "kv", Nodes: []lockstitch.NodeID{1, 2, 3}}
	if _, err := cl.CreatePartition(ctx, spec); err != nil {
		t.Fatalf("create kv partition: %v\n%s", err, c.nodes[0].log)
	}
}

// TestKVLinearizable runs clients doing put, get and cas on a few keys
// against three serve processes, SIGKILLs the partition's leader midway
// and restarts it, records the history (randomKVOp: a write whose outcome
// the client could not learn may have been applied, at any time after its
// call; one that failed definitely was not) and checks it with porcupine.
func TestKVLinearizable(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute)
	createKV(ctx, t, c, cl, 1)

	const clients, minOps = 8, 400
	keys := []string{"a", "b", "c", "d"}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu        sync.Mutex
		history   []chaos.KVOp
		done      atomic.Int64
		restarted atomic.Bool
		wg        sync.WaitGroup
		failures  atomic.Int64
	)
	kcs := make([]*kvclient.Client, clients)
	for i := range kcs {
		ccl := c.dial(ctx)
		t.Cleanup(func() { ccl.Close() })
		kcs[i] = kvclient.New(ccl, 1)
	}
	for id := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 1))
			// What this client last read of each key: a cas expects it.
			seen := map[string]kvclient.Item{}
			for n := 0; (done.Load() < minOps || !restarted.Load()) && ctx.Err() == nil && n < 2000; n++ {
				op := randomKVOp(ctx, kcs[id], rng, id, n, keys, seen, now)
				if op.Outcome != chaos.OK {
					failures.Add(1)
					if op.Input.Op == chaos.KVGet {
						continue // a read without an answer did nothing
					}
				}
				mu.Lock()
				history = append(history, op)
				mu.Unlock()
				done.Add(1)
			}
		}()
	}

	// Kill the leader after a quarter of the ops, restart it at half.
	testutil.WaitFor(t, "100 ops", time.Minute, func() bool { return done.Load() >= minOps/4 })
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil || st.Leader == 0 {
		t.Fatalf("partition status: %+v, %v", st, err)
	}
	leader := int(st.Leader)
	c.nodes[leader-1].kill()
	t.Logf("killed node %d (the leader) after %d ops", leader, done.Load())
	testutil.WaitFor(t, "200 ops", time.Minute, func() bool { return done.Load() >= minOps/2 })
	c.nodes[leader-1] = startServe(t, c.args(leader))
	restarted.Store(true)
	t.Logf("restarted node %d after %d ops", leader, done.Load())
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("the test ran out of time")
	}

	res := porcupine.CheckOperationsTimeout(chaos.KVModel, chaos.Operations(history), time.Minute)
	t.Logf("%d ops (%d failed or indeterminate) in %v: %s", len(history), failures.Load(), time.Since(start).Round(time.Millisecond), res)
	if res != porcupine.Ok {
		t.Fatalf("the history is not linearizable (%s)", res)
	}
}

// scanAll reads every key of partition p through a client of node i
// alone, answered from that node's own state (Bounded, with a staleness
// bound no replica exceeds in a test), and checks that the state has
// applied LSN want.
func scanAll(ctx context.Context, t *testing.T, c *serveCluster, i int, p lockstitch.PartitionID, want lockstitch.LSN) []string {
	t.Helper()
	ncl := c.dial(ctx, i)
	defer ncl.Close()
	kc := kvclient.New(ncl, p)
	opts := kvclient.ReadOptions{Consistency: lockstitch.Bounded, MaxStaleness: time.Hour}
	var out []string
	req := kvclient.ScanRequest{Limit: 50}
	for {
		res, err := kc.Scan(ctx, req, opts)
		if err != nil {
			t.Fatalf("node %d: scan: %v", i, err)
		}
		if res.LSN != want {
			t.Fatalf("node %d answered at LSN %d, want %d", i, res.LSN, want)
		}
		for _, it := range res.Items {
			out = append(out, fmt.Sprintf("%s=%s@%d", it.Key, it.Value, it.Version))
		}
		if !res.More {
			return out
		}
		req.Start = res.Next
	}
}

// TestKVFollowerCrash SIGKILLs a follower's serve process while clients
// write (puts, deletes, cas, batches) and restarts it, then compares every
// key, value and version that each node holds (read from each node's own
// state) with the others'. Raft snapshots are frequent, and each syncs
// the plugin, so the follower has synced part of its state when it dies.
//
// replay: the writers pause from just before the kill until the follower
// has restarted and caught up, so the leader keeps the entries it lacks
// (writes that went on while the kill took its time compacted them away
// on a loaded machine once): it reopens its plugin at the last synced LSN
// and replays the rest.
// snapshot: the writers go on while the follower is down, the leader
// compacts its log, and the follower is restored from a snapshot (the kv
// plugin's snapshot stream, through the replicator's copy).
func TestKVFollowerCrash(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pause   bool
		logLine string
	}{
		{"replay", true, "replica opened"},
		{"snapshot", false, "replica restored from a snapshot"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kvFollowerCrash(t, tc.pause, tc.logLine)
		})
	}
}

func kvFollowerCrash(t *testing.T, pause bool, logLine string) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute, "--snapshot-entries", "48", "--compaction-overhead", "44", "--checkpoint-interval", "20ms")
	createKV(ctx, t, c, cl, 1)
	const writers, perWriter = 4, 150
	var (
		done atomic.Int64
		wg   sync.WaitGroup
		gate sync.RWMutex // writers hold it shared for each write
	)
	kc := kvclient.New(cl, 1)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 2))
			key := func() []byte { return []byte(fmt.Sprintf("k%03d", rng.IntN(500))) }
			for n := range perWriter {
				gate.RLock()
				k, val := key(), []byte(fmt.Sprintf("w%d-%d", w, n))
				var err error
				switch r := rng.IntN(10); {
				case r < 5:
					_, err = kc.Put(ctx, k, val)
				case r < 6:
					_, err = kc.Delete(ctx, k)
				case r < 8:
					item, _, gerr := kc.Get(ctx, k, kvclient.LeaderLocal)
					if gerr != nil && !errors.Is(gerr, kvclient.ErrNotFound) {
						err = gerr
						break
					}
					_, err = kc.CAS(ctx, k, val, item.Version)
				default:
					_, _, err = kc.Batch(ctx, []kvclient.BatchOp{kvclient.PutOp(k, val), kvclient.PutOp(key(), val), kvclient.DeleteOp(key())})
				}
				gate.RUnlock()
				// A retry (the follower's kill can cost a connection)
				// may find its write applied, its result lost.
				if err != nil && !errors.Is(err, kvclient.ErrConflict) && !errors.Is(err, transport.ErrResultLost) {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				done.Add(1)
			}
		}()
	}
	testutil.WaitFor(t, "250 writes", time.Minute, func() bool { return done.Load() >= 250 })
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	follower := 0
	for _, r := range st.Replicas {
		if r.Replica != st.Leader {
			follower = int(r.Replica)
			break
		}
	}
	if pause {
		gate.Lock()
	}
	c.nodes[follower-1].kill()
	t.Logf("killed node %d (a follower) after %d writes", follower, done.Load())
	// The restarted follower's log, up to when it caught up (with pause:
	// later, writes that go on may send it a snapshot on a loaded machine,
	// which is not the restart this case is about).
	var caughtUp string
	if pause {
		now, err := cl.PartitionStatus(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[follower-1] = startServe(t, c.args(follower))
		waitApplied(ctx, t, c, follower, now.Committed)
		caughtUp = c.nodes[follower-1].log.String()
		gate.Unlock()
	} else {
		testutil.WaitFor(t, "450 writes", time.Minute, func() bool { return done.Load() >= 450 })
		c.nodes[follower-1] = startServe(t, c.args(follower))
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// One more write marks the end; every node then applies up to it.
	w, err := kc.Put(ctx, []byte("end"), nil)
	if err != nil {
		t.Fatal(err)
	}
	total := w.LSN
	for i := 1; i <= 3; i++ {
		waitApplied(ctx, t, c, i, total)
	}
	want := scanAll(ctx, t, c, int(st.Leader), 1, total)
	for i := 1; i <= 3; i++ {
		got := scanAll(ctx, t, c, i, 1, total)
		if strings.Join(got, " ") != strings.Join(want, " ") {
			j := 0
			for j < min(len(got), len(want)) && got[j] == want[j] {
				j++
			}
			t.Fatalf("node %d (crashed: %v) holds %d keys, node %d %d; the first difference is at key %d: %q, %q",
				i, i == follower, len(got), st.Leader, len(want), j, append(got, "(none)")[j], append(want, "(none)")[j])
		}
	}
	t.Logf("%d writes, LSN %d; every node holds the same %d keys", done.Load(), total, len(want))
	// The restart took the path this case is about.
	if !pause {
		caughtUp = c.nodes[follower-1].log.String()
	}
	var restart []string
	for _, l := range strings.Split(caughtUp, "\n") {
		if strings.Contains(l, "replica opened") || strings.Contains(l, "replayed") || strings.Contains(l, "restored from a snapshot") {
			restart = append(restart, l)
		}
	}
	log := strings.Join(restart, "\n")
	t.Logf("node %d after its restart:\n%s", follower, log)
	if !strings.Contains(log, logLine) || (pause && strings.Contains(log, "restored from a snapshot")) || strings.Contains(log, "plugin_lsn=0 ") {
		t.Fatalf("node %d's restart has no %q, or a snapshot restore, or a plugin that synced nothing", follower, logLine)
	}
}

// waitApplied waits until node i has applied LSN lsn of partition 1.
func waitApplied(ctx context.Context, t *testing.T, c *serveCluster, i int, lsn lockstitch.LSN) {
	t.Helper()
	ncl := c.dial(ctx, i)
	defer ncl.Close()
	testutil.WaitFor(t, fmt.Sprintf("node %d to apply LSN %d", i, lsn), time.Minute, func() bool {
		ns, err := ncl.Status(ctx, c.addr(0, i))
		if err != nil {
			return false
		}
		for _, p := range ns.Partitions {
			if p.Partition == 1 {
				return p.Applied >= lsn
			}
		}
		return false
	})
}
