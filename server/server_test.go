package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// testCluster is n nodes that know each other, on 127.0.0.1. Client and
// admin listeners are bound before the nodes start (port 0); Raft
// addresses are probed (testutil.FreeAddr), because dragonboat binds its
// Raft listener itself.
type testCluster struct {
	t     testing.TB
	peers []Peer
	nodes []*Node // nil once stopped
}

func newTestCluster(t testing.TB, n int) *testCluster {
	return newPartialCluster(t, n, n)
}

// startNodes starts the first up of n nodes that know each other and
// returns them; the others are down.
func startNodes(t testing.TB, n, up int) []*Node {
	return newPartialCluster(t, n, up).nodes[:up]
}

// newPartialCluster is newTestCluster with only the first up nodes
// started.
func newPartialCluster(t testing.TB, n, up int) *testCluster {
	t.Helper()
	return newClusterWith(t, n, up, nil)
}

// newClusterWith is newPartialCluster with each node's configuration
// changed by tweak (if not nil) before it starts.
func newClusterWith(t testing.TB, n, up int, tweak func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, nodes: make([]*Node, n)}
	clients := make([]net.Listener, n)
	for i := range n {
		clients[i] = listen(t)
		c.peers = append(c.peers, Peer{ID: lockstitch.NodeID(i + 1), RaftAddr: testutil.FreeAddr(t), ClientAddr: clients[i].Addr().String()})
	}
	cfgs := make([]Config, n)
	for i, p := range c.peers {
		cfgs[i] = testConfig(t, p, c.peers) // its directories go after the nodes stop
		cfgs[i].ClientListener, cfgs[i].AdminListener = clients[i], listen(t)
		if tweak != nil {
			tweak(&cfgs[i])
		}
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	for _, cfg := range cfgs[up:] {
		closeListeners(cfg) // a node that is down refuses connections
	}
	for i, cfg := range cfgs[:up] {
		nd, err := Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[i] = nd
	}
	return c
}

func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testConfig is a node's configuration with timings fit for tests.
func testConfig(t testing.TB, p Peer, peers []Peer) Config {
	cfg := DefaultConfig()
	cfg.ID, cfg.DataDir = p.ID, filepath.Join(t.TempDir(), fmt.Sprint("node", p.ID))
	cfg.RaftAddr, cfg.ClientAddr, cfg.Peers = p.RaftAddr, p.ClientAddr, peers
	cfg.UnixSocket = filepath.Join(t.TempDir(), "lockstitch.sock")
	cfg.Replicator.RTT = 5 * time.Millisecond
	cfg.Replicator.LogDB = replicator.LogDBTan
	cfg.Replicator.EngineWorkers = 4
	cfg.Replicator.ProgressInterval = 50 * time.Millisecond
	return cfg
}

// stop stops node i as a SIGTERM would.
func (c *testCluster) stop(i int) {
	if c.nodes[i] == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.nodes[i].Shutdown(ctx)
	c.nodes[i] = nil
}

func (c *testCluster) addrs() []string {
	var a []string
	for _, p := range c.peers {
		a = append(a, p.ClientAddr)
	}
	return a
}

// client dials every node of the cluster.
func (c *testCluster) client(ctx context.Context) *transport.Client {
	c.t.Helper()
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), c.addrs()...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// leader returns the index of the node whose replica leads partition id.
func (c *testCluster) leader(id lockstitch.PartitionID) int {
	c.t.Helper()
	var at int
	testutil.WaitFor(c.t, fmt.Sprintf("a leader of partition %d", id), 20*time.Second, func() bool {
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			if p, err := n.Replicator().Partition(id); err == nil {
				if st, err := p.Status(context.Background()); err == nil && st.Role == lockstitch.RoleLeader {
					at = i
					return true
				}
			}
		}
		return false
	})
	return at
}

