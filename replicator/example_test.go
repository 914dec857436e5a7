package replicator_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
)

// counter is a small plugin: it counts the ops applied and answers
// queries with the count. It keeps its state in memory and reports that
// nothing is durable (Open and Sync return 0), so the replicator replays
// the retained stream into it at every start.
type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) Open(context.Context) (lockstitch.LSN, error) { return 0, nil }

func (c *counter) Apply(ops []replicator.Op, results [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range ops {
		c.n++
		results[i] = []byte(strconv.Itoa(c.n)) // returned to the appender
	}
	return nil
}

func (c *counter) Query(context.Context, []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return []byte(strconv.Itoa(c.n)), nil
}

func (c *counter) Sync() (lockstitch.LSN, error) { return 0, nil }

func (c *counter) PrepareSnapshot() (replicator.Snapshot, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytesSnapshot(strconv.Itoa(c.n)), nil
}

func (c *counter) Restore(r io.Reader, _ lockstitch.LSN) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n, err = strconv.Atoi(string(b))
	return err
}

func (c *counter) Close() error { return nil }

// Example runs a one-node partition with a custom plugin: it appends ops,
// reads the stream back, and queries the plugin.
func Example() {
	dir, _ := os.MkdirTemp("", "lockstitch-example-")
	defer os.RemoveAll(dir)
	l, _ := net.Listen("tcp", "127.0.0.1:0") // find a free port
	addr := l.Addr().String()
	l.Close()

	cfg := replicator.DefaultConfig()
	cfg.DataDir = dir
	cfg.RaftAddress = addr
	cfg.Plugins["counter"] = func(replicator.PluginContext) (replicator.StateMachine, error) {
		return &counter{}, nil
	}
	r, err := replicator.Open(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	p, err := r.CreatePartition(replicator.PartitionSpec{
		ID:       1,
		Plugin:   "counter",
		Replicas: map[lockstitch.ReplicaID]string{1: addr},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A new partition elects its leader first.
	if err := p.WaitReady(ctx); err != nil {
		fmt.Println(err)
		return
	}
	for _, op := range []string{"red", "green", "blue"} {
		res, err := p.Append(ctx, replicator.AppendOp{Payload: []byte(op)})
		for errors.Is(err, lockstitch.ErrNotLeader) || errors.Is(err, lockstitch.ErrUnavailable) {
			// A leader just elected may still refuse for a moment:
			// retry after a pause, as with any retryable error.
			time.Sleep(10 * time.Millisecond)
			res, err = p.Append(ctx, replicator.AppendOp{Payload: []byte(op)})
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("appended %s at LSN %d, plugin result %s\n", op, res.LSN, res.Result)
	}
	recs, _ := p.Read(1, 10, 1<<20)
	for _, rec := range recs {
		fmt.Printf("LSN %d: %s\n", rec.LSN, rec.Payload)
	}
	res, _ := p.Query(ctx, nil, replicator.QueryOptions{Consistency: lockstitch.Linearizable})
	fmt.Printf("count %s as of LSN %d\n", res.Result, res.LSN)
	// Output:
	// appended red at LSN 1, plugin result 1
	// appended green at LSN 2, plugin result 2
	// appended blue at LSN 3, plugin result 3
	// LSN 1: red
	// LSN 2: green
	// LSN 3: blue
	// count 3 as of LSN 3
}
