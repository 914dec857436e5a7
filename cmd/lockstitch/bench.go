package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
	"github.com/lockstitch/lockstitch/wal"
)

// benchFlags are the flags of every bench command.
type benchFlags struct {
	clientFlags
	partition   *uint64
	size        *int
	concurrency *int
	clients     *int
	duration    *time.Duration
	warmup      *time.Duration
	rate        *float64
}

func addBenchFlags(fs *flag.FlagSet, partition uint64, concurrency int, warmup time.Duration) benchFlags {
	return benchFlags{
		clientFlags: addClientFlags(fs),
		partition:   fs.Uint64("partition", partition, "the partition"),
		size:        fs.Int("size", 16, "bytes of each op's payload (kv: of each value)"),
		concurrency: fs.Int("concurrency", concurrency, "workers, each doing one op after the other (closed loop)"),
		clients:     fs.Int("clients", 1, "client connections (one per node each) that the workers share, round robin"),
		duration:    fs.Duration("duration", 10*time.Second, "how long to measure, after the warm-up"),
		warmup:      fs.Duration("warmup", warmup, "how long to run before measuring (its ops are not in the summary)"),
		rate:        fs.Float64("rate", 0, "at most this many ops a second in all (0: as fast as the workers go); latencies are timed from each op's send, so a capped run that falls behind shows it in ops/s, not in the percentiles"),
	}
}

// check reports a bad flag value as a usage error.
func (f benchFlags) check() error {
	switch {
	case *f.size < 0 || *f.size > 16<<20:
		return errors.New("--size must be between 0 and 16777216")
	case *f.concurrency < 1:
		return errors.New("--concurrency must be at least 1")
	case *f.clients < 1 || *f.clients > *f.concurrency:
		return errors.New("--clients must be between 1 and --concurrency")
	case *f.duration <= 0:
		return errors.New("--duration must be more than 0")
	case *f.rate < 0:
		return errors.New("--rate must not be negative")
	}
	return nil
}

// dialAll dials --clients clients under a context of --timeout, which
// it returns for the bench's first op; on an error it has closed both.
func (f benchFlags) dialAll() (context.Context, context.CancelFunc, []*transport.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	cls := make([]*transport.Client, 0, *f.clients)
	for range *f.clients {
		cl, err := f.dial(ctx)
		if err != nil {
			closeAll(cls)
			cancel()
			return nil, nil, nil, err
		}
		cls = append(cls, cl)
	}
	return ctx, cancel, cls, nil
}

func closeAll(cls []*transport.Client) {
	for _, c := range cls {
		c.Close()
	}
}

// newRun returns a run of the flags' settings; progress lines go to
// stdout, or to stderr with --json (stdout is then the summary alone).
func (f benchFlags) newRun(kinds []string, stdout, stderr io.Writer) *benchRun {
	r := newBenchRun(kinds, *f.concurrency)
	r.duration, r.warmup, r.timeout = *f.duration, *f.warmup, *f.timeout
	r.setRate(*f.rate)
	r.progress = stdout
	if *f.json {
		r.progress = stderr
	}
	return r
}

func (f benchFlags) summary(bench string) benchSummary {
	return benchSummary{Bench: bench, Partition: *f.partition, Size: *f.size, Concurrency: *f.concurrency, Clients: *f.clients, Rate: *f.rate}
}

// finish prints the summary and returns the exit code: that of the last
// error when every op failed.
func (f benchFlags) finish(stdout, stderr io.Writer, s *benchSummary, aborted error, header string) int {
	if *f.json {
		if err := printJSON(stdout, s); err != nil {
			return fail(stderr, err)
		}
	} else {
		printSummary(stdout, s, header)
	}
	if aborted != nil {
		return fail(stderr, fmt.Errorf("bench %s on partition %d: every op failed for %ds: %w", s.Bench, s.Partition, benchFailSeconds, aborted))
	}
	return 0
}

// cmdBench runs lockstitch bench append|read|kv.
func cmdBench(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp("bench", args, stdout, stderr); !ok {
		return code
	}
	switch args[0] {
	case "append":
		return benchAppend(args[1:], stdout, stderr)
	case "read":
		return benchRead(args[1:], stdout, stderr)
	case "kv":
		return benchKV(args[1:], stdout, stderr)
	}
	return unknownSub(stderr, "bench", args[0])
}

