package replicator_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	catchup "github.com/lockstitch/lockstitch/copy"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

// chain is what a consumer of the tests below (and chainPlugin) holds:
// the last LSN applied and a SHA-256 chain over every payload in LSN
// order, so that a missing, repeated or reordered op changes it.
type chain struct {
	LSN lockstitch.LSN
	Sum [sha256.Size]byte
}

const chainSize = 8 + sha256.Size

func (c *chain) apply(lsn lockstitch.LSN, payload []byte) error {
	if lsn != c.LSN+1 {
		return fmt.Errorf("chain: LSN %d after %d", lsn, c.LSN)
	}
	h := sha256.New()
	h.Write(c.Sum[:])
	h.Write(payload)
	h.Sum(c.Sum[:0])
	c.LSN = lsn
	return nil
}

func (c *chain) encode() []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, chainSize), uint64(c.LSN))
	return append(b, c.Sum[:]...)
}

func (c *chain) decode(b []byte) error {
	if len(b) != chainSize {
		return fmt.Errorf("chain: %d bytes, want %d", len(b), chainSize)
	}
	c.LSN = lockstitch.LSN(binary.LittleEndian.Uint64(b))
	copy(c.Sum[:], b[8:])
	return nil
}

// chainPlugin keeps a chain of the partition's ops, durably on Sync; its
// snapshot and its Query answer are the encoded chain. gate, if not nil,
// is held by Apply while it runs: a test that locks it stalls the replica.
type chainPlugin struct {
	dir  string
	gate *sync.Mutex
	mu   sync.Mutex
	st   chain
}

func chainFactory(gate *sync.Mutex) replicator.PluginFactory {
	return func(pc replicator.PluginContext) (replicator.StateMachine, error) {
		return &chainPlugin{dir: pc.Dir, gate: gate}, nil
	}
}

func (p *chainPlugin) file() string { return filepath.Join(p.dir, "chain") }

func (p *chainPlugin) Open(context.Context) (lockstitch.LSN, error) {
	b, err := os.ReadFile(p.file())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return p.st.LSN, p.st.decode(b)
}

func (p *chainPlugin) Apply(ops []replicator.Op, _ [][]byte) error {
	if p.gate != nil {
		p.gate.Lock()
		defer p.gate.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, op := range ops {
		if err := p.st.apply(op.LSN, op.Payload); err != nil {
			return err
		}
	}
	return nil
}

func (p *chainPlugin) Query(context.Context, []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.encode(), nil
}

func (p *chainPlugin) Sync() (lockstitch.LSN, error) {
	p.mu.Lock()
	b, lsn := p.st.encode(), p.st.LSN
	p.mu.Unlock()
	tmp := p.file() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return 0, err
	}
	return lsn, os.Rename(tmp, p.file())
}

func (p *chainPlugin) PrepareSnapshot() (replicator.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytesSnapshot(p.st.encode()), nil
}

func (p *chainPlugin) Restore(r io.Reader, lsn lockstitch.LSN) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.st.decode(b); err != nil {
		return err
	}
	if p.st.LSN != lsn {
		return fmt.Errorf("chain: snapshot at LSN %d restored as %d", p.st.LSN, lsn)
	}
	return nil
}

func (p *chainPlugin) Close() error { return nil }

// createChain creates partition id with the chain plugin on every node.
func (c *cluster) createChain(id lockstitch.PartitionID) {
	c.t.Helper()
	spec := c.spec(id)
	spec.Plugin = "chain"
	for i := range c.nodes {
		if _, err := c.get(i).CreatePartition(spec); err != nil {
			c.t.Fatalf("node %d: create partition %d: %v", i+1, id, err)
		}
	}
}

// appendMany appends ops from..to-1 (payload opPayload(id, i)) in batches
// at the leader, idempotently, retrying what is safe to retry.
func appendMany(ctx context.Context, c *cluster, id lockstitch.PartitionID, from, to int) error {
	const batch = 500
	for lo := from; lo < to; lo += batch {
		hi := min(lo+batch, to)
		ops := make([]replicator.AppendOp, 0, hi-lo)
		for i := lo; i < hi; i++ {
			ops = append(ops, replicator.AppendOp{Payload: opPayload(int(id), i), Producer: 77, Seq: uint64(i) + 1})
		}
		for {
			r := c.get(c.leader(id))
			if r == nil {
				continue // stopped since: look again
			}
			p, err := r.Partition(id)
			if err != nil {
				return err
			}
			if _, _, err = p.AppendBatch(ctx, ops); err == nil {
				break
			}
			if !retryable(err) || ctx.Err() != nil {
				return fmt.Errorf("append %d..%d: %w", lo, hi-1, err)
			}
		}
	}
	return nil
}

