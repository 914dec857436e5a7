package server

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// chain is what the consumers below (and chainPlugin) hold: the last LSN
// applied and a SHA-256 chain over the payloads in LSN order.
type chain struct {
	LSN lockstitch.LSN
	Sum [sha256.Size]byte
}

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
	return append(binary.LittleEndian.AppendUint64(nil, uint64(c.LSN)), c.Sum[:]...)
}

func (c *chain) decode(b []byte) error {
	if len(b) != 8+sha256.Size {
		return fmt.Errorf("chain: %d bytes", len(b))
	}
	c.LSN = lockstitch.LSN(binary.LittleEndian.Uint64(b))
	copy(c.Sum[:], b[8:])
	return nil
}

// chainPlugin keeps a chain of its partition's ops in memory: Open
// returns 0, so a restart replays the log (the tests below do not
// restart). Its snapshot and Query answer are the encoded chain.
type chainPlugin struct {
	mu sync.Mutex
	st chain
}

type chainSnapshot []byte

func (s chainSnapshot) WriteTo(_ context.Context, w io.Writer) error {
	_, err := w.Write(s)
	return err
}
func (chainSnapshot) Release() {}

func (p *chainPlugin) Open(context.Context) (lockstitch.LSN, error) { return 0, nil }
func (p *chainPlugin) Apply(ops []replicator.Op, _ [][]byte) error {
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
	defer p.mu.Unlock()
	return p.st.LSN, nil
}
func (p *chainPlugin) PrepareSnapshot() (replicator.Snapshot, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return chainSnapshot(p.st.encode()), nil
}
func (p *chainPlugin) Restore(r io.Reader, lsn lockstitch.LSN) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.decode(b)
}
func (p *chainPlugin) Close() error { return nil }

// smallRetention makes a node keep little of its log (64 KiB segments,
// 128 KiB retained, a checkpoint every 20 ms), so that a few thousand
// small ops push a marker out of what it retains.
func smallRetention(cfg *Config) {
	cfg.Replicator.SegmentBytes = 64 << 10
	cfg.Replicator.RetainBytes = 128 << 10
	cfg.Replicator.CheckpointInterval = 20 * time.Millisecond
}

// follow applies sub's records to st until it holds last.
func follow(ctx context.Context, sub *transport.Subscription, st *chain, last wal.LSN) error {
	var rec wal.Record
	for st.LSN < last {
		if err := sub.Next(ctx, &rec); err != nil {
			return fmt.Errorf("after LSN %d: %w", st.LSN, err)
		}
		if err := st.apply(rec.LSN, rec.Payload); err != nil {
			return err
		}
	}
	return nil
}

// TestSubscribeThroughSnapshot follows a partition over TCP from a marker
// that retention dropped: with a Restore option the consumer restores the
// plugin's snapshot and follows the records after it, ending with the
// replica's state; without one it gets Truncated; ahead of the commit
// point it gets Diverged.
func TestSubscribeThroughSnapshot(t *testing.T) {
	t.Parallel()
	c := newClusterWith(t, 1, 1, func(cfg *Config) {
		cfg.Replicator.Plugins["chain"] = func(replicator.PluginContext) (replicator.StateMachine, error) { return new(chainPlugin), nil }
		smallRetention(cfg)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "chain"}); err != nil {
		t.Fatal(err)
	}
	appendOps := func(from, to int) {
		t.Helper()
		for lo := from; lo < to; lo += 100 {
			var batch [][]byte
			for i := lo; i < min(lo+100, to); i++ {
				batch = append(batch, fmt.Appendf(nil, "op %d %0100d", i, i))
			}
			if _, err := cl.AppendBatch(ctx, 1, batch, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendOps(0, 50)
	var consumer chain
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := follow(ctx, sub, &consumer, 50); err != nil {
		t.Fatal(err)
	}
	sub.Close()

	// The consumer is away while retention drops what follows LSN 50.
	appendOps(50, 4000)
	p, err := c.nodes[0].Replicator().Partition(1)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "retention to drop LSN 51", 60*time.Second, func() bool {
		st, err := p.Status(ctx)
		return err == nil && st.FirstLSN > 51
	})
	plain, err := cl.Subscribe(ctx, 1, consumer.LSN)
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.Next(ctx, new(wal.Record)); !errors.Is(err, lockstitch.ErrTruncated) {
		t.Fatalf("subscription from a dropped marker without Restore: %v", err)
	}
	plain.Close()

	restores := 0
	var restoredAt wal.LSN
	sub, err = cl.SubscribeWith(ctx, 1, consumer.LSN, transport.SubscribeOptions{Restore: func(lsn wal.LSN, r io.Reader) error {
		restores++
		restoredAt = lsn
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return consumer.decode(b)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	more := make(chan struct{})
	go func() {
		defer close(more)
		appendOps(4000, 4500) // while the copy runs
	}()
	if err := follow(ctx, sub, &consumer, 4500); err != nil {
		t.Fatal(err)
	}
	<-more
	if restores != 1 || restoredAt < 51 {
		t.Fatalf("restored %d times, at LSN %d", restores, restoredAt)
	}
	q, err := cl.Query(ctx, 1, transport.QueryOptions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var replica chain
	if err := replica.decode(q.Result); err != nil || replica != consumer {
		t.Fatalf("the consumer holds %x, the replica %x (%v)", consumer.encode(), q.Result, err)
	}

	// The consumer keeps its marker in the partition as a durable cursor.
	if err := cl.AckCursor(ctx, 1, "chain-consumer", consumer.LSN); err != nil {
		t.Fatal(err)
	}
	if err := cl.AckCursor(ctx, 1, "chain-consumer", 9999); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("ack beyond the stream: %v", err)
	}
	if cs, err := cl.Cursors(ctx, 1); err != nil || len(cs) != 1 || cs[0] != (transport.Cursor{Name: "chain-consumer", LSN: 4500}) {
		t.Fatalf("cursors %+v, %v", cs, err)
	}
	if err := cl.DeleteCursor(ctx, 1, "chain-consumer"); err != nil {
		t.Fatal(err)
	}

	ahead, err := cl.SubscribeWith(ctx, 1, 4600, transport.SubscribeOptions{Restore: func(wal.LSN, io.Reader) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer ahead.Close()
	var dv *lockstitch.DivergedError
	if err := ahead.Next(ctx, new(wal.Record)); !errors.As(err, &dv) || dv.Committed != 4500 || dv.Marker != 4600 || dv.Partition != 1 {
		t.Fatalf("subscription ahead of the commit point: %v", err)
	}
}
