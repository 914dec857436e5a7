package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

var benchSeed = flag.Uint64("bench-seed", 0, "seed of TestQuantiles (0: from the clock)")

// TestQuantiles records latencies from several distributions and checks
// every percentile the bench prints against the exact one (nearest rank
// of the sorted values): within the histogram's 0.1%, or one rank away
// (the library rounds the rank, nearest rank takes its ceiling).
func TestQuantiles(t *testing.T) {
	seed := *benchSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (-bench-seed to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, tc := range []struct {
		name string
		n    int
		draw func(i int) time.Duration // a latency
	}{
		{"1..1000µs in order", 1000, func(i int) time.Duration { return time.Duration(i+1) * time.Microsecond }},
		{"uniform 0-50ms", 100_000, func(int) time.Duration { return time.Duration(rng.Int64N(int64(50 * time.Millisecond))) }},
		{"exponential, mean 2ms", 200_000, func(int) time.Duration { return time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond)) }},
		{"bimodal: 99% near 500µs, 1% near 40ms", 50_000, func(int) time.Duration {
			if rng.IntN(100) == 0 {
				return 40*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
			}
			return 500*time.Microsecond + time.Duration(rng.Int64N(int64(100*time.Microsecond)))
		}},
		{"one value", 1, func(int) time.Duration { return 1234 * time.Microsecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHist()
			exact := make([]int64, tc.n)
			for i := range exact {
				d := tc.draw(i)
				recordLatency(h, d)
				exact[i] = min(max(d.Microseconds(), histLowest), histHighest)
			}
			slices.Sort(exact)
			got := summarize(h)
			for _, q := range []struct {
				name string
				q    float64
				got  int64
			}{{"p50", 0.5, got.P50}, {"p90", 0.9, got.P90}, {"p99", 0.99, got.P99}, {"p99.9", 0.999, got.P999}, {"max", 1, got.Max}} {
				rank := int(math.Ceil(q.q*float64(tc.n))) - 1
				lo, hi := exact[max(rank-1, 0)], exact[min(rank+1, tc.n-1)]
				if float64(q.got) < float64(lo)*0.999 || float64(q.got) > float64(hi)*1.001+1 {
					t.Errorf("%s = %dµs, exact %dµs (ranks around it: %d..%d)", q.name, q.got, exact[rank], lo, hi)
				}
			}
			if h.TotalCount() != int64(tc.n) {
				t.Errorf("count %d, recorded %d", h.TotalCount(), tc.n)
			}
		})
	}
	// Out of range: clamped, not dropped.
	h := newHist()
	recordLatency(h, 0)
	recordLatency(h, time.Hour)
	if h.TotalCount() != 2 || quantile(h, 0.5) != histLowest || h.Max() < histHighest {
		t.Errorf("clamping: count %d, p50 %d, max %d", h.TotalCount(), quantile(h, 0.5), h.Max())
	}
}

// TestBenchRun runs the runner with workers that succeed and fail at
// known rates, and checks what it counts: every op once, in the window or
// the warm-up or late, errors by kind, and a run where every op fails
// stopping by itself with the last error.
func TestBenchRun(t *testing.T) {
	r := newBenchRun([]string{"a", "b"}, 8)
	r.duration, r.warmup = 600*time.Millisecond, 200*time.Millisecond
	var started atomic.Int64
	res := r.run(8, func(ctx context.Context, i int) {
		s := r.shard(i)
		for n := 0; r.running(); n++ {
			started.Add(1)
			var err error
			switch n % 10 {
			case 3:
				err = fmt.Errorf("append: %w", lockstitch.ErrBusy)
			case 7:
				err = lockstitch.ErrIndeterminate
			}
			r.done(s, n%2, 10, time.Duration(100+n%2*900)*time.Microsecond, err)
			time.Sleep(time.Millisecond) // paces the fake op, as the network would
		}
	})
	var s benchSummary
	r.summary(&s, res)
	if res.seconds < 0.6 || res.seconds > 1.5 || res.interrupted || res.aborted != nil {
		t.Fatalf("window %.2fs, interrupted %v, aborted %v", res.seconds, res.interrupted, res.aborted)
	}
	// Every op started succeeded or failed; 2 in 10 failed.
	total := s.TotalOps
	if total+errsAll(res) != started.Load() {
		t.Errorf("ops %d + errors %d != started %d", total, errsAll(res), started.Load())
	}
	if s.Ops == 0 || s.Ops >= total || s.Bytes != 10*s.Ops {
		t.Errorf("window ops %d of %d in all, bytes %d", s.Ops, total, s.Bytes)
	}
	if s.Errors["busy"] == 0 || s.Errors["indeterminate"] == 0 || len(s.Errors) != 2 || s.ErrorCount != s.Errors["busy"]+s.Errors["indeterminate"] {
		t.Errorf("errors %v (count %d)", s.Errors, s.ErrorCount)
	}
	if math.Abs(s.OpsPerSec-float64(s.Ops)/s.Seconds) > 1e-6 {
		t.Errorf("ops/s %.1f, ops %d in %.3fs", s.OpsPerSec, s.Ops, s.Seconds)
	}
	a, b := s.ByOp["a"], s.ByOp["b"]
	if a.Ops+b.Ops != s.Ops || a.Latency.P99 != 100 || b.Latency.P50 < 999 || b.Latency.P50 > 1001 || a.TotalOps+b.TotalOps != total {
		t.Errorf("by op: %+v", s.ByOp)
	}

	// Every op fails: the run stops after failFor seconds, well before
	// its duration.
	r = newBenchRun([]string{"a"}, 2)
	r.duration, r.failFor = time.Minute, 1
	start := time.Now()
	res = r.run(2, func(ctx context.Context, i int) {
		for r.running() {
			r.done(r.shard(i), 0, 1, 0, fmt.Errorf("append: %w", lockstitch.ErrUnavailable))
			time.Sleep(time.Millisecond)
		}
	})
	if !errors.Is(res.aborted, lockstitch.ErrUnavailable) || time.Since(start) > 10*time.Second || res.window.ops() != 0 {
		t.Errorf("all failing: aborted %v after %v, ops %d", res.aborted, time.Since(start), res.window.ops())
	}
}