// TestClusterAdministration creates, lists, grows, shrinks and deletes a
// partition through the Go client's admin methods, and serves it over
// TCP and the Unix socket.
func TestClusterAdministration(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(ctx)

	placed, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Replicas: 3})
	if err != nil || len(placed) != 3 {
		t.Fatalf("create: %v, %v", placed, err)
	}
	again, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Replicas: 3})
	if err != nil || fmt.Sprint(again) != fmt.Sprint(placed) {
		t.Fatalf("repeating create placed %v (%v), first %v", again, err, placed)
	}
	for i := 0; i < 20; i++ {
		if _, err := cl.Append(ctx, 1, []byte(fmt.Sprint("op ", i))); err != nil {
			t.Fatal(err)
		}
	}
	list, err := cl.ListPartitions(ctx)
	if err != nil || len(list) != 1 || list[0].Leader == 0 || len(list[0].Replicas) != 3 || list[0].Plugin != "log" || list[0].Committed != 20 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	nodes, err := cl.ClusterStatus(ctx)
	if err != nil || len(nodes) != 4 {
		t.Fatalf("cluster status: %+v, %v", nodes, err)
	}
	hosted, leading := 0, 0
	for _, ni := range nodes {
		if !ni.Reachable {
			t.Fatalf("node %d unreachable: %s", ni.Node, ni.Error)
		}
		hosted += int(ni.Partitions)
		leading += int(ni.Leading)
	}
	if hosted != 3 || leading != 1 {
		t.Fatalf("cluster status counts %d replicas and %d leaders: %+v", hosted, leading, nodes)
	}

	// Grow onto the node without a replica, move the leadership there,
	// and shrink. The requests go to any node; those without the
	// partition forward them.
	var spare lockstitch.NodeID
	for _, nd := range c.nodes {
		if _, err := nd.Replicator().Partition(1); errors.Is(err, lockstitch.ErrPartitionNotFound) {
			spare = nd.ID()
		}
	}
	added, err := cl.AddReplica(ctx, 1, spare, lockstitch.Voter)
	if err != nil || added != 4 {
		t.Fatalf("added replica %d, %v; want 4", added, err)
	}
	if again, err := cl.AddReplica(ctx, 1, spare, lockstitch.Voter); err != nil || again != 4 {
		t.Fatalf("repeated add: replica %d, %v", again, err)
	}
	if err := cl.TransferLeader(ctx, 1, 4); err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveReplica(ctx, 1, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Append(ctx, 1, []byte("after the changes")); err != nil {
		t.Fatal(err)
	}

	// The Unix socket serves the same node.
	ucl, err := transport.Dial(ctx, transport.DefaultClientConfig(), "unix:"+c.nodes[spare-1].cfg.UnixSocket)
	if err != nil {
		t.Fatal(err)
	}
	var recs transport.Records
	if err := ucl.Read(ctx, 1, 1, transport.ReadOptions{MaxOps: 100, MaxBytes: 1 << 20}, &recs); err != nil {
		t.Fatal(err)
	}
	var rec wal.Record
	count := 0
	for recs.Next(&rec) == nil {
		count++
	}
	ucl.Close()
	if count != 21 {
		t.Fatalf("read %d ops over the Unix socket, want 21", count)
	}

	if err := cl.DeletePartition(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, nd := range c.nodes {
		if ids := nd.Replicator().Partitions(); len(ids) != 0 {
			t.Fatalf("node %d still hosts %v after delete", nd.ID(), ids)
		}
	}
	if err := cl.DeletePartition(ctx, 1); err != nil {
		t.Fatalf("repeated delete: %v", err)
	}
}

// TestAdminErrors sends hostile admin requests: each gets a typed error
// and no node stops.
func TestAdminErrors(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 7, Nodes: []lockstitch.NodeID{3}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"create with id 0", func() error { _, err := cl.CreatePartition(ctx, transport.PartitionSpec{}); return err }, lockstitch.ErrInvalidArgument},
		{"create with more replicas than nodes", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Replicas: 4})
			return err
		}, lockstitch.ErrInvalidArgument},
		{"create on an unknown node", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Nodes: []lockstitch.NodeID{1, 9}})
			return err
		}, lockstitch.ErrInvalidArgument},
		{"create on a node twice", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Nodes: []lockstitch.NodeID{1, 1}})
			return err
		}, lockstitch.ErrInvalidArgument},
		{"create with more witnesses than nodes left", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Replicas: 2, Witnesses: 2})
			return err
		}, lockstitch.ErrInvalidArgument},
		{"create a witness on a voter's node", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Nodes: []lockstitch.NodeID{1, 2}, WitnessNodes: []lockstitch.NodeID{2}})
			return err
		}, lockstitch.ErrInvalidArgument},
		{"create a witness on an unknown node", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Nodes: []lockstitch.NodeID{1, 2}, WitnessNodes: []lockstitch.NodeID{9}})
			return err
		}, lockstitch.ErrInvalidArgument},
		{"create witnesses on nodes that do not match their count", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Nodes: []lockstitch.NodeID{1}, Witnesses: 1, WitnessNodes: []lockstitch.NodeID{2, 3}})
			return err
		}, lockstitch.ErrInvalidArgument},
		{"create with an unknown plugin", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 8, Plugin: "nope"})
			return err
		}, lockstitch.ErrPluginNotFound},
		{"create a duplicate id elsewhere", func() error {
			_, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 7, Nodes: []lockstitch.NodeID{1, 2}})
			return err
		}, lockstitch.ErrPartitionExists},
		{"add a replica to an unknown partition", func() error { _, err := cl.AddReplica(ctx, 99, 1, 0); return err }, lockstitch.ErrPartitionNotFound},
		{"add a replica on an unknown node", func() error { _, err := cl.AddReplica(ctx, 7, 9, 0); return err }, lockstitch.ErrInvalidArgument},
		{"add a replica of a bad kind", func() error { _, err := cl.AddReplica(ctx, 7, 1, 9); return err }, lockstitch.ErrInvalidArgument},
		{"remove replica 0", func() error { return cl.RemoveReplica(ctx, 7, 0) }, lockstitch.ErrInvalidArgument},
		{"remove a replica that is not a member", func() error { return cl.RemoveReplica(ctx, 7, 5) }, lockstitch.ErrInvalidArgument},
		{"remove the last replica", func() error { return cl.RemoveReplica(ctx, 7, 1) }, lockstitch.ErrInvalidArgument},
		{"transfer to a non-member", func() error { return cl.TransferLeader(ctx, 7, 5) }, lockstitch.ErrInvalidArgument},
		{"transfer in an unknown partition", func() error { return cl.TransferLeader(ctx, 99, 1) }, lockstitch.ErrPartitionNotFound},
		{"an unknown op", func() error { _, err := cl.Admin(ctx, "", &transport.AdminRequest{Op: 200}); return err }, lockstitch.ErrInvalidArgument},
		{"start a replica not at the node", func() error {
			_, err := cl.Admin(ctx, c.peers[0].ClientAddr, &transport.AdminRequest{Op: transport.AdminStartReplica, Partition: 9, Replica: 1,
				Plugin: "log", Members: []transport.Member{{Replica: 1, RaftAddr: c.peers[1].RaftAddr}}})
			return err
		}, lockstitch.ErrInvalidArgument},
	}
	for _, tc := range cases {
		if err := tc.do(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// A deleted partition's id cannot be used again, wherever its
	// replicas were.
	if err := cl.DeletePartition(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 7}); !errors.Is(err, lockstitch.ErrReplicaDeleted) {
		t.Fatalf("create a deleted id: %v", err)
	}
	for i, nd := range c.nodes {
		if ids := nd.Replicator().Partitions(); len(ids) != 0 {
			t.Fatalf("node %d hosts %v after a refused create", i+1, ids)
		}
	}

	// A node that is down: creating on it fails and leaves nothing
	// started; the other nodes keep serving.
	c.stop(2)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 10, Replicas: 3}); !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("create with a node down: %v", err)
	}
	for i, nd := range c.nodes[:2] {
		if ids := nd.Replicator().Partitions(); len(ids) != 0 {
			t.Fatalf("node %d hosts %v after a create that failed", i+1, ids)
		}
	}
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 11, Nodes: []lockstitch.NodeID{1, 2}}); err != nil {
		t.Fatalf("create on the nodes that are up: %v", err)
	}
	if _, err := cl.Append(ctx, 11, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := cl.DeletePartition(ctx, 11); !errors.Is(err, lockstitch.ErrUnavailable) {
		t.Fatalf("delete with a node down: %v", err)
	}
	nodes, err := cl.ClusterStatus(ctx)
	if err != nil || len(nodes) != 3 || nodes[2].Reachable || nodes[2].Error == "" || !nodes[0].Reachable {
		t.Fatalf("cluster status with node 3 down: %+v, %v", nodes, err)
	}
}

