package metrics_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/lockstitch/lockstitch/metrics"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestAdminHandler(t *testing.T) {
	reg := metrics.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: "test_events_total", Help: "Events."})
	reg.MustRegister(c)
	c.Add(3)
	var notReady error = errors.New("partitions opening")
	var notes []string
	h := metrics.AdminHandler(reg, func() error { return notReady }, func() []string { return notes })

	code, body := get(t, h, "/metrics")
	for _, want := range []string{"lockstitch_test_events_total 3", "go_goroutines", "process_cpu_seconds_total", "lockstitch_build_info{"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics: %d, missing %q", code, want)
		}
	}
	if code, body := get(t, h, "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/: %d %q", code, body)
	}
	if code, _ := get(t, h, "/debug/pprof/goroutine?debug=1"); code != 200 {
		t.Fatalf("/debug/pprof/goroutine: %d", code)
	}
	if code, _ := get(t, h, "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body, "partitions opening") {
		t.Fatalf("/readyz while not ready: %d %q", code, body)
	}
	notReady = nil
	if code, body := get(t, h, "/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz when ready: %d %q", code, body)
	}
	notes = []string{"partition 3 replica 2 is quarantined"}
	if code, body := get(t, h, "/readyz"); code != 200 || body != "ok\npartition 3 replica 2 is quarantined\n" {
		t.Fatalf("/readyz when ready with a note: %d %q", code, body)
	}
}

func TestRegistryPassesLint(t *testing.T) {
	mfs, err := metrics.NewRegistry().Gather()
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