// errsAll is every error the run counted, in the window or not: the
// window's, plus those drained before it (the warm-up's) and after.
func errsAll(res benchResult) int64 {
	return res.window.errCount() + res.errsOutside
}

// committed returns partition p's committed LSN: the highest that its
// replicas know (a read may be served by a follower that has not yet
// heard of the last commit).
func committed(ctx context.Context, t *testing.T, c *serveCluster, p lockstitch.PartitionID) wal.LSN {
	t.Helper()
	var most wal.LSN
	for i := range c.nodes {
		cl := c.dial(ctx, i+1)
		var recs transport.Records
		err := cl.Read(ctx, p, 1, transport.ReadOptions{MaxOps: 1}, &recs)
		cl.Close()
		if err != nil {
			t.Fatalf("read partition %d on node %d: %v", p, i+1, err)
		}
		most = max(most, recs.Committed())
	}
	return most
}

// grewBy reports whether a stream that grew by n holds every op that
// succeeded, and at most the failed ones besides (a failed append may
// have been applied: its outcome is indeterminate).
func grewBy(n wal.LSN, ok, failed int64) bool {
	return int64(n) >= ok && int64(n) <= ok+failed
}

// benchJSON runs a bench command with --json and decodes its summary,
// checking its shape: the keys every summary has.
func benchJSON(t *testing.T, args ...string) benchSummary {
	t.Helper()
	code, out, errOut := cli(t, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("%q: exit %d\n%s%s", args, code, out, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%q: %v\n%s", args, err, out)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := []string{"bench", "bytes", "clients", "concurrency", "error_count", "errors", "mb_per_sec", "ops", "ops_per_sec", "partition", "seconds", "size", "total_errors", "total_ops", "warmup_seconds"}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("%q: no %q in %s", args, k, out)
		}
	}
	var s benchSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "ops/s") {
		t.Errorf("%q: no progress lines on stderr: %q", args, errOut)
	}
	var errs int64
	for _, n := range s.Errors {
		errs += n
	}
	if s.TotalErrors > 0 {
		t.Logf("%q: %d ops failed (%v in the window)", args, s.TotalErrors, s.Errors)
	}
	if s.Seconds <= 0 || s.Ops <= 0 || s.ErrorCount != errs || s.TotalErrors < s.ErrorCount ||
		math.Abs(s.OpsPerSec-float64(s.Ops)/s.Seconds) > 1e-6*s.OpsPerSec ||
		math.Abs(s.MBPerSec-float64(s.Bytes)/s.Seconds/1e6) > 1e-6*(s.MBPerSec+1) {
		t.Errorf("%q: inconsistent summary %s", args, out)
	}
	return s
}

