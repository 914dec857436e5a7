package replicator_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

// sumPlugin keeps the count and the byte sum of the ops it applied, and
// makes them durable on Sync only every other time, so that it is often
// behind the replica's checkpoint when the node restarts.
type sumPlugin struct {
	dir            string
	mu             sync.Mutex
	lsn            lockstitch.LSN
	count, sum     uint64
	syncs          int
	durableLSN     lockstitch.LSN
	durableC, durS uint64
}

func newSumPlugin(pc replicator.PluginContext) (replicator.StateMachine, error) {
	return &sumPlugin{dir: pc.Dir}, nil
}

func (p *sumPlugin) file() string { return filepath.Join(p.dir, "sum") }

func (p *sumPlugin) Open(context.Context) (lockstitch.LSN, error) {
	b, err := os.ReadFile(p.file())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil || len(b) != 24 {
		return 0, fmt.Errorf("sum plugin: %v (%d bytes)", err, len(b))
	}
	p.lsn = lockstitch.LSN(binary.LittleEndian.Uint64(b))
	p.count = binary.LittleEndian.Uint64(b[8:])
	p.sum = binary.LittleEndian.Uint64(b[16:])
	p.durableLSN, p.durableC, p.durS = p.lsn, p.count, p.sum
	return p.lsn, nil
}

func (p *sumPlugin) Apply(ops []replicator.Op, results [][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, op := range ops {
		if op.LSN != p.lsn+1 {
			return fmt.Errorf("sum plugin: got LSN %d after %d", op.LSN, p.lsn)
		}
		p.lsn = op.LSN
		p.count++
		for _, c := range op.Payload {
			p.sum += uint64(c)
		}
	}
	return nil
}

func (p *sumPlugin) Query(context.Context, []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return json.Marshal([3]uint64{uint64(p.lsn), p.count, p.sum})
}

func (p *sumPlugin) Sync() (lockstitch.LSN, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.syncs++
	if p.syncs%2 == 1 {
		// Lag on purpose: report what the last durable write holds.
		return p.durableLSN, nil
	}
	var b [24]byte
	binary.LittleEndian.PutUint64(b[:], uint64(p.lsn))
	binary.LittleEndian.PutUint64(b[8:], p.count)
	binary.LittleEndian.PutUint64(b[16:], p.sum)
	if err := os.WriteFile(p.file(), b[:], 0o644); err != nil {
		return 0, err
	}
	p.durableLSN, p.durableC, p.durS = p.lsn, p.count, p.sum
	return p.lsn, nil
}

func (p *sumPlugin) PrepareSnapshot() (replicator.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b [24]byte
	binary.LittleEndian.PutUint64(b[:], uint64(p.lsn))
	binary.LittleEndian.PutUint64(b[8:], p.count)
	binary.LittleEndian.PutUint64(b[16:], p.sum)
	return bytesSnapshot(b[:]), nil
}

func (p *sumPlugin) Restore(r io.Reader, lsn lockstitch.LSN) error {
	b, err := io.ReadAll(r)
	if err != nil || len(b) != 24 {
		return fmt.Errorf("sum plugin restore: %v (%d bytes)", err, len(b))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lsn = lockstitch.LSN(binary.LittleEndian.Uint64(b))
	p.count = binary.LittleEndian.Uint64(b[8:])
	p.sum = binary.LittleEndian.Uint64(b[16:])
	return nil
}

func (p *sumPlugin) Close() error { return nil }

type bytesSnapshot []byte

func (s bytesSnapshot) WriteTo(_ context.Context, w io.Writer) error {
	_, err := w.Write(s)
	return err
}
func (bytesSnapshot) Release() {}

// sumOf computes what sumPlugin holds after ops 0..n-1 of appendN.
func sumOf(id lockstitch.PartitionID, n int) [3]uint64 {
	var sum uint64
	for i := 0; i < n; i++ {
		for _, c := range opPayload(int(id), i) {
			sum += uint64(c)
		}
	}
	return [3]uint64{uint64(n), uint64(n), sum}
}

func queryPlugin(t *testing.T, p *replicator.Partition) [3]uint64 {
	t.Helper()
	var got [3]uint64
	testutil.WaitFor(t, "a linearizable query", 20*time.Second, func() bool {
		res, err := p.Query(context.Background(), nil, replicator.QueryOptions{Consistency: lockstitch.Linearizable})
		if err != nil {
			return false
		}
		return json.Unmarshal(res.Result, &got) == nil
	})
	return got
}

// TestPluginBehindIsReplayed restarts nodes whose plugin reports less
// than the replica's checkpoint: the replicator replays the logged ops
// into it, and its state ends exactly right on every replica.
func TestPluginBehindIsReplayed(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		cfg.Plugins = map[string]replicator.PluginFactory{"sum": newSumPlugin}
		cfg.SnapshotEntries = 30 // each snapshot syncs the plugin
		cfg.CompactionOverhead = 10
	})
	spec := c.spec(1)
	spec.Plugin = "sum"
	for i := range c.nodes {
		if _, err := c.get(i).CreatePartition(spec); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, c, 1, 0, 150)
	for round := 0; round < 3; round++ {
		c.close()
		for i := range c.nodes {
			c.start(i)
		}
		appendN(t, c, 1, 150+round*10, 160+round*10)
	}
	want := sumOf(1, 180)
	for i := range c.nodes {
		c.stream(i, 1, 180)
		if got := queryPlugin(t, c.partition(i, 1)); got != want {
			t.Fatalf("node %d: plugin holds %v, want %v", i+1, got, want)
		}
	}
}

