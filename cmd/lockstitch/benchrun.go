package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/time/rate"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// benchErrKinds are the kinds a failed op is counted under, matched in
// this order with errors.Is; anything else is "other".
var benchErrKinds = [...]struct {
	name string
	err  error
}{
	{"indeterminate", lockstitch.ErrIndeterminate},
	{"result_lost", transport.ErrResultLost},
	{"not_leader", lockstitch.ErrNotLeader},
	{"busy", lockstitch.ErrBusy},
	{"unavailable", lockstitch.ErrUnavailable},
	{"timeout", lockstitch.ErrTimeout},
	{"shutting_down", lockstitch.ErrShuttingDown},
	{"partition_not_found", lockstitch.ErrPartitionNotFound},
	{"too_large", lockstitch.ErrTooLarge},
	{"stale_sequence", lockstitch.ErrStaleSequence},
	{"closed", lockstitch.ErrClosed},
	{"canceled", context.Canceled},
	{"deadline_exceeded", context.DeadlineExceeded},
}

// errOther is the index of "other" in an errors array.
const errOther = len(benchErrKinds)

// errKind returns the index of err's kind in benchErrKinds (errOther
// when none matches).
func errKind(err error) int {
	for i, k := range benchErrKinds {
		if errors.Is(err, k.err) {
			return i
		}
	}
	return errOther
}

func errKindName(i int) string {
	if i == errOther {
		return "other"
	}
	return benchErrKinds[i].name
}

// benchFailSeconds is how many whole seconds in a row every op may fail
// before a run gives up: until then a failure is counted and the
// workers go on (a leader change fails some ops for a moment).
const benchFailSeconds = 5

// benchTally is what a run's ops did over some time: their latencies by
// kind, bytes and failures.
type benchTally struct {
	hists   []*hdrhistogram.Histogram // by op kind
	bytes   int64
	reads   int64 // ops without a latency (bench read's records)
	errs    [errOther + 1]int64
	lastErr error
}

func newTally(kinds int) *benchTally {
	t := &benchTally{hists: make([]*hdrhistogram.Histogram, kinds)}
	for i := range t.hists {
		t.hists[i] = newHist()
	}
	return t
}

// add merges o into t.
func (t *benchTally) add(o *benchTally) {
	for i, h := range o.hists {
		t.hists[i].Merge(h)
	}
	t.bytes += o.bytes
	t.reads += o.reads
	for i, n := range o.errs {
		t.errs[i] += n
	}
	if o.lastErr != nil {
		t.lastErr = o.lastErr
	}
}

func (t *benchTally) reset() {
	for _, h := range t.hists {
		h.Reset()
	}
	t.bytes, t.reads, t.errs, t.lastErr = 0, 0, [errOther + 1]int64{}, nil
}

// ops is the number of ops that succeeded.
func (t *benchTally) ops() int64 {
	n := t.reads
	for _, h := range t.hists {
		n += h.TotalCount()
	}
	return n
}

func (t *benchTally) errCount() int64 {
	var n int64
	for _, e := range t.errs {
		n += e
	}
	return n
}

// merged is one histogram of every kind's latencies.
func (t *benchTally) merged() *hdrhistogram.Histogram {
	if len(t.hists) == 1 {
		return t.hists[0]
	}
	h := newHist()
	for _, k := range t.hists {
		h.Merge(k)
	}
	return h
}

// benchShard is the tally of some of the workers, under its own lock so
// that workers seldom contend for one.
type benchShard struct {
	mu    sync.Mutex
	t     *benchTally // since the last drain
	total []int64     // by kind (the last: ops without a latency), ops that succeeded since the start: warm-up and drain included
	late  int64       // of them, after the window closed
	_     [64]byte    // keeps shards' locks on different cache lines
}

// benchRun runs workers and reports their ops every second.
type benchRun struct {
	kinds    []string      // latency kinds of the ops ("append"; "put", "get"); none for reads
	duration time.Duration // the measured window
	warmup   time.Duration // before the window; its ops are not in the summary
	timeout  time.Duration // bounds the wait for the ops in flight at the end
	failFor  int           // whole seconds in a row of failed ops that stop the run
	limiter  *rate.Limiter // nil: as fast as the workers go
	progress io.Writer     // the lines printed every second

	shards  []*benchShard
	stopped atomic.Bool // the window is closed: workers finish and return
}

