package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

type options struct {
	bin, dir, serveArgs string
	partitions, conc    int
	settle, window      time.Duration
	keep, kill          bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "the lockstitch binary (required)")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "directory for the nodes' data")
	flag.StringVar(&o.serveArgs, "serve-args", "", "more flags for every `lockstitch serve`, space-separated")
	flag.IntVar(&o.partitions, "partitions", 100, "partitions of three replicas to create")
	flag.IntVar(&o.conc, "create-conc", 8, "creates in flight at a time")
	flag.DurationVar(&o.settle, "settle", 10*time.Second, "wait after the creates before measuring")
	flag.DurationVar(&o.window, "window", 10*time.Second, "CPU measurement window")
	flag.BoolVar(&o.keep, "keep", false, "keep the nodes' directories and logs")
	flag.BoolVar(&o.kill, "kill", false, "at the end, kill node 1 (SIGKILL) and measure how long until every partition has a leader on nodes 2 and 3")
	flag.Parse()
	if o.bin == "" {
		log.Fatal("idle: -bin is required")
	}
	fmt.Printf("idle: %d partitions x 3 replicas, %d creates in flight, settle %v, window %v, serve args %q\n",
		o.partitions, o.conc, o.settle, o.window, o.serveArgs)
	// A run that fails (a port taken by another program, say) is run
	// again, up to three times.
	for try := 1; ; try++ {
		err := run(&o)
		if err == nil {
			return
		}
		if try == 3 {
			log.Fatalf("idle: %v", err)
		}
		log.Printf("idle: try %d: %v", try, err)
	}
}

// node is one `lockstitch serve` child process.
type node struct {
	id                  int
	client, raft, admin string
	dir                 string
	cmd                 *exec.Cmd
	logf                *os.File
}

func startNodes(o *options, work string) ([]*node, error) {
	base := 20000 + rand.IntN(30000)
	nodes := make([]*node, 3)
	var peers []string
	for i := range nodes {
		id := i + 1
		nodes[i] = &node{id: id,
			client: fmt.Sprintf("127.0.0.1:%d", base+id),
			raft:   fmt.Sprintf("127.0.0.1:%d", base+10+id),
			admin:  fmt.Sprintf("127.0.0.1:%d", base+20+id),
			dir:    filepath.Join(work, fmt.Sprintf("node%d", id)),
		}
		peers = append(peers, fmt.Sprintf("%d=%s/%s", id, nodes[i].raft, nodes[i].client))
	}
	for _, n := range nodes {
		args := []string{"serve", "--id", fmt.Sprint(n.id), "--data-dir", n.dir, "--raft-addr", n.raft,
			"--client-addr", n.client, "--admin-addr", n.admin, "--peers", strings.Join(peers, ","), "--log-level", "info"}
		args = append(args, strings.Fields(o.serveArgs)...)
		n.cmd = exec.Command(o.bin, args...)
		var err error
		if n.logf, err = os.Create(filepath.Join(work, fmt.Sprintf("node%d.log", n.id))); err != nil {
			return nodes, err
		}
		n.cmd.Stderr = n.logf
		if err := n.cmd.Start(); err != nil {
			return nodes, err
		}
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

// sample is what one node used at one time.
type sample struct {
	at              time.Time
	cpuTicks        int64 // utime + stime, in clock ticks
	rss             int64 // bytes
	diskAlloc, size int64 // bytes: allocated blocks, file sizes
	goroutines      int64
	quiet           int64 // replicas quiesced
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func (n *node) sample() (sample, error) {
	s := sample{at: time.Now()}
	pid := n.cmd.Process.Pid
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The fields after the command name (in parentheses): utime and
	// stime are the 14th and 15th of the line.
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpuTicks = ut + st
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			s.rss = kb << 10
		}
	}
	err = filepath.WalkDir(n.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a file removed meanwhile
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			s.diskAlloc += st.Blocks * 512
		}
		if !d.IsDir() {
			s.size += info.Size()
		}
		return nil
	})
	if err != nil {
		return s, err
	}
	s.goroutines = int64(metric(n.admin, "go_goroutines"))
	s.quiet = int64(metric(n.admin, "lockstitch_replicas_quiesced"))
	return s, nil
}

// metric scrapes one unlabelled series from a node's /metrics (-1: none).
func metric(admin, name string) float64 {
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return -1
}

func sampleAll(nodes []*node) ([]sample, error) {
	out := make([]sample, len(nodes))
	for i, n := range nodes {
		var err error
		if out[i], err = n.sample(); err != nil {
			return nil, fmt.Errorf("node %d: %w", n.id, err)
		}
	}
	return out, nil
}

// cpu returns the share of one core used between a and b.
func cpu(a, b sample) float64 {
	return float64(b.cpuTicks-a.cpuTicks) / clockTicks / b.at.Sub(a.at).Seconds()
}

