package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

func TestAppendReadQueryStatus(t *testing.T) {
	h := newFakeHandler()
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)

	for i := range 10 {
		res, err := cl.Append(ctx, 7, []byte(fmt.Sprint("op ", i)))
		if err != nil {
			t.Fatal(err)
		}
		if res.LSN != wal.LSN(i+1) || res.Epoch != 1 {
			t.Fatalf("append %d: %+v", i, res)
		}
	}
	var recs Records
	if err := cl.Read(ctx, 7, 3, ReadOptions{MaxOps: 4}, &recs); err != nil {
		t.Fatal(err)
	}
	var rec wal.Record
	for lsn := wal.LSN(3); lsn < 7; lsn++ {
		if err := recs.Next(&rec); err != nil {
			t.Fatal(err)
		}
		if rec.LSN != lsn || string(rec.Payload) != fmt.Sprint("op ", lsn-1) || rec.CRC != wal.Checksum(rec.Payload) {
			t.Fatalf("record %d: %+v", lsn, rec)
		}
	}
	if err := recs.Next(&rec); err != io.EOF {
		t.Fatalf("after MaxOps records: %v", err)
	}
	if recs.Committed() != 10 {
		t.Fatalf("committed %d", recs.Committed())
	}
	// Beyond the end: no records.
	if err := cl.Read(ctx, 7, 11, ReadOptions{}, &recs); err != nil || recs.Next(&rec) != io.EOF {
		t.Fatalf("read beyond the end: %v", err)
	}
	// Backwards: from LSN 6 down, from the end, and down to LSN 1.
	for _, c := range []struct {
		from, want wal.LSN
		ops        int
	}{{6, 6, 3}, {0, 10, 2}, {99, 10, 1}, {3, 3, 10}} {
		if err := cl.Read(ctx, 7, c.from, ReadOptions{MaxOps: c.ops, Reverse: true}, &recs); err != nil {
			t.Fatalf("reverse read from %d: %v", c.from, err)
		}
		got := 0
		for lsn := c.want; recs.Next(&rec) == nil; lsn-- {
			if rec.LSN != lsn || string(rec.Payload) != fmt.Sprint("op ", lsn-1) {
				t.Fatalf("reverse read from %d: record %+v, want LSN %d", c.from, rec, lsn)
			}
			got++
		}
		if want := min(c.ops, int(c.want)); got != want {
			t.Fatalf("reverse read from %d: %d records, want %d", c.from, got, want)
		}
	}
	// A partition the node does not host.
	if err := cl.Read(ctx, 8, 1, ReadOptions{}, &recs); !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("read of an unknown partition: %v", err)
	}

	q, err := cl.Query(ctx, 7, QueryOptions{}, []byte("k"), nil)
	if err != nil || string(q.Result) != "echo:k" || q.LSN != 10 || q.Committed != 10 {
		t.Fatalf("query: %+v, %v", q, err)
	}
	st, err := cl.Status(ctx, "")
	if err != nil || st.NodeID != 1 || len(st.Partitions) != 1 || st.Partitions[0].Committed != 10 {
		t.Fatalf("status: %+v, %v", st, err)
	}
	ps, err := cl.PartitionStatus(ctx, 7)
	if err != nil || ps.Partition != 7 || len(ps.Replicas) != 1 {
		t.Fatalf("partition status: %+v, %v", ps, err)
	}
	if _, err := cl.PartitionStatus(ctx, 99); !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("status of an unknown partition: %v", err)
	}
	if err := cl.Ping(ctx, addr); err != nil {
		t.Fatal(err)
	}
	res, err := cl.Admin(ctx, addr, &AdminRequest{Op: AdminListPartitions, Plugin: "x"})
	if err != nil || len(res.Partitions) != 1 || res.Partitions[0].Plugin != "x" || res.Partitions[0].Replicas[0].Role != lockstitch.RoleLeader {
		t.Fatalf("admin: %+v, %v", res, err)
	}
	if parts, err := cl.ListPartitions(ctx); err != nil || len(parts) != 1 {
		t.Fatalf("list partitions: %+v, %v", parts, err)
	}
	if err := cl.DeletePartition(ctx, 7); !errors.Is(err, lockstitch.ErrInvalidArgument) {
		t.Fatalf("failing admin: %v", err)
	}
}