// TestLogRetention drops old segments beyond RetainBytes, never past what
// a restart needs, and keeps reads above the cut working.
func TestLogRetention(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		cfg.SegmentBytes = 64 << 10
		cfg.RetainBytes = 128 << 10
		cfg.CheckpointInterval = 20 * time.Millisecond
	})
	c.create(1)
	ctx := context.Background()
	big := bytes.Repeat([]byte("r"), 4000)
	for i := 0; i < 300; i++ {
		if _, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: big}); err != nil {
			t.Fatal(err)
		}
	}
	p := c.partition(c.leader(1), 1)
	testutil.WaitFor(t, "retention to drop segments", 30*time.Second, func() bool {
		st, err := p.Status(ctx)
		return err == nil && st.FirstLSN > 1
	})
	if _, err := p.Read(1, 1, 1); !errors.Is(err, lockstitch.ErrTruncated) {
		t.Fatalf("read below the first retained LSN: %v", err)
	}
	if _, err := p.ReadBackward(1); !errors.Is(err, lockstitch.ErrTruncated) {
		t.Fatalf("a backward read below the first retained LSN: %v", err)
	}
	first, recs, err := readRetained(ctx, p)
	if err != nil || len(recs) != int(300-first+1) {
		t.Fatalf("read from %d: %d records, %v", first, len(recs), err)
	}
	// A restart still finds everything it needs.
	c.close()
	for i := range c.nodes {
		c.start(i)
	}
	appendN(t, c, 1, 0, 5)
	for i := range c.nodes {
		p := c.partition(i, 1)
		waitApplied(t, p, 305)
		first, recs, err := readRetained(ctx, p)
		if err != nil || recs[len(recs)-1].LSN != 305 || len(recs) != int(305-first+1) {
			t.Fatalf("node %d: read from %d: %d records, %v", i+1, first, len(recs), err)
		}
	}
}

// readRetained reads everything p retains: from its first retained LSN,
// again from the new one if retention drops more in the meantime (a few
// times at most).
func readRetained(ctx context.Context, p *replicator.Partition) (first lockstitch.LSN, recs []replicator.Record, err error) {
	for range 10 {
		var st replicator.PartitionStatus
		if st, err = p.Status(ctx); err != nil {
			return 0, nil, err
		}
		first = st.FirstLSN
		if recs, err = p.Read(first, 1000, 1<<30); !errors.Is(err, lockstitch.ErrTruncated) {
			return first, recs, err
		}
	}
	return first, recs, err
}

// TestWitness adds a witness to a two-replica partition: it votes, holds
// no data, and refuses queries.
func TestWitness(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, nil)
	c.create(1)
	appendN(t, c, 1, 0, 10)
	cfg := testConfig(t, filepath.Join(t.TempDir(), "witness"))
	c.nodes = append(c.nodes, &node{cfg: cfg})
	c.start(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.get(c.leader(1)).AddReplica(ctx, 1, 3, cfg.RaftAddress, lockstitch.Witness); err != nil {
		t.Fatal(err)
	}
	w, err := c.get(2).JoinPartition(replicator.JoinSpec{Partition: 1, Replica: 3, Kind: lockstitch.Witness, Plugin: replicator.LogPluginName})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Query(ctx, nil, replicator.QueryOptions{}); !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("query on a witness: %v", err)
	}
	// With the witness, either data replica can fail and the partition
	// still commits: first the follower, then (the follower back and
	// caught up) the leader.
	l := c.leader(1)
	c.stop(1 - l)
	appendN(t, c, 1, 10, 20)
	if recs := c.stream(l, 1, 20); len(recs) != 20 {
		t.Fatalf("leader holds %d ops", len(recs))
	}
	c.start(1 - l)
	c.stream(1-l, 1, 20)
	// A linearizable read on the follower waits until it has applied
	// everything committed (progress reports included), which the leader
	// and the witness alone may have committed: the witness refuses its
	// vote to a replica whose log is behind its own.
	if _, err := linearizable(ctx, c.partition(1-l, 1)); err != nil {
		t.Fatalf("linearizable read on the follower: %v", err)
	}
	c.stop(l)
	appendN(t, c, 1, 20, 30)
	if recs := c.stream(1-l, 1, 30); len(recs) != 30 {
		t.Fatalf("the other data replica holds %d ops", len(recs))
	}
	if nl := c.leader(1); nl != 1-l {
		t.Fatalf("node %d leads, want node %d (the witness cannot lead)", nl+1, 2-l)
	}
}

