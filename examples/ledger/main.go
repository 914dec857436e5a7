// Command ledger is a state machine outside the replicator's process: a
// small ledger of accounts and transfers that follows a `log` partition
// through the Go client and applies its ops with an exactly-once effect.
//
// It keeps its state and its marker (the LSN of the last op applied) in
// its own store, one file rewritten atomically (see Store), so that the
// two are always durable together. On start it loads them and subscribes
// from the marker: the ops it had applied but not saved when it died are
// delivered again and applied again to the state they had not yet changed
// on disk. Killed at any point (kill -9) and restarted, it ends with
// exactly the state it would have had without the crash.
//
//	ledger apply  --addrs A,B,C --partition 1 --dir state/   # follow and apply
//	ledger append --addrs A,B,C --partition 1 --producer 7 < ops.jsonl
//	ledger show   --dir state/
//
// append numbers input line i as sequence i of its producer: rerun with
// the same producer id after a crash, it asks the partition where the
// producer stands and resends from there, so every line is in the stream
// exactly once. See README.md for the same over the wire protocol, from
// any language.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs the command in args and returns the exit code.
func cli(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(errOut, "usage: ledger apply|append|show [flags]")
		return 2
	}
	fs := flag.NewFlagSet("ledger "+args[0], flag.ContinueOnError)
	fs.SetOutput(errOut)
	addrs := fs.String("addrs", "127.0.0.1:7401", "client addresses of the cluster's nodes, comma-separated")
	partition := fs.Uint64("partition", 1, "the log partition holding the ledger's ops")
	var err error
	switch args[0] {
	case "apply":
		cfg := DefaultApplyConfig()
		fs.StringVar(&cfg.Dir, "dir", "ledger-state", "directory of the ledger's store")
		until := fs.Uint64("until", 0, "exit once the op at this LSN is applied and saved (0: follow forever)")
		fs.IntVar(&cfg.SaveEvery, "save-every", cfg.SaveEvery, "save after this many ops at most (it also saves whenever it has caught up)")
		fs.StringVar(&cfg.Cursor, "cursor", cfg.Cursor, "durable cursor acknowledged after each save, holding log retention for the ledger (empty: none)")
		progress := fs.Bool("progress", false, "print each op's LSN as it is applied")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		cfg.Addrs, cfg.Partition, cfg.Until = strings.Split(*addrs, ","), lockstitch.PartitionID(*partition), wal.LSN(*until)
		if *progress {
			cfg.Progress = out
		}
		err = Apply(ctx, cfg)
	case "append":
		cfg := DefaultAppendConfig()
		fs.Uint64Var(&cfg.Producer, "producer", 0, "producer id (required): the same id on every run of the same input")
		fs.IntVar(&cfg.Window, "window", cfg.Window, "appends in flight at most")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		cfg.Addrs, cfg.Partition = strings.Split(*addrs, ","), lockstitch.PartitionID(*partition)
		err = AppendOps(ctx, cfg, in, out)
	case "show":
		dir := fs.String("dir", "ledger-state", "directory of the ledger's store")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		err = show(*dir, out)
	default:
		fmt.Fprintf(errOut, "ledger: unknown command %q; want apply, append or show\n", args[0])
		return 2
	}
	if err != nil {
		fmt.Fprintln(errOut, err)
		return 1
	}
	return 0
}

// ApplyConfig configures Apply.
type ApplyConfig struct {
	// Addrs are client addresses of the cluster's nodes.
	Addrs []string
	// Partition is the log partition holding the ops.
	Partition lockstitch.PartitionID
	// Dir is the store's directory.
	Dir string
	// Until, if not 0, makes Apply return once the op at Until is applied
	// and saved.
	Until wal.LSN
	// SaveEvery bounds the ops applied between two saves; Apply also saves
	// whenever it has applied everything the server reported committed.
	SaveEvery int
	// Cursor, if set, names a durable cursor of the partition that Apply
	// acknowledges after each save: the partition then retains the ops
	// the ledger has not saved yet (up to the nodes' CursorRetainOps).
	Cursor string
	// Progress, if set, receives a line per op applied.
	Progress io.Writer
}

// DefaultApplyConfig returns the defaults: a save every 256 ops at most,
// cursor "ledger".
func DefaultApplyConfig() ApplyConfig {
	return ApplyConfig{SaveEvery: 256, Cursor: "ledger", Partition: 1}
}

