package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	kvops "github.com/lockstitch/lockstitch/ops/kv"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
	"github.com/lockstitch/lockstitch/wal"
)

// kvMirror is a kv partition's state applied outside the process: from a
// snapshot (kvops.ReadSnapshot) and then from the stream's requests, each
// write's version being its LSN, as ops/kv says. It knows put, delete,
// cas, and batches of puts and deletes (the workload below).
type kvMirror struct {
	lsn   lockstitch.LSN
	items map[string]kvclient.Item
}

func (m *kvMirror) restore(lsn lockstitch.LSN, r io.Reader) error {
	items := make(map[string]kvclient.Item)
	got, _, err := kvops.ReadSnapshot(r, func(it kvops.Item) error {
		items[string(it.Key)] = kvclient.Item{Key: []byte(string(it.Key)), Value: []byte(string(it.Value)), Version: it.Version}
		return nil
	})
	if err != nil {
		return err
	}
	if got != lsn {
		return fmt.Errorf("a snapshot at LSN %d, announced at %d", got, lsn)
	}
	m.lsn, m.items = lsn, items
	return nil
}

func (m *kvMirror) apply(lsn lockstitch.LSN, payload []byte) error {
	if lsn != m.lsn+1 {
		return fmt.Errorf("LSN %d after %d", lsn, m.lsn)
	}
	m.lsn = lsn
	var req kvops.Request
	if err := kvops.DecodeRequest(payload, &req); err != nil {
		return fmt.Errorf("LSN %d: %w", lsn, err)
	}
	set := func(r *kvops.Request) {
		m.items[string(r.Key)] = kvclient.Item{Key: r.Key, Value: r.Value, Version: uint64(lsn)}
	}
	switch req.Op {
	case kvops.OpPut:
		set(&req)
	case kvops.OpDelete:
		delete(m.items, string(req.Key))
	case kvops.OpCAS:
		if m.items[string(req.Key)].Version != req.Version {
			return nil
		}
		if req.Delete {
			delete(m.items, string(req.Key))
		} else {
			set(&req)
		}
	case kvops.OpBatch:
		rest := req.Ops
		for range req.Count {
			var op kvops.Request
			var err error
			if rest, err = kvops.NextBatchOp(rest, &op); err != nil {
				return fmt.Errorf("LSN %d: %w", lsn, err)
			}
			switch op.Op {
			case kvops.OpPut:
				set(&op)
			case kvops.OpDelete:
				delete(m.items, string(op.Key))
			default:
				return fmt.Errorf("LSN %d: op %d in a batch, which the mirror does not know", lsn, op.Op)
			}
		}
	default:
		return fmt.Errorf("LSN %d: op %d", lsn, req.Op)
	}
	return nil
}

// TestKVConsumerThroughSnapshot follows a kv partition over TCP from a
// marker that retention dropped: the consumer restores the plugin's
// snapshot with kvops.ReadSnapshot, applies the writes after it (some
// appended while the copy runs), and ends with exactly the keys, values
// and versions a scan of the replica returns.
func TestKVConsumerThroughSnapshot(t *testing.T) {
	t.Parallel()
	c := newClusterWith(t, 1, 1, smallRetention)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "kv"}); err != nil {
		t.Fatal(err)
	}
	kc := kvclient.New(cl, 1)
	rng := rand.New(rand.NewPCG(15, 1))
	versions := make(map[string]uint64) // as the writes' results said
	var last lockstitch.LSN
	write := func(n int) {
		t.Helper()
		for range n {
			key := fmt.Sprintf("k%03d", rng.IntN(200))
			value := fmt.Appendf(nil, "%s=%0*d", key, rng.IntN(200), rng.IntN(1000))
			var w kvclient.Write
			var err error
			switch r := rng.IntN(20); {
			case r < 12:
				w, err = kc.Put(ctx, []byte(key), value)
			case r < 15:
				w, err = kc.Delete(ctx, []byte(key))
				w.Version = 0 // absent now
			case r < 18: // matches unless the version is stale on purpose
				v := versions[key]
				if r == 17 {
					v += 1000
				}
				w, err = kc.CAS(ctx, []byte(key), value, v)
				if r == 17 {
					if !errors.Is(err, kvclient.ErrConflict) {
						t.Fatalf("a stale cas: %v", err)
					}
					continue // the conflict asked for (appended, it changes nothing)
				}
			default:
				var lsn lockstitch.LSN
				ops := []kvclient.BatchOp{{Op: kvops.OpPut, Key: []byte(key), Value: value}, {Op: kvops.OpDelete, Key: []byte(key + "x")}, {Op: kvops.OpPut, Key: []byte(key + "y"), Value: value}}
				if lsn, _, err = kc.Batch(ctx, ops); err == nil {
					w = kvclient.Write{LSN: lsn, Version: uint64(lsn), Found: true}
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.LSN > last {
				last = w.LSN
			}
			versions[key] = w.Version
		}
	}
	write(2500)

	// Retention drops the start of the stream.
	p, err := c.nodes[0].Replicator().Partition(1)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "retention to drop LSN 1", 60*time.Second, func() bool {
		st, err := p.Status(ctx)
		return err == nil && st.FirstLSN > 1
	})

	m := kvMirror{items: make(map[string]kvclient.Item)}
	restores := 0
	sub, err := cl.SubscribeWith(ctx, 1, 0, transport.SubscribeOptions{Restore: func(lsn wal.LSN, r io.Reader) error {
		restores++
		return m.restore(lsn, r)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	more := make(chan struct{})
	go func() {
		defer close(more)
		write(500) // while the copy runs
		// Last a put, whose LSN is the stream's end (a conflicting cas
		// says none).
		write := func() error {
			w, err := kc.Put(ctx, []byte("end"), nil)
			last = w.LSN
			return err
		}
		if err := write(); err != nil {
			t.Error(err)
		}
	}()
	<-more
	var rec wal.Record
	for m.lsn < last {
		if err := sub.Next(ctx, &rec); err != nil {
			t.Fatalf("after LSN %d: %v", m.lsn, err)
		}
		if err := m.apply(rec.LSN, rec.Payload); err != nil {
			t.Fatal(err)
		}
	}
	if restores != 1 {
		t.Fatalf("restored %d times", restores)
	}

	replica := make(map[string]kvclient.Item)
	for sr := (kvclient.ScanRequest{}); ; {
		page, err := kc.Scan(ctx, sr, kvclient.Linearizable)
		if err != nil {
			t.Fatal(err)
		}
		if page.LSN != last {
			t.Fatalf("a scan at LSN %d, the last write at %d", page.LSN, last)
		}
		for _, it := range page.Items {
			replica[string(it.Key)] = it
		}
		if !page.More {
			break
		}
		sr.Start = page.Next
	}
	if len(replica) == 0 || !maps.EqualFunc(replica, m.items, func(a, b kvclient.Item) bool {
		return string(a.Key) == string(b.Key) && string(a.Value) == string(b.Value) && a.Version == b.Version
	}) {
		t.Fatalf("the consumer holds %d keys, the replica %d, and they differ", len(m.items), len(replica))
	}
}
