package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/bench/harness"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
)

type options struct {
	bin, etcdBin, dir   string
	runs                int
	duration, warmup    time.Duration
	concs               []int
	keys, valueBytes    int
	clients             int
	etcdEndpoints       string
	serveArgs, etcdArgs string
	profile             string
	keep                bool
}

const keyBytes = 16

func main() {
	var o options
	var concs string
	flag.StringVar(&o.bin, "bin", "", "the lockstitch binary (required)")
	flag.StringVar(&o.etcdBin, "etcd", "etcd", "the etcd binary")
	flag.StringVar(&o.dir, "dir", os.TempDir(), "directory for both clusters' data (the disk measured)")
	flag.IntVar(&o.runs, "runs", 3, "runs")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured time of a cell")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before each cell's measured time")
	flag.StringVar(&concs, "conc", "1,16,256", "concurrencies, comma-separated")
	flag.IntVar(&o.keys, "keys", 10000, "distinct keys (each 16 bytes)")
	flag.IntVar(&o.valueBytes, "value", 100, "value bytes of a put")
	flag.IntVar(&o.clients, "clients", 1, "clients (connections) per system; workers are spread over them")
	flag.StringVar(&o.etcdEndpoints, "etcd-endpoints", "leader", "what etcd's client is given: leader (its endpoint only) or all")
	flag.StringVar(&o.serveArgs, "serve-args", "", "more flags for every `lockstitch serve`, space-separated")
	flag.StringVar(&o.etcdArgs, "etcd-args", "", "more flags for every etcd, space-separated")
	flag.StringVar(&o.profile, "profile", "", "directory to save CPU profiles of both leaders over the put cell at the highest concurrency")
	flag.BoolVar(&o.keep, "keep", false, "keep the data directories and logs")
	flag.Parse()
	if o.bin == "" {
		log.Fatal("kvetcd: -bin is required")
	}
	for _, c := range strings.Split(concs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			log.Fatalf("kvetcd: bad -conc %q", concs)
		}
		o.concs = append(o.concs, n)
	}
	if o.etcdEndpoints != "leader" && o.etcdEndpoints != "all" {
		log.Fatalf("kvetcd: -etcd-endpoints is leader or all, not %q", o.etcdEndpoints)
	}
	if o.clients < 1 || o.keys < 1 || o.runs < 1 || o.duration <= 0 {
		log.Fatal("kvetcd: -clients, -keys, -runs and -duration must be positive")
	}
	fmt.Printf("kvetcd: %d runs, cells of %v after %v of warm-up, concurrency %v, %d keys of %d B, values of %d B, %d client(s) per system, etcd endpoints: %s, dir %s\n",
		o.runs, o.duration, o.warmup, o.concs, o.keys, keyBytes, o.valueBytes, o.clients, o.etcdEndpoints, o.dir)

	var all []cell
	for i := 1; i <= o.runs; i++ {
		var cells []cell
		var err error
		for try := 1; try <= 3; try++ {
			if cells, err = run(&o, i); err == nil {
				break
			}
			log.Printf("kvetcd: run %d, try %d: %v", i, try, err)
		}
		if err != nil {
			log.Fatalf("kvetcd: run %d failed three times", i)
		}
		all = append(all, cells...)
	}
	fmt.Println()
	summarize(&o, all)
}

// cell is one op at one concurrency on one system in one run.
type cell struct {
	run      int
	system   string
	op       string
	conc     int
	ops      int
	errs     int
	perSec   float64
	p50, p99 time.Duration
	// CPU time per op over the measured window: the system's three
	// processes together, this process (the clients), and the machine's
	// busy share (all CPUs, everything on it).
	srvCPU, cliCPU time.Duration
	busy           float64
}

// system is a cluster under test, with a way to do one op through one of
// its clients.
type system interface {
	name() string
	put(ctx context.Context, client int, key, value []byte) error
	get(ctx context.Context, client int, key []byte) error
	// leaderProfile writes a CPU profile of the leader over d to w.
	leaderProfile(ctx context.Context, d time.Duration, w io.Writer) error
	// pids are the system's processes.
	pids() []int
	stop()
}

func key(i int) []byte { return fmt.Appendf(nil, "k%0*d", keyBytes-1, i) }

