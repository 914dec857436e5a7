package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/lockstitch/lockstitch/bench/harness"
)

type options struct {
	lockstitchBin, etcdBin, natsBin, fioBin string
	dir, out, commit, command               string
	quick                                   bool
	systems                                 []string
	cells                                   []cell
	window, warmup                          time.Duration
	clients                                 int
	fioTime, loopTime                       time.Duration
	keep                                    bool
	replot                                  string
	runs                                    int
}

var allSystems = []string{"lockstitch", "lockstitch-kv", "dragonboat", "etcd", "jetstream"}

func main() {
	log.SetFlags(0)
	o, err := parseOptions(os.Args[1:])
	if err != nil {
		log.Fatalf("peers: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		log.Fatalf("peers: %v", err)
	}
}

func parseOptions(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.StringVar(&o.lockstitchBin, "lockstitch", "", "the lockstitch binary (required to run lockstitch)")
	fs.StringVar(&o.etcdBin, "etcd", "etcd", "the etcd binary")
	fs.StringVar(&o.natsBin, "nats", "nats-server", "the nats-server binary")
	fs.StringVar(&o.fioBin, "fio", "fio", "the fio binary (empty: skip the fdatasync measurement)")
	fs.StringVar(&o.dir, "dir", os.TempDir(), "directory for every system's data (the disk measured)")
	fs.StringVar(&o.out, "out", "", "directory for peers.txt, peers.json, peers.svg and peers.png (empty: the table on stdout only)")
	fs.StringVar(&o.commit, "commit", "?", "the commit measured, for the report")
	fs.StringVar(&o.command, "command", "", "the command line, for the report")
	fs.BoolVar(&o.quick, "quick", false, "the quick plan: "+cellLabels(quickCells)+" (under 3 minutes)")
	full := fs.Bool("full", false, "the full plan: every mode, payload and concurrency (the default when no cell flag is given)")
	systems := fs.String("systems", strings.Join(allSystems, ","), "systems to run, comma-separated")
	payloads := fs.String("payloads", "16,128,1k,16k", "full plan: payload sizes")
	concs := fs.String("conc", "1,16,256,1024", "full plan: concurrencies (ops in flight)")
	modes := fs.String("modes", "sync,pipelined", "full plan: modes")
	fs.DurationVar(&o.window, "window", 0, "measured time of a cell (default 3s quick, 5s full)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured time before each cell's window")
	fs.IntVar(&o.runs, "runs", 1, "runs of the whole plan; the table and chart give each figure's median over them (each on its own), and ops/s's range")
	fs.IntVar(&o.clients, "clients", 1, "clients (connections) per system; workers are spread over them")
	fs.DurationVar(&o.fioTime, "fio-time", 5*time.Second, "how long fio measures fdatasync")
	fs.DurationVar(&o.loopTime, "loopback-time", time.Second, "how long the loopback TCP stream runs")
	fs.BoolVar(&o.keep, "keep", false, "keep the data directories and logs")
	fs.StringVar(&o.replot, "replot", "", "run nothing: read this peers.json and write the table and the charts again (into -out)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.replot != "" {
		if o.out == "" {
			return nil, fmt.Errorf("-replot needs -out")
		}
		return o, nil
	}
	if o.quick && *full {
		return nil, fmt.Errorf("-quick and -full exclude each other")
	}
	for _, s := range strings.Split(*systems, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allSystems, s) {
			return nil, fmt.Errorf("unknown system %q (have %s)", s, strings.Join(allSystems, ", "))
		}
		o.systems = append(o.systems, s)
	}
	if (slices.Contains(o.systems, "lockstitch") || slices.Contains(o.systems, "lockstitch-kv")) && o.lockstitchBin == "" {
		return nil, fmt.Errorf("-lockstitch is required to run lockstitch")
	}
	if o.quick {
		o.cells = quickCells
		if o.window == 0 {
			o.window = 3 * time.Second
		}
	} else {
		ps, err := parseInts(*payloads)
		if err != nil {
			return nil, fmt.Errorf("-payloads: %w", err)
		}
		cs, err := parseInts(*concs)
		if err != nil {
			return nil, fmt.Errorf("-conc: %w", err)
		}
		ms, err := parseModes(*modes)
		if err != nil {
			return nil, fmt.Errorf("-modes: %w", err)
		}
		o.cells = fullPlan(ms, ps, cs)
		if o.window == 0 {
			o.window = 5 * time.Second
		}
	}
	if o.window <= 0 || o.warmup < 0 || o.clients < 1 || o.runs < 1 {
		return nil, fmt.Errorf("-window must be positive, -warmup not negative, -clients and -runs at least 1")
	}
	return o, nil
}

func cellLabels(cs []cell) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.label())
	}
	return strings.Join(s, "; ")
}

