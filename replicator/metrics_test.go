package replicator_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/lockstitch/lockstitch"
	lstest "github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	regs := map[string]*prometheus.Registry{}
	c := newCluster(t, 3, func(cfg *replicator.Config) {
		reg := prometheus.NewRegistry()
		regs[cfg.RaftAddress] = reg
		cfg.Registerer = reg
	})
	c.create(1)
	appendN(t, c, 1, 0, 40)
	l := c.leader(1)
	reg := regs[c.nodes[l].cfg.RaftAddress]
	lstest.WaitFor(t, "lag gauges for both followers at 0", 10*time.Second, func() bool {
		n, err := testutil.GatherAndCount(reg, "lockstitch_replica_lag_ops")
		if err != nil || n != 2 {
			return false
		}
		st, _ := c.partition(l, 1).Status(context.Background())
		for _, r := range st.Replicas {
			if r.Lag != 0 || !r.Reported {
				return false
			}
		}
		return true
	})
	want := `
# HELP lockstitch_partition_applied_lsn Last LSN applied by this node's replica.
# TYPE lockstitch_partition_applied_lsn gauge
lockstitch_partition_applied_lsn{partition="1"} 40
# HELP lockstitch_partition_leader 1 if this node's replica leads the partition.
# TYPE lockstitch_partition_leader gauge
lockstitch_partition_leader{partition="1"} 1
# HELP lockstitch_node_pending_bytes Payload bytes of the appends queued or in flight across every partition this node leads.
# TYPE lockstitch_node_pending_bytes gauge
lockstitch_node_pending_bytes 0
# HELP lockstitch_node_pending_max_bytes Config.MaxNodePendingBytes: beyond it, Append answers Busy.
# TYPE lockstitch_node_pending_max_bytes gauge
lockstitch_node_pending_max_bytes 1.073741824e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lockstitch_partition_applied_lsn", "lockstitch_partition_leader",
		"lockstitch_node_pending_bytes", "lockstitch_node_pending_max_bytes"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lockstitch_append_duration_seconds" && mf.GetMetric()[0].GetHistogram().GetSampleCount() == 0 {
			t.Error("append latency histogram is empty")
		}
	}
	if ok := appendsCounted(t, reg, "ok"); ok < 1 {
		t.Errorf("appends_total{result=ok} = %v on the leader", ok)
	}
	// Other outcomes are counted under their own result.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	op := replicator.AppendOp{Payload: []byte("once"), Producer: 9, Seq: 1}
	for i := 0; i < 2; i++ {
		if _, err := c.partition(l, 1).Append(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	f := (l + 1) % len(c.nodes)
	freg := regs[c.nodes[f].cfg.RaftAddress]
	before := appendsCounted(t, freg, "not_leader")
	if _, err := c.partition(f, 1).Append(ctx, op); !errors.Is(err, lockstitch.ErrNotLeader) {
		t.Fatalf("append on a follower: %v", err)
	}
	if n := appendsCounted(t, reg, "duplicate"); n != 1 {
		t.Errorf("appends_total{result=duplicate} = %v on the leader, want 1", n)
	}
	if n := appendsCounted(t, freg, "not_leader"); n != before+1 {
		t.Errorf("appends_total{result=not_leader} = %v on a follower, want %v", n, before+1)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// appendsCounted returns appends_total{result=result} in reg.
func appendsCounted(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lockstitch_appends_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}
