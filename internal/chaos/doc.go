// Package chaos holds what the fault-injection suite records and how it
// judges it: the history of a run (every append a producer made and the
// outcome its client reported, every kv operation with its call and
// return times, every record a subscriber received, and every replica's
// stream read at the end) and the checkers that hold that history to
// Lockstitch's guarantees. It is pure and deterministic: it starts no
// process and reads no clock, so its checkers are tested on hand-made
// histories (chaos_test.go), and a report written by a run can be judged
// again offline.
//
// The runner that produces histories is TestChaos in cmd/lockstitch
// (scripts/chaos runs it long); docs/reliability.md states the
// guarantees and the faults.
//
// # What the checkers hold a history to
//
//   - CheckAppends: every append the client acknowledged is in the final
//     stream exactly once, at the LSN it was given; an append that failed
//     definitely is absent; an indeterminate one is there at most once;
//     the stream holds nothing that no producer appended.
//   - CheckReplicas: every replica's stream is dense (no gap, no LSN twice,
//     in order) and all replicas hold the same payload at every LSN they
//     share.
//   - CheckSubscribers: each subscriber received a gap-free, duplicate-free
//     run of LSNs starting right after the marker it subscribed from, each
//     record the one the final stream holds at that LSN.
//   - CheckKV: the kv operations are linearizable (porcupine, KVModel).
//
// Check runs them all and returns a Verdict.
package chaos
