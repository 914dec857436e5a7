// Command lockstitch runs Lockstitch nodes and talks to them.
//
//	lockstitch dev                      a local three-node cluster, no setup
//	lockstitch serve [flags]            run a node
//	lockstitch append [flags] [op ...]  append ops (or one per line of stdin or --file)
//	lockstitch tail [flags]             print ops from an LSN on (--follow)
//	lockstitch query [flags] [request]  ask a partition's plugin
//	lockstitch status [flags]           leader, epoch, LSNs and lag per partition
//	lockstitch partition create|delete|list|repair
//	lockstitch member add|remove
//	lockstitch leader transfer
//	lockstitch version
//
// Client commands take --addr (env LOCKSTITCH_ADDR), --json and --timeout.
// Errors are one line on stderr; the exit code is 1 for a failure and 2
// for a usage error. docs/operations.md documents every setting.
package main
