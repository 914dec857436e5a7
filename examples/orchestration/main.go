// Command orchestration runs a durable process of several steps, in the
// spirit of DurableTask: every step's call and result is recorded in a
// `log` partition before the process goes on, and a runner that restarts
// replays the history, returning the recorded results without running
// those steps again.
//
//	orchestration run --addrs A,B,C --partition 2 --dir effects/ --orders 10
//
// Each order is an instance of OrderProcess: reserve, charge, invoice,
// notify (or release, when the charge is declined). The steps' side
// effects go to --dir under idempotency keys (see Effects): a step killed
// after its effect and before its result was recorded runs again on the
// next run (at least once), and its key makes the effect happen once.
// See README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs the command in args and returns the exit code.
func cli(ctx context.Context, args []string, out, errOut io.Writer) int {
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(errOut, "usage: orchestration run [flags]")
		return 2
	}
	fs := flag.NewFlagSet("orchestration run", flag.ContinueOnError)
	fs.SetOutput(errOut)
	addrs := fs.String("addrs", "127.0.0.1:7401", "client addresses of the cluster's nodes, comma-separated")
	partition := fs.Uint64("partition", 1, "the log partition holding the history")
	dir := fs.String("dir", "orchestration-effects", "directory of the steps' side effects")
	orders := fs.Int("orders", 10, "run orders 1 to this")
	progress := fs.Bool("progress", false, "print a line per call, execution, result and replay")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if err := run(ctx, strings.Split(*addrs, ","), lockstitch.PartitionID(*partition), *dir, *orders, *progress, out); err != nil {
		fmt.Fprintln(errOut, err)
		return 1
	}
	return 0
}

func run(ctx context.Context, addrs []string, p lockstitch.PartitionID, dir string, orders int, progress bool, out io.Writer) error {
	effects, err := OpenEffects(dir)
	if err != nil {
		return err
	}
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), addrs...)
	if err != nil {
		return err
	}
	defer cl.Close()
	cfg := RunnerConfig{Partition: p, Effects: effects}
	if progress {
		cfg.Progress = out
	}
	r, err := StartRunner(ctx, cl, cfg)
	if err != nil {
		return err
	}
	for i := 1; i <= orders; i++ {
		o := NewOrder(i)
		res, err := r.Run(ctx, o.Order, OrderProcess, o)
		if err != nil {
			return err
		}
		if !progress {
			fmt.Fprintf(out, "%s: %s\n", o.Order, res)
		}
	}
	return nil
}
