// Package lockstitch holds the vocabulary that every part of Lockstitch
// shares: the identifiers of partitions, replicas, producers and nodes,
// log sequence numbers and epochs, the roles and kinds of replicas, the
// consistency levels of queries, and the errors that the library
// (package replicator), the wire protocol and its Go client (package
// transport) and the server (package server) report.
//
// Each concept is defined here once. An error that the library returns
// in-process and the same condition reported over the wire to a Go client
// match the same sentinel with errors.Is: a caller writes
//
//	if errors.Is(err, lockstitch.ErrNotLeader) { ... }
//
// whether err came from replicator.Partition.Append or from
// transport.Client.Append. The transport maps each sentinel to a stable
// wire code and back (see docs/protocol.md); a sentinel's message may
// change, its meaning and code never do.
//
// The package imports nothing of Lockstitch but wal (for LSN) and has no
// state: it is safe to import from anywhere.
package lockstitch