func run(ctx context.Context, o *options) (err error) {
	if o.replot != "" {
		rep, err := readJSON(o.replot)
		if err != nil {
			return err
		}
		return writeFiles(o.out, rep)
	}
	rep := &report{Commit: o.commit, Command: o.command, Started: time.Now().UTC().Format(time.RFC3339),
		Mode: "full", Window: o.window.String(), Warmup: o.warmup.String(), Clients: o.clients, Runs: o.runs, Machine: describeMachine()}
	if o.quick {
		rep.Mode = "quick"
	}
	fmt.Printf("peers: %s plan, %d cells x %d systems x %d run(s), %v after %v of warm-up each; load average %s\n",
		rep.Mode, len(o.cells), len(o.systems), o.runs, o.window, o.warmup, rep.Machine.LoadAvg)

	// The machine first, with nothing else of ours running.
	if o.fioBin != "" {
		if rep.Machine.Fdatasync, err = fioFdatasync(ctx, o.fioBin, o.dir, o.fioTime); err != nil {
			return err
		}
		f := rep.Machine.Fdatasync
		fmt.Printf("fio: 4 KiB write+fdatasync %.0f/s, fdatasync p50 %s p99 %s\n", f.IOPS, usText(f.P50us), usText(f.P99us))
	}
	if rep.Machine.LoopbackMBps, err = loopbackMBps(ctx, o.loopTime); err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	fmt.Printf("loopback TCP: %.0f MB/s\n", rep.Machine.LoopbackMBps)

	work, err := os.MkdirTemp(o.dir, "peers.")
	if err != nil {
		return err
	}
	defer func() {
		if o.keep {
			fmt.Printf("kept %s\n", work)
		} else {
			os.RemoveAll(work)
		}
	}()
	var systems []system
	var stops []func() // each cluster's, once
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	var ls *lockstitchCluster // shared by lockstitch and lockstitch-kv
	for _, name := range o.systems {
		t0 := time.Now()
		var s system
		var serr error
		dir := filepath.Join(work, name)
		switch name {
		case "lockstitch", "lockstitch-kv":
			if ls == nil {
				var c *lockstitchCluster
				c, serr = startLockstitch(ctx, o, filepath.Join(work, "lockstitch"), slices.Contains(o.systems, "lockstitch-kv"))
				if c != nil {
					c.version = o.commit
					ls = c
					stops = append(stops, c.stop)
				}
			}
			if serr == nil && name == "lockstitch" {
				s = ls
			} else if serr == nil {
				s = ls.kv
			}
		case "dragonboat":
			var c *dragonboatCluster
			c, serr = startDragonboat(ctx, dir)
			if c != nil {
				s = c
				stops = append(stops, c.stop)
			}
		case "etcd":
			var c *etcdCluster
			c, serr = startEtcd(ctx, o, dir)
			if c != nil {
				s = c
				stops = append(stops, c.stop)
			}
		case "jetstream":
			var c *natsCluster
			c, serr = startNATS(ctx, o, dir)
			if c != nil {
				s = c
				stops = append(stops, c.stop)
			}
		}
		if serr != nil {
			return fmt.Errorf("start %s: %w", name, serr)
		}
		systems = append(systems, s)
		fmt.Printf("%s: up in %v\n", name, time.Since(t0).Round(time.Millisecond))
		rep.Systems = append(rep.Systems, s.info())
	}

	// results[i][k] are cell i's results on system k, one per run.
	results := make([][][]result, len(o.cells))
	for i := range results {
		results[i] = make([][]result, len(systems))
	}
	for run := 1; run <= o.runs; run++ {
		if o.runs > 1 {
			fmt.Printf("run %d of %d\n", run, o.runs)
		}
		for i, c := range o.cells {
			// Each run starts the rotation one further, so that over
			// runs a system is not always first in a cell.
			for _, k := range systemOrder(len(systems), i+run-1) {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r := measure(ctx, systems[k], c, o.clients, o.warmup, o.window)
				r.Run = run
				results[i][k] = append(results[i][k], r)
				rep.RunResults = append(rep.RunResults, r)
				if r.Skipped != "" && r.Ops == 0 && r.Errors == 0 {
					fmt.Printf("%-22s %-13s skipped: %s\n", c.label(), r.System, r.Skipped)
					continue
				}
				fmt.Printf("%-22s %-13s %9.0f op/s %8.2f MB/s  p50 %9s p99 %9s p99.9 %9s  CPU %6.1f s/Mop (client %5.1f)  RSS %5.0f MiB  busy %3.0f%%  errors %d\n",
					c.label(), r.System, r.OpsPerSec, r.MBPerSec, usText(r.P50us), usText(r.P99us), usText(r.P999us),
					r.CPUPerMop, r.ClientCPUPerMop, r.PeakRSSMiB, 100*r.MachineBusy, r.Errors)
			}
		}
	}
	for i := range results {
		for k := range results[i] {
			rep.Results = append(rep.Results, medianResult(results[i][k]))
		}
	}
	if o.runs == 1 {
		rep.RunResults = nil // the same as Results
	}
	rep.Machine.LoadAvgAfter = harness.LoadAvg()
	fmt.Println()
	if err := writeTable(os.Stdout, rep); err != nil {
		return err
	}
	if o.out == "" {
		return nil
	}
	return writeFiles(o.out, rep)
}

// writeFiles writes peers.txt (the table), peers.json and the chart as
// peers.svg and peers.png into dir.
func writeFiles(dir string, rep *report) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		write func(*os.File) error
	}{
		{"peers.txt", func(f *os.File) error { return writeTable(f, rep) }},
		{"peers.json", func(f *os.File) error { return writeJSON(f, rep) }},
		{"peers.svg", func(f *os.File) error { return writeChart(f, "svg", rep) }},
		{"peers.png", func(f *os.File) error { return writeChart(f, "png", rep) }},
	} {
		path := filepath.Join(dir, f.name)
		file, err := os.Create(path)
		if err != nil {
			return err
		}
		werr := f.write(file)
		if cerr := file.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("%s: %w", path, werr)
		}
	}
	fmt.Printf("\nwrote peers.txt, peers.json, peers.svg and peers.png in %s\n", dir)
	return nil
}
