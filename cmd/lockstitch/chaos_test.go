package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/chaos"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
	"github.com/lockstitch/lockstitch/wal"
)

// The fault-injection suite (issue 18): TestChaos runs real `serve`
// processes on the default LogDB under appends from several producers, a
// kv workload and subscribers, injects faults on a schedule drawn from a
// seeded RNG, records what every client saw, and at the end holds that
// history to the guarantees with internal/chaos's checkers. It is a test
// in this package, not a program of its own, because the cluster rigs it
// drives (serveCluster here, netnsCluster for partitions) and the test
// binary's double life as the CLI (TestMain) are this package's test
// helpers: a program would have to copy them. scripts/chaos runs it long.
//
// Its settings, from the environment:
//
//	LOCKSTITCH_CHAOS_DURATION  how long faults are injected (default 75s)
//	LOCKSTITCH_CHAOS_SEED      the schedule's seed (default: drawn, and logged)
//	LOCKSTITCH_CHAOS_NODES     3 (default) or 5
//	LOCKSTITCH_CHAOS_FAULTS    a comma-separated subset of the fault kinds
//	LOCKSTITCH_CHAOS_REPORT    the report directory (default: a temporary
//	                           one, kept only when the run fails)
//	LOCKSTITCH_NETNS=1         nodes in network namespaces, and network
//	                           partitions among the faults (root, ip, nft)

// Fault kinds. Each is injected, held for a while, and healed.
const (
	faultKill       = "kill"               // SIGKILL a random node, restart it
	faultKillLeader = "kill-leader"        // SIGKILL the stream's leader, restart it
	faultKillAll    = "kill-all"           // SIGKILL every node, restart them all
	faultPause      = "pause"              // SIGSTOP a random node, SIGCONT
	faultPauseLead  = "pause-leader"       // SIGSTOP the leader, SIGCONT
	faultMinority   = "partition-minority" // cut a minority off from the rest (netns)
	faultIsolate    = "isolate-leader"     // cut the leader off from its peers (netns)
	faultCorrupt    = "corrupt"            // SIGKILL a node, damage its log, restart it
	faultBridge     = "partition-bridge"   // two groups cut apart but for one node (netns)
	faultOneWay     = "one-way-loss"       // drop one node's packets to another (netns)
)

// chaosRecoveryBound is how long after a fault heals the cluster has to
// acknowledge an append before the run counts it unavailable: generous,
// as every node is a race-detector build on a shared machine.
const chaosRecoveryBound = 60 * time.Second

type chaosConfig struct {
	Duration time.Duration `json:"duration_ns"`
	Seed     uint64        `json:"seed"`
	Nodes    int           `json:"nodes"`
	Netns    bool          `json:"netns"`
	Faults   []string      `json:"faults"`
	report   string
}

func chaosConfigFromEnv(t *testing.T) chaosConfig {
	t.Helper()
	cfg := chaosConfig{Duration: 75 * time.Second, Seed: rand.Uint64() % 1e9, Nodes: 3, Netns: os.Getenv("LOCKSTITCH_NETNS") != ""}
	var err error
	if v := os.Getenv("LOCKSTITCH_CHAOS_DURATION"); v != "" {
		if cfg.Duration, err = time.ParseDuration(v); err != nil || cfg.Duration <= 0 {
			t.Fatalf("LOCKSTITCH_CHAOS_DURATION=%q", v)
		}
	}
	if v := os.Getenv("LOCKSTITCH_CHAOS_SEED"); v != "" {
		if cfg.Seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("LOCKSTITCH_CHAOS_SEED=%q", v)
		}
	}
	if v := os.Getenv("LOCKSTITCH_CHAOS_NODES"); v != "" {
		if cfg.Nodes, err = strconv.Atoi(v); err != nil || (cfg.Nodes != 3 && cfg.Nodes != 5) {
			t.Fatalf("LOCKSTITCH_CHAOS_NODES=%q: 3 or 5", v)
		}
	}
	all := []string{faultKill, faultKillLeader, faultKillAll, faultPause, faultPauseLead, faultCorrupt}
	if cfg.Netns {
		all = append(all, faultMinority, faultIsolate, faultBridge, faultOneWay)
	}
	cfg.Faults = all
	if v := os.Getenv("LOCKSTITCH_CHAOS_FAULTS"); v != "" {
		cfg.Faults = strings.Split(v, ",")
		for _, f := range cfg.Faults {
			if !slices.Contains(all, f) {
				t.Fatalf("LOCKSTITCH_CHAOS_FAULTS: %q is not one of %v", f, all)
			}
		}
	}
	cfg.report = os.Getenv("LOCKSTITCH_CHAOS_REPORT")
	return cfg
}

