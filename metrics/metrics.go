package metrics

import (
	"net/http"
	"net/http/pprof"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Lockstitch metric.
const Namespace = "lockstitch"

// NewRegistry returns a registry with the Go runtime collector, the
// process collector under its standard names (process_cpu_seconds_total,
// process_resident_memory_bytes, ...: what dashboards and alerts written
// for any Go service expect) and lockstitch_build_info.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	return reg
}

// buildInfo is lockstitch_build_info: 1, labelled with the module
// version, the VCS revision and the Go version the binary was built from.
func buildInfo() prometheus.Collector {
	version, revision, goVersion := "unknown", "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "1, labelled with the version, VCS revision and Go version of the running binary.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion},
	}, func() float64 { return 1 })
}

// AdminHandler returns the admin HTTP handler: /metrics from gatherer,
// /debug/pprof/ (the standard profiles), /healthz (the process is up) and
// /readyz (ready returns nil: the node serves requests; else 503 with the
// error; either way followed by notes, one per line, what an operator
// should know of a node even when it is ready). ready and notes may be
// nil: always ready, no notes.
func AdminHandler(gatherer prometheus.Gatherer, ready func() error, notes func() []string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		var body strings.Builder
		status := http.StatusOK
		if err := callReady(ready); err != nil {
			status = http.StatusServiceUnavailable
			body.WriteString("not ready: " + err.Error() + "\n")
		} else {
			body.WriteString("ok\n")
		}
		if notes != nil {
			for _, n := range notes() {
				body.WriteString(strings.ReplaceAll(n, "\n", " ") + "\n")
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		w.Write([]byte(body.String()))
	})
	return mux
}

// callReady calls ready, when there is one.
func callReady(ready func() error) error {
	if ready == nil {
		return nil
	}
	return ready()
}
