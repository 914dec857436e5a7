package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

type options struct {
	bin, dir, newNodeDir string
	runs, ops, payload   int
	window, timeline     time.Duration
	loadRate, loadConc   int
	serveArgs            string
	profile              string
	profileSeconds       int
	keep                 bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "the lockstitch binary (required); name=path[|serve args],... runs each in turn in every run, side by side, with its own extra serve flags")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "directory for the nodes' data (the disk measured)")
	flag.StringVar(&o.newNodeDir, "new-node-dir", "", "directory for the added node's data (default: -dir)")
	flag.IntVar(&o.runs, "runs", 3, "runs")
	flag.IntVar(&o.ops, "ops", 1_000_000, "ops in the partition before the add")
	flag.IntVar(&o.payload, "payload", 300, "payload bytes per op")
	flag.DurationVar(&o.window, "window", 5*time.Second, "how long the load is measured before the add")
	flag.IntVar(&o.loadRate, "load-rate", 1000, "appends per second of the bounded load")
	flag.IntVar(&o.loadConc, "load-conc", 16, "goroutines of the bounded load, each appending synchronously")
	flag.DurationVar(&o.timeline, "timeline", 0, "print the load's latency and the new replica's progress at this interval during the add (0: no)")
	flag.StringVar(&o.serveArgs, "serve-args", "", "more flags for every `lockstitch serve`, space-separated")
	flag.StringVar(&o.profile, "profile", "", "directory to save CPU profiles of the nodes, taken from the add on")
	flag.IntVar(&o.profileSeconds, "profile-seconds", 8, "length of those profiles")
	flag.BoolVar(&o.keep, "keep", false, "keep the nodes' directories and logs")
	flag.Parse()
	if o.bin == "" {
		log.Fatal("catchup: -bin is required")
	}
	fmt.Printf("catchup: %d runs, %d ops of %d B, load %d/s from %d goroutines, window %v, dir %s, new node dir %s, serve args %q\n",
		o.runs, o.ops, o.payload, o.loadRate, o.loadConc, o.window, o.dir, cmp(o.newNodeDir, o.dir), o.serveArgs)
	type binary struct{ name, path, args string }
	var bins []binary
	for _, b := range strings.Split(o.bin, ",") {
		b, args, _ := strings.Cut(b, "|")
		name, path, ok := strings.Cut(b, "=")
		if !ok {
			name, path = "", b
		}
		bins = append(bins, binary{name, path, args})
	}
	results := make([][]result, len(bins))
	for i := 1; i <= o.runs; i++ {
		for j, b := range bins {
			if b.name != "" {
				fmt.Printf("run %d: %s (%s %s)\n", i, b.name, b.path, b.args)
			}
			// A run that fails (a port taken by another program, say)
			// is run again, up to three times.
			var r result
			var err error
			for try := 1; try <= 3; try++ {
				if r, err = run(&o, b.path, b.args, i); err == nil {
					break
				}
				log.Printf("catchup: run %d %s, try %d: %v", i, b.name, try, err)
			}
			if err != nil {
				log.Fatalf("catchup: run %d %s failed three times", i, b.name)
			}
			results[j] = append(results[j], r)
			printHeader()
			r.print(strings.TrimSpace(fmt.Sprint(i, " ", b.name)))
		}
	}
	fmt.Println()
	printHeader()
	for j, b := range bins {
		for _, r := range results[j] {
			r.print(strings.TrimSpace(fmt.Sprint(r.run, " ", b.name)))
		}
		median(results[j]).print(strings.TrimSpace("median " + b.name))
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type result struct {
	run                   int
	fillRate              float64 // ops/s
	p99Before, p99During  time.Duration
	opsBefore, opsDuring  int
	voterAfter, caughtUp  time.Duration
	copyBytes, logBytes   int64
	copies                int
	catchupMBs            float64
	diskMBs, loopbackMBs  float64
	ratio, shareOfCeiling float64
}

func printHeader() {
	fmt.Printf("%-14s %9s %10s %10s %6s %8s %8s %8s %6s %9s %9s %9s %7s\n",
		"run", "fill op/s", "p99 before", "p99 during", "ratio", "voter s", "caught s", "copy MB", "copies", "copy MB/s", "disk MB/s", "loop MB/s", "share")
}

func (r result) print(name string) {
	fmt.Printf("%-14s %9.0f %10s %10s %6.2f %8.2f %8.2f %8.1f %6d %9.1f %9.0f %9.0f %6.1f%%\n",
		name, r.fillRate, ms(r.p99Before), ms(r.p99During), r.ratio, r.voterAfter.Seconds(), r.caughtUp.Seconds(),
		float64(r.copyBytes)/1e6, r.copies, r.catchupMBs, r.diskMBs, r.loopbackMBs, 100*r.shareOfCeiling)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/1e6) }

