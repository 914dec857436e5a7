package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// TestServedOverTransport drives a three-node cluster through the Go
// client: appends routed to the leader by NotLeader hints, batches,
// reads, subscriptions (one ahead of the stream), queries and status,
// and a failover during appends.
func TestServedOverTransport(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1}); err != nil {
		t.Fatal(err)
	}

	// Appends, many in flight, then a batch.
	futures := make([]transport.AppendFuture, 200)
	for i := range futures {
		futures[i] = cl.AppendAsync(ctx, 1, []byte(fmt.Sprint("op ", i)))
	}
	seen := map[wal.LSN]bool{}
	for i, f := range futures {
		res, err := f.Wait(ctx)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		seen[res.LSN] = true
	}
	if len(seen) != 200 {
		t.Fatalf("200 appends got %d distinct LSNs", len(seen))
	}
	batch, err := cl.AppendBatch(ctx, 1, [][]byte{[]byte("b1"), []byte("b2"), []byte("b3")}, nil)
	if err != nil || len(batch) != 3 || batch[0].LSN != 201 || batch[2].LSN != 203 {
		t.Fatalf("batch: %+v, %v", batch, err)
	}

	// A read returns them in order, checked end to end.
	var recs transport.Records
	if err := cl.Read(ctx, 1, 1, transport.ReadOptions{MaxOps: 1000, MaxBytes: 1 << 20}, &recs); err != nil {
		t.Fatal(err)
	}
	var rec wal.Record
	for lsn := wal.LSN(1); lsn <= 203; lsn++ {
		if err := recs.Next(&rec); err != nil {
			t.Fatalf("record %d: %v", lsn, err)
		}
		if rec.LSN != lsn || rec.CRC != wal.Checksum(rec.Payload) {
			t.Fatalf("record %d read as LSN %d", lsn, rec.LSN)
		}
	}
	if recs.Committed() != 203 {
		t.Fatalf("read reports commit LSN %d, want 203", recs.Committed())
	}

	// A subscription from marker 150 gets 151..203, then new ops; one
	// from marker 204, ahead of everything committed, is diverged.
	sub, err := cl.Subscribe(ctx, 1, 150)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ahead, err := cl.Subscribe(ctx, 1, 204)
	if err != nil {
		t.Fatal(err)
	}
	defer ahead.Close()
	var dv *lockstitch.DivergedError
	if err := ahead.Next(ctx, &rec); !errors.As(err, &dv) || !errors.Is(err, lockstitch.ErrDiverged) {
		t.Fatalf("subscription ahead of the commit point: %v", err)
	}
	if leaderSt, err := c.nodes[c.leader(1)].Replicator().Partition(1); err != nil {
		t.Fatal(err)
	} else if st, err := leaderSt.Status(ctx); err != nil || *dv != (lockstitch.DivergedError{Partition: 1, Marker: 204, Committed: 203, Epoch: st.Epoch}) || st.Epoch == 0 {
		t.Fatalf("diverged error over TCP %+v; the leader's status %+v, %v", *dv, st, err)
	}
	for lsn := wal.LSN(151); lsn <= 203; lsn++ {
		if err := sub.Next(ctx, &rec); err != nil || rec.LSN != lsn {
			t.Fatalf("subscription at %d: LSN %d, %v", lsn, rec.LSN, err)
		}
	}
	for i := 204; i <= 205; i++ {
		if _, err := cl.Append(ctx, 1, []byte(fmt.Sprint("followed ", i))); err != nil {
			t.Fatal(err)
		}
	}
	for lsn := wal.LSN(204); lsn <= 205; lsn++ {
		if err := sub.Next(ctx, &rec); err != nil || rec.LSN != lsn || string(rec.Payload) != fmt.Sprint("followed ", lsn) {
			t.Fatalf("followed op: LSN %d %q, %v", rec.LSN, rec.Payload, err)
		}
	}

	// Query and status.
	q, err := cl.Query(ctx, 1, transport.QueryOptions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pos struct{ LSN uint64 }
	if json.Unmarshal(q.Result, &pos); pos.LSN != 205 || q.LSN != 205 {
		t.Fatalf("query: %s at LSN %d", q.Result, q.LSN)
	}
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != lockstitch.RoleLeader || len(st.Replicas) != 3 || st.Applied != 205 {
		t.Fatalf("status: %+v", st)
	}
	if _, err := cl.Append(ctx, 99, []byte("x")); !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("append to a missing partition: %v", err)
	}
	missing, err := cl.Subscribe(ctx, 99, 0)
	if err == nil {
		err = missing.Next(ctx, &rec)
		missing.Close()
	}
	if !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("subscribe to a missing partition: %v", err)
	}

	// Failover: stop the leader's node while appending; the client
	// follows the new leader and its retries are not applied twice.
	old := c.leader(1)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	tenDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			if _, err := cl.Append(ctx, 1, []byte(fmt.Sprintf("failover %d", i))); err != nil {
				errc <- err
				return
			}
			if i == 9 {
				close(tenDone)
			}
		}
	}()
	select {
	case <-tenDone:
	case err := <-errc:
		t.Fatalf("append before the failover: %v", err)
	}
	c.stop(old)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatalf("append across the failover: %v", err)
	}
	p, err := c.nodes[c.leader(1)].Replicator().Partition(1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Read(206, 1000, 1<<20)
	if err != nil || len(got) != 100 {
		t.Fatalf("the stream holds %d ops after the failover, want 100: %v", len(got), err)
	}
	for i, r := range got {
		if string(r.Payload) != fmt.Sprintf("failover %d", i) {
			t.Fatalf("op %d after the failover is %q: lost, duplicated or reordered", i, r.Payload)
		}
	}
}

// TestAppendGroupPayloads appends from many goroutines at once, so that
// the server reads several Append frames together and hands them to the
// partition as a group (handler.AppendGroup), and reads every op back:
// each LSN holds the payload of the append that was answered with it.
func TestAppendGroupPayloads(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 128, 8
	var mu sync.Mutex
	sent := map[wal.LSN]string{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				payload := fmt.Sprintf("worker %d op %d", w, i)
				res, err := cl.Append(ctx, 1, []byte(payload))
				if err != nil {
					errs <- fmt.Errorf("%s: %w", payload, err)
					return
				}
				mu.Lock()
				sent[res.LSN] = payload
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(sent) != workers*each {
		t.Fatalf("%d appends got %d distinct LSNs", workers*each, len(sent))
	}
	var recs transport.Records
	if err := cl.Read(ctx, 1, 1, transport.ReadOptions{MaxOps: workers * each, MaxBytes: 1 << 20}, &recs); err != nil {
		t.Fatal(err)
	}
	var rec wal.Record
	for n := 0; n < workers*each; n++ {
		if err := recs.Next(&rec); err != nil {
			t.Fatalf("record %d of %d: %v", n+1, workers*each, err)
		}
		if want := sent[rec.LSN]; string(rec.Payload) != want {
			t.Fatalf("LSN %d holds %q; the append answered with it sent %q", rec.LSN, rec.Payload, want)
		}
	}
}