func run(o *options, i int) (cells []cell, err error) {
	work, err := os.MkdirTemp(o.dir, "kvetcd.")
	if err != nil {
		return nil, err
	}
	defer func() {
		if !o.keep {
			os.RemoveAll(work)
		} else {
			fmt.Printf("run %d: kept %s\n", i, work)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	ls, err := startLockstitch(ctx, o, filepath.Join(work, "lockstitch"))
	if ls != nil {
		defer ls.stop()
	}
	if err != nil {
		return nil, fmt.Errorf("lockstitch: %w", err)
	}
	et, err := startEtcd(ctx, o, filepath.Join(work, "etcd"))
	if et != nil {
		defer et.stop()
	}
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	systems := []system{ls, et}
	value := make([]byte, o.valueBytes)
	for j := range value {
		value[j] = byte('a' + j%26)
	}
	for _, s := range systems {
		start := time.Now()
		if err := preload(ctx, s, o, value); err != nil {
			return nil, fmt.Errorf("%s: preload: %w", s.name(), err)
		}
		fmt.Printf("run %d: %s: %d keys written in %v\n", i, s.name(), o.keys, time.Since(start).Round(time.Millisecond))
	}

	flip := i%2 == 0
	for _, op := range []string{"put", "get"} {
		for _, conc := range o.concs {
			order := systems
			if flip {
				order = []system{systems[1], systems[0]}
			}
			flip = !flip
			for _, s := range order {
				var prof func()
				if o.profile != "" && op == "put" && conc == slices.Max(o.concs) {
					prof = func() { profile(ctx, o, s, i) }
				}
				c, err := measure(ctx, o, s, op, conc, value, prof)
				if err != nil {
					return nil, err
				}
				c.run = i
				fmt.Printf("run %d %-4s c=%-4d %-10s %9.0f op/s  p50 %8s  p99 %8s  CPU/op: servers %6s, clients %6s; machine %3.0f%% busy  (%d ops, %d errors)\n",
					i, op, conc, s.name(), c.perSec, ms(c.p50), ms(c.p99), us(c.srvCPU), us(c.cliCPU), 100*c.busy, c.ops, c.errs)
				cells = append(cells, c)
			}
		}
	}
	return cells, nil
}

func preload(ctx context.Context, s system, o *options, value []byte) error {
	const workers = 64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for k := w; k < o.keys; k += workers {
				if err := s.put(ctx, w%o.clients, key(k), value); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// measure runs one closed-loop cell: conc workers, each doing op after op
// on random keys; the ops that end within the measured window count.
func measure(ctx context.Context, o *options, s system, op string, conc int, value []byte, prof func()) (cell, error) {
	begin := time.Now().Add(o.warmup)
	end := begin.Add(o.duration)
	lats := make([][]time.Duration, conc)
	nerrs := make([]int, conc)
	errs := make([]error, conc)
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			client := w % o.clients
			lat := make([]time.Duration, 0, 4096)
			for {
				k := key(r.IntN(o.keys))
				octx, cancel := context.WithTimeout(ctx, 30*time.Second)
				t0 := time.Now()
				var err error
				if op == "put" {
					err = s.put(octx, client, k, value)
				} else {
					err = s.get(octx, client, k)
				}
				t1 := time.Now()
				cancel()
				if t1.After(end) {
					break
				}
				if err != nil {
					if errs[w] == nil {
						errs[w] = err
					}
					if t1.After(begin) {
						nerrs[w]++
					}
					continue
				}
				if t1.After(begin) {
					lat = append(lat, t1.Sub(t0))
				}
			}
			lats[w] = lat
		})
	}
	var pwg sync.WaitGroup
	if prof != nil {
		pwg.Go(func() {
			time.Sleep(time.Until(begin))
			prof()
		})
	}
	// CPU use over the measured window.
	var srv0, srv1, cli0, cli1 time.Duration
	var busy0, busy1, total0, total1 int64
	pwg.Go(func() {
		time.Sleep(time.Until(begin))
		srv0, cli0 = harness.ProcsCPU(s.pids()), harness.ProcsCPU([]int{os.Getpid()})
		busy0, total0 = harness.MachineCPU()
		time.Sleep(time.Until(end))
		srv1, cli1 = harness.ProcsCPU(s.pids()), harness.ProcsCPU([]int{os.Getpid()})
		busy1, total1 = harness.MachineCPU()
	})
	wg.Wait()
	pwg.Wait()
	c := cell{system: s.name(), op: op, conc: conc}
	if total1 > total0 {
		c.busy = float64(busy1-busy0) / float64(total1-total0)
	}
	var all []time.Duration
	for w := range conc {
		all = append(all, lats[w]...)
		c.errs += nerrs[w]
	}
	c.ops = len(all)
	c.perSec = float64(c.ops) / o.duration.Seconds()
	slices.Sort(all)
	c.p50, c.p99 = quantile(all, 0.5), quantile(all, 0.99)
	if c.ops > 0 {
		c.srvCPU, c.cliCPU = (srv1-srv0)/time.Duration(c.ops), (cli1-cli0)/time.Duration(c.ops)
	}
	if c.ops == 0 {
		return c, fmt.Errorf("%s %s c=%d: no op succeeded: %w", s.name(), op, conc, errors.Join(errs...))
	}
	if c.errs > 0 {
		log.Printf("kvetcd: %s %s c=%d: %d errors, the first: %v", s.name(), op, conc, c.errs, errors.Join(errs...))
	}
	return c, nil
}

// quantile returns the q quantile of sorted latencies.
func quantile(s []time.Duration, q float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(q*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fus", float64(d)/1e3) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }

func profile(ctx context.Context, o *options, s system, run int) {
	if err := os.MkdirAll(o.profile, 0o755); err != nil {
		log.Print(err)
		return
	}
	name := filepath.Join(o.profile, fmt.Sprintf("run%d-%s-leader.pprof", run, s.name()))
	f, err := os.Create(name)
	if err != nil {
		log.Print(err)
		return
	}
	defer f.Close()
	if err := s.leaderProfile(ctx, o.duration, f); err != nil {
		log.Printf("kvetcd: profile of %s: %v", s.name(), err)
	}
}

func httpProfile(ctx context.Context, base string, d time.Duration, w io.Writer) error {
	secs := max(1, int(d/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", base, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", req.URL, resp.Status)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

// summarize prints, per op and concurrency, the medians over the runs of
// each system's figures and of the per-run ratios, and the goal.
func summarize(o *options, cells []cell) {
	type k struct {
		op   string
		conc int
	}
	by := map[k]map[int]map[string]cell{}
	for _, c := range cells {
		kk := k{c.op, c.conc}
		if by[kk] == nil {
			by[kk] = map[int]map[string]cell{}
		}
		if by[kk][c.run] == nil {
			by[kk][c.run] = map[string]cell{}
		}
		by[kk][c.run][c.system] = c
	}
	fmt.Printf("medians of %d runs (ratios: lockstitch / etcd, median of the per-run ratios)\n", o.runs)
	fmt.Printf("%-4s %5s | %11s %11s %6s | %9s %9s | %9s %9s %6s | %15s %15s | %s\n",
		"op", "conc", "ls op/s", "etcd op/s", "ratio", "ls p50", "etcd p50", "ls p99", "etcd p99", "p99 r",
		"ls CPU/op s+c", "etcd CPU/op s+c", "per-run op/s ratios")
	var goal string
	for _, op := range []string{"put", "get"} {
		for _, conc := range o.concs {
			runs := by[k{op, conc}]
			var lsT, etT, lsP50, etP50, lsP99, etP99, ratio, p99r []float64
			var lsS, lsC, etS, etC []float64
			var per []string
			for r := 1; r <= o.runs; r++ {
				l, e := runs[r]["lockstitch"], runs[r]["etcd"]
				if l.ops == 0 || e.ops == 0 {
					continue
				}
				lsT, etT = append(lsT, l.perSec), append(etT, e.perSec)
				lsP50, etP50 = append(lsP50, float64(l.p50)), append(etP50, float64(e.p50))
				lsP99, etP99 = append(lsP99, float64(l.p99)), append(etP99, float64(e.p99))
				lsS, lsC = append(lsS, float64(l.srvCPU)), append(lsC, float64(l.cliCPU))
				etS, etC = append(etS, float64(e.srvCPU)), append(etC, float64(e.cliCPU))
				ratio = append(ratio, l.perSec/e.perSec)
				p99r = append(p99r, float64(l.p99)/float64(e.p99))
				per = append(per, fmt.Sprintf("%.2f", l.perSec/e.perSec))
			}
			cpu := func(srv, cli []float64) string {
				return us(time.Duration(harness.Median(srv))) + "+" + us(time.Duration(harness.Median(cli)))
			}
			fmt.Printf("%-4s %5d | %11.0f %11.0f %6.2f | %9s %9s | %9s %9s %6.2f | %15s %15s | %s\n",
				op, conc, harness.Median(lsT), harness.Median(etT), harness.Median(ratio),
				ms(time.Duration(harness.Median(lsP50))), ms(time.Duration(harness.Median(etP50))),
				ms(time.Duration(harness.Median(lsP99))), ms(time.Duration(harness.Median(etP99))), harness.Median(p99r),
				cpu(lsS, lsC), cpu(etS, etC), strings.Join(per, " "))
			if op == "put" && conc == 256 {
				met := harness.Median(ratio) >= 4 && harness.Median(lsP99) <= harness.Median(etP99)
				verdict := "NOT MET"
				if met {
					verdict = "met"
				}
				goal = fmt.Sprintf("goal (put at concurrency 256: >= 4x etcd's throughput, p99 no worse): %s (throughput %.2fx, p99 %s against %s)",
					verdict, harness.Median(ratio), ms(time.Duration(harness.Median(lsP99))), ms(time.Duration(harness.Median(etP99))))
			}
		}
	}
	if goal != "" {
		fmt.Println(goal)
	}
}

// lockstitchCluster is three `lockstitch serve` processes with a kv
// partition on all three.
type lockstitchCluster struct {
	procs   []*harness.Proc
	clients []*transport.Client
	kv      []*kvclient.Client
	admin   map[string]string // client address to admin address
	status  *transport.Client
}

const kvPartition lockstitch.PartitionID = 1

func (c *lockstitchCluster) name() string { return "lockstitch" }

func (c *lockstitchCluster) put(ctx context.Context, client int, key, value []byte) error {
	_, err := c.kv[client].Put(ctx, key, value)
	return err
}

func (c *lockstitchCluster) get(ctx context.Context, client int, key []byte) error {
	_, _, err := c.kv[client].Get(ctx, key, kvclient.Linearizable)
	return err
}

func (c *lockstitchCluster) leaderProfile(ctx context.Context, d time.Duration, w io.Writer) error {
	st, err := c.status.PartitionStatus(ctx, kvPartition)
	if err != nil {
		return err
	}
	admin, ok := c.admin[st.LeaderAddr]
	if !ok {
		return fmt.Errorf("no node at the leader's address %q", st.LeaderAddr)
	}
	return httpProfile(ctx, "http://"+admin, d, w)
}

func (c *lockstitchCluster) pids() []int { return harness.PIDs(c.procs) }

func (c *lockstitchCluster) stop() {
	for _, cl := range c.clients {
		cl.Close()
	}
	if c.status != nil {
		c.status.Close()
	}
	for _, p := range c.procs {
		p.Stop()
	}
}

func startLockstitch(ctx context.Context, o *options, work string) (*lockstitchCluster, error) {
	ports, err := harness.FreePorts(9)
	if err != nil {
		return nil, err
	}
	c := &lockstitchCluster{admin: map[string]string{}}
	type node struct{ client, raft, admin string }
	var nodes []node
	var peers []string
	for id := 1; id <= 3; id++ {
		n := node{
			client: fmt.Sprintf("127.0.0.1:%d", ports[id-1]),
			raft:   fmt.Sprintf("127.0.0.1:%d", ports[id+2]),
			admin:  fmt.Sprintf("127.0.0.1:%d", ports[id+5]),
		}
		nodes = append(nodes, n)
		c.admin[n.client] = n.admin
		peers = append(peers, fmt.Sprintf("%d=%s/%s", id, n.raft, n.client))
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	for i, n := range nodes {
		id := i + 1
		args := []string{"serve", "--id", fmt.Sprint(id), "--data-dir", filepath.Join(work, fmt.Sprintf("node%d", id)),
			"--raft-addr", n.raft, "--client-addr", n.client, "--admin-addr", n.admin,
			"--peers", strings.Join(peers, ","), "--log-level", "info"}
		args = append(args, strings.Fields(o.serveArgs)...)
		p, err := harness.StartProc(fmt.Sprintf("lockstitch node %d", id), o.bin, args, filepath.Join(work, fmt.Sprintf("node%d.log", id)))
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
	}
	fail := func(err error) (*lockstitchCluster, error) {
		for _, p := range c.procs {
			fmt.Printf("%s log, last lines:\n%s\n", p.Name, p.Tail(5))
		}
		return c, err
	}
	addrs := []string{nodes[0].client, nodes[1].client, nodes[2].client}
	cfg := transport.DefaultClientConfig()
	cfg.Name = "kvetcd"
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if c.status, err = transport.Dial(ctx, cfg, addrs...); err == nil {
			if _, err = c.status.ClusterStatus(ctx); err == nil {
				break
			}
			c.status.Close()
			c.status = nil
		}
		if time.Since(start) > 30*time.Second {
			return fail(fmt.Errorf("nodes do not answer: %w", err))
		}
	}
	for _, a := range addrs { // every node up before the create
		for start := time.Now(); c.status.Ping(ctx, a) != nil; time.Sleep(100 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				return fail(fmt.Errorf("node %s does not answer", a))
			}
		}
	}
	if _, err := c.status.CreatePartition(ctx, transport.PartitionSpec{ID: kvPartition, Plugin: "kv", Replicas: 3}); err != nil {
		return fail(fmt.Errorf("create the kv partition: %w", err))
	}
	for range o.clients {
		cl, err := transport.Dial(ctx, cfg, addrs...)
		if err != nil {
			return fail(err)
		}
		c.clients = append(c.clients, cl)
		c.kv = append(c.kv, kvclient.New(cl, kvPartition))
	}
	// The partition answers once it has a leader.
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		_, _, err := c.kv[0].Get(ctx, []byte("absent"), kvclient.Linearizable)
		if errors.Is(err, kvclient.ErrNotFound) {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(fmt.Errorf("the kv partition does not answer: %w", err))
		}
	}
	return c, nil
}

// etcdCluster is three etcd processes in one cluster.
type etcdCluster struct {
	procs   []*harness.Proc
	clients []*clientv3.Client
	leader  string // the leader's client URL when the cluster started
}

func (c *etcdCluster) name() string { return "etcd" }

func (c *etcdCluster) put(ctx context.Context, client int, key, value []byte) error {
	_, err := c.clients[client].Put(ctx, string(key), string(value))
	return err
}

func (c *etcdCluster) get(ctx context.Context, client int, key []byte) error {
	r, err := c.clients[client].Get(ctx, string(key))
	if err == nil && len(r.Kvs) != 1 {
		err = fmt.Errorf("get %q: %d keys", key, len(r.Kvs))
	}
	return err
}

func (c *etcdCluster) leaderProfile(ctx context.Context, d time.Duration, w io.Writer) error {
	leader, err := etcdLeader(ctx, c.clients[0], c.clients[0].Endpoints())
	if err != nil {
		return err
	}
	return httpProfile(ctx, leader, d, w)
}

func (c *etcdCluster) pids() []int { return harness.PIDs(c.procs) }

func (c *etcdCluster) stop() {
	for _, cl := range c.clients {
		cl.Close()
	}
	for _, p := range c.procs {
		p.Stop()
	}
}

// etcdLeader returns the client URL, among eps, of the member that leads.
func etcdLeader(ctx context.Context, cl *clientv3.Client, eps []string) (string, error) {
	var errs []error
	for _, ep := range eps {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := cl.Status(sctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return ep, nil
		}
	}
	return "", fmt.Errorf("no leader among %v: %w", eps, errors.Join(errs...))
}

func startEtcd(ctx context.Context, o *options, work string) (*etcdCluster, error) {
	ports, err := harness.FreePorts(6)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	c := &etcdCluster{}
	var initial, eps []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[3+i]))
		eps = append(eps, fmt.Sprintf("http://127.0.0.1:%d", ports[i]))
	}
	for i := range 3 {
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])
		args := []string{"--name", fmt.Sprintf("e%d", i+1), "--data-dir", filepath.Join(work, fmt.Sprintf("e%d", i+1)),
			"--listen-client-urls", eps[i], "--advertise-client-urls", eps[i],
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "kvetcd",
			"--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn"}
		if o.profile != "" {
			args = append(args, "--enable-pprof")
		}
		args = append(args, strings.Fields(o.etcdArgs)...)
		p, err := harness.StartProc(fmt.Sprintf("etcd e%d", i+1), o.etcdBin, args, filepath.Join(work, fmt.Sprintf("e%d.log", i+1)))
		if err != nil {
			return c, err
		}
		c.procs = append(c.procs, p)
	}
	fail := func(err error) (*etcdCluster, error) {
		for _, p := range c.procs {
			fmt.Printf("%s log, last lines:\n%s\n", p.Name, p.Tail(5))
		}
		return c, err
	}
	probe, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fail(err)
	}
	defer probe.Close()
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		if c.leader, err = etcdLeader(ctx, probe, eps); err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(err)
		}
	}
	use := eps
	if o.etcdEndpoints == "leader" {
		use = []string{c.leader}
	}
	for range o.clients {
		cl, err := clientv3.New(clientv3.Config{Endpoints: use, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fail(err)
		}
		c.clients = append(c.clients, cl)
	}
	// The leader's Status may come before it serves writes; one put that
	// succeeds says it does.
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.clients[0].Put(pctx, "kvetcd-ready", "1")
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return fail(err)
		}
	}
	return c, nil
}