func median(rs []result) result {
	m := result{}
	md := func(get func(r result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	m.fillRate = md(func(r result) float64 { return r.fillRate })
	m.p99Before = time.Duration(md(func(r result) float64 { return float64(r.p99Before) }))
	m.p99During = time.Duration(md(func(r result) float64 { return float64(r.p99During) }))
	m.voterAfter = time.Duration(md(func(r result) float64 { return float64(r.voterAfter) }))
	m.caughtUp = time.Duration(md(func(r result) float64 { return float64(r.caughtUp) }))
	m.copyBytes = int64(md(func(r result) float64 { return float64(r.copyBytes) }))
	m.copies = int(md(func(r result) float64 { return float64(r.copies) }))
	m.catchupMBs = md(func(r result) float64 { return r.catchupMBs })
	m.diskMBs = md(func(r result) float64 { return r.diskMBs })
	m.loopbackMBs = md(func(r result) float64 { return r.loopbackMBs })
	m.ratio = md(func(r result) float64 { return r.ratio })
	m.shareOfCeiling = md(func(r result) float64 { return r.shareOfCeiling })
	return m
}

// node is one `lockstitch serve` child process.
type node struct {
	id                      int
	client, raft, admin     string
	dir                     string
	cmd                     *exec.Cmd
	logf                    *os.File
	mu                      sync.Mutex
	events                  []event
	sendStarted, sendEnded  atomic.Int32
	restoreStart, restoreOK atomic.Int32
	sentBytes               atomic.Int64
}

type event struct {
	at   time.Time
	node int
	msg  string
}

var bytesRe = regexp.MustCompile(`bytes=(\d+)`)

// watch copies the node's stderr to its log file and notes copy events.
func (n *node) watch(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(n.logf, line)
		var msg string
		switch {
		case strings.Contains(line, `msg="copy send started"`):
			n.sendStarted.Add(1)
			msg = "copy send started"
		case strings.Contains(line, `msg="copy send ended"`):
			n.sendEnded.Add(1)
			msg = "copy send ended"
			if strings.Contains(line, "err=<nil>") {
				if m := bytesRe.FindStringSubmatch(line); m != nil {
					b, _ := strconv.ParseInt(m[1], 10, 64)
					n.sentBytes.Store(b)
				}
			} else {
				msg += " (failed)"
			}
		case strings.Contains(line, `msg="copy restore started"`):
			n.restoreStart.Add(1)
			msg = "copy restore started"
		case strings.Contains(line, `msg="copy restore ended"`):
			n.restoreOK.Add(1)
			msg = "copy restore ended"
		case strings.Contains(line, `msg="operation log restored from the snapshot"`):
			msg = "log restored"
		case strings.Contains(line, `msg="promoted to voter"`):
			msg = "promoted"
		}
		if msg != "" {
			n.mu.Lock()
			n.events = append(n.events, event{time.Now(), n.id, msg})
			n.mu.Unlock()
		}
	}
}

func (n *node) takeEvents() []event {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.events
	n.events = nil
	return e
}

func startNodes(o *options, bin, extra, work string) ([]*node, error) {
	base := 20000 + rand.IntN(30000)
	nodes := make([]*node, 3)
	var peers []string
	for i := range nodes {
		id := i + 1
		n := &node{id: id,
			client: fmt.Sprintf("127.0.0.1:%d", base+id),
			raft:   fmt.Sprintf("127.0.0.1:%d", base+10+id),
			admin:  fmt.Sprintf("127.0.0.1:%d", base+20+id),
			dir:    filepath.Join(work, fmt.Sprintf("node%d", id)),
		}
		if id == 3 && o.newNodeDir != "" {
			d, err := os.MkdirTemp(o.newNodeDir, "catchup-node3.")
			if err != nil {
				return nil, err
			}
			n.dir = d
		}
		nodes[i] = n
		peers = append(peers, fmt.Sprintf("%d=%s/%s", id, n.raft, n.client))
	}
	for _, n := range nodes {
		args := []string{"serve", "--id", fmt.Sprint(n.id), "--data-dir", n.dir, "--raft-addr", n.raft,
			"--client-addr", n.client, "--admin-addr", n.admin, "--peers", strings.Join(peers, ","), "--log-level", "info"}
		args = append(args, strings.Fields(o.serveArgs)...)
		args = append(args, strings.Fields(extra)...)
		n.cmd = exec.Command(bin, args...)
		var err error
		if n.logf, err = os.Create(filepath.Join(work, fmt.Sprintf("node%d.log", n.id))); err != nil {
			return nil, err
		}
		stderr, err := n.cmd.StderrPipe()
		if err != nil {
			return nil, err
		}
		if err := n.cmd.Start(); err != nil {
			return nil, err
		}
		go n.watch(stderr)
	}
	return nodes, nil
}

func stopNodes(nodes []*node) {
	for _, n := range nodes {
		if n != nil && n.cmd != nil && n.cmd.Process != nil {
			n.cmd.Process.Signal(syscall.SIGKILL)
			n.cmd.Wait()
		}
	}
}

// sample is one append of the load: when it ended and how long it took.
type sample struct {
	end time.Time
	lat time.Duration
}

// load appends at a bounded rate until ctx ends, recording each append.
type load struct {
	mu      sync.Mutex
	samples []sample
	errs    atomic.Int64
}

func (l *load) run(ctx context.Context, cl *transport.Client, rate, conc, payload int) {
	tickets := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			buf := make([]byte, payload)
			for range tickets {
				start := time.Now()
				actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := cl.Append(actx, 1, buf)
				cancel()
				end := time.Now()
				if err != nil {
					l.errs.Add(1)
					continue
				}
				l.mu.Lock()
				l.samples = append(l.samples, sample{end, end.Sub(start)})
				l.mu.Unlock()
			}
		})
	}
	interval := time.Second / time.Duration(rate)
	next := time.Now()
	for ctx.Err() == nil {
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		select {
		case tickets <- struct{}{}:
		default: // every worker busy: the load is bounded, skip
		}
	}
	close(tickets)
	wg.Wait()
}

