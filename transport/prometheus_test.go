package transport

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestPrometheusMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewPrometheusMetrics(reg)
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.FrameReceived(TypeAppend, 60)
	m.FrameReceived(FrameType(0x55), 10)
	m.FrameSent(TypeAppendResult, 40)
	m.ErrorSent(CodeBusy)
	m.ErrorSent(Code(999))
	if got := testutil.ToFloat64(m.open); got != 1 {
		t.Fatalf("open connections %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.recv[TypeAppend]); got != 1 {
		t.Fatalf("Append frames %v", got)
	}
	if got := testutil.ToFloat64(m.recvB); got != 70 {
		t.Fatalf("received bytes %v", got)
	}
	if got := testutil.ToFloat64(m.errs[CodeBusy]); got != 1 {
		t.Fatalf("Busy errors %v", got)
	}
	if got := testutil.ToFloat64(m.errOther); got != 1 {
		t.Fatalf("unknown-code errors %v", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
