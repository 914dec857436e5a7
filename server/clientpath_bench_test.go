//go:build unix

package server

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
)

// Knobs of BenchmarkClientPath.
var (
	clientPathRounds = flag.Int("clientpath-rounds", 1, "BenchmarkClientPath: rounds of the variants")
	clientPathSize   = flag.Int("clientpath-size", 16, "BenchmarkClientPath: payload bytes")
	clientPathModes  = flag.String("clientpath-modes", "inproc,client1,clients4,inproc+ctx,client1+ctx", "BenchmarkClientPath: variants, comma-separated")
)

// BenchmarkClientPath measures where the client path loses what the
// batcher's coalescing gains: appends at 256 concurrent callers to one
// partition of three in-process nodes on loopback, in variants that run
// side by side on one cluster and alternate for -clientpath-rounds rounds
// (so that a change of the machine's load touches all of them):
//
//   - inproc: the callers append to the leader's replicator.Partition
//     directly, with no transport (the ceiling of this cluster);
//   - client1: through one Go client, so one connection to the leader
//     (as bench/peers runs it);
//   - clientsN: through N Go clients, N connections to the leader, the
//     callers spread over them;
//   - pipe1: through one Go client from one goroutine, 256 appends in
//     flight (AppendAsync, then Wait for the oldest);
//   - a +ctx suffix (not for pipe1): each append under its own context.WithTimeout of
//     the shared one, as bench/peers runs it (without it, every append
//     shares one context with a deadline).
//
// Beside ops/s it reports the process's CPU time, read and write system
// calls and context switches per op, and the ops per Raft entry the
// leader's batcher proposed.
//
// For a CPU profile of one variant:
//
//	go test ./server -run '^$' -bench ClientPath -benchtime 200000x -cpuprofile cpu.out -args -clientpath-modes client1
func BenchmarkClientPath(b *testing.B) {
	const conc = 256
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The nodes run with the replicator's defaults, as `lockstitch serve`
	// does, not with testConfig's faster settings for tests (the tan
	// LogDB, a short Raft tick, fewer engine workers).
	c := newClusterWith(b, 3, 3, func(cfg *Config) {
		cfg.Replicator.RTT = DefaultConfig().Replicator.RTT
		cfg.Replicator.LogDB = DefaultConfig().Replicator.LogDB
		cfg.Replicator.EngineWorkers = DefaultConfig().Replicator.EngineWorkers
		cfg.Replicator.ProgressInterval = DefaultConfig().Replicator.ProgressInterval
	})
	admin := c.client(ctx)
	if _, err := admin.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Replicas: 3}); err != nil {
		b.Fatal(err)
	}
	if _, err := admin.Append(ctx, 1, []byte("warm")); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, *clientPathSize)
	modes := splitComma(*clientPathModes)
	appenders := map[string][]func(context.Context) error{}
	clients := map[string]*transport.Client{} // the last of each variant's
	for _, m := range modes {
		m, _ = strings.CutSuffix(m, "+ctx")
		if appenders[m+"+ctx"] != nil {
			continue // the variant with its own contexts shares its appenders
		}
		var n int
		switch {
		case m == "inproc":
			p, err := c.nodes[c.leader(1)].Replicator().Partition(1)
			if err != nil {
				b.Fatal(err)
			}
			appenders[m+"+ctx"] = []func(context.Context) error{func(ctx context.Context) error {
				_, err := p.Append(ctx, replicator.AppendOp{Payload: payload})
				return err
			}}
			continue
		case m == "client1", m == "pipe1":
			n = 1
		default:
			if _, err := fmt.Sscanf(m, "clients%d", &n); err != nil || n < 1 {
				b.Fatalf("unknown variant %q", m)
			}
		}
		for range n {
			cl := c.client(ctx)
			clients[m] = cl
			if _, err := cl.Append(ctx, 1, payload); err != nil {
				b.Fatal(err)
			}
			appenders[m+"+ctx"] = append(appenders[m+"+ctx"], func(ctx context.Context) error {
				_, err := cl.Append(ctx, 1, payload)
				return err
			})
		}
	}
	for range *clientPathRounds {
		for _, m := range modes {
			base, opCtx := strings.CutSuffix(m, "+ctx")
			fs := appenders[base+"+ctx"]
			if base == "pipe1" {
				b.Run(fmt.Sprintf("%s/%dB", m, len(payload)), func(b *testing.B) {
					benchPipelined(ctx, b, c, clients[base], payload, conc)
				})
				continue
			}
			b.Run(fmt.Sprintf("%s/%dB", m, len(payload)), func(b *testing.B) {
				b.SetBytes(int64(len(payload)))
				var next atomic.Int64
				var failed atomic.Value
				var wg sync.WaitGroup
				reg := c.nodes[c.leader(1)].Registry()
				start := readNow(b, reg)
				b.ResetTimer()
				for i := range conc {
					f := fs[i%len(fs)]
					wg.Add(1)
					go func() {
						defer wg.Done()
						for next.Add(1) <= int64(b.N) {
							octx, cancel := ctx, context.CancelFunc(nil)
							if opCtx {
								octx, cancel = context.WithTimeout(ctx, 10*time.Second)
							}
							err := f(octx)
							if cancel != nil {
								cancel()
							}
							if err != nil {
								failed.CompareAndSwap(nil, err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				reportSince(b, reg, start)
			})
		}
	}
}

// benchPipelined appends b.N times through cl from one goroutine with
// depth appends in flight (AppendAsync, then Wait for the oldest), as
// bench/peers' pipelined cells do, reporting what BenchmarkClientPath
// reports.
func benchPipelined(ctx context.Context, b *testing.B, c *testCluster, cl *transport.Client, payload []byte, depth int) {
	b.SetBytes(int64(len(payload)))
	reg := c.nodes[c.leader(1)].Registry()
	start := readNow(b, reg)
	b.ResetTimer()
	ring := make([]transport.AppendFuture, depth)
	for i := range b.N + depth {
		k := i % depth
		if i >= depth {
			if _, err := ring[k].Wait(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if i < b.N {
			ring[k] = cl.AppendAsync(ctx, 1, payload)
		}
	}
	b.StopTimer()
	reportSince(b, reg, start)
}

// reading is what reportSince measures from.
type reading struct {
	proc    procCounters
	entries uint64
	ops     float64
}

// readNow reads the process's counters and reg's batch counts.
func readNow(b *testing.B, reg *prometheus.Registry) reading {
	var r reading
	r.entries, r.ops = batchCounts(b, reg)
	r.proc = readProcCounters(b)
	return r
}

// reportSince reports ops/s and, per op since start, CPU time, read and
// write system calls, context switches and ops per Raft entry.
func reportSince(b *testing.B, reg *prometheus.Registry, start reading) {
	end := readNow(b, reg)
	n := float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "ops/s")
	b.ReportMetric(float64(end.proc.cpu-start.proc.cpu)/float64(time.Microsecond)/n, "cpu-µs/op")
	b.ReportMetric(float64(end.proc.reads-start.proc.reads)/n, "reads/op")
	b.ReportMetric(float64(end.proc.writes-start.proc.writes)/n, "writes/op")
	b.ReportMetric(float64(end.proc.switches-start.proc.switches)/n, "csw/op")
	if end.entries > start.entries {
		b.ReportMetric((end.ops-start.ops)/float64(end.entries-start.entries), "ops/entry")
	}
}

// batchCounts returns the leader's count of Raft entries proposed by the
// batcher and their sum of ops (lockstitch_append_batch_ops).
func batchCounts(b *testing.B, reg *prometheus.Registry) (entries uint64, ops float64) {
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lockstitch_append_batch_ops" && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	return 0, 0
}

// procCounters are the process's totals over all its threads.
type procCounters struct {
	cpu           time.Duration // user and system
	reads, writes int64         // read and write system calls (/proc/self/io: syscr, syscw; these include fsync-free pwrites and socket I/O)
	switches      int64         // voluntary and involuntary context switches: wakeups and preemptions
}

// readProcCounters reads the process's CPU time, read and write system
// calls and context switches.
func readProcCounters(b *testing.B) procCounters {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	pc := procCounters{
		cpu:      time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		switches: ru.Nvcsw + ru.Nivcsw,
	}
	io, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return pc // not Linux: no system call counts
	}
	for _, line := range strings.Split(string(io), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "syscr":
			pc.reads = n
		case "syscw":
			pc.writes = n
		}
	}
	return pc
}

// splitComma splits s at commas, dropping empty parts.
func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}