// chaosRig is what the run needs of a cluster: node i (from 1) hosts
// replica i of every partition.
type chaosRig struct {
	n      int
	addr   func(i int) string // client address
	kill   func(i int)        // SIGKILL, and wait for the process to end
	start  func(i int)        // start a killed node again, on its data
	signal func(i int, sig syscall.Signal)
	cut    func(group []int) // cut group off from the other nodes; nil without netns
	// cutFrom cuts node i off from the nodes given, both ways; drop drops
	// node i's packets to them, one way. Both nil without netns; heal
	// undoes them.
	cutFrom func(i int, from []int)
	drop    func(i int, to []int)
	heal    func(group []int)
	dataDir func(i int) string
	logs    func(i int) string // every process's log of node i, oldest first
	// dial connects to the nodes given, or to every node, once each
	// answers.
	dial func(ctx context.Context, nodes ...int) *transport.Client
}

// serveRig starts n serve processes on 127.0.0.1.
func serveRig(t *testing.T, n int) chaosRig {
	c := startServeCluster(t, n)
	old := make([]strings.Builder, n+1) // logs of the processes restarted
	return chaosRig{
		n:    n,
		addr: func(i int) string { return c.addr(0, i) },
		kill: func(i int) { c.nodes[i-1].kill() },
		start: func(i int) {
			old[i].WriteString(c.nodes[i-1].log.String())
			c.nodes[i-1] = startServe(t, c.args(i))
		},
		signal:  func(i int, sig syscall.Signal) { c.nodes[i-1].cmd.Process.Signal(sig) },
		logs:    func(i int) string { return old[i].String() + c.nodes[i-1].log.String() },
		dial:    c.dial,
		dataDir: c.dataDir,
	}
}

// netnsRig starts n serve processes, each in its own network namespace.
func netnsRig(t *testing.T, n int) chaosRig {
	c := startNetnsCluster(t, n)
	old := make([]strings.Builder, n+1)
	var nodes []int
	for i := 1; i <= n; i++ {
		nodes = append(nodes, i)
	}
	return chaosRig{
		n:    n,
		addr: c.clientAddr,
		kill: func(i int) { c.nodes[i-1].kill() },
		start: func(i int) {
			old[i].WriteString(c.nodes[i-1].log.String())
			c.start(i)
		},
		signal: func(i int, sig syscall.Signal) { c.nodes[i-1].cmd.Process.Signal(sig) },
		cut: func(group []int) {
			var rest []int
			for _, j := range nodes {
				if !slices.Contains(group, j) {
					rest = append(rest, j)
				}
			}
			for _, i := range group {
				c.cutOff(i, rest)
			}
		},
		cutFrom: c.cutOff,
		drop:    c.dropTo,
		heal: func(group []int) {
			for _, i := range group {
				c.heal(i)
			}
		},
		dataDir: c.dataDir,
		logs:    func(i int) string { return old[i].String() + c.nodes[i-1].log.String() },
		dial: func(ctx context.Context, some ...int) *transport.Client {
			if len(some) == 0 {
				some = nodes
			}
			return c.dial(ctx, some...)
		},
	}
}

// chaosFault is one fault of the schedule, as injected.
type chaosFault struct {
	Kind  string        `json:"kind"`
	Nodes []int         `json:"nodes"`
	At    time.Duration `json:"at_ns"`   // since the run started
	Hold  time.Duration `json:"hold_ns"` // how long it lasted
	// Recovery is the time from the heal to the first append
	// acknowledged after it (for corrupt, to when the damaged replica
	// serves again, as replicaBack sees it); -1 when that did not come
	// within chaosRecoveryBound.
	Recovery time.Duration `json:"recovery_ns"`
	// Outage is the longest time without an acknowledged append from
	// the fault to the recovery.
	Outage time.Duration `json:"outage_ns"`
	Note   string        `json:"note,omitempty"`
}

// ackWatch tells the nemesis when an append is acknowledged.
type ackWatch struct {
	mu    sync.Mutex
	last  time.Time
	times []time.Time   // of every ack, roughly in order
	ch    chan struct{} // closed at the next ack
}

func newAckWatch() *ackWatch { return &ackWatch{ch: make(chan struct{})} }

func (a *ackWatch) note(at time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if at.After(a.last) {
		a.last = at
	}
	a.times = append(a.times, at)
	close(a.ch)
	a.ch = make(chan struct{})
}