// between returns the latencies of the appends that ended in [from, to).
func (l *load) between(from, to time.Time) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Duration
	for _, s := range l.samples {
		if !s.end.Before(from) && s.end.Before(to) {
			out = append(out, s.lat)
		}
	}
	return out
}

func quantile(lat []time.Duration, q float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func run(o *options, bin, extra string, i int) (res result, err error) {
	res = result{run: i}
	work, err := os.MkdirTemp(o.dir, "catchup.")
	if err != nil {
		return res, err
	}
	nodes, err := startNodes(o, bin, extra, work)
	defer func() {
		stopNodes(nodes)
		if err != nil {
			for _, n := range nodes {
				if n == nil || n.logf == nil {
					continue
				}
				if b, rerr := os.ReadFile(n.logf.Name()); rerr == nil {
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					fmt.Printf("node %d log, last lines:\n%s\n", n.id, strings.Join(lines[max(0, len(lines)-5):], "\n"))
				}
			}
		}
		if !o.keep {
			os.RemoveAll(work)
			if o.newNodeDir != "" && nodes != nil && nodes[2] != nil {
				os.RemoveAll(nodes[2].dir)
			}
		} else {
			fmt.Printf("run %d: kept %s\n", i, work)
		}
	}()
	if err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	addrs := []string{nodes[0].client, nodes[1].client, nodes[2].client}
	var cl *transport.Client
	for start := time.Now(); ; {
		if cl, err = transport.Dial(ctx, transport.DefaultClientConfig(), addrs...); err == nil {
			if _, err = cl.ClusterStatus(ctx); err == nil {
				break
			}
			cl.Close()
		}
		if time.Since(start) > 30*time.Second {
			return res, fmt.Errorf("nodes do not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer cl.Close()
	for _, a := range addrs { // every node up before the create
		for start := time.Now(); cl.Ping(ctx, a) != nil; time.Sleep(100 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				return res, fmt.Errorf("node %s does not answer", a)
			}
		}
	}
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Nodes: []lockstitch.NodeID{1, 2}}); err != nil {
		return res, fmt.Errorf("create: %w", err)
	}

	// Fill: ops appended with many in flight.
	start := time.Now()
	if err := fill(ctx, addrs[:2], o.ops, o.payload); err != nil {
		return res, fmt.Errorf("fill: %w", err)
	}
	res.fillRate = float64(o.ops) / time.Since(start).Seconds()
	fmt.Printf("run %d: %d ops appended at %.0f ops/s\n", i, o.ops, res.fillRate)

	// The bounded load, on its own client, from here to the end.
	lcl, err := transport.Dial(ctx, transport.DefaultClientConfig(), addrs[:2]...)
	if err != nil {
		return res, err
	}
	defer lcl.Close()
	var ld load
	lctx, lstop := context.WithCancel(ctx)
	loadDone := make(chan struct{})
	go func() { ld.run(lctx, lcl, o.loadRate, o.loadConc, o.payload); close(loadDone) }()
	defer func() { lstop(); <-loadDone }()
	time.Sleep(time.Second) // warm up
	beforeFrom := time.Now()
	time.Sleep(o.window)
	addAt := time.Now()
	before := ld.between(beforeFrom, addAt)
	res.p99Before, res.opsBefore = quantile(before, 0.99), len(before)

	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		return res, err
	}
	target := st.Committed
	for _, n := range nodes {
		n.takeEvents()
	}
	var profiles sync.WaitGroup
	if o.profile != "" {
		for _, n := range nodes {
			profiles.Go(func() { profile(o, n, i) })
		}
	}
	if _, err := cl.AddReplica(ctx, 1, 3, lockstitch.Voter); err != nil {
		return res, fmt.Errorf("add replica: %w", err)
	}
	added := time.Since(addAt)
	ncl, err := transport.Dial(ctx, transport.DefaultClientConfig(), nodes[2].client)
	if err != nil {
		return res, err
	}
	defer ncl.Close()
	var voterAt, caughtAt time.Time
	lastTick := addAt
	for caughtAt.IsZero() {
		time.Sleep(20 * time.Millisecond)
		now := time.Now()
		if now.Sub(addAt) > 20*time.Minute {
			return res, errors.New("the new replica did not catch up in 20 minutes")
		}
		var role lockstitch.Role
		var applied lockstitch.LSN
		sctx, scancel := context.WithTimeout(ctx, 250*time.Millisecond)
		ns, err := ncl.Status(sctx, nodes[2].client)
		scancel()
		if err == nil && len(ns.Partitions) == 1 {
			role, applied = ns.Partitions[0].Role, ns.Partitions[0].Applied
		}
		if voterAt.IsZero() && (role == lockstitch.RoleFollower || role == lockstitch.RoleLeader) {
			voterAt = now
		}
		if !voterAt.IsZero() && applied >= target {
			caughtAt = now
		}
		if o.timeline > 0 && (now.Sub(lastTick) >= o.timeline || !caughtAt.IsZero()) {
			lat := ld.between(lastTick, now)
			fmt.Printf("  t=%6.2fs ops=%5d p50=%8s p99=%8s max=%8s new replica %-10s applied %d/%d\n",
				now.Sub(addAt).Seconds(), len(lat), ms(quantile(lat, 0.5)), ms(quantile(lat, 0.99)), ms(quantile(lat, 1)),
				role, applied, target)
			lastTick = now
		}
		for _, n := range nodes {
			for _, e := range n.takeEvents() {
				if o.timeline > 0 {
					fmt.Printf("  t=%6.2fs node %d: %s\n", e.at.Sub(addAt).Seconds(), e.node, e.msg)
				}
			}
		}
	}
	during := ld.between(addAt, caughtAt)
	res.p99During, res.opsDuring = quantile(during, 0.99), len(during)
	res.voterAfter, res.caughtUp = voterAt.Sub(addAt), caughtAt.Sub(addAt)
	for _, n := range nodes {
		res.copies += int(n.sendStarted.Load())
		res.copyBytes = max(res.copyBytes, n.sentBytes.Load())
	}
	if res.p99Before > 0 {
		res.ratio = float64(res.p99During) / float64(res.p99Before)
	}
	fmt.Printf("run %d: add took %v; %d appends before (p99 %s), %d during (p99 %s), %d failed; voter after %.2fs, caught up after %.2fs\n",
		i, added.Round(time.Millisecond), len(before), ms(res.p99Before), len(during), ms(res.p99During), ld.errs.Load(),
		res.voterAfter.Seconds(), res.caughtUp.Seconds())
	profiles.Wait() // the nodes run until their profiles are taken
	lstop()
	<-loadDone
	stopNodes(nodes)

	// The ceilings, in the same run.
	var logBytes int64
	if res.diskMBs, logBytes, err = diskRead(filepath.Join(nodes[0].dir, "partitions")); err != nil {
		return res, fmt.Errorf("disk read: %w", err)
	}
	// Catch-up throughput: the log the new replica received (the same
	// size on every replica) over the time to a caught-up voter.
	res.logBytes = logBytes
	res.catchupMBs = float64(logBytes) / 1e6 / res.caughtUp.Seconds()
	if res.loopbackMBs, err = loopback(1 << 30); err != nil {
		return res, fmt.Errorf("loopback: %w", err)
	}
	res.shareOfCeiling = res.catchupMBs / min(res.diskMBs, res.loopbackMBs)
	return res, nil
}

