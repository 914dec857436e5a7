package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// fakeHandler is an in-memory Handler: one log per partition, duplicate
// detection by producer and sequence, follower behaviour on demand. It is
// what the replicator will be, minus replication.
type fakeHandler struct {
	nodeID uint64

	mu        sync.Mutex
	parts     map[lockstitch.PartitionID]*fakePart
	notLeader map[lockstitch.PartitionID]string // partitions this node does not lead, with the leader's address
	appendErr error                             // fails every append when set
	async     bool                              // complete appends from another goroutine
	appends   int                               // Append and AppendBatch calls
}

type fakePart struct {
	first   wal.LSN      // first retained LSN
	recs    []wal.Record // from first on, payloads copied
	epoch   uint64
	results map[[2]uint64]AppendResult // by (producer, sequence)
	changed chan struct{}              // closed and replaced on every append
	cursors map[string]Cursor
}

func newFakeHandler() *fakeHandler {
	return &fakeHandler{nodeID: 1, parts: make(map[lockstitch.PartitionID]*fakePart), notLeader: make(map[lockstitch.PartitionID]string)}
}

// partLocked returns partition p, creating it.
func (f *fakeHandler) partLocked(p lockstitch.PartitionID) *fakePart {
	fp := f.parts[p]
	if fp == nil {
		fp = &fakePart{first: 1, epoch: 1, results: make(map[[2]uint64]AppendResult), changed: make(chan struct{})}
		f.parts[p] = fp
	}
	return fp
}

// last returns the last LSN of fp.
func (fp *fakePart) last() wal.LSN { return fp.first + wal.LSN(len(fp.recs)) - 1 }

// appendLocked appends one op, or returns the original result of a
// duplicate.
func (f *fakeHandler) appendLocked(p lockstitch.PartitionID, producer, seq uint64, crc uint32, payload []byte) (AppendResult, error) {
	if addr, ok := f.notLeader[p]; ok {
		return AppendResult{}, &lockstitch.NotLeaderError{LeaderAddr: addr}
	}
	if f.appendErr != nil {
		return AppendResult{}, f.appendErr
	}
	if crc != wal.Checksum(payload) {
		return AppendResult{}, fmt.Errorf("fake: handler got a payload whose CRC was not verified")
	}
	fp := f.partLocked(p)
	if producer != 0 {
		if r, dup := fp.results[[2]uint64{producer, seq}]; dup {
			return r, nil
		}
	}
	lsn := fp.last() + 1
	fp.recs = append(fp.recs, wal.Record{LSN: lsn, Epoch: fp.epoch, CRC: crc, Payload: append([]byte(nil), payload...)})
	r := AppendResult{LSN: lsn, Epoch: fp.epoch}
	if producer != 0 {
		fp.results[[2]uint64{producer, seq}] = r
	}
	close(fp.changed)
	fp.changed = make(chan struct{})
	return r, nil
}

func (f *fakeHandler) Append(req *AppendRequest, done AppendCompletion) {
	f.mu.Lock()
	f.appends++
	r, err := f.appendLocked(req.Partition, req.Producer, req.Sequence, req.CRC, req.Payload)
	async := f.async
	f.mu.Unlock()
	complete := func() {
		if err != nil {
			done.Fail(err)
		} else {
			done.Complete(r)
		}
	}
	if async {
		go complete()
	} else {
		complete()
	}
}

func (f *fakeHandler) AppendBatch(req *AppendBatchRequest, done BatchCompletion) {
	f.mu.Lock()
	f.appends++
	var results []AppendResult
	var err error
	it := req.Ops()
	var op BatchOp
	for i := uint64(0); it.Next(&op) && err == nil; i++ {
		var r AppendResult
		r, err = f.appendLocked(req.Partition, req.Producer, req.Sequence+i, op.CRC, op.Payload)
		r.Result = []byte(fmt.Sprint("op ", i))
		results = append(results, r)
	}
	f.mu.Unlock()
	if err != nil {
		done.Fail(err)
		return
	}
	done.Complete(results)
}

