// Command peers runs Lockstitch beside its peers on one machine, in the
// same run, with the same workload (issue 17): Lockstitch through its Go
// client (three `lockstitch serve` processes, a `log` partition of three
// replicas; lockstitch-kv is a `kv` partition on the same processes,
// through transport/kvclient), raw dragonboat (three NodeHosts in this process, one Raft
// entry per op), etcd (three processes, client v3 puts) and NATS
// JetStream (three nats-server processes, a file-storage stream of three
// replicas, publish with ack). Every system listens on 127.0.0.1 only,
// keeps its data under -dir, and is started and stopped by this program
// through its own process handles.
//
// # Workload
//
// A cell is a mode, a payload size and a concurrency:
//
//   - sync: a closed loop; Conc workers, each doing one op and waiting for
//     its ack before the next (an append, a proposal, a put of one key
//     overwritten for etcd and lockstitch-kv, a publish and its ack).
//   - pipelined: Conc ops in flight from one submitter per client, which
//     starts ops until Conc are pending and then waits for the oldest
//     (Lockstitch AppendAsync, dragonboat Propose, JetStream PublishAsync;
//     etcd's client and kvclient have no async put, so etcd and
//     lockstitch-kv skip these cells).
//
// Each cell runs -warmup unmeasured, then -window measured: the ops that
// end within the window count, with their latency from start to ack. The
// systems take turns cell by cell, the order rotating by one with each
// cell, so that a shared machine's drift falls on all of them. -runs N
// runs the whole plan N times (the rotation starting one further each
// time) and reports each figure's median over the runs, on its own, with
// the range of ops/s; the JSON keeps every run's results too.
//
// -quick runs five cells (sync at 16 B with 1 and 256 in flight, at 1 KiB
// with 16 and 256, and pipelined 16 B with 256), 3 s each; the default
// (-full) runs every mode, payload (16 B, 128 B, 1 KiB, 16 KiB) and
// concurrency (1, 16, 256, 1024), 5 s each; -modes, -payloads and -conc
// choose others.
//
// # Output
//
// Per cell and system: ops/s, MB/s (payload bytes, 10^6 a second), p50,
// p99 and p99.9 latency, the CPU seconds per million ops of the system's
// processes (user+system from /proc/PID/stat over the window; for
// dragonboat, which runs in this process, this process's, load generator
// included) and of the load generator (this process), the sum of the
// processes' peak RSS over the cell (VmHWM, reset before the cell through
// /proc/PID/clear_refs), the share of the machine's CPUs busy, and the
// errors. Beside them: each system's durability (when it fsyncs relative
// to the ack), fio's 4 KiB write+fdatasync rate and latency on -dir's
// disk, and one TCP stream's throughput over loopback. With -out DIR it
// writes peers.txt (the table, in Markdown), peers.json and a chart,
// peers.svg and peers.png (gonum.org/v1/plot: pure Go, no external
// plotting program to install; throughput and p99 per cell, log scales).
// -replot peers.json redraws the table and chart from a saved run.
//
// This is its own Go module, so that the peers' client libraries (etcd's,
// with gRPC, and nats.go) and the plotting library stay out of
// Lockstitch's go.mod; it uses this checkout through a replace directive.
// scripts/bench installs what is missing (etcd-server, nats-server, fio),
// builds both binaries and runs it:
//
//	scripts/bench --quick -dir /var/tmp
//	scripts/bench --full -dir /var/tmp -out /tmp/peers
package main