// TestCreateAgainOtherwise repeats creates of an existing partition with
// other options and another placement, one of its nodes down: each is
// refused, and no node stops (a replica id with two addresses would make
// dragonboat stop the node that hosts it). Membership and leadership
// changes sent to a node that hosts only a witness are forwarded.
func TestCreateAgainOtherwise(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.client(ctx)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 40, Nodes: []lockstitch.NodeID{1, 2}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 40, Nodes: []lockstitch.NodeID{1, 2}, Options: map[string]string{"x": "1"}}); !errors.Is(err, lockstitch.ErrPartitionExists) {
		t.Fatalf("create again with other options: %v", err)
	}
	if _, err := cl.AddReplica(ctx, 40, 3, lockstitch.Witness); err != nil {
		t.Fatal(err)
	}
	witness, err := transport.Dial(ctx, transport.DefaultClientConfig(), c.peers[2].ClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer witness.Close()
	if err := witness.TransferLeader(ctx, 40, 2); err != nil {
		t.Fatalf("transfer sent to the witness's node: %v", err)
	}
	if err := witness.RemoveReplica(ctx, 40, 3); err != nil {
		t.Fatalf("remove the witness, sent to its node: %v", err)
	}

	c.stop(1) // node 2
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 40, Nodes: []lockstitch.NodeID{1, 3}}); !errors.Is(err, lockstitch.ErrPartitionExists) {
		t.Fatalf("create again on other nodes while one of the old ones is down: %v", err)
	}
	if _, err := c.nodes[2].Replicator().Partition(40); !errors.Is(err, lockstitch.ErrPartitionNotFound) {
		t.Fatalf("node 3 hosts partition 40 after a refused create: %v", err)
	}
	nodes, err := cl.ClusterStatus(ctx)
	if err != nil || !nodes[0].Reachable || !nodes[2].Reachable {
		t.Fatalf("nodes 1 and 3 after the refused create: %+v, %v", nodes, err)
	}
}