// catchUp brings consumer st from its marker to last through p.Copy:
// the snapshot first if the plan has one (streamed through a pipe while
// the replica keeps applying), then the ops. It returns the plan.
func catchUp(ctx context.Context, p *replicator.Partition, st *chain, snapshot bool, last lockstitch.LSN) (catchup.Plan, error) {
	c, err := p.Copy(ctx, st.LSN, replicator.CopyOptions{Snapshot: snapshot})
	if err != nil {
		return catchup.Plan{}, err
	}
	defer c.Close()
	if c.Plan.Kind == catchup.SnapshotThenDelta {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(c.WriteSnapshot(ctx, pw)) }()
		b, err := io.ReadAll(catchup.NewChunkReader(pr))
		pr.Close()
		if err != nil {
			return c.Plan, fmt.Errorf("reading the snapshot: %w", err)
		}
		if err := st.decode(b); err != nil {
			return c.Plan, err
		}
		if st.LSN != c.Plan.SnapshotLSN {
			return c.Plan, fmt.Errorf("snapshot holds LSN %d, plan says %d", st.LSN, c.Plan.SnapshotLSN)
		}
	}
	sub := c.Subscription()
	if sub.Position() != st.LSN+1 {
		return c.Plan, fmt.Errorf("subscription starts at %d, consumer holds %d", sub.Position(), st.LSN)
	}
	var rec replicator.Record
	for st.LSN < last {
		if err := sub.Next(ctx, &rec); err != nil {
			return c.Plan, fmt.Errorf("after LSN %d: %w", st.LSN, err)
		}
		if err := st.apply(rec.LSN, rec.Payload); err != nil {
			return c.Plan, err
		}
	}
	return c.Plan, nil
}

// replicaChain returns the chain the plugin of node i's replica holds
// once it has applied last.
func (c *cluster) replicaChain(i int, id lockstitch.PartitionID, last lockstitch.LSN) chain {
	c.t.Helper()
	p := c.partition(i, id)
	waitApplied(c.t, p, last)
	var st chain
	testutil.WaitFor(c.t, "a linearizable query", 20*time.Second, func() bool {
		res, err := p.Query(context.Background(), nil, replicator.QueryOptions{Consistency: lockstitch.Linearizable})
		return err == nil && st.decode(res.Result) == nil && st.LSN >= last
	})
	return st
}

// TestCopyToConsumers follows a partition of many ops with consumers that
// start from marker 0, from the middle, and from a marker that retention
// dropped (through a snapshot taken while appends continue): each ends
// with exactly the state of a replica that applied every op.
func TestCopyToConsumers(t *testing.T) {
	t.Parallel()
	n := 100_000
	if raceEnabled || testing.Short() {
		n = 20_000
	}
	const extra = 3000
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		cfg.Plugins["chain"] = chainFactory(nil)
		cfg.SegmentBytes = 64 << 10
	})
	c.createChain(1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := appendMany(ctx, c, 1, 0, n); err != nil {
		t.Fatal(err)
	}
	l := c.leader(1)
	leader := c.partition(l, 1)
	last := lockstitch.LSN(n)

	var whole, middle, late chain
	if plan, err := catchUp(ctx, leader, &whole, false, last); err != nil || plan.Kind != catchup.Delta || plan.From != 1 {
		t.Fatalf("consumer from marker 0: plan %+v, %v", plan, err)
	}
	if _, err := catchUp(ctx, leader, &middle, false, last/2); err != nil {
		t.Fatal(err)
	}
	if plan, err := catchUp(ctx, leader, &middle, false, last); err != nil || plan.Kind != catchup.Delta || plan.From != last/2+1 {
		t.Fatalf("consumer from the middle: plan %+v, %v", plan, err)
	}
	if _, err := catchUp(ctx, leader, &late, false, 100); err != nil {
		t.Fatal(err)
	}

	// A follower restarts with a small retention: LSN 101 goes.
	f := (l + 1) % 3
	c.stop(f)
	c.nodes[f].cfg.RetainBytes = 256 << 10
	c.nodes[f].cfg.CheckpointInterval = 20 * time.Millisecond
	c.start(f)
	fp := c.partition(f, 1)
	testutil.WaitFor(t, "retention to drop LSN 101 on the follower", 60*time.Second, func() bool {
		st, err := fp.Status(ctx)
		return err == nil && st.FirstLSN > 101
	})
	if _, err := fp.Copy(ctx, late.LSN, replicator.CopyOptions{}); !errors.Is(err, lockstitch.ErrTruncated) {
		t.Fatalf("copy from a dropped marker without a snapshot: %v", err)
	}
	more := make(chan error, 1)
	go func() { more <- appendMany(ctx, c, 1, n, n+extra) }()
	plan, err := catchUp(ctx, fp, &late, true, last+extra)
	if err != nil || plan.Kind != catchup.SnapshotThenDelta || plan.SnapshotLSN < 101 {
		t.Fatalf("consumer from a dropped marker: plan %+v, %v", plan, err)
	}
	if err := <-more; err != nil {
		t.Fatal(err)
	}
	for _, st := range []*chain{&whole, &middle} {
		if _, err := catchUp(ctx, leader, st, false, last+extra); err != nil {
			t.Fatal(err)
		}
	}
	want := c.replicaChain(l, 1, last+extra)
	for i := range c.nodes {
		if got := c.replicaChain(i, 1, last+extra); got != want {
			t.Fatalf("replica %d holds %x, the leader %x", i+1, got.encode(), want.encode())
		}
	}
	for name, st := range map[string]*chain{"from 0": &whole, "from the middle": &middle, "through a snapshot": &late} {
		if *st != want {
			t.Errorf("consumer %s holds %x, the replicas %x", name, st.encode(), want.encode())
		}
	}
}