func newBenchRun(kinds []string, workers int) *benchRun {
	r := &benchRun{kinds: kinds, failFor: benchFailSeconds, timeout: 10 * time.Second, progress: io.Discard}
	n := min(workers, 4*runtime.GOMAXPROCS(0))
	r.shards = make([]*benchShard, max(n, 1))
	for i := range r.shards {
		r.shards[i] = &benchShard{t: newTally(len(kinds)), total: make([]int64, len(kinds)+1)}
	}
	return r
}

// setRate caps the run at opsPerSec ops a second (0: no cap).
func (r *benchRun) setRate(opsPerSec float64) {
	if opsPerSec > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(opsPerSec), max(1, int(opsPerSec/1000)))
	}
}

// shard returns worker i's shard.
func (r *benchRun) shard(i int) *benchShard { return r.shards[i%len(r.shards)] }

// running reports whether a worker should start another op.
func (r *benchRun) running() bool { return !r.stopped.Load() }

// pace waits for the rate limiter, if any. It returns false when ctx
// ended.
func (r *benchRun) pace(ctx context.Context) bool {
	return r.limiter == nil || r.limiter.Wait(ctx) == nil
}

// done records an op of kind (-1: one without a latency) that moved n
// bytes in lat, or that failed with err.
func (r *benchRun) done(s *benchShard, kind, n int, lat time.Duration, err error) {
	s.mu.Lock()
	switch {
	case err != nil:
		s.t.errs[errKind(err)]++
		s.t.lastErr = err
	case r.stopped.Load(): // read under the lock: see run
		s.total[kindIndex(kind, len(s.total))]++
		s.late++
	default:
		s.total[kindIndex(kind, len(s.total))]++
		if kind < 0 {
			s.t.reads++
		} else {
			recordLatency(s.t.hists[kind], lat)
		}
		s.t.bytes += int64(n)
	}
	s.mu.Unlock()
}

// kindIndex is the index of kind in a shard's totals of n.
func kindIndex(kind, n int) int {
	if kind < 0 {
		return n - 1
	}
	return kind
}

// drain moves every shard's tally into t (reset first).
func (r *benchRun) drain(t *benchTally) {
	t.reset()
	for _, s := range r.shards {
		s.mu.Lock()
		t.add(s.t)
		s.t.reset()
		s.mu.Unlock()
	}
}

// totals returns the ops that succeeded since the start by kind (the
// last: those without a latency), and how many of them finished after
// the window closed.
func (r *benchRun) totals() (total []int64, late int64) {
	total = make([]int64, len(r.kinds)+1)
	for _, s := range r.shards {
		s.mu.Lock()
		for i, n := range s.total {
			total[i] += n
		}
		late += s.late
		s.mu.Unlock()
	}
	return total, late
}

// benchResult is what run measured.
type benchResult struct {
	window      *benchTally
	seconds     float64 // the window's length
	total       []int64 // by kind, as totals returns them
	late        int64
	errsOutside int64 // failed ops outside the window: in the warm-up and after it
	interrupted bool
	aborted     error // every op failed for benchFailSeconds: the last error
}