// after waits until an append is acknowledged after t and returns when,
// or false when ctx ends first.
func (a *ackWatch) after(ctx context.Context, t time.Time) (time.Time, bool) {
	for {
		a.mu.Lock()
		last, ch := a.last, a.ch
		a.mu.Unlock()
		if last.After(t) {
			return last, true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
}

// outage returns the longest time without an ack from from to to.
func (a *ackWatch) outage(from, to time.Time) time.Duration {
	a.mu.Lock()
	var in []time.Time
	for i := len(a.times) - 1; i >= 0 && a.times[i].After(from.Add(-time.Second)); i-- {
		if t := a.times[i]; t.After(from) && !t.After(to) {
			in = append(in, t)
		}
	}
	a.mu.Unlock()
	slices.SortFunc(in, time.Time.Compare)
	longest, prev := time.Duration(0), from
	for _, t := range append(in, to) {
		longest = max(longest, t.Sub(prev))
		prev = t
	}
	return longest
}

// chaosRun is one run: the cluster, the workloads' clients and the
// history they record.
type chaosRun struct {
	t     *testing.T
	cfg   chaosConfig
	rig   chaosRig
	start time.Time
	admin *transport.Client
	acks  *ackWatch

	mu      sync.Mutex
	history chaos.History
}

func (r *chaosRun) since() int64 { return int64(time.Since(r.start)) }

// clientConfig is the workloads' client configuration: few attempts, so
// that faults end some appends in definite failures and indeterminate
// outcomes rather than only in retries.
func chaosClientConfig(producer uint64) transport.ClientConfig {
	cfg := transport.DefaultClientConfig()
	cfg.MaxAttempts, cfg.BackoffMax = 4, 200*time.Millisecond
	cfg.ProducerID = producer
	return cfg
}

func (r *chaosRun) dialAll(ctx context.Context, cfg transport.ClientConfig) *transport.Client {
	r.t.Helper()
	var addrs []string
	for i := 1; i <= r.rig.n; i++ {
		addrs = append(addrs, r.rig.addr(i))
	}
	cl, err := transport.Dial(ctx, cfg, addrs...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { cl.Close() })
	return cl
}

// produce appends producer g's ops through cl to partition 1, window at a time,
// paced to at most one start every 10 ms, until stop is closed, and
// records each one's outcome.
func (r *chaosRun) produce(ctx context.Context, g int, cl *transport.Client, stop <-chan struct{}) {
	const window = 4
	type pending struct {
		a *chaos.Append
		f transport.AppendFuture
	}
	var inflight []pending
	finish := func(p pending) {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := p.f.Wait(wctx)
		cancel()
		p.a.Return = r.since()
		switch {
		case err == nil:
			p.a.Outcome, p.a.LSN = chaos.OK, res.LSN
			r.acks.note(time.Now())
		case errors.Is(err, lockstitch.ErrIndeterminate):
			p.a.Outcome, p.a.Err = chaos.Info, err.Error()
		default:
			p.a.Outcome, p.a.Err = chaos.Fail, err.Error()
		}
		r.mu.Lock()
		r.history.Appends = append(r.history.Appends, *p.a)
		r.mu.Unlock()
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			for _, p := range inflight {
				finish(p)
			}
			return
		case <-tick.C:
		}
		if len(inflight) == window {
			finish(inflight[0])
			inflight = inflight[1:]
		}
		a := &chaos.Append{Producer: g, Seq: seq, Call: r.since()}
		// The payload must stay unchanged until Wait returns: a
		// string's bytes, never reused.
		inflight = append(inflight, pending{a, cl.AppendAsync(ctx, 1, []byte(chaos.Payload(g, seq)))})
	}
}

// randomKVOp does one random get, put or cas on one of keys through kc
// and returns it as the history records it. seen holds what this client
// last read of each key: a cas expects it. Every value written is unique
// (client and n name it).
func randomKVOp(ctx context.Context, kc *kvclient.Client, rng *rand.Rand, client, n int, keys []string, seen map[string]kvclient.Item, now func() int64) chaos.KVOp {
	key := keys[rng.IntN(len(keys))]
	op := chaos.KVOp{Client: client, Input: chaos.KVInput{Key: key, Value: fmt.Sprintf("c%d-%d", client, n)}}
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	op.Call = now()
	var err error
	switch x := rng.IntN(10); {
	case x < 4:
		op.Input.Op, op.Input.Value = chaos.KVGet, ""
		var item kvclient.Item
		item, _, err = kc.Get(octx, []byte(key), kvclient.Linearizable)
		if errors.Is(err, kvclient.ErrNotFound) {
			err, item = nil, kvclient.Item{}
		}
		op.Output.Value, op.Output.Version = string(item.Value), item.Version
		if err == nil {
			seen[key] = item
		}
	case x < 7:
		op.Input.Op = chaos.KVPut
		var w kvclient.Write
		w, err = kc.Put(octx, []byte(key), []byte(op.Input.Value))
		op.Output.Version = w.Version
	default:
		op.Input.Op, op.Input.Expect = chaos.KVCAS, string(seen[key].Value)
		var w kvclient.Write
		w, err = kc.CAS(octx, []byte(key), []byte(op.Input.Value), seen[key].Version)
		var conflict *kvclient.ConflictError
		switch {
		case errors.As(err, &conflict):
			err, op.Output.Version = nil, conflict.Current
		case err == nil:
			op.Output.OK, op.Output.Version = true, w.Version
		}
	}
	op.Return = now()
	switch {
	case err == nil:
		op.Outcome = chaos.OK
	case op.Input.Op == chaos.KVGet:
		// A read without an answer did nothing.
		op.Outcome, op.Err, op.Output = chaos.Fail, err.Error(), chaos.KVOutput{}
	case errors.Is(err, lockstitch.ErrIndeterminate) || errors.Is(err, transport.ErrResultLost):
		// Applied or maybe applied, its result unknown.
		op.Outcome, op.Err, op.Output = chaos.Info, err.Error(), chaos.KVOutput{}
	default:
		op.Outcome, op.Err, op.Output = chaos.Fail, err.Error(), chaos.KVOutput{}
	}
	return op
}

// kvWork runs kv client c against partition 2, one op at a time, paced
// to one every 20 ms, until stop is closed. The keys change every 20 s so
// that porcupine's search stays short however long the run.
func (r *chaosRun) kvWork(ctx context.Context, c int, kc *kvclient.Client, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(c)))
	seen := map[string]kvclient.Item{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		gen := time.Since(r.start) / (20 * time.Second)
		keys := []string{fmt.Sprint("k", gen, "a"), fmt.Sprint("k", gen, "b"), fmt.Sprint("k", gen, "c"), fmt.Sprint("k", gen, "d")}
		op := randomKVOp(ctx, kc, rng, c, n, keys, seen, r.since)
		r.mu.Lock()
		r.history.KV = append(r.history.KV, op)
		r.mu.Unlock()
	}
}