// TestCopyDiverged asks for a copy from a marker ahead of everything the
// partition committed: a *DivergedError with the commit point and epoch.
func TestCopyDiverged(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, nil)
	c.create(1)
	appendN(t, c, 1, 0, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range c.nodes {
		p := c.partition(i, 1)
		st := waitApplied(t, p, 10)
		_, err := p.Copy(ctx, 15, replicator.CopyOptions{Snapshot: true})
		var dv *lockstitch.DivergedError
		if !errors.As(err, &dv) || !errors.Is(err, lockstitch.ErrDiverged) {
			t.Fatalf("node %d: copy from marker 15 of 10: %v", i+1, err)
		}
		if want := (lockstitch.DivergedError{Partition: 1, Marker: 15, Committed: 10, Epoch: st.Epoch}); *dv != want || st.Epoch == 0 {
			t.Fatalf("node %d: %+v, want %+v", i+1, *dv, want)
		}
		cp, err := p.Copy(ctx, 10, replicator.CopyOptions{})
		if err != nil || cp.Plan != (catchup.Plan{Kind: catchup.Delta, From: 11}) {
			t.Fatalf("node %d: copy from the last LSN: %+v, %v", i+1, cp, err)
		}
		cp.Close()
	}
}

// TestCopyAheadOfLaggingReplica asks a replica whose plugin is stalled
// (so it has applied less than the partition committed) for a copy from
// the committed LSN: it is not diverged; the copy waits until the replica
// has applied the commit point, then follows from the marker.
func TestCopyAheadOfLaggingReplica(t *testing.T) {
	t.Parallel()
	var gate sync.Mutex
	c := newCluster(t, 3, func(cfg *replicator.Config) { cfg.Plugins["chain"] = chainFactory(nil) })
	// Node 3's plugin takes the gate in every Apply.
	c.stop(2)
	c.nodes[2].cfg.Plugins = map[string]replicator.PluginFactory{"chain": chainFactory(&gate)}
	c.start(2)
	c.createChain(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := appendMany(ctx, c, 1, 0, 10); err != nil {
		t.Fatal(err)
	}
	lagging := c.partition(2, 1)
	waitApplied(t, lagging, 10)
	// The stalled replica must not lead: its applies end the appends.
	if c.leader(1) == 2 {
		if err := c.get(2).TransferLeader(ctx, 1, 1); err != nil {
			t.Fatal(err)
		}
	}

	gate.Lock()
	locked := true
	defer func() {
		if locked {
			gate.Unlock()
		}
	}()
	// Node 3 is not needed for a quorum; it stalls on its next apply.
	if err := appendMany(ctx, c, 1, 10, 20); err != nil {
		t.Fatal(err)
	}
	if a := lagging.Applied(); a >= 20 {
		t.Fatalf("the stalled replica applied %d", a)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := lagging.Copy(short, 20, replicator.CopyOptions{})
	cancelShort()
	if err == nil || errors.Is(err, lockstitch.ErrDiverged) {
		t.Fatalf("copy from a committed marker ahead of a stalled replica: %v, want a wait cut short", err)
	}
	if a := lagging.Applied(); a >= 20 {
		t.Fatalf("the stalled replica applied %d", a)
	}
	gate.Unlock()
	locked = false
	cp, err := lagging.Copy(ctx, 20, replicator.CopyOptions{})
	if err != nil || cp.Plan != (catchup.Plan{Kind: catchup.Delta, From: 21}) || cp.Committed < 20 {
		t.Fatalf("copy once the replica applies again: %+v, %v", cp, err)
	}
	cp.Close()
	if _, err := lagging.Copy(ctx, 21, replicator.CopyOptions{}); !errors.Is(err, lockstitch.ErrDiverged) {
		t.Fatalf("copy from beyond the commit point: %v", err)
	}
}
