package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
)

// TestStatusShowsWhatIsWrong runs three serve processes with a partition
// on each, kills (SIGKILL) node 3, then node 2: status shows node 3
// unreachable and its replica down, and once no reachable node leads the
// partition, says so and exits 1.
func TestStatusShowsWhatIsWrong(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 2*time.Minute)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Nodes: []lockstitch.NodeID{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	appendRange(ctx, t, cl, 1, bulkPayload, 0, 10)
	// Replicas' client addresses come with their first progress reports.
	testutil.WaitFor(t, "the leader to know every replica's address", time.Minute, func() bool {
		st, err := cl.PartitionStatus(ctx, 1)
		if err != nil || len(st.Replicas) != 3 {
			return false
		}
		for _, r := range st.Replicas {
			if r.Addr == "" || !r.Reported {
				return false
			}
		}
		return true
	})
	addrs := strings.Join([]string{c.addr(0, 1), c.addr(0, 2), c.addr(0, 3)}, ",")
	if code, out, errOut := cli(t, "status", "--addr", addrs); code != 0 || strings.Count(out, " up") != 3 {
		t.Fatalf("status of a healthy cluster: exit %d\n%s%s", code, out, errOut)
	}

	c.nodes[2].kill()
	// The leader may have been node 3: wait for another.
	testutil.WaitFor(t, "a leader on node 1 or 2", time.Minute, func() bool {
		code, _, _ := cli(t, "status", "--addr", addrs)
		return code == 0
	})
	code, out, errOut := cli(t, "status", "--addr", addrs)
	downRow := fmt.Sprintf("3  voter   %s", c.addr(0, 3))
	if code != 0 || !strings.Contains(out, "unreachable") || !strings.Contains(out, "down") {
		t.Fatalf("status with node 3 killed: exit %d, want 0, node 3 unreachable and replica 3 down (%q)\n%s%s", code, downRow, out, errOut)
	}
	// The lag of the killed replica is as of its last report, which ages;
	// the others report the ops appended since.
	appendRange(ctx, t, cl, 1, bulkPayload, 10, 20)
	testutil.WaitFor(t, "replica 3's report to be older than the others'", time.Minute, func() bool {
		st, err := cl.PartitionStatus(ctx, 1)
		if err != nil || len(st.Replicas) != 3 {
			return false
		}
		var dead, live time.Duration
		for _, r := range st.Replicas {
			switch {
			case !r.Reported:
				return false
			case r.Addr == c.addr(0, 3):
				dead = r.ReportAge
			default:
				live = max(live, r.ReportAge)
			}
		}
		return dead > 2*time.Second && live < dead && st.Committed == 20
	})

	c.nodes[1].kill()
	testutil.WaitFor(t, "status to report the partition leaderless", time.Minute, func() bool {
		code, out, errOut = cli(t, "status", "--addr", addrs)
		return code == 1
	})
	if !strings.Contains(out, "none") || !strings.Contains(errOut, "without a leader") {
		t.Fatalf("status with two nodes killed: exit %d\n%s%s", code, out, errOut)
	}
	start := time.Now()
	cli(t, "status", "--addr", addrs)
	t.Logf("status with two of three nodes down took %v:\n%s", time.Since(start), out)
}
