package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// testCluster starts n nodes that know each other, on 127.0.0.1.
func testCluster(t *testing.T, n int) []*Node {
	t.Helper()
	var peers []Peer
	for i := 1; i <= n; i++ {
		peers = append(peers, Peer{ID: uint64(i), RaftAddr: testutil.FreeAddr(t), ClientAddr: testutil.FreeAddr(t)})
	}
	var nodes []*Node
	for _, p := range peers {
		rc := replicator.DefaultConfig()
		rc.RTT = 5 * time.Millisecond
		rc.LogDB = replicator.LogDBTan
		rc.EngineWorkers = 4
		rc.ProgressInterval = 50 * time.Millisecond
		nd, err := Start(Config{
			ID: p.ID, DataDir: filepath.Join(t.TempDir(), fmt.Sprint("node", p.ID)),
			RaftAddr: p.RaftAddr, ClientAddr: p.ClientAddr, AdminAddr: testutil.FreeAddr(t),
			UnixSocket: filepath.Join(t.TempDir(), "lockstitch.sock"),
			Peers:      peers, Replicator: rc, Transport: transport.DefaultServerConfig(),
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, nd)
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.Close()
		}
	})
	return nodes
}

func admin(t *testing.T, cl *transport.Client, addr string, req AdminRequest) AdminResponse {
	t.Helper()
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := cl.Admin(ctx, addr, body)
	if err != nil {
		t.Fatalf("admin %s: %v", req.Op, err)
	}
	var res AdminResponse
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// TestClusterAdministration creates, lists, grows, shrinks and deletes a
// partition through one node's admin requests, and serves it to a client
// over TCP and over the Unix socket.
func TestClusterAdministration(t *testing.T) {
	nodes := testCluster(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr := nodes[0].cfg.ClientAddr
	var all []string
	for _, n := range nodes {
		all = append(all, n.cfg.ClientAddr)
	}
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), all...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	res := admin(t, cl, addr, AdminRequest{Op: "create_partition", Partition: 1, Replicas: 3})
	if len(res.Placement) != 3 {
		t.Fatalf("placement %v", res.Placement)
	}
	again := admin(t, cl, addr, AdminRequest{Op: "create_partition", Partition: 1, Replicas: 3})
	if fmt.Sprint(again.Placement) != fmt.Sprint(res.Placement) {
		t.Fatalf("repeating create placed %v, first %v", again.Placement, res.Placement)
	}
	for i := 0; i < 20; i++ {
		if _, err := cl.Append(ctx, 1, []byte(fmt.Sprint("op ", i))); err != nil {
			t.Fatal(err)
		}
	}
	var list AdminResponse
	deadline := time.Now().Add(20 * time.Second)
	for {
		list = admin(t, cl, addr, AdminRequest{Op: "list_partitions"})
		if len(list.Partitions) == 1 && list.Partitions[0].Leader != 0 && len(list.Partitions[0].Replicas) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list: %+v", list)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Grow onto node 4 (the one without a replica), then shrink.
	var spare uint64
	for _, n := range nodes {
		if _, err := n.Replicator().Partition(1); errors.Is(err, replicator.ErrPartitionNotFound) {
			spare = n.cfg.ID
		}
	}
	leaderNode := list.Partitions[0].Leader
	leaderAddr := nodes[leaderNode-1].cfg.ClientAddr
	added := admin(t, cl, leaderAddr, AdminRequest{Op: "add_member", Partition: 1, Node: spare, Kind: "voter"})
	if added.Replica != 4 {
		t.Fatalf("added replica %d, want 4", added.Replica)
	}
	admin(t, cl, leaderAddr, AdminRequest{Op: "transfer_leader", Partition: 1, Replica: 4})
	admin(t, cl, nodes[spare-1].cfg.ClientAddr, AdminRequest{Op: "remove_member", Partition: 1, Replica: 1})
	if _, err := cl.Append(ctx, 1, []byte("after the changes")); err != nil {
		t.Fatal(err)
	}

	// The Unix socket serves the same node.
	ucl, err := transport.Dial(ctx, transport.DefaultClientConfig(), "unix:"+nodes[spare-1].cfg.UnixSocket)
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

	admin(t, cl, addr, AdminRequest{Op: "delete_partition", Partition: 1})
	for _, n := range nodes {
		if ids := n.Replicator().Partitions(); len(ids) != 0 {
			t.Fatalf("node %d still hosts %v after delete", n.cfg.ID, ids)
		}
	}
	body, _ := json.Marshal(AdminRequest{Op: "add_member", Partition: 1, Node: 2})
	if _, err := cl.Admin(ctx, addr, body); !errors.Is(err, transport.ErrPartitionNotFound) {
		t.Fatalf("add_member to a deleted partition: %v", err)
	}
	if _, err := cl.Admin(ctx, addr, []byte(`{"op":"reboot"}`)); !errors.Is(err, transport.ErrInvalidArgument) {
		t.Fatalf("unknown op: %v", err)
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
	nodes := testCluster(t, 1)
	base := "http://" + nodes[0].cfg.AdminAddr
	if code, _ := httpGet(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if _, err := nodes[0].Replicator().CreatePartition(replicator.PartitionSpec{ID: 1, Plugin: "log",
		Replicas: map[replicator.ReplicaID]string{1: nodes[0].cfg.RaftAddr}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _ := httpGet(t, base+"/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz stayed %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, body := httpGet(t, base+"/metrics")
	for _, want := range []string{"lockstitch_partition_leader{partition=\"1\"} 1", "lockstitch_transport_connections", "go_goroutines", "lockstitch_process_resident_memory_bytes"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}
	if code, body := httpGet(t, base+"/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof: %d", code)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Config{ID: 2, DataDir: "d", RaftAddr: "a:1", ClientAddr: "b:2", Peers: []Peer{{ID: 1, RaftAddr: "x:1", ClientAddr: "y:2"}}}
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "peers do not include this node") {
		t.Fatalf("config without itself among peers: %v", err)
	}
	c.Peers = append(c.Peers, Peer{ID: 2, RaftAddr: "a:1", ClientAddr: "other:2"})
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "this node") {
		t.Fatalf("peer addresses that differ from the node's: %v", err)
	}
	if err := (Config{}).Validate(); err == nil {
		t.Fatal("empty config accepted")
	}
}
