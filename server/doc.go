// Package server runs one Lockstitch node: a replicator.Replicator, the
// transport server that clients and the other nodes reach over TCP and a
// Unix socket, the admin HTTP listener (/metrics, /debug/pprof/,
// /healthz, /readyz), and the cluster administration that creates,
// deletes and reshapes partitions across the nodes it knows.
//
// It is the adapter between the wire (package transport) and the library
// (package replicator), built on the library's public API alone: neither
// of those packages imports the other. A program that links Lockstitch
// runs a node in its own process:
//
//	cfg := server.DefaultConfig()
//	cfg.ID, cfg.DataDir = 1, "/var/lib/lockstitch"
//	cfg.RaftAddr, cfg.ClientAddr = "10.0.0.1:7410", "10.0.0.1:7400"
//	cfg.Peers = []server.Peer{{ID: 1, RaftAddr: ..., ClientAddr: ...}, ...}
//	n, err := server.Start(cfg)
//	...
//	defer n.Shutdown(ctx)
//
// and administers the cluster with the Go client (transport.Client's
// CreatePartition, DeletePartition, ListPartitions, AddReplica,
// RemoveReplica, TransferLeader, ClusterStatus), as the lockstitch CLI
// does. cmd/lockstitch maps flags, environment and a config file onto
// Config; lockstitch dev runs three nodes in one process.
//
// Administration: any node serves every admin op. It coordinates the
// ops that span the cluster (creating a partition: every node checks that
// it can, the chosen nodes start their replicas, each waits until its
// replica knows its leader; deleting; listing; status) and forwards a
// partition's membership and leadership changes to a node that hosts the
// partition. Every op is safe to repeat. Errors are package lockstitch's
// sentinels, the same in-process and over the wire.
//
// Security: Config.TLS puts the client port's TCP listeners behind TLS
// (certificates reloaded when their files change, client certificates
// optionally required), and the node then calls its peers over TLS with
// the same certificate, verifying them against PeerCAFile;
// replicator.Config.RaftTLS is the Raft port's mutual TLS; AdminTLS and
// AdminTokenFile guard the admin listener (security.go; see
// docs/security.md). The Unix socket stays plain.
//
// Concurrency: a Node is safe for concurrent use. Start returns once the
// node serves; Shutdown stops accepting requests, lets those in flight
// finish until its context ends, and closes the replicator; Close is
// immediate and idempotent.
package server
