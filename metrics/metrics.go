package metrics

import (
	"net/http"
	"net/http/pprof"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every Lockstitch metric.
const Namespace = "lockstitch"

// NewRegistry returns a registry with the Go runtime and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: Namespace}),
	)
	return reg
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
				body.WriteString(n + "\n")
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
