package replicator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// served is a cluster whose nodes each serve clients with a transport
// server, as the lockstitch binary does.
type served struct {
	*cluster
	mu      sync.Mutex
	servers []*transport.Server
}

func newServed(t *testing.T, n int) *served {
	s := &served{}
	s.cluster = newCluster(t, n, func(cfg *replicator.Config) {
		cfg.ClientAddress = testutil.FreeAddr(t)
	})
	s.servers = make([]*transport.Server, n)
	for i := range s.nodes {
		s.serve(i)
	}
	t.Cleanup(func() {
		for i := range s.nodes {
			s.stopNode(i)
		}
	})
	return s
}

func (s *served) serve(i int) {
	s.t.Helper()
	srv, err := transport.NewServer(replicator.NewHandler(s.get(i), uint64(i+1), nil), transport.DefaultServerConfig())
	if err != nil {
		s.t.Fatal(err)
	}
	l, err := net.Listen("tcp", s.nodes[i].cfg.ClientAddress)
	if err != nil {
		s.t.Fatal(err)
	}
	go srv.Serve(l)
	s.mu.Lock()
	s.servers[i] = srv
	s.mu.Unlock()
}

// stopNode stops node i's server and then the node, as a SIGTERM would.
func (s *served) stopNode(i int) {
	s.mu.Lock()
	srv := s.servers[i]
	s.servers[i] = nil
	s.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(ctx)
		cancel()
	}
	s.stop(i)
}

func (s *served) addrs() []string {
	var a []string
	for _, n := range s.nodes {
		a = append(a, n.cfg.ClientAddress)
	}
	return a
}

// TestServedOverTransport drives a three-node cluster through the Go
// client: appends routed to the leader by NotLeader hints, reads,
// subscriptions, queries and status, and a failover during appends.
func TestServedOverTransport(t *testing.T) {
	s := newServed(t, 3)
	s.create(1)
	s.leader(1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), s.addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	// Appends, many in flight.
	futures := make([]transport.AppendFuture, 200)
	for i := range futures {
		futures[i] = cl.AppendAsync(ctx, 1, opPayload(1, i))
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

	// A read returns them in order, checked end to end.
	var recs transport.Records
	if err := cl.Read(ctx, 1, 1, transport.ReadOptions{MaxOps: 1000, MaxBytes: 1 << 20}, &recs); err != nil {
		t.Fatal(err)
	}
	var rec wal.Record
	for lsn := wal.LSN(1); lsn <= 200; lsn++ {
		if err := recs.Next(&rec); err != nil {
			t.Fatalf("record %d: %v", lsn, err)
		}
		if rec.LSN != lsn || rec.CRC != wal.Checksum(rec.Payload) {
			t.Fatalf("record %d read as LSN %d", lsn, rec.LSN)
		}
	}

	// A subscription from marker 150 gets 151..200, then new ops.
	sub, err := cl.Subscribe(ctx, 1, 150)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for lsn := wal.LSN(151); lsn <= 200; lsn++ {
		if err := sub.Next(ctx, &rec); err != nil || rec.LSN != lsn {
			t.Fatalf("subscription at %d: LSN %d, %v", lsn, rec.LSN, err)
		}
	}
	if _, err := cl.Append(ctx, 1, []byte("after the subscription started")); err != nil {
		t.Fatal(err)
	}
	if err := sub.Next(ctx, &rec); err != nil || rec.LSN != 201 || string(rec.Payload) != "after the subscription started" {
		t.Fatalf("followed op: LSN %d %q, %v", rec.LSN, rec.Payload, err)
	}

	// Query and status.
	q, err := cl.Query(ctx, 1, transport.QueryOptions{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pos struct{ LSN uint64 }
	if json.Unmarshal(q.Result, &pos); pos.LSN != 201 || q.LSN != 201 {
		t.Fatalf("query: %s at LSN %d", q.Result, q.LSN)
	}
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != transport.RoleLeader || len(st.Replicas) != 3 || st.Applied != 201 {
		t.Fatalf("status: %+v", st)
	}
	if _, err := cl.Append(ctx, 99, []byte("x")); !errors.Is(err, transport.ErrPartitionNotFound) {
		t.Fatalf("append to a missing partition: %v", err)
	}

	// Failover: stop the leader's node while appending; the client
	// follows the new leader and its retries are not applied twice.
	old := s.leader(1)
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
	s.stopNode(old)
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatalf("append across the failover: %v", err)
	}
	l := s.leader(1)
	got := s.stream(l, 1, 301)
	if len(got) != 301 {
		t.Fatalf("stream holds %d ops after the failover, want 301", len(got))
	}
	var failover []string
	for _, r := range got[201:] {
		failover = append(failover, string(r.Payload))
	}
	for i, p := range failover {
		if p != fmt.Sprintf("failover %d", i) {
			t.Fatalf("op %d after the failover is %q: lost, duplicated or reordered", i, p)
		}
	}
}