// subscribe follows partition 1 from marker 0 and records every record,
// until it has read an end marker (an append of producer 0's: the first
// to commit, which the last acknowledged one is unless an attempt before
// it committed without its client knowing) or ctx ends.
// When Next fails (its retries spent in a long outage), it subscribes
// again from its marker, as a user would: a new Subscriber of the
// history, whose From is the last LSN the previous one received.
func (r *chaosRun) subscribe(ctx context.Context, id int, cl *transport.Client, done chan<- error) {
	var (
		marker lockstitch.LSN
		recs   []chaos.Entry
		from   lockstitch.LSN
	)
	save := func() {
		r.mu.Lock()
		r.history.Subscribers = append(r.history.Subscribers, chaos.Subscriber{ID: id, From: from, Records: recs})
		r.mu.Unlock()
		recs, from = nil, marker
	}
	for {
		sub, err := cl.Subscribe(ctx, 1, marker)
		for err == nil {
			var rec wal.Record
			if err = sub.Next(ctx, &rec); err != nil {
				break
			}
			recs = append(recs, chaos.Entry{LSN: rec.LSN, Payload: string(rec.Payload)})
			marker = rec.LSN
			if bytes.HasPrefix(rec.Payload, []byte("p0-")) {
				sub.Close()
				save()
				done <- nil
				return
			}
		}
		if sub != nil {
			sub.Close()
		}
		if ctx.Err() != nil {
			save()
			done <- fmt.Errorf("subscriber %d: stopped at LSN %d: %w", id, marker, err)
			return
		}
		r.t.Logf("subscriber %d at LSN %d: %v; subscribing again", id, marker, err)
		save()
		// Subscribe and Next retried it; try again after a pause.
		tm := time.NewTimer(100 * time.Millisecond)
		select {
		case <-tm.C:
		case <-ctx.Done():
		}
		tm.Stop()
	}
}

// leader returns partition 1's leader node, or 0 when no node says.
func (r *chaosRun) leader(ctx context.Context) int {
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	st, err := r.admin.PartitionStatus(sctx, 1)
	if err != nil {
		return 0
	}
	// Replica i is on node i, unless a repair replaced it by one with a
	// new id (above n): then its address names its node.
	for i := 1; i <= r.rig.n; i++ {
		if st.LeaderAddr != "" && st.LeaderAddr == r.rig.addr(i) {
			return i
		}
	}
	if l := int(st.Leader); l <= r.rig.n {
		return l
	}
	return 0
}

// applied describes what each node has applied of partition 1 and its
// role there, as each node sees it (a listing would ask the nodes of
// each other, across the cut), for the report.
func (r *chaosRun) applied(ctx context.Context) string {
	var b strings.Builder
	b.WriteString("at the heal, applied:")
	for i := 1; i <= r.rig.n; i++ {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		ns, err := r.admin.Status(sctx, r.rig.addr(i))
		cancel()
		if err != nil {
			fmt.Fprintf(&b, " node%d %v", i, err)
			continue
		}
		for _, p := range ns.Partitions {
			if p.Partition == 1 {
				fmt.Fprintf(&b, " node%d %d (%v)", i, p.Applied, p.Role)
			}
		}
	}
	return b.String()
}

// damage damages the active segment (the last) of partition id's
// operation log under node i's data directory, killed, as a failing disk
// would: with x even, one bit flipped at an offset drawn from x; odd, the
// file cut there (a lost tail). It returns what it did.
func (r *chaosRun) damage(i int, id lockstitch.PartitionID, x uint64) string {
	r.t.Helper()
	segs, err := filepath.Glob(filepath.Join(r.rig.dataDir(i), "partitions", fmt.Sprint(id), "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		r.t.Fatalf("no log segments of partition %d on node %d: %v", id, i, err)
	}
	slices.Sort(segs)
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		r.t.Fatal(err)
	}
	name := fmt.Sprintf("partition %d segment %s (%d bytes)", id, filepath.Base(path), len(b))
	if len(b) == 0 {
		return name + ": empty, left alone"
	}
	off := int((x >> 1) % uint64(len(b)))
	if x%2 == 0 {
		bit := (x >> 40) % 8
		b[off] ^= 1 << bit
		if err := os.WriteFile(path, b, 0o644); err != nil {
			r.t.Fatal(err)
		}
		return fmt.Sprintf("%s: bit %d flipped at offset %d", name, bit, off)
	}
	if err := os.Truncate(path, int64(off)); err != nil {
		r.t.Fatal(err)
	}
	return fmt.Sprintf("%s: cut to %d bytes", name, off)
}

