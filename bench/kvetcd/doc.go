// Command kvetcd measures Lockstitch's kv plugin beside etcd in the same
// run (issue 15): three `lockstitch serve` processes on 127.0.0.1 with a
// kv partition of three replicas, and a three-member etcd cluster on
// 127.0.0.1 (its own data directories, fsync on as by default). Both keep
// running for the whole run; every cell (an op, put or get, at one
// concurrency) runs on one system and then on the other, the order
// flipping from cell to cell and from run to run, so that the two share
// the machine's noise.
//
// A cell is closed-loop: -conc workers, each doing one op after another
// (a put of a 100-byte value, or a linearizable get, of a key drawn at
// random from -keys 16-byte keys, all written before the first cell),
// measured over -duration after -warmup. It reports throughput and p50
// and p99 latency per cell and system, and Lockstitch's figures against
// etcd's; after -runs runs it prints the medians and says whether the goal
// (at least 4x etcd's put throughput at concurrency 256 with a p99 no
// worse) is met.
//
// Lockstitch is driven through transport/kvclient (kvclient.Linearizable
// reads), etcd through its own Go client (go.etcd.io/etcd/client/v3,
// default linearizable reads); both get -clients clients, the workers
// spread over them. etcd's client is given the leader's endpoint only
// (-etcd-endpoints all gives it the three, as its own benchmark tool
// does; followers then forward), while Lockstitch's client is given the
// three nodes and sends to the partition's leader itself.
//
// This is its own Go module, so that etcd's client (and gRPC) stay out of
// Lockstitch's go.mod; it uses this checkout through a replace directive.
//
//	go build -o /tmp/lockstitch ./cmd/lockstitch
//	(cd bench/kvetcd && go build -o /tmp/kvetcd .)
//	/tmp/kvetcd -bin /tmp/lockstitch -etcd etcd -runs 3 -duration 5s -dir /var/tmp
//
// bench/kv-vs-etcd does both. -profile DIR saves a CPU profile of the
// Lockstitch leader (from its admin port) and of the etcd leader (etcd
// started with --enable-pprof) over the measured part of the put cell at
// the highest concurrency.
package main