// run starts workers goroutines running worker(ctx, i) (each loops while
// r.running()), prints a line every second, and returns when the window
// has closed (the duration passed, a signal came, every op failed for
// benchFailSeconds, or every worker returned) and the ops in flight have
// finished (or --timeout later). A second signal stops the wait.
func (r *benchRun) run(workers int, worker func(ctx context.Context, i int)) benchResult {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() { worker(ctx, i) })
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	res := benchResult{window: newTally(len(r.kinds))}
	sec := newTally(len(r.kinds))
	start := time.Now()
	last := start
	var windowStart time.Time
	inWindow := r.warmup == 0
	if inWindow {
		windowStart = start
	}
	warmupTimer := time.NewTimer(r.warmup)
	defer warmupTimer.Stop()
	var endTimer *time.Timer
	var endC <-chan time.Time
	if inWindow {
		endTimer = time.NewTimer(r.duration)
		endC = endTimer.C
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	failing := 0 // seconds in a row in which every op failed

	// report drains the shards and prints a line for the time since the
	// last one.
	report := func(now time.Time) {
		r.drain(sec)
		el := now.Sub(last).Seconds()
		last = now
		label := "warmup"
		if inWindow {
			res.window.add(sec)
			label = secondsText(now.Sub(windowStart))
		} else {
			res.errsOutside += sec.errCount()
		}
		if sec.ops() == 0 && sec.errCount() > 0 {
			failing++
		} else {
			failing = 0
		}
		if el > 0 {
			r.printLine(label, sec, el)
		}
	}
loop:
	for {
		select {
		case now := <-tick.C:
			report(now)
			if failing >= r.failFor {
				res.aborted = sec.lastErr
				break loop
			}
		case <-warmupTimer.C:
			if !inWindow {
				report(time.Now())
				inWindow, windowStart = true, last
				endTimer = time.NewTimer(r.duration)
				endC = endTimer.C
				tick.Reset(time.Second)
			}
		case <-endC:
			break loop
		case <-allDone:
			break loop
		case <-sigs:
			res.interrupted = true
			break loop
		}
	}
	if endTimer != nil {
		endTimer.Stop()
	}
	// Close the window: a worker reads stopped under its shard's lock,
	// so every op drained below finished before this point, and every op
	// after it is counted as late.
	r.stopped.Store(true)
	now := time.Now()
	if inWindow {
		// A last interval of a few ms is too short for a line of its
		// own, unless the window had none.
		if now.Sub(last) >= 100*time.Millisecond || last == windowStart {
			report(now)
		} else {
			r.drain(sec)
			res.window.add(sec)
		}
		res.seconds = now.Sub(windowStart).Seconds()
	}
	// Let the ops in flight finish, within --timeout.
	drainTimer := time.NewTimer(r.timeout)
	defer drainTimer.Stop()
	select {
	case <-allDone:
	case <-drainTimer.C:
		cancel()
	case <-sigs:
		cancel()
	}
	<-allDone
	r.drain(sec) // failures after the window
	res.errsOutside += sec.errCount()
	res.total, res.late = r.totals()
	return res
}

