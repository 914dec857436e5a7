package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// TestAdminSequences runs, against three serve processes, the admin
// requests that used to take nodes down or leave half-done state: a
// create, delete and create again of one id (a dragonboat panic,
// "inconsistent target", killed the node); a create with a node down (it
// left a leaderless replica that turned a healthy node's /readyz to
// 503); a delete racing a create. Every answer is a typed error or
// success, and every node keeps running.
func TestAdminSequences(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute)
	addr1 := c.addr(0, 1)
	running := func(step string) {
		t.Helper()
		for i := 1; i <= 3; i++ {
			if p := c.nodes[i-1]; p.cmd.ProcessState != nil || !p.alive() {
				t.Fatalf("%s: node %d exited\n%s", step, i, p.log)
			}
		}
	}

	// 1. Create, delete, create again: the id is spent, and says so.
	if code, out, errOut := cli(t, "partition", "create", "--id", "7", "--replicas", "3", "--addr", addr1); code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	appendRange(ctx, t, cl, 7, bulkPayload, 0, 10)
	if code, out, errOut := cli(t, "partition", "delete", "--id", "7", "--addr", addr1); code != 0 {
		t.Fatalf("delete: %d %s %s", code, out, errOut)
	}
	code, _, errOut := cli(t, "partition", "create", "--id", "7", "--addr", addr1)
	if code == 0 || !strings.Contains(errOut, "cannot be used again") {
		t.Fatalf("create of a deleted id: exit %d, %q; want a refusal that says the id is spent", code, errOut)
	}
	running("create, delete, create")

	// 2. A create with a node down is refused before anything starts:
	// no node is left with a replica, every node stays ready, and the id
	// can be created once the node is back.
	c.nodes[2].kill()
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Nodes: []lockstitch.NodeID{1, 2, 3}}); !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("create with node 3 down: %v, want unavailable", err)
	}
	for i := 1; i <= 2; i++ {
		if code, body := httpGet(t, "http://"+c.addr(20, i)+"/readyz"); code != http.StatusOK {
			t.Fatalf("node %d /readyz after a refused create: %d %q", i, code, body)
		}
		if hosts(ctx, t, c, i, 8) {
			t.Fatalf("node %d hosts partition 8 after its create was refused", i)
		}
	}
	c.nodes[2] = startServe(t, c.args(3))
	c.dial(ctx, 3).Close()
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Nodes: []lockstitch.NodeID{1, 2, 3}}); err != nil {
		t.Fatalf("create once node 3 is back: %v", err)
	}
	appendRange(ctx, t, cl, 8, bulkPayload, 0, 10)
	running("create with a node down")

	// 3. A delete racing a create: either order is fine, but the end is
	// the same everywhere, and a second delete finishes it.
	var wg sync.WaitGroup
	var createErr, deleteErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, createErr = cl.CreatePartition(ctx, transport.PartitionSpec{ID: 9})
	}()
	go func() {
		defer wg.Done()
		deleteErr = cl.DeletePartition(ctx, 9)
	}()
	wg.Wait()
	t.Logf("racing create: %v; delete: %v", createErr, deleteErr)
	if err := cl.DeletePartition(ctx, 9); err != nil {
		t.Fatalf("delete after the race: %v", err)
	}
	for i := 1; i <= 3; i++ {
		if hosts(ctx, t, c, i, 9) {
			t.Fatalf("node %d still hosts partition 9 after its delete", i)
		}
	}
	running("delete racing create")
}