func (f *fakeHandler) Read(ctx context.Context, req *ReadRequest, res *ReadResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addr, ok := f.notLeader[req.Partition]; ok {
		return &lockstitch.NotLeaderError{LeaderAddr: addr}
	}
	fp := f.parts[req.Partition]
	if fp == nil {
		return lockstitch.ErrPartitionNotFound
	}
	res.Committed = fp.last()
	if req.Reverse {
		from := req.From
		if from == 0 || from > fp.last() {
			from = fp.last()
		}
		if from < fp.first && from != 0 {
			return &lockstitch.TruncatedError{First: fp.first}
		}
		for lsn := from; lsn >= fp.first && lsn > 0; lsn-- {
			if !res.Add(&fp.recs[lsn-fp.first]) {
				break
			}
		}
		return nil
	}
	if req.From < fp.first {
		return &lockstitch.TruncatedError{First: fp.first}
	}
	for lsn := req.From; lsn <= fp.last(); lsn++ {
		if !res.Add(&fp.recs[lsn-fp.first]) {
			break
		}
	}
	return nil
}

func (f *fakeHandler) Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error {
	for {
		f.mu.Lock()
		if addr, ok := f.notLeader[req.Partition]; ok {
			f.mu.Unlock()
			return &lockstitch.NotLeaderError{LeaderAddr: addr}
		}
		fp := f.partLocked(req.Partition)
		if s.Next() < fp.first {
			f.mu.Unlock()
			return &lockstitch.TruncatedError{First: fp.first}
		}
		var batch []wal.Record
		if next := s.Next(); next <= fp.last() {
			batch = fp.recs[next-fp.first:]
		}
		changed := fp.changed
		s.SetCommitted(fp.last())
		f.mu.Unlock()
		for i := range batch {
			if err := s.Send(&batch[i]); err != nil {
				return err
			}
		}
		if err := s.Flush(); err != nil {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeHandler) Query(ctx context.Context, req *QueryRequest, res *QueryResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addr, ok := f.notLeader[req.Partition]; ok && req.Consistency != lockstitch.Bounded {
		return &lockstitch.NotLeaderError{LeaderAddr: addr}
	}
	fp := f.partLocked(req.Partition)
	res.LSN, res.Committed = fp.last(), fp.last()
	res.Result = append(res.Result, "echo:"...)
	res.Result = append(res.Result, req.Request...)
	return nil
}

// Admin answers AdminListPartitions with one partition named after the
// request's plugin field, and fails every other op.
func (f *fakeHandler) Admin(ctx context.Context, req *AdminRequest, res *AdminResult) error {
	if req.Op != AdminListPartitions {
		return fmt.Errorf("%w: op %v", lockstitch.ErrInvalidArgument, req.Op)
	}
	res.Partitions = []PartitionInfo{{Partition: 7, Plugin: req.Plugin, Leader: 1, Replicas: []ReplicaInfo{{Node: 1, Replica: 1, Role: lockstitch.RoleLeader}}}}
	return nil
}

// Cursor keeps cursors per partition; an ack below the cursor keeps it,
// an ack of a cursor named "lapsed" fails with ErrCursorLapsed.
func (f *fakeHandler) Cursor(ctx context.Context, req *CursorRequest, res *CursorResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if addr, ok := f.notLeader[req.Partition]; ok && req.Op != CursorList {
		return &lockstitch.NotLeaderError{LeaderAddr: addr}
	}
	fp := f.partLocked(req.Partition)
	if fp.cursors == nil {
		fp.cursors = map[string]Cursor{}
	}
	switch req.Op {
	case CursorAck:
		if req.Name == "lapsed" {
			return fmt.Errorf("cursor %q: %w", req.Name, lockstitch.ErrCursorLapsed)
		}
		c := fp.cursors[req.Name]
		fp.cursors[req.Name] = Cursor{Name: req.Name, LSN: max(c.LSN, req.LSN)}
	case CursorReset:
		fp.cursors[req.Name] = Cursor{Name: req.Name, LSN: req.LSN}
	case CursorDelete:
		if _, ok := fp.cursors[req.Name]; !ok {
			return fmt.Errorf("%w: no cursor %q", lockstitch.ErrInvalidArgument, req.Name)
		}
		delete(fp.cursors, req.Name)
	case CursorList:
		for _, c := range fp.cursors {
			res.Cursors = append(res.Cursors, c)
		}
		sort.Slice(res.Cursors, func(i, j int) bool { return res.Cursors[i].Name < res.Cursors[j].Name })
	default:
		return fmt.Errorf("%w: cursor op %d", lockstitch.ErrInvalidArgument, req.Op)
	}
	return nil
}

func (f *fakeHandler) Status(ctx context.Context, req *StatusRequest) (*NodeStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := &NodeStatus{NodeID: f.nodeID}
	for id, fp := range f.parts {
		if req.OnePartition && id != req.Partition {
			continue
		}
		st.Partitions = append(st.Partitions, PartitionStatus{
			Partition: id, Role: lockstitch.RoleLeader, Leader: lockstitch.ReplicaID(f.nodeID), Epoch: fp.epoch, Committed: fp.last(), Applied: fp.last(),
			Replicas: []ReplicaStatus{{Replica: lockstitch.ReplicaID(f.nodeID), Addr: "self", Kind: lockstitch.Voter, Match: fp.last()}},
		})
	}
	if req.OnePartition && len(st.Partitions) == 0 {
		return nil, lockstitch.ErrPartitionNotFound
	}
	return st, nil
}

// records returns a copy of partition p's records.
func (f *fakeHandler) records(p lockstitch.PartitionID) []wal.Record {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fp := f.parts[p]; fp != nil {
		return append([]wal.Record(nil), fp.recs...)
	}
	return nil
}

// testServerConfig returns a server config for tests.
func testServerConfig() ServerConfig {
	cfg := DefaultServerConfig()
	cfg.NodeID = 1
	return cfg
}

// startServer serves h on a TCP listener on 127.0.0.1 and returns the
// server and its address; the test's cleanup closes it and checks that
// Serve returned.
func startServer(t testing.TB, h Handler, cfg ServerConfig) (*Server, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, h, cfg, l), l.Addr().String()
}

// serveOn serves h on l until the test ends.
func serveOn(t testing.TB, h Handler, cfg ServerConfig, l net.Listener) *Server {
	t.Helper()
	srv, err := NewServer(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, lockstitch.ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	})
	return srv
}