// replicaBack waits until node i's replica of partition id votes (a
// follower or the leader: one quarantined was rebuilt) and has applied
// what the partition had committed when the wait began, and returns
// when; false when ctx ends first.
func (r *chaosRun) replicaBack(ctx context.Context, i int, id lockstitch.PartitionID) (time.Time, bool) {
	var target lockstitch.LSN
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		parts, err := r.admin.ListPartitions(lctx)
		cancel()
		for _, p := range parts {
			if err != nil || p.Partition != id {
				continue
			}
			if target == 0 {
				target = p.Committed
			}
			for _, rep := range p.Replicas {
				if rep.Node == lockstitch.NodeID(i) && (rep.Role == lockstitch.RoleFollower || rep.Role == lockstitch.RoleLeader) &&
					target > 0 && rep.Applied >= target {
					return time.Now(), true
				}
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return time.Time{}, false
		}
	}
}

// nemesis injects faults drawn from rng until the run's duration has
// passed, one at a time: a quiet spell, the fault, a hold, the heal, and
// a wait (bounded) for the first append acknowledged after it.
func (r *chaosRun) nemesis(ctx context.Context) []chaosFault {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0))
	// The draws of the kinds added later come from a second source, so
	// that a seed's schedule of the earlier kinds stays as it was.
	rng2 := rand.New(rand.NewPCG(r.cfg.Seed, 1))
	var faults []chaosFault
	timer := func(d time.Duration) {
		tm := time.NewTimer(d)
		defer tm.Stop()
		select {
		case <-tm.C:
		case <-ctx.Done():
		}
	}
	all := func() []int {
		var nodes []int
		for i := 1; i <= r.rig.n; i++ {
			nodes = append(nodes, i)
		}
		return nodes
	}
	for time.Since(r.start) < r.cfg.Duration && ctx.Err() == nil {
		// Every draw is made whatever the kind, so the schedule's
		// numbers depend on the seed alone.
		kind := r.cfg.Faults[rng.IntN(len(r.cfg.Faults))]
		quiet := 500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond)))
		hold := 500*time.Millisecond + time.Duration(rng.Int64N(int64(3*time.Second)))
		node := rng.IntN(r.rig.n) + 1
		minority := rng.Perm(r.rig.n)[:(r.rig.n-1)/2]
		part := lockstitch.PartitionID(rng2.IntN(2) + 1) // corrupt: the log or the kv partition
		harm := rng2.Uint64()                            // corrupt: where and how
		order := rng2.Perm(r.rig.n)                      // bridge: the bridge, then the two sides; one-way: from, to
		timer(quiet)

		f := chaosFault{Kind: kind, Hold: hold}
		switch kind {
		case faultKill, faultPause, faultCorrupt:
			f.Nodes = []int{node}
		case faultBridge, faultOneWay:
			for _, j := range order {
				f.Nodes = append(f.Nodes, j+1)
			}
		case faultKillAll:
			f.Nodes = all()
		case faultMinority:
			for _, j := range minority {
				f.Nodes = append(f.Nodes, j+1)
			}
		default: // the leader's
			if l := r.leader(ctx); l != 0 {
				f.Nodes = []int{l}
			} else {
				f.Nodes, f.Note = []int{node}, "no leader known: a random node"
			}
		}
		// The bridge: f.Nodes[0] sees every node; the rest, in two
		// halves, do not see the other half.
		half := (len(f.Nodes) - 1) / 2
		sideA, sideB := f.Nodes[1:1+half], f.Nodes[1+half:]
		hit := time.Now()
		f.At = hit.Sub(r.start)
		var quarantines int
		switch kind {
		case faultKill, faultKillLeader, faultKillAll:
			for _, i := range f.Nodes {
				r.rig.kill(i)
			}
		case faultCorrupt:
			r.rig.kill(node)
			f.Note = r.damage(node, part, harm)
			quarantines = strings.Count(r.rig.logs(node), "replica quarantined")
		case faultPause, faultPauseLead:
			r.rig.signal(f.Nodes[0], syscall.SIGSTOP)
		case faultBridge:
			for _, i := range sideA {
				r.rig.cutFrom(i, sideB)
			}
		case faultOneWay:
			f.Nodes = f.Nodes[:2]
			r.rig.drop(f.Nodes[0], f.Nodes[1:])
		default:
			r.rig.cut(f.Nodes)
		}
		timer(hold)
		if kind == faultBridge || kind == faultOneWay {
			// What the fault did: a node cut off from the leader lags.
			f.Note = r.applied(ctx)
		}
		switch kind {
		case faultKill, faultKillLeader, faultKillAll, faultCorrupt:
			for _, i := range f.Nodes {
				r.rig.start(i)
			}
		case faultPause, faultPauseLead:
			r.rig.signal(f.Nodes[0], syscall.SIGCONT)
		case faultBridge:
			r.rig.heal(sideA)
		case faultOneWay:
			r.rig.heal(f.Nodes[:1])
		default:
			r.rig.heal(f.Nodes)
		}
		healed := time.Now()
		wctx, cancel := context.WithTimeout(ctx, chaosRecoveryBound)
		at, ok := r.acks.after(wctx, healed)
		f.Recovery = -1
		if ok {
			f.Recovery, f.Outage = at.Sub(healed), r.acks.outage(hit, at)
		}
		if kind == faultCorrupt {
			// Its recovery is the damaged replica's: when it serves
			// again, rebuilt if it was quarantined.
			back, bok := r.replicaBack(wctx, node, part)
			switch {
			case !bok:
				f.Recovery = -1
				f.Note += "; the replica did not serve again"
			case ok:
				f.Recovery = back.Sub(healed)
			}
			switch {
			case strings.Count(r.rig.logs(node), "replica quarantined") == quarantines:
				f.Note += "; not quarantined"
			case bok:
				f.Note += "; quarantined and rebuilt"
			default:
				f.Note += "; quarantined"
			}
		}
		cancel()
		r.t.Logf("%8.3fs %-18s nodes %v held %v; recovery %v; longest without an ack %v; %s",
			f.At.Seconds(), f.Kind, f.Nodes, hold.Round(time.Millisecond), f.Recovery.Round(time.Millisecond), f.Outage.Round(time.Millisecond), f.Note)
		faults = append(faults, f)
	}
	return faults
}

