package transport_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// memLog is a toy Handler: one unreplicated in-memory log per partition.
// The replicator is the real one.
type memLog struct {
	mu   sync.Mutex
	logs map[lockstitch.PartitionID][]wal.Record
}

func (m *memLog) Append(req *transport.AppendRequest, done transport.AppendCompletion) {
	m.mu.Lock()
	lsn := wal.LSN(len(m.logs[req.Partition]) + 1)
	rec := wal.Record{LSN: lsn, Epoch: 1, CRC: req.CRC, Payload: append([]byte(nil), req.Payload...)}
	m.logs[req.Partition] = append(m.logs[req.Partition], rec)
	m.mu.Unlock()
	done.Complete(transport.AppendResult{LSN: lsn, Epoch: 1})
}

func (m *memLog) AppendBatch(req *transport.AppendBatchRequest, done transport.BatchCompletion) {
	done.Fail(lockstitch.ErrInvalidArgument)
}

func (m *memLog) Read(ctx context.Context, req *transport.ReadRequest, res *transport.ReadResult) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	recs := m.logs[req.Partition]
	res.Committed = wal.LSN(len(recs))
	for lsn := req.From; lsn <= res.Committed && res.Add(&recs[lsn-1]); lsn++ {
	}
	return nil
}

func (m *memLog) Subscribe(ctx context.Context, req *transport.SubscribeRequest, s *transport.Stream) error {
	return lockstitch.ErrInvalidArgument
}

func (m *memLog) Query(ctx context.Context, req *transport.QueryRequest, res *transport.QueryResult) error {
	return lockstitch.ErrInvalidArgument
}

// Admin refuses: this node has no administrative requests.
func (m *memLog) Admin(context.Context, *transport.AdminRequest, *transport.AdminResult) error {
	return lockstitch.ErrInvalidArgument
}

// Cursor refuses: this node keeps no durable cursors.
func (m *memLog) Cursor(context.Context, *transport.CursorRequest, *transport.CursorResult) error {
	return lockstitch.ErrInvalidArgument
}

func (m *memLog) Status(ctx context.Context, req *transport.StatusRequest) (*transport.NodeStatus, error) {
	return &transport.NodeStatus{NodeID: 1}, nil
}

// Example serves a Handler on a loopback port, appends with the Client,
// and reads the records back, verified end to end.
func Example() {
	srv, err := transport.NewServer(&memLog{logs: map[lockstitch.PartitionID][]wal.Record{}}, transport.DefaultServerConfig())
	if err != nil {
		log.Fatal(err)
	}
	l, err := transport.Listen("127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()

	ctx := context.Background()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()

	for _, op := range []string{"stitch", "by", "stitch"} {
		res, err := cl.Append(ctx, 1, []byte(op))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("appended at LSN", res.LSN)
	}
	var recs transport.Records
	if err := cl.Read(ctx, 1, 2, transport.ReadOptions{}, &recs); err != nil {
		log.Fatal(err)
	}
	var rec wal.Record
	for recs.Next(&rec) == nil { // each record's CRC-32C is checked here
		fmt.Printf("LSN %d: %s\n", rec.LSN, rec.Payload)
	}
	// Output:
	// appended at LSN 1
	// appended at LSN 2
	// appended at LSN 3
	// LSN 2: by
	// LSN 3: stitch
}
