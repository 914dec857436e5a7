// Package metrics holds what every Lockstitch package shares for
// observability: the node's Prometheus registry, naming conventions, and
// the admin HTTP handler that serves /metrics, /debug/pprof/, /healthz and
// /readyz.
//
// Each package that exports metrics declares its own Metrics type, built
// from a prometheus.Registerer (never the global registry), under the
// Namespace "lockstitch", with base units in names (_seconds, _bytes) and
// _total for counters. Labels are bounded: a partition id appears as a
// label only on per-partition gauges collected at scrape time, whose
// cardinality is one series per hosted partition (documented in
// docs/operations.md); no key, producer or client appears as a label.
//
// pprof is mounted explicitly on the admin mux; the package does not
// import net/http/pprof for its side effects on the default mux.
package metrics
