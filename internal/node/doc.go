// Package node runs one Lockstitch server: a Replicator, the transport
// server that clients reach over TCP and a Unix socket, the admin HTTP
// listener (/metrics, /debug/pprof/, /healthz, /readyz), and the cluster
// administration that creates partitions across the nodes it knows.
// cmd/lockstitch maps flags, environment and a config file onto Config and
// runs a Node; lockstitch dev runs three in one process.
package node
