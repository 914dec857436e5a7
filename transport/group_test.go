package transport

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// groupHandler is a GroupAppender that checks each group (one partition,
// payloads intact) and answers each op, after the group is handed over,
// with the number its payload carries as the LSN.
type groupHandler struct {
	nopHandler
	mu       sync.Mutex
	groups   int
	maxGroup int
	bad      []string
	later    chan func()
}

func (h *groupHandler) Append(req *AppendRequest, done AppendCompletion) {
	h.AppendGroup([]AppendRequest{*req}, []AppendCompletion{done})
}

func (h *groupHandler) AppendGroup(reqs []AppendRequest, done []AppendCompletion) {
	h.mu.Lock()
	h.groups++
	h.maxGroup = max(h.maxGroup, len(reqs))
	for i := range reqs {
		r := &reqs[i]
		if r.Partition != reqs[0].Partition {
			h.bad = append(h.bad, fmt.Sprintf("a group of partitions %d and %d", reqs[0].Partition, r.Partition))
		}
		if p := binary.LittleEndian.Uint64(r.Payload); p != uint64(r.Partition) {
			h.bad = append(h.bad, fmt.Sprintf("partition %d with a payload of partition %d", r.Partition, p))
		}
	}
	h.mu.Unlock()
	// Answer once the group is handed over, from another goroutine, as a
	// replicator does; the payloads are not ours after we return.
	lsns := make([]wal.LSN, len(reqs))
	for i := range reqs {
		lsns[i] = wal.LSN(binary.LittleEndian.Uint64(reqs[i].Payload[8:]))
	}
	ds := append([]AppendCompletion(nil), done...)
	h.later <- func() {
		for i, d := range ds {
			d.Complete(AppendResult{LSN: lsns[i], Epoch: 1})
		}
	}
}

// TestAppendGroup pipelines appends to two partitions, in runs, through a
// GroupAppender: every append is answered with its own result, no group
// mixes partitions or sees another request's payload, and appends read
// together are handed over together.
func TestAppendGroup(t *testing.T) {
	h := &groupHandler{later: make(chan func(), 1024)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case f := <-h.later:
				f()
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	_, addr := startServer(t, h, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := testContext(t)

	const n, depth = 4000, 128
	payloads := make([][]byte, n)
	futures := make([]AppendFuture, n)
	part := func(i int) lockstitch.PartitionID { return lockstitch.PartitionID(1 + (i/7)%2) }
	for i := range n {
		payloads[i] = binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, uint64(part(i))), uint64(i+1))
	}
	for i := range n + depth {
		if j := i - depth; j >= 0 {
			res, err := futures[j].Wait(ctx)
			if err != nil {
				t.Fatalf("append %d: %v", j, err)
			}
			if res.LSN != wal.LSN(j+1) {
				t.Fatalf("append %d answered with LSN %d, want %d", j, res.LSN, j+1)
			}
		}
		if i < n {
			futures[i] = cl.AppendAsync(ctx, part(i), payloads[i])
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.bad) > 0 {
		t.Fatalf("%d bad groups, the first: %s", len(h.bad), h.bad[0])
	}
	if h.maxGroup < 2 {
		t.Fatalf("%d appends pipelined %d deep were handed over one at a time (%d groups)", n, depth, h.groups)
	}
	t.Logf("%d appends in %d groups, the largest of %d", n, h.groups, h.maxGroup)
}