// TestBench runs bench append, kv and read for about a second each
// against three serve processes, and checks their summaries against the
// partitions: every append the summary counts is in the stream, once.
func TestBench(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Plugin: "log", Nodes: []lockstitch.NodeID{1, 2, 3}}); err != nil {
		t.Fatalf("create partition 1: %v\n%s", err, c.nodes[0].log)
	}
	createKV(ctx, t, c, cl, 2)
	addr := "--addr=" + c.addr(0, 1) + "," + c.addr(0, 2) + "," + c.addr(0, 3)

	// Appends, sync then pipelined: the stream grows by every append
	// that succeeded, the warm-up's and the first one's included.
	before := committed(ctx, t, c, 1)
	s := benchJSON(t, "bench", "append", addr, "--partition", "1", "--size", "100", "--concurrency", "16", "--clients", "2", "--duration", "1s", "--warmup", "200ms")
	if s.Bench != "append" || s.Size != 100 || s.Concurrency != 16 || s.Clients != 2 || s.Latency == nil || s.Latency.P50 <= 0 ||
		s.Latency.P50 > s.Latency.P90 || s.Latency.P90 > s.Latency.P99 || s.Latency.P99 > s.Latency.P999 || s.Latency.P999 > s.Latency.Max ||
		s.Bytes != 100*s.Ops || s.TotalOps <= s.Ops || s.ByOp != nil {
		t.Errorf("bench append: %+v, latency %+v", s, s.Latency)
	}
	after := committed(ctx, t, c, 1)
	if !grewBy(after-before, s.TotalOps, s.TotalErrors) {
		t.Errorf("bench append: the stream grew by %d (LSN %d to %d), the summary counts %d ops in all", after-before, before, after, s.TotalOps)
	}
	s = benchJSON(t, "bench", "append", addr, "--partition", "1", "--concurrency", "2", "--async", "32", "--duration", "1s", "--warmup", "0s")
	if s.Async != 32 || s.Warmup != 0 {
		t.Errorf("bench append --async: %+v", s)
	}
	before, after = after, committed(ctx, t, c, 1)
	if !grewBy(after-before, s.TotalOps, s.TotalErrors) {
		t.Errorf("bench append --async: the stream grew by %d, the summary counts %d ops in all", after-before, s.TotalOps)
	}

	// kv: the puts are the partition's appends; gets append nothing.
	kvBefore := committed(ctx, t, c, 2)
	s = benchJSON(t, "bench", "kv", addr, "--partition", "2", "--concurrency", "8", "--keys", "50", "--reads", "0.5", "--duration", "1s", "--warmup", "200ms")
	put, get := s.ByOp["put"], s.ByOp["get"]
	if put.Ops == 0 || get.Ops == 0 || put.Ops+get.Ops != s.Ops || s.TotalOps != put.TotalOps+get.TotalOps || put.Latency.P50 <= 0 || get.Latency.P50 <= 0 {
		t.Errorf("bench kv: %+v", s)
	}
	if kvAfter := committed(ctx, t, c, 2); !grewBy(kvAfter-kvBefore, put.TotalOps, s.TotalErrors) {
		t.Errorf("bench kv: the partition grew by %d, the summary counts %d puts in all: %+v", kvAfter-kvBefore, put.TotalOps, s)
	}

	// Reads to the end: each subscriber reads every op once.
	s = benchJSON(t, "bench", "read", addr, "--partition", "1", "--concurrency", "2", "--duration", "30s")
	if s.Ops != 2*int64(after) || s.Latency != nil || s.Seconds >= 30 {
		t.Errorf("bench read: %d ops in %.1fs, want 2 subscribers × %d", s.Ops, s.Seconds, after)
	}

	// Text: progress lines, then the summary.
	code, out, errOut := cli(t, "bench", "append", addr, "--partition", "1", "--concurrency", "4", "--duration", "1s", "--warmup", "0s")
	for _, want := range []string{"ops/s", "bench append: partition 1, 16 B ops, 4 workers over 1 client\n", "  throughput ", "  errors      0", "  latency     p50 "} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("bench append: exit %d, no %q in\n%s%s", code, want, out, errOut)
		}
	}

	// Ctrl-C: the run stops, prints the summary so far and exits 0.
	benchInterrupt(t, addr)

	// A partition that does not exist fails at once, exit code 5.
	if code, _, errOut := cli(t, "bench", "append", addr, "--partition", "99", "--duration", "1s"); code != exitNotFound {
		t.Errorf("bench append to a missing partition: exit %d, %s", code, errOut)
	}
}

// benchInterrupt runs a minute-long bench append as a child process,
// sends it SIGINT once it has printed its first second, and checks that
// it prints the summary so far, marked interrupted, and exits 0.
func benchInterrupt(t *testing.T, addr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "bench", "append", addr, "--partition", "1", "--concurrency", "4", "--duration", "1m", "--warmup", "0s")
	cmd.Env = append(os.Environ(), "LOCKSTITCH_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := bufio.NewScanner(stdout)
	var out strings.Builder
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "ops/s") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
	}
	err = cmd.Wait()
	if err != nil || time.Since(start) > 30*time.Second {
		t.Fatalf("bench append interrupted: %v after %v\n%s%s", err, time.Since(start), out.String(), stderr.String())
	}
	for _, want := range []string{"(interrupted)", "  throughput ", "  latency     p50 "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("bench append interrupted: no %q in\n%s%s", want, out.String(), stderr.String())
		}
	}
}