// secondsText is "3s" for whole seconds (to within 10 ms), else "3.42s".
func secondsText(d time.Duration) string {
	if r := d.Round(time.Second); (d - r).Abs() < 10*time.Millisecond {
		return fmt.Sprintf("%ds", int64(r/time.Second))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// printLine prints the line of one interval of el seconds.
func (r *benchRun) printLine(label string, t *benchTally, el float64) {
	ops := t.ops()
	line := fmt.Sprintf("%7s %10.0f ops/s %9.2f MB/s", label, float64(ops)/el, float64(t.bytes)/el/1e6)
	if len(r.kinds) > 0 {
		h := t.merged()
		if h.TotalCount() > 0 {
			line += fmt.Sprintf("  p50 %-8s p99 %-8s", usText(quantile(h, 0.5)), usText(quantile(h, 0.99)))
		} else {
			line += fmt.Sprintf("  p50 %-8s p99 %-8s", "-", "-")
		}
	}
	if n := t.errCount(); n > 0 {
		line += fmt.Sprintf("  errors %d (%s)", n, errorsText(t))
	}
	fmt.Fprintln(r.progress, strings.TrimRight(line, " "))
}

// errorsText is "busy 2, unavailable 1".
func errorsText(t *benchTally) string {
	var parts []string
	for i, n := range t.errs {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", errKindName(i), n))
		}
	}
	return strings.Join(parts, ", ")
}

// benchSummary is the end of a run, as --json prints it. Ops, bytes,
// errors and latencies are those of the measured window (after the
// warm-up, before the end); total_ops counts every op that succeeded,
// the warm-up's, the first (probe) op and those in flight at the end
// included, and total_errors every op that failed.
type benchSummary struct {
	Bench       string                 `json:"bench"`
	Partition   uint64                 `json:"partition"`
	Size        int                    `json:"size"`
	Concurrency int                    `json:"concurrency"`
	Clients     int                    `json:"clients"`
	Async       int                    `json:"async,omitempty"`
	Rate        float64                `json:"rate,omitempty"`
	Warmup      float64                `json:"warmup_seconds"`
	Seconds     float64                `json:"seconds"`
	Ops         int64                  `json:"ops"`
	Bytes       int64                  `json:"bytes"`
	OpsPerSec   float64                `json:"ops_per_sec"`
	MBPerSec    float64                `json:"mb_per_sec"`
	ErrorCount  int64                  `json:"error_count"`
	Errors      map[string]int64       `json:"errors"`
	Latency     *latencySummary        `json:"latency_us,omitempty"`
	ByOp        map[string]benchOpJSON `json:"by_op,omitempty"`
	TotalOps    int64                  `json:"total_ops"`
	TotalErrors int64                  `json:"total_errors"`
	Interrupted bool                   `json:"interrupted,omitempty"`
	Aborted     string                 `json:"aborted,omitempty"`
}

// benchOpJSON is one kind of op in a summary of several.
type benchOpJSON struct {
	Ops      int64          `json:"ops"`
	Latency  latencySummary `json:"latency_us"`
	TotalOps int64          `json:"total_ops"`
}

// summary fills s's measured fields from res.
func (r *benchRun) summary(s *benchSummary, res benchResult) {
	w := res.window
	s.Warmup, s.Seconds = r.warmup.Seconds(), res.seconds
	s.Ops, s.Bytes, s.ErrorCount = w.ops(), w.bytes, w.errCount()
	if res.seconds > 0 {
		s.OpsPerSec = float64(s.Ops) / res.seconds
		s.MBPerSec = float64(s.Bytes) / res.seconds / 1e6
	}
	s.Errors = map[string]int64{}
	for i, n := range w.errs {
		if n > 0 {
			s.Errors[errKindName(i)] = n
		}
	}
	if len(r.kinds) > 0 {
		l := summarize(w.merged())
		s.Latency = &l
	}
	if len(r.kinds) > 1 {
		s.ByOp = map[string]benchOpJSON{}
		for i, k := range r.kinds {
			s.ByOp[k] = benchOpJSON{w.hists[i].TotalCount(), summarize(w.hists[i]), res.total[i]}
		}
	}
	for _, n := range res.total {
		s.TotalOps += n
	}
	s.TotalErrors = s.ErrorCount + res.errsOutside
	s.Interrupted = res.interrupted
	if res.aborted != nil {
		s.Aborted = errorLine(res.aborted)
	}
}

// printSummary prints s as text.
func printSummary(w io.Writer, s *benchSummary, header string) {
	fmt.Fprintf(w, "\n%s\n", header)
	state := ""
	switch {
	case s.Aborted != "":
		state = fmt.Sprintf(" (stopped: every op failed for %d seconds in a row: %s)", benchFailSeconds, s.Aborted)
	case s.Interrupted:
		state = " (interrupted)"
	}
	fmt.Fprintf(w, "  ops         %d in %.2fs%s\n", s.Ops, s.Seconds, state)
	fmt.Fprintf(w, "  throughput  %.0f ops/s, %.2f MB/s\n", s.OpsPerSec, s.MBPerSec)
	if s.ErrorCount == 0 {
		fmt.Fprintf(w, "  errors      0\n")
	} else {
		names := make([]string, 0, len(s.Errors))
		for k := range s.Errors {
			names = append(names, k)
		}
		sort.Strings(names)
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = fmt.Sprintf("%s %d", k, s.Errors[k])
		}
		fmt.Fprintf(w, "  errors      %d: %s\n", s.ErrorCount, strings.Join(parts, ", "))
	}
	lat := func(name string, l latencySummary) {
		fmt.Fprintf(w, "  %-11s p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", name,
			usText(l.P50), usText(l.P90), usText(l.P99), usText(l.P999), usText(l.Max))
	}
	if s.Latency != nil && s.Ops > 0 {
		lat("latency", *s.Latency)
	}
	kinds := make([]string, 0, len(s.ByOp))
	for k := range s.ByOp {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		if o := s.ByOp[k]; o.Ops > 0 {
			lat(fmt.Sprintf("%s (%d)", k, o.Ops), o.Latency)
		}
	}
}