func run(o *options) (err error) {
	work, err := os.MkdirTemp(o.dir, "idle.")
	if err != nil {
		return err
	}
	nodes, err := startNodes(o, work)
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
		} else {
			fmt.Printf("kept %s\n", work)
		}
	}()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
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
			return fmt.Errorf("nodes do not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer cl.Close()
	for _, a := range addrs { // every node up before the creates
		for start := time.Now(); cl.Ping(ctx, a) != nil; time.Sleep(100 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				return fmt.Errorf("node %s does not answer", a)
			}
		}
	}

	// Before: the nodes with no partition, over the same window.
	time.Sleep(2 * time.Second)
	b0, err := sampleAll(nodes)
	if err != nil {
		return err
	}
	time.Sleep(o.window)
	b1, err := sampleAll(nodes)
	if err != nil {
		return err
	}

	// The creates, -create-conc at a time.
	start := time.Now()
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var slowest time.Duration
	var wg sync.WaitGroup
	for range o.conc {
		wg.Go(func() {
			for {
				id := next.Add(1)
				if id > int64(o.partitions) {
					return
				}
				t := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Minute)
				_, err := cl.CreatePartition(cctx, transport.PartitionSpec{ID: lockstitch.PartitionID(id), Nodes: []lockstitch.NodeID{1, 2, 3}})
				ccancel()
				d := time.Since(t)
				mu.Lock()
				slowest = max(slowest, d)
				if err != nil {
					errs = append(errs, fmt.Errorf("create %d: %w", id, err))
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	createTook := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Printf("created %d partitions in %.1fs (%.1f ms each, slowest %.0f ms)\n", o.partitions, createTook.Seconds(),
		float64(createTook.Milliseconds())/float64(o.partitions), float64(slowest.Milliseconds()))

	// Settle, then the window.
	time.Sleep(o.settle)
	a0, err := sampleAll(nodes)
	if err != nil {
		return err
	}
	time.Sleep(o.window)
	a1, err := sampleAll(nodes)
	if err != nil {
		return err
	}

	// A status of every partition on node 1, three times.
	var statusTook []string
	for range 3 {
		t := time.Now()
		st, err := cl.Status(ctx, nodes[0].client)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		statusTook = append(statusTook, fmt.Sprintf("%.0fms (%d partitions)", float64(time.Since(t).Microseconds())/1000, len(st.Partitions)))
	}
	fmt.Printf("status of node 1: %s\n", strings.Join(statusTook, ", "))

	// One append to a quiet partition, then one to the same partition,
	// now awake.
	for _, what := range []string{"quiet", "awake"} {
		t := time.Now()
		actx, acancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := cl.Append(actx, 1, []byte("idle bench"))
		acancel()
		if err != nil {
			return fmt.Errorf("append to partition 1 (%s): %w", what, err)
		}
		fmt.Printf("append to partition 1, %s: %.1fms\n", what, float64(time.Since(t).Microseconds())/1000)
	}

	p := float64(o.partitions)
	defer func() {
		if err == nil && o.kill {
			err = killLeader(o, nodes)
		}
	}()
	fmt.Printf("%-5s %12s %12s %7s %11s %9s %9s %10s %10s %9s %9s %10s\n", "node", "CPU% before", "CPU% idle", "quiet", "RSS MiB", "KiB/repl", "gorout.", "gor/repl", "disk MiB", "KiB/repl", "size MiB", "KiB/repl")
	var cpuSum float64
	for i := range nodes {
		c := cpu(a0[i], a1[i])
		cpuSum += c
		fmt.Printf("%-5d %11.1f%% %11.1f%% %7d %11.1f %9.0f %9d %10.1f %10.1f %9.0f %9.1f %10.0f\n", i+1,
			100*cpu(b0[i], b1[i]), 100*c, a1[i].quiet,
			float64(a1[i].rss)/(1<<20), float64(a1[i].rss-b1[i].rss)/1024/p,
			a1[i].goroutines, float64(a1[i].goroutines-b1[i].goroutines)/p,
			float64(a1[i].diskAlloc)/(1<<20), float64(a1[i].diskAlloc-b1[i].diskAlloc)/1024/p,
			float64(a1[i].size)/(1<<20), float64(a1[i].size-b1[i].size)/1024/p)
	}
	fmt.Printf("all nodes: %.1f%% of one core idle, %.3f%% per partition\n", 100*cpuSum, 100*cpuSum/p)
	return nil
}

// leaders counts the partitions node n's replica leads, from its metrics
// (which, unlike a status, do not wake quiet partitions).
func leaders(admin string) int {
	res, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	n := 0
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "lockstitch_partition_leader{") && strings.HasSuffix(line, " 1") {
			n++
		}
	}
	return n
}

// killLeader kills node 1 and waits until nodes 2 and 3 lead every
// partition between them (which quiet partitions do only once woken).
func killLeader(o *options, nodes []*node) error {
	led := leaders(nodes[0].admin)
	nodes[0].cmd.Process.Signal(syscall.SIGKILL)
	nodes[0].cmd.Wait()
	killed := time.Now()
	for {
		got := leaders(nodes[1].admin) + leaders(nodes[2].admin)
		if got == o.partitions {
			fmt.Printf("killed node 1 (leader of %d partitions): every partition had a leader again after %.2fs\n", led, time.Since(killed).Seconds())
			return nil
		}
		if time.Since(killed) > 2*time.Minute {
			return fmt.Errorf("2 minutes after node 1 was killed, %d of %d partitions have a leader", got, o.partitions)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