// fill appends n ops of size bytes with many in flight, from workers
// with a client each (a producer keeps fewer than
// replicator.DedupeWindow appends in flight).
func fill(ctx context.Context, addrs []string, n, size int) error {
	const workers, window = 4, 512
	var next atomic.Int64
	errc := make(chan error, workers)
	for range workers {
		go func() {
			cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), addrs...)
			if err != nil {
				errc <- err
				return
			}
			defer cl.Close()
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = byte(i)
			}
			futures := make([]transport.AppendFuture, 0, window)
			for {
				k := int(next.Add(window)) - window
				if k >= n {
					errc <- nil
					return
				}
				for j := k; j < min(k+window, n); j++ {
					futures = append(futures, cl.AppendAsync(ctx, 1, payload))
				}
				for _, f := range futures {
					if _, err := f.Wait(ctx); err != nil {
						errc <- err
						return
					}
				}
				futures = futures[:0]
			}
		}()
	}
	var errs []error
	for range workers {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func profile(o *options, n *node, run int) {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		log.Print(err)
		return
	}
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.admin, o.profileSeconds))
	if err != nil {
		log.Printf("profile of node %d: %v", n.id, err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(filepath.Join(o.profile, fmt.Sprintf("run%d-node%d.pprof", run, n.id)))
	if err != nil {
		log.Print(err)
		return
	}
	defer f.Close()
	io.Copy(f, resp.Body)
}

// diskRead reads every log segment under dir with O_DIRECT (no page
// cache) in 1 MiB blocks and returns MB/s and the bytes read.
func diskRead(dir string) (float64, int64, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".wal") {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	slices.Sort(paths)
	const block = 1 << 20
	raw := make([]byte, block+4096)
	off := int(4096 - uintptr(unsafe.Pointer(&raw[0]))%4096)
	buf := raw[off : off+block]
	var total int64
	start := time.Now()
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			return 0, 0, err
		}
		for {
			n, err := f.Read(buf)
			total += int64(n)
			if err == io.EOF || n == 0 {
				break
			}
			if err != nil {
				f.Close()
				return 0, 0, err
			}
		}
		f.Close()
	}
	if total < 16<<20 {
		return 0, 0, fmt.Errorf("only %d bytes of log segments under %s", total, dir)
	}
	return float64(total) / 1e6 / time.Since(start).Seconds(), total, nil
}

// loopback sends n bytes over a TCP connection on 127.0.0.1 in 1 MiB
// writes and returns MB/s.
func loopback(n int64) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		k, _ := io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
		got <- k
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for sent := int64(0); sent < n; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	k := <-got
	return float64(k) / 1e6 / time.Since(start).Seconds(), nil
}