func TestAppendBatch(t *testing.T) {
	h := newFakeHandler()
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	payloads := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("c"), 5000)}
	results, err := cl.AppendBatch(ctx, 3, payloads, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results", len(results))
	}
	for i, r := range results {
		if r.LSN != wal.LSN(i+1) || string(r.Result) != fmt.Sprint("op ", i) {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	recs := h.records(3)
	for i, p := range payloads {
		if !bytes.Equal(recs[i].Payload, p) {
			t.Fatalf("record %d holds %q", i, recs[i].Payload)
		}
	}
}

// TestConcurrentAppends runs synchronous and asynchronous appends from
// many goroutines at once and checks every op landed once.
func TestConcurrentAppends(t *testing.T) {
	h := newFakeHandler()
	h.async = true
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			futures := make([]AppendFuture, 0, each)
			for i := range each {
				p := []byte(fmt.Sprintf("g%d-%d", g, i))
				if g%2 == 0 {
					if _, err := cl.Append(ctx, 1, p); err != nil {
						errs <- err
						return
					}
					continue
				}
				futures = append(futures, cl.AppendAsync(ctx, 1, p))
			}
			for _, f := range futures {
				if _, err := f.Wait(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	recs := h.records(1)
	if len(recs) != goroutines*each {
		t.Fatalf("%d records, want %d", len(recs), goroutines*each)
	}
	seen := make(map[string]bool)
	for _, r := range recs {
		if seen[string(r.Payload)] {
			t.Fatalf("%q appended twice", r.Payload)
		}
		seen[string(r.Payload)] = true
	}
}

func TestFutureSpent(t *testing.T) {
	h := newFakeHandler()
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	f := cl.AppendAsync(ctx, 1, []byte("x"))
	if _, err := f.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("waiting twice for a future did not panic")
		}
	}()
	f.Wait(ctx)
}

func TestSubscribe(t *testing.T) {
	h := newFakeHandler()
	_, addr := startServer(t, h, testServerConfig())
	cfg := testClientConfig()
	cfg.SubscribeWindowOps = 8 // exercise credit renewal
	cl := dialTest(t, cfg, addr)
	ctx := testContext(t)
	for i := range 5 {
		if _, err := cl.Append(ctx, 2, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := cl.Subscribe(ctx, 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	next := wal.LSN(3)
	check := func() {
		t.Helper()
		if err := sub.Next(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.LSN != next || string(rec.Payload) != fmt.Sprint(next-1) {
			t.Fatalf("got LSN %d %q, want %d", rec.LSN, rec.Payload, next)
		}
		next++
	}
	for range 3 {
		check()
	}
	// Live records, more than the window.
	go func() {
		for i := 5; i < 40; i++ {
			if _, err := cl.Append(ctx, 2, []byte(fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for next <= 40 {
		check()
	}
	if sub.Marker() != 40 {
		t.Fatalf("marker %d", sub.Marker())
	}
	sub.Close()
	if err := sub.Next(ctx, &rec); !errors.Is(err, lockstitch.ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
}

func TestSubscribeTruncated(t *testing.T) {
	h := newFakeHandler()
	h.mu.Lock()
	h.partLocked(4).first = 10
	h.mu.Unlock()
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	sub, err := cl.Subscribe(ctx, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var tr *lockstitch.TruncatedError
	if err := sub.Next(ctx, new(wal.Record)); !errors.As(err, &tr) || tr.First != 10 {
		t.Fatalf("Next below the first retained LSN: %v", err)
	}
	if err := cl.Read(ctx, 4, 1, ReadOptions{}, new(Records)); !errors.As(err, &tr) || tr.First != 10 {
		t.Fatalf("Read below the first retained LSN: %v", err)
	}
}

// TestNotLeaderRedirect runs two servers; the first says the second leads
// the partition, and the client follows the hint by itself.
func TestNotLeaderRedirect(t *testing.T) {
	leader := newFakeHandler()
	leader.nodeID = 2
	_, leaderAddr := startServer(t, leader, testServerConfig())
	follower := newFakeHandler()
	follower.notLeader[5] = leaderAddr
	_, followerAddr := startServer(t, follower, testServerConfig())

	cl := dialTest(t, testClientConfig(), followerAddr)
	ctx := testContext(t)
	for i := range 3 {
		if _, err := cl.Append(ctx, 5, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(leader.records(5)); n != 3 {
		t.Fatalf("leader has %d records", n)
	}
	follower.mu.Lock()
	calls := follower.appends
	follower.mu.Unlock()
	if calls != 1 {
		t.Fatalf("the follower got %d appends; the client should have stayed with the leader after the first", calls)
	}
	// A leader that knows of no leader: the client gives up after its attempts.
	follower.mu.Lock()
	follower.notLeader[6] = ""
	follower.mu.Unlock()
	cfg := testClientConfig()
	cfg.MaxAttempts = 3
	cl2 := dialTest(t, cfg, followerAddr)
	if _, err := cl2.Append(ctx, 6, []byte("x")); !errors.Is(err, lockstitch.ErrNotLeader) {
		t.Fatalf("append with no leader anywhere: %v", err)
	}
}

// TestRetryKeepsSequence kills the connection under an append in flight
// and checks that the retry reuses the producer id and sequence, so the
// op is applied once.
func TestRetryKeepsSequence(t *testing.T) {
	h := &dropFirstHandler{fakeHandler: newFakeHandler()}
	srv, addr := startServer(t, h, testServerConfig())
	h.srv = srv
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	res, err := cl.Append(ctx, 1, []byte("once"))
	if err != nil {
		t.Fatal(err)
	}
	if res.LSN != 1 {
		t.Fatalf("LSN %d", res.LSN)
	}
	recs := h.records(1)
	if len(recs) != 1 {
		t.Fatalf("%d records: the retry was applied again", len(recs))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.appends != 2 {
		t.Fatalf("%d append calls, want 2 (the first, whose answer was lost, and the retry)", h.appends)
	}
}

// dropFirstHandler applies the first append but closes every connection
// instead of answering it, as a crash between commit and answer would.
type dropFirstHandler struct {
	*fakeHandler
	srv     *Server
	dropped bool
}

func (h *dropFirstHandler) Append(req *AppendRequest, done AppendCompletion) {
	h.mu.Lock()
	first := !h.dropped
	h.dropped = true
	h.mu.Unlock()
	if !first {
		h.fakeHandler.Append(req, done)
		return
	}
	h.mu.Lock()
	h.appends++
	h.appendLocked(req.Partition, req.Producer, req.Sequence, req.CRC, req.Payload)
	h.mu.Unlock()
	h.srv.mu.Lock()
	for c := range h.srv.conns {
		c.nc.Close()
	}
	h.srv.mu.Unlock()
	done.Fail(errors.New("never sent: the connection is gone"))
}

// TestReconnect restarts the server on the same address between appends.
func TestReconnect(t *testing.T) {
	h := newFakeHandler()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	srv, err := NewServer(h, testServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	if _, err := cl.Append(ctx, 1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	<-served
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	serveOn(t, h, testServerConfig(), l2)
	if _, err := cl.Append(ctx, 1, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if n := len(h.records(1)); n != 2 {
		t.Fatalf("%d records", n)
	}
}

// TestSubscribeResumes ends a subscription's connection mid-stream; the
// subscription resumes from its marker and delivers every LSN once,
// including records appended after the cut, which only a new
// subscription can deliver.
func TestSubscribeResumes(t *testing.T) {
	h := newFakeHandler()
	srv, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)
	appendN := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := cl.Append(ctx, 1, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(0, 20)
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	for lsn := wal.LSN(1); lsn <= 40; lsn++ {
		if lsn == 10 {
			srv.mu.Lock()
			for c := range srv.conns {
				c.nc.Close()
			}
			srv.mu.Unlock()
			appendN(20, 40)
		}
		if err := sub.Next(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.LSN != lsn || rec.Payload[0] != byte(lsn-1) {
			t.Fatalf("got LSN %d payload %d, want %d", rec.LSN, rec.Payload[0], lsn)
		}
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ls.sock")
	l, err := Listen("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	h := newFakeHandler()
	serveOn(t, h, testServerConfig(), l)
	cl := dialTest(t, testClientConfig(), "unix:"+path)
	if _, err := cl.Append(testContext(t), 1, []byte("over a unix socket")); err != nil {
		t.Fatal(err)
	}
}

// TestAppendContext checks that an append whose context ends returns at
// once, and that the client stays usable.
func TestAppendContext(t *testing.T) {
	h := &stallHandler{fakeHandler: newFakeHandler(), started: make(chan struct{}), release: make(chan struct{})}
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx, cancel := context.WithCancel(testContext(t))
	errc := make(chan error, 1)
	go func() {
		_, err := cl.Append(ctx, 1, []byte("stalled"))
		errc <- err
	}()
	<-h.started
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("append with a cancelled context: %v", err)
	}
	close(h.release)
	if _, err := cl.Append(testContext(t), 2, []byte("next")); err != nil {
		t.Fatal(err)
	}
}

// stallHandler holds the first append of partition 1 until release.
type stallHandler struct {
	*fakeHandler
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (h *stallHandler) Append(req *AppendRequest, done AppendCompletion) {
	if req.Partition != 1 {
		h.fakeHandler.Append(req, done)
		return
	}
	payload := append([]byte(nil), req.Payload...)
	r := *req
	r.Payload = payload
	go func() {
		<-h.release
		h.fakeHandler.Append(&r, done)
	}()
	h.once.Do(func() { close(h.started) })
}

// TestSubscribeAndQueryFollowLeader checks that subscriptions and queries
// follow NotLeader hints as appends do.
func TestSubscribeAndQueryFollowLeader(t *testing.T) {
	leader := newFakeHandler()
	_, leaderAddr := startServer(t, leader, testServerConfig())
	follower := newFakeHandler()
	follower.notLeader[5] = leaderAddr
	_, followerAddr := startServer(t, follower, testServerConfig())
	ctx := testContext(t)
	// Fill the leader through its own client, so the follower's client
	// has learnt nothing yet.
	lc := dialTest(t, testClientConfig(), leaderAddr)
	for i := range 3 {
		if _, err := lc.Append(ctx, 5, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	cl := dialTest(t, testClientConfig(), followerAddr)
	sub, err := cl.Subscribe(ctx, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	if err := sub.Next(ctx, &rec); err != nil || rec.LSN != 2 {
		t.Fatalf("first record through the follower's hint: LSN %d, %v", rec.LSN, err)
	}
	cl2 := dialTest(t, testClientConfig(), followerAddr)
	q, err := cl2.Query(ctx, 5, QueryOptions{Consistency: lockstitch.Linearizable}, []byte("k"), nil)
	if err != nil || q.LSN != 3 {
		t.Fatalf("query through the follower's hint: %+v, %v", q, err)
	}
}

// damagedHandler serves one record whose payload no longer matches the
// CRC stored with it, as memory corruption after a verified log read
// would leave it.
type damagedHandler struct{ *fakeHandler }

func damagedRecord(lsn wal.LSN) *wal.Record {
	return &wal.Record{LSN: lsn, Epoch: 1, CRC: wal.Checksum([]byte("original")), Payload: []byte("damaged!")}
}

func (damagedHandler) Read(ctx context.Context, req *ReadRequest, res *ReadResult) error {
	res.Add(damagedRecord(req.From))
	return nil
}

func (damagedHandler) Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error {
	return s.Send(damagedRecord(s.Next()))
}

// TestDamagedRecordRefused checks that the server refuses to send a record
// whose payload does not match its stored CRC.
func TestDamagedRecordRefused(t *testing.T) {
	_, addr := startServer(t, damagedHandler{newFakeHandler()}, testServerConfig())
	cfg := testClientConfig()
	cfg.MaxAttempts = 2
	cl := dialTest(t, cfg, addr)
	ctx := testContext(t)
	if err := cl.Read(ctx, 1, 1, ReadOptions{}, new(Records)); !errors.Is(err, lockstitch.ErrChecksum) {
		t.Fatalf("Read of a damaged record: %v", err)
	}
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := sub.Next(ctx, new(wal.Record)); !errors.Is(err, lockstitch.ErrChecksum) {
		t.Fatalf("Next on a damaged record: %v", err)
	}
}

// TestPartitionNotFoundTriesOtherSeeds: a node that does not host the
// partition (any more) sends the client on to its other seeds.
func TestPartitionNotFoundTriesOtherSeeds(t *testing.T) {
	gone := newFakeHandler()
	gone.appendErr = lockstitch.ErrPartitionNotFound
	_, without := startServer(t, gone, testServerConfig())
	_, with := startServer(t, newFakeHandler(), testServerConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, DefaultClientConfig(), without, with)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Append(ctx, 7, []byte("x")); err != nil {
		t.Fatalf("append with a seed that hosts the partition: %v", err)
	}
	only, err := Dial(ctx, DefaultClientConfig(), without)
	if err != nil {
		t.Fatal(err)
	}
	defer only.Close()
	if _, err := only.Append(ctx, 7, []byte("x")); !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("append with no seed hosting the partition: %v", err)
	}
}

// TestQueryResultsIntact runs many queries on one server, so that its
// pooled buffers are reused: every answer must be exactly the handler's
// result (a frame once overwrote the result it was built from).
func TestQueryResultsIntact(t *testing.T) {
	_, addr := startServer(t, newFakeHandler(), testServerConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, DefaultClientConfig(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := 0; i < 200; i++ {
		req := bytes.Repeat([]byte{byte('a' + i%26)}, 1+i*7%300)
		res, err := cl.Query(ctx, 7, QueryOptions{}, req, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := "echo:" + string(req); string(res.Result) != want {
			t.Fatalf("query %d answered %q, want %q", i, res.Result, want)
		}
	}
}