// readReplica waits until node i has applied LSN end of partition 1 and
// reads LSN 1 to end from it alone, as it holds them: the checkers, not
// this reader, judge gaps and duplicates.
func (r *chaosRun) readReplica(ctx context.Context, i int, end lockstitch.LSN) []chaos.Entry {
	r.t.Helper()
	ncl := r.rig.dial(ctx, i) // it may have just restarted
	defer ncl.Close()
	testutil.WaitFor(r.t, fmt.Sprintf("node %d to apply LSN %d", i, end), 2*time.Minute, func() bool {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		ns, err := ncl.Status(sctx, r.rig.addr(i))
		if err != nil {
			return false
		}
		for _, p := range ns.Partitions {
			if p.Partition == 1 {
				return p.Applied >= end
			}
		}
		return false
	})
	var (
		out  []chaos.Entry
		recs transport.Records
		rec  wal.Record
	)
	for from := lockstitch.LSN(1); from <= end; {
		if err := ncl.Read(ctx, 1, from, transport.ReadOptions{MaxOps: 1000, MaxBytes: 4 << 20}, &recs); err != nil {
			r.t.Fatalf("node %d: read from LSN %d: %v", i, from, err)
		}
		next := from
		for recs.Next(&rec) == nil && rec.LSN <= end {
			out = append(out, chaos.Entry{LSN: rec.LSN, Payload: string(rec.Payload)})
			next = max(next, rec.LSN+1)
		}
		if next == from {
			r.t.Fatalf("node %d: no record at LSN %d, below %d", i, from, end)
		}
		from = next
	}
	return out
}