// payload returns n random bytes.
func benchPayload(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// benchAppend measures appends: --concurrency workers, each appending
// and waiting (or with --async N keeping N appends in flight).
func benchAppend(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench append", flag.ContinueOnError)
	bf := addBenchFlags(fs, 1, 256, time.Second)
	async := fs.Int("async", 1, "appends each worker keeps in flight (AppendAsync); 1: one Append after the other")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if err := bf.check(); err != nil {
		return usageError(stderr, "%v", err)
	}
	if fs.NArg() > 0 || *async < 1 {
		return usageError(stderr, "usage: lockstitch bench append [flags] (--async at least 1)")
	}
	ctx, cancel, cls, err := bf.dialAll()
	if err != nil {
		return fail(stderr, err)
	}
	defer closeAll(cls)
	p := lockstitch.PartitionID(*bf.partition)
	size := *bf.size
	// One append first: it finds the partition's leader (or fails the
	// bench at once if there is none, or no such partition).
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	_, err = cls[0].Append(ctx, p, benchPayload(rng, size))
	cancel()
	if err != nil {
		return fail(stderr, fmt.Errorf("bench append: the first append to partition %d: %w", p, err))
	}
	r := bf.newRun([]string{"append"}, stdout, stderr)
	payloads := make([][]byte, *bf.concurrency)
	for i := range payloads {
		payloads[i] = benchPayload(rng, size)
	}
	type pending struct {
		f     transport.AppendFuture
		start time.Time
	}
	n := *async
	res := r.run(*bf.concurrency, func(ctx context.Context, i int) {
		cl, s, payload := cls[i%len(cls)], r.shard(i), payloads[i]
		if n == 1 {
			for r.running() && r.pace(ctx) {
				start := time.Now()
				_, err := cl.Append(ctx, p, payload)
				r.done(s, 0, size, time.Since(start), err)
			}
			return
		}
		// n in flight; the payload is shared by them (never changed).
		inflight := make([]pending, 0, n)
		wait := func(pd pending) {
			_, err := pd.f.Wait(ctx)
			r.done(s, 0, size, time.Since(pd.start), err)
		}
		for r.running() && r.pace(ctx) {
			if len(inflight) == n {
				wait(inflight[0])
				inflight = append(inflight[:0], inflight[1:]...)
			}
			inflight = append(inflight, pending{cl.AppendAsync(ctx, p, payload), time.Now()})
		}
		for _, pd := range inflight {
			wait(pd)
		}
	})
	s := bf.summary("append")
	if n > 1 {
		s.Async = n
	}
	r.summary(&s, res)
	s.TotalOps++ // the first append
	header := fmt.Sprintf("bench append: partition %d, %d B ops, %s over %s", p, size, plural(*bf.concurrency, "worker"), plural(*bf.clients, "client"))
	if n > 1 {
		header += fmt.Sprintf(", %d in flight each", n)
	}
	return bf.finish(stdout, stderr, &s, res.aborted, header)
}

// benchRead measures reading a partition's stream: --concurrency
// subscribers, each from --from, to the LSN committed at the start (or
// with --follow, on until --duration).
func benchRead(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench read", flag.ContinueOnError)
	bf := addBenchFlags(fs, 1, 1, 0)
	from := fs.Uint64("from", 1, "the first LSN each subscriber reads")
	follow := fs.Bool("follow", false, "read on past the LSN committed at the start, until --duration")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if err := bf.check(); err != nil {
		return usageError(stderr, "%v", err)
	}
	if fs.NArg() > 0 || *from < 1 {
		return usageError(stderr, "usage: lockstitch bench read [flags] (--from at least 1)")
	}
	ctx, cancel, cls, err := bf.dialAll()
	if err != nil {
		return fail(stderr, err)
	}
	defer closeAll(cls)
	p := lockstitch.PartitionID(*bf.partition)
	// The LSN committed now: where the subscribers stop.
	var recs transport.Records
	err = cls[0].Read(ctx, p, wal.LSN(*from), transport.ReadOptions{MaxOps: 1}, &recs)
	cancel()
	if err != nil {
		return fail(stderr, fmt.Errorf("bench read: partition %d from LSN %d: %w", p, *from, err))
	}
	end := recs.Committed()
	if !*follow && end < wal.LSN(*from) {
		return fail(stderr, fmt.Errorf("bench read: partition %d has committed up to LSN %d, before --from %d: nothing to read (--follow reads ops as they commit)", p, end, *from))
	}
	r := bf.newRun(nil, stdout, stderr)
	res := r.run(*bf.concurrency, func(ctx context.Context, i int) {
		s := r.shard(i)
		sub, err := cls[i%len(cls)].Subscribe(ctx, p, wal.LSN(*from-1))
		if err != nil {
			r.done(s, -1, 0, 0, err)
			return
		}
		defer sub.Close()
		var rec wal.Record
		for r.running() && (*follow || sub.Marker() < end) && r.pace(ctx) {
			err := sub.Next(ctx, &rec)
			if err != nil && ctx.Err() != nil {
				return
			}
			r.done(s, -1, len(rec.Payload), 0, err)
		}
	})
	s := bf.summary("read")
	s.Size = 0
	r.summary(&s, res)
	header := fmt.Sprintf("bench read: partition %d from LSN %d, %s over %s", p, *from, plural(*bf.concurrency, "subscriber"), plural(*bf.clients, "client"))
	if !*follow {
		header += fmt.Sprintf(", to LSN %d", end)
	}
	return bf.finish(stdout, stderr, &s, res.aborted, header)
}

// benchKV measures puts and gets on a kv partition: --concurrency
// workers, each doing a get (with probability --reads) or a put of a key
// drawn from --keys.
func benchKV(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench kv", flag.ContinueOnError)
	bf := addBenchFlags(fs, 2, 16, time.Second)
	keys := fs.Int("keys", 10000, "how many distinct keys the ops draw from, uniformly")
	reads := fs.Float64("reads", 0.5, "the fraction of ops that are gets (the others are puts)")
	consistency := fs.String("consistency", "linearizable", "gets: linearizable, leader (leader-local) or any (any replica within --max-staleness)")
	staleness := fs.Duration("max-staleness", time.Second, "for --consistency any: how stale a get may be")
	seed := fs.Uint64("seed", 0, "seed of the key and op choices (0: from the clock)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if err := bf.check(); err != nil {
		return usageError(stderr, "%v", err)
	}
	if fs.NArg() > 0 || *keys < 1 || *reads < 0 || *reads > 1 {
		return usageError(stderr, "usage: lockstitch bench kv [flags] (--keys at least 1, --reads from 0 to 1)")
	}
	opts, err := readOptions(*consistency, *staleness)
	if err != nil {
		return usageError(stderr, "%v", err)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	ctx, cancel, cls, err := bf.dialAll()
	if err != nil {
		return fail(stderr, err)
	}
	defer closeAll(cls)
	p := lockstitch.PartitionID(*bf.partition)
	keyNames := make([][]byte, *keys)
	for i := range keyNames {
		keyNames[i] = fmt.Appendf(nil, "bench-%08d", i)
	}
	// One get first: it finds the partition (or fails the bench at once).
	_, _, err = kvclient.New(cls[0], p).Get(ctx, keyNames[0], opts)
	cancel()
	if err != nil && !errors.Is(err, kvclient.ErrNotFound) {
		return fail(stderr, fmt.Errorf("bench kv: the first get on partition %d: %w", p, err))
	}
	size := *bf.size
	const put, get = 0, 1
	r := bf.newRun([]string{"put", "get"}, stdout, stderr)
	res := r.run(*bf.concurrency, func(ctx context.Context, i int) {
		kc, s := kvclient.New(cls[i%len(cls)], p), r.shard(i)
		rng := rand.New(rand.NewPCG(*seed, uint64(i)))
		value := benchPayload(rng, size)
		for r.running() && r.pace(ctx) {
			key := keyNames[rng.IntN(len(keyNames))]
			start := time.Now()
			if rng.Float64() < *reads {
				item, _, err := kc.Get(ctx, key, opts)
				if errors.Is(err, kvclient.ErrNotFound) {
					err = nil // an answer
				}
				r.done(s, get, len(item.Value), time.Since(start), err)
				continue
			}
			_, err := kc.Put(ctx, key, value)
			r.done(s, put, size, time.Since(start), err)
		}
	})
	s := bf.summary("kv")
	r.summary(&s, res)
	header := fmt.Sprintf("bench kv: partition %d, %d B values, %s, %.0f%% gets (%s), %s over %s",
		p, size, plural(*keys, "key"), *reads*100, *consistency, plural(*bf.concurrency, "worker"), plural(*bf.clients, "client"))
	return bf.finish(stdout, stderr, &s, res.aborted, header)
}