// The crash test runs one node of the cluster in a child process (this
// test binary, re-run in node mode), kills it with SIGKILL while ops are
// being appended, restarts it from its directory, and checks that it
// recovers (log cut back to its checkpoint, Raft replay) and converges.

const childEnv = "LOCKSTITCH_TEST_CHILD_NODE"

type childSpec struct {
	DataDir, RaftAddress string
	Spec                 replicator.PartitionSpec
}

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChildNode(v))
	}
	os.Exit(m.Run())
}

// runChildNode runs one node until it is killed or stdin closes.
func runChildNode(spec string) int {
	var cs childSpec
	if err := json.Unmarshal([]byte(spec), &cs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := replicator.Open(testConfigAt(cs.DataDir, cs.RaftAddress))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if len(r.Partitions()) == 0 {
		if _, err := r.CreatePartition(cs.Spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-sig:
	case <-done:
	}
	r.Close()
	return 0
}

func startChild(t *testing.T, cs childSpec) *exec.Cmd {
	t.Helper()
	b, err := json.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make([]byte, 6)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		t.Fatalf("child node did not start: %q %v", line, err)
	}
	return cmd
}

// childApplied returns the LSN replica 3 (the child) last reported, as
// node i sees it.
func childApplied(c *cluster, i int) lockstitch.LSN {
	r := c.get(i)
	if r == nil {
		return 0
	}
	p, err := r.Partition(1)
	if err != nil {
		return 0
	}
	st, err := p.Status(context.Background())
	if err != nil {
		return 0
	}
	for _, rs := range st.Replicas {
		if rs.Replica == 3 && rs.Reported {
			return rs.AppliedLSN
		}
	}
	return 0
}

func TestCrashedNodeRecovers(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	c := newCluster(t, 2, nil)
	childCfg := testConfig(t, filepath.Join(t.TempDir(), "child"))
	spec := c.spec(1)
	spec.Replicas[3] = childCfg.RaftAddress
	for i := range c.nodes {
		if _, err := c.get(i).CreatePartition(spec); err != nil {
			t.Fatal(err)
		}
	}
	cs := childSpec{DataDir: childCfg.DataDir, RaftAddress: childCfg.RaftAddress, Spec: spec}
	child := startChild(t, cs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The appends go through this process's nodes, which answer NotLeader
	// while the child leads: keep the leadership here.
	if err := c.get(0).TransferLeader(ctx, 1, 1); err != nil {
		t.Fatal(err)
	}

	// Append from two goroutines; kill the child in the middle.
	a := goAppenders(2, func(g int) error {
		for i := 0; i < 300; i++ {
			op := replicator.AppendOp{Payload: opPayload(g, i), Producer: lockstitch.ProducerID(g + 1), Seq: uint64(i + 1)}
			if _, err := c.appendRetry(ctx, 1, op); err != nil {
				return err
			}
		}
		return nil
	})
	// Kill the child once it has applied some ops, while more arrive.
	testutil.WaitFor(t, "the child node to apply ops", 30*time.Second, func() bool {
		return childApplied(c, 0) >= 50 || childApplied(c, 1) >= 50
	})
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	a.wait(t)
	// Restart the child from its directory: it recovers and catches up.
	// Then stop everything and read its data back in this process.
	child = startChild(t, cs)
	l := c.leader(1)
	want := c.stream(l, 1, 600)
	testutil.WaitFor(t, "the restarted node to report LSN 600", 30*time.Second, func() bool {
		return childApplied(c, l) == 600
	})
	child.Process.Signal(syscall.SIGTERM)
	child.Wait()
	c.close()
	r, err := replicator.Open(childCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := r.Partition(1)
	if err != nil {
		t.Fatal(err)
	}
	var got []replicator.Record
	testutil.WaitFor(t, "the reopened replica to open", 20*time.Second, func() bool {
		got, err = p.Read(1, 1000, 1<<30)
		return err == nil
	})
	if len(got) != len(want) {
		t.Fatalf("crashed node holds %d ops after recovery, survivors %d", len(got), len(want))
	}
	for i := range want {
		if got[i].LSN != want[i].LSN || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Fatalf("LSN %d differs on the crashed node", want[i].LSN)
		}
	}
}