// TestCreateThenAppendAnywhere appends right after each create returns,
// through a new client whose first address is a node without a replica
// of the partition.
func TestCreateThenAppendAnywhere(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.client(ctx)
	for id := lockstitch.PartitionID(1); id <= 3; id++ {
		host := int(id) - 1
		if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: id, Nodes: []lockstitch.NodeID{c.peers[host].ID}}); err != nil {
			t.Fatal(err)
		}
		addrs := []string{c.peers[(host+1)%3].ClientAddr, c.peers[(host+2)%3].ClientAddr, c.peers[host].ClientAddr}
		ncl, err := transport.Dial(ctx, transport.DefaultClientConfig(), addrs...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ncl.Append(ctx, id, []byte("first"))
		ncl.Close()
		if err != nil || res.LSN != 1 {
			t.Fatalf("append to partition %d right after create: %+v, %v", id, res, err)
		}
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminEndpoints reads /healthz, /readyz, /metrics and pprof.
func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 1)
	nd := c.nodes[0]
	base := "http://" + nd.AdminAddr()
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	p, err := nd.Replicator().CreatePartition(replicator.PartitionSpec{ID: 1, Plugin: "log",
		Replicas: map[lockstitch.ReplicaID]string{1: c.peers[0].RaftAddr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body := httpGet(t, base+"/metrics")
	for _, want := range []string{"lockstitch_partition_leader{partition=\"1\"} 1", "lockstitch_transport_connections", "go_goroutines", "process_resident_memory_bytes", "lockstitch_build_info{"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	if code, body := httpGet(t, base+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof: %d", code)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	c.ID, c.DataDir, c.RaftAddr, c.ClientAddr = 2, "d", "a:1", "b:2"
	c.Peers = []Peer{{ID: 1, RaftAddr: "x:1", ClientAddr: "y:2"}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "peers do not include this node") {
		t.Fatalf("config without itself among peers: %v", err)
	}
	c.Peers = append(c.Peers, Peer{ID: 2, RaftAddr: "a:1", ClientAddr: "other:2"})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "this node") {
		t.Fatalf("peer addresses that differ from the node's: %v", err)
	}
	c.Peers = c.Peers[1:]
	c.Peers[0].ClientAddr = "b:2"
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	c.Replicator.RTT = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "RTT") {
		t.Fatalf("a bad replicator setting passed: %v", err)
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("empty config accepted")
	}
}

// TestStartFailsCleanly checks that a node that cannot start releases
// the listeners it was handed.
func TestStartFailsCleanly(t *testing.T) {
	t.Parallel()
	l := listen(t)
	cfg := DefaultConfig()
	cfg.ClientListener = l
	if _, err := Start(cfg); err == nil {
		t.Fatal("a node without an id started")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the listener is still open: %v", err)
	}
}
