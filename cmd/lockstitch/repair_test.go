package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
)

// damageLog flips one bit in the middle of the last segment of a
// partition's operation log under a node's data directory.
func damageLog(t *testing.T, dataDir string, id lockstitch.PartitionID) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dataDir, "partitions", fmt.Sprint(id), "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segments of partition %d under %s: %v", id, dataDir, err)
	}
	slices.Sort(segs)
	path := segs[len(segs)-1]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// roleOn returns the role the cluster lists for node's replica of a
// partition, and whether it lists one.
func roleOn(parts []transport.PartitionInfo, id lockstitch.PartitionID, node lockstitch.NodeID) (lockstitch.Role, bool) {
	for _, p := range parts {
		if p.Partition != id {
			continue
		}
		for _, r := range p.Replicas {
			if r.Node == node {
				return r.Role, true
			}
		}
	}
	return 0, false
}

// TestRepairQuarantined runs three `serve` processes with three
// partitions, kills node 3 (SIGKILL), flips a bit in its logs of
// partitions 1 and 2, and restarts it with automatic repair off: the
// node starts, lists both replicas as quarantined (and says so on
// /readyz, which stays ready) and serves partition 3. `lockstitch
// partition repair` rebuilds partition 1's replica; partition 2's is
// rebuilt by the node itself once it is restarted (SIGKILL again) with
// automatic repair on. Every node then serves every LSN of every
// partition from 1, byte for byte the same.
func TestRepairQuarantined(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute)
	const n = 300
	for id := lockstitch.PartitionID(1); id <= 3; id++ {
		if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: id}); err != nil {
			t.Fatalf("create partition %d: %v\n%s", id, err, c.nodes[0].log)
		}
		appendRange(ctx, t, cl, id, bulkPayload, 0, n)
		c.checkStream(ctx, 3, id, n, bulkPayload)
	}

	c.nodes[2].kill()
	damageLog(t, c.dataDir(3), 1)
	damageLog(t, c.dataDir(3), 2)
	admin := c.addr(20, 3)
	c.nodes[2] = startServe(t, c.args(3, "--auto-repair=false"))

	// Node 3 serves partition 3, and lists its other replicas as
	// quarantined; /readyz says why and stays ready.
	appendRange(ctx, t, cl, 3, bulkPayload, n, n+50)
	c.checkStream(ctx, 3, 3, n+50, bulkPayload)
	parts, err := cl.ListPartitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []lockstitch.PartitionID{1, 2} {
		if role, ok := roleOn(parts, id, 3); !ok || role != lockstitch.RoleQuarantined {
			t.Fatalf("partition %d: node 3's replica is listed as %v (listed: %v), want quarantined\n%s", id, role, ok, c.nodes[2].log)
		}
	}
	// Ready once partition 3 knows its leader: a replica restarted while
	// its partition is quiet (--quiesce) hears no heartbeat and makes it
	// elect one, so the node may be unready for an election first.
	var res *http.Response
	var body []byte
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if res, err = http.Get("http://" + admin + "/readyz"); err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK || time.Now().After(deadline) {
			break
		}
	}
	if res.StatusCode != http.StatusOK || strings.Count(string(body), "quarantined") != 2 || !strings.Contains(string(body), "corrupt") {
		t.Fatalf("/readyz: %d %q, want ready with the two quarantined replicas", res.StatusCode, body)
	}
	// The damaged partitions commit on their two other replicas.
	appendRange(ctx, t, cl, 1, bulkPayload, n, n+50)
	appendRange(ctx, t, cl, 2, bulkPayload, n, n+50)

	// The CLI rebuilds partition 1's replica.
	code, out, errOut := cli(t, "partition", "repair", "--id", "1", "--node", "3", "--addr", c.addr(0, 1))
	if code != 0 {
		t.Fatalf("partition repair: exit %d: %s%s\nnode 3:\n%s", code, out, errOut, c.nodes[2].log)
	}
	t.Logf("partition repair: %s", strings.TrimSpace(out))
	for i := 1; i <= 3; i++ {
		c.checkStream(ctx, i, 1, n+50, bulkPayload)
	}

	// Restarted with automatic repair, node 3 rebuilds partition 2's.
	c.nodes[2].kill()
	c.nodes[2] = startServe(t, c.args(3, "--repair-delay", "100ms"))
	appendRange(ctx, t, cl, 2, bulkPayload, n+50, n+100)
	for i := 1; i <= 3; i++ {
		c.checkStream(ctx, i, 2, n+100, bulkPayload)
	}
	testutil.WaitFor(t, "node 3's replicas of partitions 1 and 2 to vote", time.Minute, func() bool {
		parts, err := cl.ListPartitions(ctx)
		if err != nil {
			return false
		}
		for _, id := range []lockstitch.PartitionID{1, 2} {
			if role, _ := roleOn(parts, id, 3); role != lockstitch.RoleFollower && role != lockstitch.RoleLeader {
				return false
			}
		}
		return true
	})
	if !strings.Contains(c.nodes[2].log.String(), "quarantined replica replaced") {
		t.Fatalf("node 3 did not log its automatic repair:\n%s", c.nodes[2].log)
	}
}