// Apply loads the ledger from its store, follows the partition from the
// ledger's marker and applies each op, saving state and marker together.
// It returns when ctx ends (after saving what it applied) or, with Until,
// once the op at Until is saved.
func Apply(ctx context.Context, cfg ApplyConfig) error {
	if cfg.SaveEvery < 1 {
		return fmt.Errorf("ledger: SaveEvery %d must be at least 1", cfg.SaveEvery)
	}
	st, err := OpenStore(cfg.Dir)
	if err != nil {
		return err
	}
	l, err := st.Load()
	if err != nil {
		return err
	}
	if cfg.Until > 0 && l.Marker >= cfg.Until {
		return nil
	}
	cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), cfg.Addrs...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// The stream starts at marker+1: the first op the saved state lacks.
	sub, err := cl.Subscribe(ctx, cfg.Partition, l.Marker)
	if err != nil {
		return fmt.Errorf("ledger: subscribe from LSN %d: %w", l.Marker, err)
	}
	defer sub.Close()
	saved := l.Marker
	save := func() error {
		if l.Marker == saved {
			return nil
		}
		if err := st.Save(l); err != nil {
			return err
		}
		saved = l.Marker
		if cfg.Cursor != "" {
			// After the save, never before: the cursor must not run ahead
			// of what the ledger holds durably.
			if err := cl.AckCursor(ctx, cfg.Partition, cfg.Cursor, saved); err != nil {
				return fmt.Errorf("ledger: acknowledging cursor %q at LSN %d: %w", cfg.Cursor, saved, err)
			}
		}
		return nil
	}
	var rec wal.Record
	for {
		if err := sub.Next(ctx, &rec); err != nil {
			var tr *lockstitch.TruncatedError
			if errors.As(err, &tr) {
				// The log plugin's snapshot is the stream's position, not
				// the ledger: nothing on the cluster can rebuild it.
				return fmt.Errorf("ledger: the op after marker %d is no longer retained (first retained: %d); restore the store from a backup of the ledger: %w", l.Marker, tr.First, err)
			}
			if ctx.Err() != nil {
				return save() // interrupted: keep what was applied
			}
			return errors.Join(fmt.Errorf("ledger: following partition %d after LSN %d: %w", cfg.Partition, l.Marker, err), save())
		}
		reject, err := l.Apply(rec.LSN, rec.Payload)
		if err != nil {
			return err // the subscription checks consecutive LSNs: not reached
		}
		if cfg.Progress != nil {
			if reject != "" {
				fmt.Fprintf(cfg.Progress, "applied %d rejected: %s\n", rec.LSN, reject)
			} else {
				fmt.Fprintf(cfg.Progress, "applied %d\n", rec.LSN)
			}
		}
		done := cfg.Until > 0 && rec.LSN >= cfg.Until
		if int(l.Marker-saved) >= cfg.SaveEvery || rec.LSN >= sub.Committed() || done {
			if err := save(); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

// AppendConfig configures AppendOps.
type AppendConfig struct {
	// Addrs are client addresses of the cluster's nodes.
	Addrs []string
	// Partition is the log partition.
	Partition lockstitch.PartitionID
	// Producer is the producer id, not 0: line i of the input is op
	// sequence i of this producer.
	Producer uint64
	// Window bounds the appends in flight. It must stay well below the
	// partition's dedupe window (1024 ops per producer, docs/guarantees.md),
	// so that every op below the producer's floor has been applied.
	Window int
}

// DefaultAppendConfig returns the defaults: 64 appends in flight.
func DefaultAppendConfig() AppendConfig {
	return AppendConfig{Window: 64, Partition: 1}
}

// AppendOps appends each line of in as one op, line i (from 1) as
// sequence i of cfg.Producer. It first asks the partition what it
// remembers of the producer and starts at the producer's floor: lines
// below it were applied, lines from it on that were applied answer as
// duplicates with their original LSN, the others are appended. So a run
// killed at any point and run again with the same input and producer id
// leaves every line in the stream exactly once.
func AppendOps(ctx context.Context, cfg AppendConfig, in io.Reader, out io.Writer) error {
	if cfg.Producer == 0 {
		return errors.New("ledger: append needs a producer id")
	}
	if cfg.Window < 1 || cfg.Window > 512 {
		return fmt.Errorf("ledger: window %d must be within [1, 512]", cfg.Window)
	}
	var lines [][]byte
	sc := bufio.NewScanner(in)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			return fmt.Errorf("ledger: input line %d is empty", len(lines)+1)
		}
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("ledger: reading ops: %w", err)
	}
	ccfg := transport.DefaultClientConfig()
	ccfg.ProducerID = cfg.Producer
	cl, err := transport.Dial(ctx, ccfg, cfg.Addrs...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ps, err := cl.ProducerStatus(ctx, cfg.Partition)
	if err != nil {
		return fmt.Errorf("ledger: asking partition %d about producer %d: %w", cfg.Partition, cfg.Producer, err)
	}
	first := uint64(1)
	switch {
	case ps.Known:
		first = max(ps.Floor, 1)
	case ps.Forgotten:
		return fmt.Errorf("ledger: partition %d has forgotten producers, maybe %d: which of its ops it applied cannot be told", cfg.Partition, cfg.Producer)
	}
	cl.SetSequence(cfg.Partition, first)
	type pending struct {
		seq uint64
		f   transport.AppendFuture
	}
	var window []pending
	wait := func() error {
		p := window[0]
		window = window[1:]
		res, err := p.f.Wait(ctx)
		if err != nil {
			return fmt.Errorf("ledger: append of line %d: %w", p.seq, err)
		}
		fmt.Fprintf(out, "appended %d at %d\n", p.seq, res.LSN)
		return nil
	}
	for seq := first; seq <= uint64(len(lines)); seq++ {
		if len(window) == cfg.Window {
			if err := wait(); err != nil {
				return err
			}
		}
		window = append(window, pending{seq, cl.AppendAsync(ctx, cfg.Partition, lines[seq-1])})
	}
	for len(window) > 0 {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}

// show prints the saved ledger.
func show(dir string, out io.Writer) error {
	st, err := OpenStore(dir)
	if err != nil {
		return err
	}
	l, err := st.Load()
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(l)
}