// testClientConfig returns a client config for tests: fast backoff.
func testClientConfig() ClientConfig {
	cfg := DefaultClientConfig()
	cfg.BackoffMin = time.Millisecond
	cfg.BackoffMax = 20 * time.Millisecond
	return cfg
}

// dialTest dials addrs; the test's cleanup closes the client.
func dialTest(t testing.TB, cfg ClientConfig, addrs ...string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := Dial(ctx, cfg, addrs...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// testContext returns a context that bounds a test's waits.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// nopHandler completes appends at once and answers reads with 8 fixed
// records: the cheapest possible handler, for benchmarks and allocation
// tests.
type nopHandler struct{}

var nopRecords = func() []wal.Record {
	recs := make([]wal.Record, 8)
	for i := range recs {
		recs[i] = wal.Record{LSN: wal.LSN(i + 1), Epoch: 1, Payload: make([]byte, 100)}
	}
	return recs
}()

func (nopHandler) Append(req *AppendRequest, done AppendCompletion) {
	done.Complete(AppendResult{LSN: wal.LSN(req.Sequence), Epoch: 1})
}

func (nopHandler) AppendBatch(req *AppendBatchRequest, done BatchCompletion) {
	done.Fail(lockstitch.ErrInvalidArgument)
}

func (nopHandler) Read(ctx context.Context, req *ReadRequest, res *ReadResult) error {
	for i := req.From; i <= wal.LSN(len(nopRecords)) && res.Add(&nopRecords[i-1]); i++ {
	}
	res.Committed = wal.LSN(len(nopRecords))
	return nil
}

func (nopHandler) Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error {
	<-ctx.Done()
	return ctx.Err()
}

func (nopHandler) Query(ctx context.Context, req *QueryRequest, res *QueryResult) error {
	return lockstitch.ErrInvalidArgument
}

func (nopHandler) Admin(ctx context.Context, req *AdminRequest, res *AdminResult) error {
	return lockstitch.ErrInvalidArgument
}

func (nopHandler) Cursor(ctx context.Context, req *CursorRequest, res *CursorResult) error {
	return nil
}

func (nopHandler) Status(ctx context.Context, req *StatusRequest) (*NodeStatus, error) {
	return &NodeStatus{}, nil
}