// TestWitnessCreatedInOneCall creates a partition of two data replicas
// and a witness with one `partition create`, kills (SIGKILL) its leader
// under appends, and checks that the appends go on and both data
// replicas serve the same stream.
func TestWitnessCreatedInOneCall(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute, "--progress-interval", "100ms")
	code, out, errOut := cli(t, "partition", "create", "--id", "1", "--replicas", "2", "--witnesses", "1", "--json", "--addr", c.addr(0, 1))
	if code != 0 {
		t.Fatalf("create: %d %s %s", code, out, errOut)
	}
	var created struct {
		Placement []struct {
			Replica lockstitch.ReplicaID
			Node    int
			Kind    string
		}
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	witness := 0
	var data []int
	for _, p := range created.Placement {
		switch p.Kind {
		case "witness":
			witness = p.Node
		case "voter":
			data = append(data, p.Node)
		}
	}
	if len(created.Placement) != 3 || witness == 0 || len(data) != 2 {
		t.Fatalf("placement %s, want two voters and a witness", out)
	}
	// Replicas' client addresses come with their first progress reports.
	var st *transport.PartitionStatus
	testutil.WaitFor(t, "the leader to know the data replicas' addresses", time.Minute, func() bool {
		var err error
		st, err = cl.PartitionStatus(ctx, 1)
		if err != nil || st.Leader == 0 {
			return false
		}
		for _, r := range st.Replicas {
			if r.Kind == lockstitch.Voter && r.Addr == "" {
				return false
			}
		}
		return true
	})
	kinds := map[lockstitch.Kind]int{}
	for _, r := range st.Replicas {
		kinds[r.Kind]++
	}
	if kinds[lockstitch.Voter] != 2 || kinds[lockstitch.Witness] != 1 {
		t.Fatalf("the partition's members: %+v, want two voters and a witness", st.Replicas)
	}
	appendRange(ctx, t, cl, 1, bulkPayload, 0, 200)

	leader := 0
	for _, r := range st.Replicas {
		if r.Replica == st.Leader {
			leader = nodeOf(t, c, r.Addr)
		}
	}
	if leader == 0 || leader == witness {
		t.Fatalf("leader %d (witness on node %d): %+v", leader, witness, st)
	}
	follower := data[0] + data[1] - leader
	// A witness refuses its vote to a replica whose log is behind its
	// own (docs/guarantees.md): the follower must hold everything the
	// leader and the witness committed before the leader dies. Progress
	// reports are entries too: wait until the follower's linearizable
	// read answers at the same point twice, a few report intervals apart.
	fcl := c.dial(ctx, follower)
	defer fcl.Close()
	var last lockstitch.LSN
	for {
		res, err := fcl.Query(ctx, 1, transport.QueryOptions{Consistency: lockstitch.Linearizable}, nil, nil)
		if err != nil {
			t.Fatalf("linearizable read on node %d: %v", follower, err)
		}
		if res.LSN == last && last == 200 {
			break
		}
		last = res.LSN
		time.Sleep(300 * time.Millisecond)
	}
	c.nodes[leader-1].kill()
	appendRange(ctx, t, cl, 1, bulkPayload, 200, 400)

	// The killed leader comes back and catches up; both data replicas
	// hold every op once, in the same order.
	c.nodes[leader-1] = startServe(t, c.args(leader))
	var streams [][][]byte
	for _, i := range data {
		var got [][]byte
		c.readStream(ctx, i, 1, 400, func(rec *wal.Record) { got = append(got, bytes.Clone(rec.Payload)) })
		streams = append(streams, got)
	}
	seen := map[string]bool{}
	for _, p := range streams[0] {
		seen[string(p)] = true
	}
	if len(seen) != 400 || !slices.EqualFunc(streams[0], streams[1], bytes.Equal) {
		t.Fatalf("%d distinct ops in 400 LSNs, or the data replicas' streams differ", len(seen))
	}
	for op := range 400 {
		if !seen[string(bulkPayload(op))] {
			t.Fatalf("op %d missing", op)
		}
	}
	t.Logf("killed node %d (the leader); witness on node %d", leader, witness)
}

// alive reports whether the process still runs (it may have exited
// without anyone waiting for it yet).
func (p *serveProcess) alive() bool {
	return p.cmd.Process.Signal(syscall.Signal(0)) == nil
}

// hosts reports whether node i lists a replica of partition id.
func hosts(ctx context.Context, t *testing.T, c *serveCluster, i int, id lockstitch.PartitionID) bool {
	t.Helper()
	cl := c.dial(ctx, i)
	defer cl.Close()
	st, err := cl.Status(ctx, c.addr(0, i))
	if err != nil {
		t.Fatalf("status of node %d: %v", i, err)
	}
	return slices.ContainsFunc(st.Partitions, func(p transport.PartitionStatus) bool { return p.Partition == id })
}

// nodeOf returns the node whose client address is addr.
func nodeOf(t *testing.T, c *serveCluster, addr string) int {
	t.Helper()
	for i := 1; i <= len(c.nodes); i++ {
		if c.addr(0, i) == addr {
			return i
		}
	}
	t.Fatalf("no node at %q", addr)
	return 0
}

// httpGet returns the status code and body of a GET.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}