// TestChaos is the fault-injection run: see the comment at the top of
// this file. The default (75 s of kills, pauses and damaged logs on three
// nodes) is the short run every test run makes; scripts/chaos runs it
// long, on five nodes, with network partitions.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and injects faults for a minute or more")
	}
	cfg := chaosConfigFromEnv(t)
	if !cfg.Netns {
		t.Parallel()
	}
	t.Logf("seed %d, %d nodes, %v, faults %v", cfg.Seed, cfg.Nodes, cfg.Duration, cfg.Faults)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration+8*time.Minute)
	defer cancel()

	var rig chaosRig
	if cfg.Netns {
		rig = netnsRig(t, cfg.Nodes)
	} else {
		rig = serveRig(t, cfg.Nodes)
	}
	r := &chaosRun{t: t, cfg: cfg, rig: rig, acks: newAckWatch()}
	r.admin = rig.dial(ctx) // once every node answers
	t.Cleanup(func() { r.admin.Close() })
	var nodes []lockstitch.NodeID
	for i := 1; i <= cfg.Nodes; i++ {
		nodes = append(nodes, lockstitch.NodeID(i))
	}
	if _, err := r.admin.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Nodes: nodes}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.admin.CreatePartition(ctx, transport.PartitionSpec{ID: 2, Plugin: "kv", Nodes: nodes}); err != nil {
		t.Fatal(err)
	}

	// The workloads: producers and kv clients until stop, subscribers
	// until they have read the end.
	r.start = time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	producers, kvClients := cfg.Nodes+1, 4
	for g := 1; g <= producers; g++ {
		cl := r.dialAll(ctx, chaosClientConfig(uint64(1000+g)))
		wg.Go(func() { r.produce(ctx, g, cl, stop) })
	}
	for c := range kvClients {
		kc := kvclient.New(r.dialAll(ctx, chaosClientConfig(uint64(2000+c))), 2)
		wg.Go(func() { r.kvWork(ctx, c, kc, stop) })
	}
	const subscribers = 2
	subCtx, subCancel := context.WithCancel(ctx)
	defer subCancel()
	subDone := make(chan error, subscribers)
	for s := range subscribers {
		// failoverClientConfig: LOCKSTITCH_FAILOVER_LOG=1 logs their
		// attempts.
		cl := r.dialAll(ctx, failoverClientConfig())
		go r.subscribe(subCtx, s+1, cl, subDone)
	}

	stopOnce := sync.OnceFunc(func() { close(stop) })
	defer stopOnce() // when the test fails before the end
	faults := r.nemesis(ctx)
	stopOnce()
	wg.Wait()

	// The end: an append that commits after every op the producers can
	// still make commit (Raft commits in log order, and every producer
	// has its answers), producer 0's; each attempt is an op of its own,
	// so that one that failed but committed is no duplicate.
	var end lockstitch.LSN
	for seq, deadline := 0, time.Now().Add(time.Minute); end == 0; seq++ {
		a := chaos.Append{Producer: 0, Seq: seq, Call: r.since()}
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := r.admin.Append(actx, 1, []byte(chaos.Payload(0, seq)))
		acancel()
		a.Return = r.since()
		switch {
		case err == nil:
			a.Outcome, a.LSN, end = chaos.OK, res.LSN, res.LSN
		case errors.Is(err, lockstitch.ErrIndeterminate):
			a.Outcome, a.Err = chaos.Info, err.Error()
		default:
			a.Outcome, a.Err = chaos.Fail, err.Error()
		}
		r.history.Appends = append(r.history.Appends, a)
		if end == 0 && time.Now().After(deadline) {
			t.Fatalf("the end marker: %v (seed %d)", err, cfg.Seed)
		}
	}
	// The subscribers have until 2 minutes from now to read the end.
	subTimer := time.AfterFunc(2*time.Minute, subCancel)
	for range subscribers {
		if err := <-subDone; err != nil {
			t.Errorf("%v (seed %d)", err, cfg.Seed)
		}
	}
	subTimer.Stop()
	for i := 1; i <= cfg.Nodes; i++ {
		r.history.Replicas = append(r.history.Replicas, chaos.Replica{Node: i, Entries: r.readReplica(ctx, i, end)})
	}

	v := chaos.Check(&r.history, 2*time.Minute)
	sum := chaosSummarize(cfg, faults, v, len(r.history.Subscribers)-subscribers)
	failed := t.Failed() || !v.OK || v.Acked < 100 || len(faults) == 0
	for _, f := range faults {
		failed = failed || f.Recovery < 0
	}
	// The report goes where asked, or, when the run failed, to a
	// directory that outlives the test.
	dir := cfg.report
	var err error
	switch {
	case dir != "":
		err = os.MkdirAll(dir, 0o755)
	case failed:
		dir, err = os.MkdirTemp("", fmt.Sprintf("lockstitch-chaos-%d-", cfg.Seed))
	default:
		dir = t.TempDir()
	}
	if err != nil {
		t.Fatal(err)
	}
	r.writeReport(dir, faults, v, sum)
	t.Logf("%s\nreport: %s", sum, dir)
	for _, a := range v.Anomalies {
		t.Errorf("anomaly (seed %d): %s", cfg.Seed, a)
	}
	for _, f := range faults {
		if f.Recovery < 0 {
			t.Errorf("no recovery within %v after %s of nodes %v healed at %v (seed %d): no append acknowledged, or for corrupt the replica not serving again; %s", chaosRecoveryBound, f.Kind, f.Nodes, f.At+f.Hold, cfg.Seed, f.Note)
		}
	}
	if v.Acked < 100 || len(faults) == 0 {
		t.Errorf("the run exercised too little: %d appends acknowledged, %d faults", v.Acked, len(faults))
	}
}

// chaosSummary is the report's summary: what verdict.json holds besides
// the verdict.
type chaosSummary struct {
	Faults   map[string]int           `json:"faults"`   // injected, by kind
	Recovery map[string]chaosRecovery `json:"recovery"` // by kind
	// Resubscribed counts the subscriptions made again after Next
	// failed (its retries spent).
	Resubscribed int `json:"resubscribed"`
	text         string
}

// chaosRecovery is one fault kind's figures, in milliseconds.
type chaosRecovery struct {
	RecoveryP50 float64 `json:"recovery_p50_ms"`
	RecoveryMax float64 `json:"recovery_max_ms"`
	OutageP50   float64 `json:"outage_p50_ms"`
	OutageMax   float64 `json:"outage_max_ms"`
	None        int     `json:"none"` // heals not followed by an ack within the bound
}

