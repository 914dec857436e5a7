package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	kvops "github.com/lockstitch/lockstitch/ops/kv"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
)

// newKVCluster starts three nodes with a kv partition 1 and returns a kv
// client of it.
func newKVCluster(t testing.TB, ctx context.Context) *kvclient.Client {
	t.Helper()
	c := newTestCluster(t, 3)
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "kv", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	return kvclient.New(cl, 1)
}

// TestKVClient runs every kvclient call against a cluster of nodes with
// the default plugins.
func TestKVClient(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := newKVCluster(t, ctx)

	w, err := kc.Put(ctx, []byte("a"), []byte("1"))
	if err != nil || !w.Found || w.Version != uint64(w.LSN) || w.LSN == 0 {
		t.Fatalf("Put: %+v, %v", w, err)
	}
	for _, opts := range []kvclient.ReadOptions{kvclient.Linearizable, kvclient.LeaderLocal} {
		item, lsn, err := kc.Get(ctx, []byte("a"), opts)
		if err != nil || string(item.Value) != "1" || item.Version != w.Version || lsn < w.LSN {
			t.Fatalf("Get(%v): %+v at %d, %v", opts.Consistency, item, lsn, err)
		}
	}
	if _, lsn, err := kc.Get(ctx, []byte("nope"), kvclient.Linearizable); !errors.Is(err, kvclient.ErrNotFound) || lsn < w.LSN {
		t.Fatalf("Get of an absent key: %d, %v", lsn, err)
	}
	_, err = kc.CAS(ctx, []byte("a"), []byte("2"), w.Version+100)
	var conflict *kvclient.ConflictError
	if !errors.As(err, &conflict) || !errors.Is(err, kvclient.ErrConflict) || conflict.Current != w.Version || string(conflict.Key) != "a" {
		t.Fatalf("CAS on a stale version: %v", err)
	}
	w2, err := kc.CAS(ctx, []byte("a"), []byte("2"), w.Version)
	if err != nil || w2.Version <= w.Version {
		t.Fatalf("CAS: %+v, %v", w2, err)
	}
	if _, err := kc.CASDelete(ctx, []byte("a"), w.Version); !errors.Is(err, kvclient.ErrConflict) {
		t.Fatalf("CASDelete on a stale version: %v", err)
	}
	if d, err := kc.CASDelete(ctx, []byte("a"), w2.Version); err != nil || !d.Found {
		t.Fatalf("CASDelete: %+v, %v", d, err)
	}
	if d, err := kc.Delete(ctx, []byte("a")); err != nil || d.Found {
		t.Fatalf("Delete of an absent key: %+v, %v", d, err)
	}
	if _, err := kc.Put(ctx, nil, []byte("x")); !errors.Is(err, kvclient.ErrBadRequest) {
		t.Fatalf("Put of an empty key: %v", err)
	}

	// Batches, then scan them page by page.
	var ops []kvclient.BatchOp
	for i := range 25 {
		ops = append(ops, kvclient.PutOp([]byte(fmt.Sprintf("p/%02d", i)), []byte(fmt.Sprint(i))))
	}
	lsn, res, err := kc.Batch(ctx, ops)
	if err != nil || len(res) != 25 || res[24].Status != kvops.StatusOK || res[24].Version != uint64(lsn) {
		t.Fatalf("Batch: %d %+v %v", lsn, res, err)
	}
	_, res, err = kc.Batch(ctx, []kvclient.BatchOp{kvclient.DeleteOp([]byte("p/00")), kvclient.CASOp([]byte("p/01"), nil, 1)})
	if !errors.Is(err, kvclient.ErrConflict) || res[0].Status != kvops.StatusAborted || res[1].Status != kvops.StatusMismatch || res[1].Version != uint64(lsn) {
		t.Fatalf("Batch with a stale cas: %+v %v", res, err)
	}
	var keys []string
	req := kvclient.ScanRequest{Prefix: []byte("p/"), Limit: 10}
	for pages := 0; ; pages++ {
		page, err := kc.Scan(ctx, req, kvclient.LeaderLocal)
		if err != nil || pages > 3 {
			t.Fatalf("Scan: %v after %d pages", err, pages)
		}
		for _, it := range page.Items {
			keys = append(keys, string(it.Key))
		}
		if !page.More {
			break
		}
		req.Start = page.Next
	}
	if len(keys) != 25 || keys[0] != "p/00" || keys[24] != "p/24" {
		t.Fatalf("scanned %d keys: %v", len(keys), keys)
	}
}

// BenchmarkKV measures kv puts and gets (linearizable) through the Go
// client against three in-process nodes on loopback, at 1, 16 and 256
// concurrent callers. ns/op is the time per op with that many in flight.
func BenchmarkKV(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kc := newKVCluster(b, ctx)
	value := make([]byte, 100)
	const keys = 10000
	for i := range keys {
		if _, err := kc.Put(ctx, fmt.Appendf(nil, "key%05d", i), value); err != nil {
			b.Fatal(err)
		}
	}
	for _, op := range []string{"put", "get"} {
		for _, conc := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("%s/c%d", op, conc), func(b *testing.B) {
				var next atomic.Int64
				var wg sync.WaitGroup
				var failed atomic.Value
				b.ResetTimer()
				for range conc {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for {
							i := next.Add(1) - 1
							if i >= int64(b.N) {
								return
							}
							key := fmt.Appendf(nil, "key%05d", i%keys)
							var err error
							if op == "put" {
								_, err = kc.Put(ctx, key, value)
							} else {
								_, _, err = kc.Get(ctx, key, kvclient.Linearizable)
							}
							if err != nil {
								failed.Store(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// TestKVResultLost: a write retried under the sequence of one that was
// applied (its answer lost) is answered as a duplicate, with no plugin
// result: the client says transport.ErrResultLost with the original LSN,
// and nothing applies twice. On a partition of another plugin, an empty
// answer is not taken for a duplicate.
func TestKVResultLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := newTestCluster(t, 3)
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "kv", Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	kc := kvclient.New(cl, 1)
	w, err := kc.Put(ctx, []byte("a"), []byte("1")) // sequence 1
	if err != nil {
		t.Fatal(err)
	}
	cl.SetSequence(1, 1) // as a producer that restarted unsure of its last op
	if again, err := kc.Put(ctx, []byte("a"), []byte("1")); !errors.Is(err, transport.ErrResultLost) || again.LSN != w.LSN {
		t.Fatalf("put retried: %+v, %v; want ErrResultLost at LSN %d", again, err, w.LSN)
	}
	d, err := kc.Delete(ctx, []byte("a")) // sequence 2
	if err != nil || !d.Found {
		t.Fatalf("delete: %+v, %v", d, err)
	}
	cl.SetSequence(1, 2)
	if lost, err := kc.Delete(ctx, []byte("a")); !errors.Is(err, transport.ErrResultLost) || lost.LSN != d.LSN {
		t.Fatalf("delete retried: %+v, %v; want ErrResultLost at LSN %d", lost, err, d.LSN)
	}
	// Nothing was applied twice: the next write comes right after.
	w3, err := kc.Put(ctx, []byte("b"), []byte("2"))
	if err != nil || w3.LSN != d.LSN+1 {
		t.Fatalf("next put: %+v, %v; want LSN %d", w3, err, d.LSN+1)
	}
	// A log partition answers every append with an empty result.
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 2, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := kvclient.New(cl, 2).Put(ctx, []byte("a"), []byte("1")); err == nil || errors.Is(err, transport.ErrResultLost) {
		t.Fatalf("put on a log partition: %v, want an error saying it is no kv partition", err)
	}
}