func chaosSummarize(cfg chaosConfig, faults []chaosFault, v chaos.Verdict, resubscribed int) chaosSummary {
	s := chaosSummary{Faults: map[string]int{}, Recovery: map[string]chaosRecovery{}, Resubscribed: resubscribed}
	byKind := map[string][]time.Duration{}
	outages := map[string][]time.Duration{}
	for _, f := range faults {
		s.Faults[f.Kind]++
		if f.Recovery < 0 {
			rec := s.Recovery[f.Kind]
			rec.None++
			s.Recovery[f.Kind] = rec
			continue
		}
		byKind[f.Kind] = append(byKind[f.Kind], f.Recovery)
		outages[f.Kind] = append(outages[f.Kind], f.Outage)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d nodes, %v of faults: %d faults\n", cfg.Seed, cfg.Nodes, cfg.Duration, len(faults))
	fmt.Fprintf(&b, "appends: %d acknowledged, %d failed, %d indeterminate; stream %d records; lost %d\n", v.Acked, v.Failed, v.Indeterminate, v.Stream, v.Lost)
	fmt.Fprintf(&b, "kv: %d ops, linearizable: %s; subscriptions made again after Next failed: %d; anomalies: %d\n", v.KVOps, v.KV, s.Resubscribed, len(v.Anomalies))
	fmt.Fprintf(&b, "%-20s %6s %12s %12s %12s %12s\n", "fault", "count", "recovery p50", "max", "outage p50", "max")
	for _, k := range slices.Sorted(maps.Keys(s.Faults)) {
		d, o := byKind[k], outages[k]
		slices.Sort(d)
		slices.Sort(o)
		rec := s.Recovery[k]
		if len(d) > 0 {
			rec.RecoveryP50, rec.RecoveryMax = ms(d[len(d)/2]), ms(d[len(d)-1])
			rec.OutageP50, rec.OutageMax = ms(o[len(o)/2]), ms(o[len(o)-1])
		}
		s.Recovery[k] = rec
		fmt.Fprintf(&b, "%-20s %6d %10.0fms %10.0fms %10.0fms %10.0fms", k, s.Faults[k], rec.RecoveryP50, rec.RecoveryMax, rec.OutageP50, rec.OutageMax)
		if rec.None > 0 {
			fmt.Fprintf(&b, " (%d without recovery)", rec.None)
		}
		b.WriteString("\n")
	}
	s.text = b.String()
	return s
}

func (s chaosSummary) String() string { return s.text }

// writeReport writes the run's report to dir: config.json, schedule.jsonl,
// history.jsonl, verdict.json, summary.txt and every node's log.
func (r *chaosRun) writeReport(dir string, faults []chaosFault, v chaos.Verdict, sum chaosSummary) {
	t := r.t
	t.Helper()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Errorf("report: %v", err)
		}
	}
	js := func(x any) []byte {
		b, err := json.MarshalIndent(x, "", "  ")
		if err != nil {
			t.Fatalf("report: %v", err)
		}
		return append(b, '\n')
	}
	write("config.json", js(r.cfg))
	var sched strings.Builder
	for _, f := range faults {
		b, _ := json.Marshal(f)
		sched.Write(append(b, '\n'))
	}
	write("schedule.jsonl", []byte(sched.String()))
	hf, err := os.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if err := r.history.WriteJSONL(hf); err != nil {
		t.Errorf("report: %v", err)
	}
	hf.Close()
	write("verdict.json", js(struct {
		chaos.Verdict
		chaosSummary
	}{v, sum}))
	write("summary.txt", []byte(sum.String()))
	for i := 1; i <= r.rig.n; i++ {
		write(fmt.Sprintf("node%d.log", i), []byte(r.rig.logs(i)))
	}
}

// TestAckWatch checks the nemesis's clock of acknowledgements: after
// returns the first ack after a time (or false when the wait ends), and
// outage the longest stretch without one from a fault to a recovery.
func TestAckWatch(t *testing.T) {
	a := newAckWatch()
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, ms := range []int{10, 20, 300, 310, 900, 905} {
		a.note(at(ms))
	}
	if got, ok := a.after(context.Background(), at(310)); !ok || !got.Equal(at(905)) {
		t.Fatalf("after 310 ms: %v %v, want the ack at 905 ms", got.Sub(t0), ok)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, ok := a.after(ctx, at(905)); ok {
		t.Fatal("after the last ack: an ack was found")
	}
	// From a fault at 15 ms to the recovery at 900 ms: the gaps are
	// 5, 280, 10 and 590 ms.
	if got := a.outage(at(15), at(900)); got != 590*time.Millisecond {
		t.Fatalf("outage from 15 to 900 ms: %v, want 590ms", got)
	}
	// No ack between the fault and the recovery: all of it.
	if got := a.outage(at(320), at(900)); got != 580*time.Millisecond {
		t.Fatalf("outage from 320 to 900 ms: %v, want 580ms", got)
	}
	// An ack arriving while after waits wakes it.
	go a.note(at(1000))
	if got, ok := a.after(context.Background(), at(905)); !ok || !got.Equal(at(1000)) {
		t.Fatalf("after 905 ms: %v %v, want the ack at 1000 ms", got.Sub(t0), ok)
	}
}
