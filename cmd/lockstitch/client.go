package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/tlsconf"
	"github.com/lockstitch/lockstitch/wal"
)

// defaultAddrs are the client addresses tried when --addr and
// LOCKSTITCH_ADDR are not given: the nodes of lockstitch dev and the
// default of lockstitch serve.
const defaultAddrs = "127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403,127.0.0.1:7400"

// clientFlags are the flags every client command takes.
type clientFlags struct {
	addrs   *string
	json    *bool
	timeout *time.Duration
	// TLS: the CA that servers' certificates chain to, the client's
	// certificate and key, and TLS with the system's roots.
	tlsCA, tlsCert, tlsKey *string
	tls                    *bool
	// tokenFile holds the bearer token presented to nodes with an auth
	// file (its first line); LOCKSTITCH_TOKEN gives the token itself.
	tokenFile *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	addrs := os.Getenv("LOCKSTITCH_ADDR")
	if addrs == "" {
		addrs = defaultAddrs
	}
	return clientFlags{
		addrs:     fs.String("addr", addrs, "comma-separated client addresses of nodes, host:port or unix:/path (env LOCKSTITCH_ADDR)"),
		json:      fs.Bool("json", false, "print JSON instead of text"),
		timeout:   fs.Duration("timeout", 10*time.Second, "give up after this long"),
		tlsCA:     fs.String("tls-ca", os.Getenv("LOCKSTITCH_TLS_CA"), "connect over TLS, trusting the nodes' certificates signed by the CAs in this PEM file (env LOCKSTITCH_TLS_CA)"),
		tlsCert:   fs.String("tls-cert", os.Getenv("LOCKSTITCH_TLS_CERT"), "connect over TLS with this PEM client certificate, for nodes that require one (env LOCKSTITCH_TLS_CERT)"),
		tlsKey:    fs.String("tls-key", os.Getenv("LOCKSTITCH_TLS_KEY"), "PEM private key of --tls-cert (env LOCKSTITCH_TLS_KEY)"),
		tls:       fs.Bool("tls", os.Getenv("LOCKSTITCH_TLS") == "true", "connect over TLS, trusting the system's CAs (implied by --tls-ca and --tls-cert; env LOCKSTITCH_TLS=true)"),
		tokenFile: fs.String("token-file", os.Getenv("LOCKSTITCH_TOKEN_FILE"), "file whose first line is the token presented to nodes that authenticate clients (env LOCKSTITCH_TOKEN_FILE, or LOCKSTITCH_TOKEN for the token itself)"),
	}
}

// clientConfig is the transport configuration the flags ask for, named
// name.
func (f clientFlags) clientConfig(name string) (transport.ClientConfig, error) {
	cfg := transport.DefaultClientConfig()
	cfg.Name = name
	tok, err := f.token()
	if err != nil {
		return cfg, err
	}
	cfg.Credentials = tok
	if !*f.tls && *f.tlsCA == "" && *f.tlsCert == "" && *f.tlsKey == "" {
		return cfg, nil
	}
	tc := tlsconf.DefaultClientConfig()
	tc.CAFile, tc.CertFile, tc.KeyFile = *f.tlsCA, *f.tlsCert, *f.tlsKey
	if cfg.TLS, err = tlsconf.OpenClient(tc); err != nil {
		return cfg, fmt.Errorf("--tls-ca, --tls-cert, --tls-key: %w", err)
	}
	return cfg, nil
}

// token is the token the flags give: --token-file's first line, else
// LOCKSTITCH_TOKEN; nil for none.
func (f clientFlags) token() ([]byte, error) {
	if *f.tokenFile == "" {
		if t := strings.TrimSpace(os.Getenv("LOCKSTITCH_TOKEN")); t != "" {
			return []byte(t), nil
		}
		return nil, nil
	}
	b, err := os.ReadFile(*f.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	if line = strings.TrimSpace(line); line == "" {
		return nil, fmt.Errorf("--token-file: %s is empty", *f.tokenFile)
	}
	return []byte(line), nil
}

func (f clientFlags) addrList() []string {
	var out []string
	for _, a := range strings.Split(*f.addrs, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// dial connects to the first node that answers.
func (f clientFlags) dial(ctx context.Context) (*transport.Client, error) {
	return f.dialProducer(ctx, 0)
}

// dialProducer is dial, with the client's appends under producer id
// producer (0: a random one).
func (f clientFlags) dialProducer(ctx context.Context, producer uint64) (*transport.Client, error) {
	addrs := f.addrList()
	if len(addrs) == 0 {
		return nil, errors.New("no node address given (--addr)")
	}
	cfg, err := f.clientConfig("lockstitch-cli")
	if err != nil {
		return nil, err
	}
	cfg.ProducerID = producer
	cl, err := transport.Dial(ctx, cfg, addrs...)
	if err != nil {
		return nil, fmt.Errorf("cannot reach any node at %s: %w", strings.Join(addrs, ", "), err)
	}
	return cl, nil
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// payloadText returns a payload for a line of text output: as it is when
// it is valid UTF-8 of printable characters (spaces included, tabs not)
// that does not start with a double quote; else quoted as a Go string
// literal ("\x00\x01\xff", "a\tb"), so that a quoted payload always
// starts with " and an unquoted one never does, and no payload breaks a
// tab-separated line.
func payloadText(p []byte) string {
	s := string(p)
	if utf8.ValidString(s) && !strings.HasPrefix(s, `"`) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	return strconv.Quote(s)
}

// payloadJSON is a payload in JSON output: its bytes in base64, and as a
// string too when they are valid UTF-8.
type payloadJSON struct {
	Payload []byte  `json:"payload"`
	Text    *string `json:"text,omitempty"`
}

func newPayloadJSON(p []byte) payloadJSON {
	j := payloadJSON{Payload: p}
	if p == nil {
		j.Payload = []byte{}
	}
	if utf8.Valid(p) {
		s := string(p)
		j.Text = &s
	}
	return j
}

// bytesJSON puts b in m under name, as payloads are in JSON output:
// base64 under name, and as a string under name+"_text" when b is valid
// UTF-8.
func bytesJSON(m map[string]any, name string, b []byte) map[string]any {
	j := newPayloadJSON(b)
	m[name] = j.Payload
	if j.Text != nil {
		m[name+"_text"] = *j.Text
	}
	return m
}

// recordJSON is a line of tail --json.
type recordJSON struct {
	LSN   wal.LSN `json:"lsn"`
	Epoch uint64  `json:"epoch"`
	payloadJSON
}

// plural returns "1 op" or "n ops".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// cmdAppend appends ops: its arguments, or one op per line of a file or
// of stdin. Many appends are in flight at once; each op is idempotent
// (the client's producer id and sequence). Lines keep their order unless
// a leader change forces retries mid-stream (--window 1 keeps it always).
func cmdAppend(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("append", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 1, "partition to append to")
	file := fs.String("file", "", "append one op per line of this file (- for stdin)")
	opFile := fs.String("op-file", "", "append the whole file (- for stdin) as one op, its bytes as they are")
	window := fs.Int("window", 256, "appends in flight at once; 1 keeps the ops in order even across a leader change")
	producer := fs.Uint64("producer", 0, "producer id of the appends (0: a random one); with --seq, what makes a rerun resumable")
	seq := fs.Uint64("seq", 1, "producer sequence of the first op; op i (from 0) gets seq+i")
	resume := fs.Bool("resume", false, "resume an interrupted run of the same command (same --producer, --seq and input): skip the ops the partition has and will not take again, resend the rest; each op ends up in the stream once")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	switch {
	case *window < 1:
		return usageError(stderr, "--window must be at least 1")
	case *seq < 1:
		return usageError(stderr, "--seq must be at least 1")
	case *resume && *producer == 0:
		return usageError(stderr, "--resume needs the --producer of the run to resume")
	case *producer != 0 && *window > replicator.DedupeWindow:
		// A resume relies on every op not applied being above the
		// partition's floor for the producer, which holds only while at
		// most DedupeWindow appends are in flight.
		return usageError(stderr, "--window of at most %d with --producer", replicator.DedupeWindow)
	}
	var lines *bufio.Scanner
	var input io.Closer // closed on the first signal, so that a read waiting on it ends
	ops := make([][]byte, 0, fs.NArg()+1)
	for _, a := range fs.Args() {
		ops = append(ops, []byte(a))
	}
	if *opFile != "" {
		var b []byte
		var err error
		if *opFile == "-" {
			b, err = io.ReadAll(os.Stdin)
		} else {
			b, err = os.ReadFile(*opFile)
		}
		if err != nil {
			return fail(stderr, fmt.Errorf("--op-file: %w", err))
		}
		ops = append(ops, b)
	}
	switch {
	case fs.NArg() > 0 && *file != "", *opFile != "" && (*file != "" || fs.NArg() > 0):
		return usageError(stderr, "give ops as arguments, --file or --op-file, one of them")
	case *file != "" && *file != "-":
		f, err := os.Open(*file)
		if err != nil {
			return fail(stderr, err)
		}
		defer f.Close()
		lines, input = bufio.NewScanner(f), f
	case len(ops) == 0:
		lines, input = bufio.NewScanner(os.Stdin), os.Stdin
	}
	// The first SIGINT or SIGTERM stops reading ops (closing the input,
	// which ends a read that waits on it) and lets those in flight
	// finish; a second one stops waiting for them.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopReading := make(chan struct{})
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case <-sigs:
		case <-ctx.Done():
			return
		}
		close(stopReading)
		if input != nil {
			input.Close()
		}
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()
	dctx, dcancel := context.WithTimeout(ctx, *cf.timeout)
	cl, err := cf.dialProducer(dctx, *producer)
	dcancel()
	if err != nil {
		return fail(stderr, err)
	}
	defer cl.Close()
	p := lockstitch.PartitionID(*part)

	// Op i has sequence seq+i. Resuming, the ops below what the
	// partition remembers of the producer are skipped (they were
	// applied); those from there on are resent and answered as
	// duplicates, or applied if they were not.
	skipBelow := *seq
	if *resume {
		sctx, scancel := context.WithTimeout(ctx, *cf.timeout)
		ps, err := cl.ProducerStatus(sctx, p)
		scancel()
		if err != nil {
			return fail(stderr, fmt.Errorf("resume: what partition %d has of producer %d: %w", *part, *producer, err))
		}
		switch {
		case !ps.Known && ps.Forgotten:
			return fail(stderr, fmt.Errorf("resume: partition %d does not remember producer %d, and has forgotten producers: its earlier ops cannot be told apart; not resuming", *part, *producer))
		case ps.Known:
			skipBelow = max(skipBelow, ps.Floor)
			fmt.Fprintf(stderr, "resuming producer %d: partition %d has its sequences up to %d (LSN %d); resending from sequence %d\n", *producer, *part, ps.Last, ps.LastLSN, skipBelow)
		}
	}
	cl.SetSequence(p, skipBelow)
	next := *seq // the sequence of the next op read
	// skip reports whether the op just read is skipped.
	skip := func() bool {
		s := next
		next++
		return s < skipBelow
	}

	type result struct {
		Partition uint64 `json:"partition"`
		LSN       uint64 `json:"lsn"`
		Epoch     uint64 `json:"epoch"`
	}
	if lines == nil {
		// A few ops from the command line or --op-file: report each.
		for _, op := range ops {
			if skip() {
				continue
			}
			actx, acancel := context.WithTimeout(ctx, *cf.timeout)
			res, err := cl.Append(actx, p, op)
			acancel()
			if err != nil {
				return fail(stderr, fmt.Errorf("append to partition %d (producer %d, sequence %d): %w", *part, cl.Producer(), next-1, err))
			}
			if *cf.json {
				printJSON(stdout, result{*part, uint64(res.LSN), res.Epoch})
			} else {
				fmt.Fprintf(stdout, "partition %d LSN %d epoch %d\n", *part, res.LSN, res.Epoch)
			}
		}
		return 0
	}

	// A stream of ops: pipeline them, with progress on stderr.
	lines.Buffer(make([]byte, 64<<10), 64<<20)
	inflight := make([]transport.AppendFuture, 0, *window)
	var count int
	var first, last wal.LSN
	start := time.Now()
	lastReport := start
	wait := func(f transport.AppendFuture) error {
		actx, acancel := context.WithTimeout(ctx, *cf.timeout)
		defer acancel()
		res, err := f.Wait(actx)
		if err != nil {
			return err
		}
		if first == 0 || res.LSN < first {
			first = res.LSN
		}
		last = max(last, res.LSN)
		count++
		if now := time.Now(); now.Sub(lastReport) >= time.Second {
			lastReport = now
			fmt.Fprintf(stderr, "appended %s (%.0f ops/s)\n", plural(count, "op"), float64(count)/now.Sub(start).Seconds())
		}
		return nil
	}
	// failed reports an append that failed, with what a rerun needs.
	failed := func(err error) int {
		fmt.Fprintf(stderr, "lockstitch: append to partition %d after %s: %s\n", *part, plural(count, "op"), errorLine(err))
		return resumeHint(stderr, cl, p, *seq, *cf.timeout)
	}
	interrupted := false
	sent := 0
	for lines.Scan() {
		select {
		case <-stopReading:
			interrupted = true
		default:
		}
		if interrupted {
			break
		}
		if skip() {
			continue
		}
		op := append([]byte(nil), lines.Bytes()...)
		if sent++; sent == 1 {
			// The first op goes alone: it finds the leader, so the ops
			// pipelined after it keep their order (a leader change in the
			// middle can still reorder retried ones; --window 1 cannot).
			if err := wait(cl.AppendAsync(ctx, p, op)); err != nil {
				return failed(err)
			}
			continue
		}
		if len(inflight) == *window {
			if err := wait(inflight[0]); err != nil {
				return failed(err)
			}
			inflight = inflight[1:]
		}
		inflight = append(inflight, cl.AppendAsync(ctx, p, op))
	}
	select {
	case <-stopReading:
		interrupted = true // maybe while a read waited: the input is closed
	default:
	}
	if err := lines.Err(); err != nil && !interrupted {
		return fail(stderr, fmt.Errorf("reading ops: %w", err))
	}
	for _, f := range inflight {
		if err := wait(f); err != nil {
			return failed(err)
		}
	}
	if interrupted {
		fmt.Fprintf(stderr, "lockstitch: interrupted after %s (LSN %d..%d); the ops in flight finished\n", plural(count, "op"), first, last)
		return resumeHint(stderr, cl, p, *seq, *cf.timeout)
	}
	if *cf.json {
		printJSON(stdout, map[string]any{"partition": *part, "count": count, "first": first, "last": last, "producer": cl.Producer()})
	} else if count == 0 {
		fmt.Fprintln(stdout, "no ops to append")
	} else {
		fmt.Fprintf(stdout, "appended %s to partition %d: LSN %d..%d in %v\n", plural(count, "op"), *part, first, last, time.Since(start).Round(time.Millisecond))
	}
	return 0
}

// resumeHint prints what partition p has of the client's producer and
// the command that resumes the run, and returns the failure exit code.
func resumeHint(stderr io.Writer, cl *transport.Client, p lockstitch.PartitionID, seq uint64, timeout time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if ps, err := cl.ProducerStatus(ctx, p); err != nil {
		fmt.Fprintf(stderr, "lockstitch: could not ask partition %d what it has of producer %d: %v\n", p, cl.Producer(), err)
	} else if ps.Known {
		fmt.Fprintf(stderr, "lockstitch: partition %d has producer %d's sequences up to %d (LSN %d, epoch %d)\n", p, ps.Producer, ps.Last, ps.LastLSN, ps.LastEpoch)
	} else {
		fmt.Fprintf(stderr, "lockstitch: partition %d has nothing of producer %d\n", p, cl.Producer())
	}
	fmt.Fprintf(stderr, "lockstitch: to resume, run the same command, with the same input, adding: --producer %d --seq %d --resume\n", cl.Producer(), seq)
	return 1
}

// cmdTail prints ops from an LSN on, and with --follow keeps printing
// them as they commit.
func cmdTail(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 1, "partition to read")
	from := fs.Uint64("from", 0, "first LSN to print (default: 1, or with --reverse the last committed)")
	follow := fs.Bool("follow", false, "keep printing ops as they commit, until interrupted")
	reverse := fs.Bool("reverse", false, "print from --from down to the first retained op, newest first")
	limit := fs.Int("limit", 0, "stop after this many ops (0: no limit)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	fromSet := false
	fs.Visit(func(f *flag.Flag) { fromSet = fromSet || f.Name == "from" })
	switch {
	case fs.NArg() > 0 || (fromSet && *from == 0):
		return usageError(stderr, "usage: lockstitch tail [--partition P] [--from N>=1] [--follow | --reverse] [--limit N]")
	case *follow && *reverse:
		return usageError(stderr, "--follow and --reverse go different ways: give one")
	case !fromSet && !*reverse:
		*from = 1
	}
	ctx, cancel := signalContext()
	defer cancel()
	dctx, dcancel := context.WithTimeout(ctx, *cf.timeout)
	cl, err := cf.dial(dctx)
	dcancel()
	if err != nil {
		return fail(stderr, err)
	}
	defer cl.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	printed := 0
	print := func(rec *wal.Record) {
		if *cf.json {
			printJSON(w, recordJSON{rec.LSN, rec.Epoch, newPayloadJSON(rec.Payload)})
		} else {
			fmt.Fprintf(w, "%d\t%d\t%s\n", rec.LSN, rec.Epoch, payloadText(rec.Payload))
		}
		printed++
	}
	p := lockstitch.PartitionID(*part)
	var rec wal.Record
	if *follow {
		sub, err := cl.Subscribe(ctx, p, wal.LSN(*from-1))
		if err != nil {
			return fail(stderr, fmt.Errorf("subscribe to partition %d: %w", *part, err))
		}
		defer sub.Close()
		for *limit == 0 || printed < *limit {
			if err := sub.Next(ctx, &rec); err != nil {
				if ctx.Err() != nil {
					return 0 // interrupted
				}
				w.Flush()
				return fail(stderr, fmt.Errorf("following partition %d: %w", *part, err))
			}
			print(&rec)
			w.Flush()
		}
		return 0
	}
	next := wal.LSN(*from)
	var recs transport.Records
	for *limit == 0 || printed < *limit {
		rctx, rcancel := context.WithTimeout(ctx, *cf.timeout)
		err := cl.Read(rctx, p, next, transport.ReadOptions{MaxOps: 1024, MaxBytes: 4 << 20, Reverse: *reverse}, &recs)
		rcancel()
		var tr *lockstitch.TruncatedError
		if *reverse && printed > 0 && errors.As(err, &tr) && next < tr.First {
			break // went past the first retained op
		}
		if err != nil {
			w.Flush()
			return fail(stderr, fmt.Errorf("read partition %d from %d: %w", *part, next, err))
		}
		n := 0
		for recs.Next(&rec) == nil && (*limit == 0 || printed < *limit) {
			print(&rec)
			next = rec.LSN + 1
			if *reverse {
				next = rec.LSN - 1
			}
			n++
		}
		if n == 0 || (*reverse && next == 0) {
			break
		}
	}
	return 0
}

// cmdQuery sends a request to a partition's plugin and prints the answer.
func cmdQuery(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("query", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 1, "partition to query")
	consistency := fs.String("consistency", "linearizable", "linearizable, leader (leader-local) or any (any replica within --max-staleness)")
	staleness := fs.Duration("max-staleness", time.Second, "for --consistency any: how stale the answer may be")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 1 {
		return usageError(stderr, "usage: lockstitch query [flags] [request]")
	}
	opts := transport.QueryOptions{MaxStaleness: *staleness}
	switch *consistency {
	case "linearizable":
		opts.Consistency = lockstitch.Linearizable
	case "leader":
		opts.Consistency = lockstitch.LeaderLocal
	case "any":
		opts.Consistency = lockstitch.Bounded
	default:
		return usageError(stderr, "--consistency %q is not linearizable, leader or any", *consistency)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer cancel()
	cl, err := cf.dial(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	defer cl.Close()
	res, err := cl.Query(ctx, lockstitch.PartitionID(*part), opts, []byte(fs.Arg(0)), nil)
	if err != nil {
		return fail(stderr, fmt.Errorf("query partition %d: %w", *part, err))
	}
	if *cf.json {
		// A plugin's answer that is JSON is embedded as a JSON value;
		// any other answer as a payload (base64, and text if UTF-8).
		out := struct {
			LSN       wal.LSN         `json:"lsn"`
			Committed wal.LSN         `json:"committed"`
			Result    json.RawMessage `json:"result,omitempty"`
			*payloadJSON
		}{LSN: res.LSN, Committed: res.Committed}
		if len(res.Result) > 0 && json.Valid(res.Result) {
			out.Result = res.Result
		} else {
			pj := newPayloadJSON(res.Result)
			out.payloadJSON = &pj
		}
		printJSON(stdout, out)
	} else {
		fmt.Fprintln(stdout, payloadText(res.Result))
	}
	return 0
}

// nodeView is one node's answer to status, or why it gave none.
type nodeView struct {
	addr string
	ns   *transport.NodeStatus
	err  error
}

// nodeViews asks every address for its node's status, all at once, each
// with one attempt bounded by timeout: a node that is down costs one
// failed dial, not a retry loop.
func nodeViews(ctx context.Context, cfg transport.ClientConfig, addrs []string, part lockstitch.PartitionID, timeout time.Duration) []nodeView {
	cfg.MaxAttempts, cfg.DialTimeout = 1, timeout
	views := make([]nodeView, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			views[i].addr = a
			cl, err := transport.Dial(nctx, cfg, a)
			if err != nil {
				views[i].err = err
				return
			}
			defer cl.Close()
			views[i].ns, views[i].err = cl.Status(nctx, a)
			if views[i].ns != nil && part != 0 {
				views[i].ns.Partitions = slices.DeleteFunc(views[i].ns.Partitions, func(ps transport.PartitionStatus) bool { return ps.Partition != part })
			}
		}()
	}
	wg.Wait()
	return views
}

// partitionView is what status shows of a partition: its leader's view
// when a reachable node leads it, else the most advanced view.
type partitionView struct {
	st       transport.PartitionStatus
	node     uint64 // the node whose view it is
	leaderly bool   // that node leads the partition
}

// partitionViews merges the nodes' views by partition, in id order.
func partitionViews(views []nodeView) []partitionView {
	byID := map[lockstitch.PartitionID]*partitionView{}
	for _, v := range views {
		if v.ns == nil {
			continue
		}
		for _, ps := range v.ns.Partitions {
			leads := ps.Role == lockstitch.RoleLeader
			cur := byID[ps.Partition]
			if cur == nil || leads && !cur.leaderly || leads == cur.leaderly && ps.Applied > cur.st.Applied {
				byID[ps.Partition] = &partitionView{st: ps, node: v.ns.NodeID, leaderly: leads}
			}
		}
	}
	out := make([]partitionView, 0, len(byID))
	for _, pv := range byID {
		out = append(out, *pv)
	}
	slices.SortFunc(out, func(a, b partitionView) int { return cmp.Compare(a.st.Partition, b.st.Partition) })
	return out
}

// cmdStatus shows every node listed and every partition they host: a
// node that does not answer is shown as such, a replica on it as down,
// and a partition that no reachable node leads as leaderless, which
// makes the command exit 1.
//
// With --watch it shows them again every interval until interrupted (or
// --count times), redrawn in place on a terminal.
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 0, "only this partition")
	nodeTimeout := fs.Duration("node-timeout", time.Second, "how long to wait for each node's answer (nodes are asked at once)")
	watch := &watchFlag{every: defaultWatchInterval}
	fs.Var(watch, "watch", "show the status again every interval (--watch, --watch 5s or --watch=5s; default 2s) until Ctrl-C, redrawn in place on a terminal")
	count := fs.Int("count", 0, "with --watch: stop after this many refreshes (0: until Ctrl-C)")
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	// --watch 5s: the interval is the first argument, and flags may follow.
	if watch.on && !watch.set && fs.NArg() > 0 {
		if d, err := time.ParseDuration(fs.Arg(0)); err == nil {
			watch.every = d
			if code, ok := parseFlags(fs, fs.Args()[1:], stdout, stderr); !ok {
				return code
			}
		}
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "usage: lockstitch status [--partition P] [--watch [interval]] (unexpected %q)", fs.Args())
	}
	if *nodeTimeout <= 0 {
		return usageError(stderr, "--node-timeout must be positive")
	}
	if watch.every <= 0 {
		return usageError(stderr, "--watch interval must be positive")
	}
	if *count < 0 || *count > 0 && !watch.on {
		return usageError(stderr, "--count is a number of --watch refreshes")
	}
	addrs := cf.addrList()
	if len(addrs) == 0 {
		return usageError(stderr, "no node address given (--addr)")
	}
	show := func(ctx context.Context, stdout, stderr io.Writer) int {
		ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
		defer cancel()
		return showStatus(ctx, cf, addrs, lockstitch.PartitionID(*part), *nodeTimeout, stdout, stderr)
	}
	if !watch.on {
		return show(context.Background(), stdout, stderr)
	}
	ctx, stop := signalContext()
	defer stop()
	return watchStatus(ctx, watch.every, *count, *cf.json, stdout, stderr, show)
}

// defaultWatchInterval is the interval of a bare status --watch.
const defaultWatchInterval = 2 * time.Second

// watchFlag is status --watch: a boolean flag that also takes an interval
// (--watch=5s; --watch 5s is read after the flags).
type watchFlag struct {
	on    bool
	set   bool // the interval was given with =
	every time.Duration
}

func (w *watchFlag) String() string {
	if w == nil || !w.on {
		return ""
	}
	return w.every.String()
}

func (w *watchFlag) IsBoolFlag() bool { return true }

func (w *watchFlag) Set(s string) error {
	if b, err := strconv.ParseBool(s); err == nil {
		w.on = b
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not an interval such as 2s", s)
	}
	w.on, w.set, w.every = true, true, d
	return nil
}

// watchStatus calls show every interval until ctx ends or count (when
// not 0) refreshes were shown, and returns the last one's exit code. Each
// refresh is drawn whole: on a terminal it replaces the screen, elsewhere
// it follows the last after a blank line, under a line that says when it
// was taken. With JSON output each refresh is one JSON line, with no
// header, and errors go to stderr; in text they are part of the refresh.
func watchStatus(ctx context.Context, every time.Duration, count int, jsonOut bool, stdout, stderr io.Writer, show func(context.Context, io.Writer, io.Writer) int) int {
	redraw := !jsonOut && isTerminal(stdout)
	tick := time.NewTicker(every)
	defer tick.Stop()
	code := 0
	for n := 1; ; n++ {
		var frame bytes.Buffer
		errOut := io.Writer(&frame)
		if jsonOut {
			errOut = stderr
		}
		c := show(ctx, &frame, errOut)
		if ctx.Err() != nil {
			return code // interrupted: the refresh under way is cut short
		}
		code = c
		switch {
		case jsonOut:
		case redraw:
			fmt.Fprintf(stdout, "\x1b[H\x1b[2J")
		case n > 1:
			fmt.Fprintln(stdout)
		}
		if !jsonOut {
			fmt.Fprintf(stdout, "every %s at %s (Ctrl-C to stop)\n\n", every, time.Now().Format(time.TimeOnly))
		}
		stdout.Write(frame.Bytes())
		if count > 0 && n >= count {
			return code
		}
		select {
		case <-ctx.Done():
			return code
		case <-tick.C:
		}
	}
}

// isTerminal reports whether w is a terminal, where a refresh can be
// redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// showStatus prints the status of the nodes at addrs once and returns
// status's exit code.
func showStatus(ctx context.Context, cf clientFlags, addrs []string, part lockstitch.PartitionID, nodeTimeout time.Duration, stdout, stderr io.Writer) int {
	cfg, err := cf.clientConfig("lockstitch-cli")
	if err != nil {
		return fail(stderr, err)
	}
	views := nodeViews(ctx, cfg, addrs, part, nodeTimeout)
	down := map[string]bool{}
	reached := 0
	for _, v := range views {
		if v.err != nil {
			down[v.addr] = true
		} else {
			reached++
		}
	}
	if reached == 0 {
		var errs []error
		for _, v := range views {
			errs = append(errs, fmt.Errorf("%s: %w", v.addr, v.err))
		}
		return fail(stderr, fmt.Errorf("no node answered: %w", errors.Join(errs...)))
	}
	parts := partitionViews(views)
	if part != 0 && len(parts) == 0 {
		return fail(stderr, fmt.Errorf("%w: no node listed hosts partition %d", lockstitch.ErrPartitionNotFound, part))
	}
	leaderless := 0
	for _, pv := range parts {
		if !pv.leaderly {
			leaderless++
		}
	}
	replicaLag := func(r transport.ReplicaStatus) string {
		if down[r.Addr] {
			return "down"
		}
		return fmt.Sprint(r.Lag)
	}
	if *cf.json {
		nodes := make([]map[string]any, 0, len(views))
		for _, v := range views {
			n := map[string]any{"addr": v.addr, "up": !down[v.addr]}
			if v.ns != nil {
				n["node"] = v.ns.NodeID
			}
			if down[v.addr] {
				n["error"] = v.err.Error()
			}
			nodes = append(nodes, n)
		}
		out := make([]map[string]any, 0, len(parts))
		for _, pv := range parts {
			st := pv.st
			reps := make([]map[string]any, 0, len(st.Replicas))
			for _, r := range st.Replicas {
				rep := map[string]any{"replica": r.Replica, "addr": r.Addr, "kind": r.Kind.String(), "applied": r.Match, "lag": r.Lag, "down": down[r.Addr]}
				if r.Reported {
					rep["report_age_seconds"] = r.ReportAge.Seconds()
				}
				reps = append(reps, rep)
			}
			leader, leaderNode := st.Leader, pv.node // a leaderly view is the leader's node's
			if !pv.leaderly {
				leader, leaderNode = 0, 0
			}
			out = append(out, map[string]any{"partition": st.Partition, "leader_replica": leader, "leader_node": leaderNode, "leader_addr": st.LeaderAddr, "has_leader": pv.leaderly,
				"seen_from_node": pv.node, "epoch": st.Epoch, "committed": st.Committed, "applied": st.Applied, "replicas": reps})
		}
		printJSON(stdout, map[string]any{"nodes": nodes, "partitions": out})
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "NODE\tADDR\tSTATUS\n")
		for _, v := range views {
			id, status := "-", "up"
			if v.ns != nil {
				id = fmt.Sprint(v.ns.NodeID)
			}
			if down[v.addr] {
				status = "unreachable: " + v.err.Error()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", id, v.addr, status)
		}
		if len(parts) == 0 {
			fmt.Fprintln(tw, "\nno partitions")
		}
		for _, pv := range parts {
			st := pv.st
			fmt.Fprintln(tw)
			fmt.Fprintf(tw, "PARTITION\tLEADER REPLICA\tLEADER NODE\tLEADER ADDR\tEPOCH\tCOMMITTED\tAPPLIED\n")
			if pv.leaderly {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%d\t%d\n", st.Partition, st.Leader, pv.node, st.LeaderAddr, st.Epoch, st.Committed, st.Applied)
			} else {
				fmt.Fprintf(tw, "%d\tnone\t-\t(no reachable node leads it; seen from node %d)\t%d\t%d\t%d\n", st.Partition, pv.node, st.Epoch, st.Committed, st.Applied)
			}
			fmt.Fprintf(tw, "  REPLICA\tKIND\tADDR\tAPPLIED\tLAG\tREPORTED\n")
			for _, r := range st.Replicas {
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%d\t%s\t%s\n", r.Replica, r.Kind, r.Addr, r.Match, replicaLag(r), reportAge(r))
			}
		}
		tw.Flush()
	}
	if leaderless > 0 {
		fmt.Fprintf(stderr, "lockstitch: %d partition(s) without a leader that a listed node can reach\n", leaderless)
		return 1
	}
	return 0
}

// reportAge says how old the progress report behind a replica's applied
// LSN and lag is: "-" when unknown (no report yet, a witness, or a node
// that predates report ages).
func reportAge(r transport.ReplicaStatus) string {
	if !r.Reported {
		return "-"
	}
	if r.ReportAge < time.Second {
		return "now"
	}
	return r.ReportAge.Round(100*time.Millisecond).String() + " ago"
}

// adminClient dials the nodes for an admin command. Any node serves
// every admin request; the client passes over nodes that are down.
func adminClient(ctx context.Context, cf clientFlags) (*transport.Client, error) {
	return cf.dial(ctx)
}

// parseNodes parses a comma-separated list of node ids.
func parseNodes(s string) ([]lockstitch.NodeID, error) {
	var out []lockstitch.NodeID
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a node id", f)
		}
		out = append(out, lockstitch.NodeID(n))
	}
	return out, nil
}

// parseIDRange parses a partition id, N, or a range of them, FIRST-LAST.
func parseIDRange(s string) (first, last lockstitch.PartitionID, err error) {
	a, b, isRange := strings.Cut(s, "-")
	f, err := strconv.ParseUint(a, 10, 64)
	if err != nil || f == 0 {
		return 0, 0, fmt.Errorf("%q is not a partition id", a)
	}
	l := f
	if isRange {
		if l, err = strconv.ParseUint(b, 10, 64); err != nil || l < f {
			return 0, 0, fmt.Errorf("%q is not a range of partition ids", s)
		}
	}
	return lockstitch.PartitionID(f), lockstitch.PartitionID(l), nil
}

// createRange creates the partitions spec.ID to last, alike but for
// their id, parallel at a time: a create waits for the partition's first
// election, so creates one after the other leave the nodes idle. It
// stops at the first failure, which it returns with the id; creates that
// succeeded stay (a create repeated as specified succeeds, so the same
// command can be run again).
func createRange(ctx context.Context, cl *transport.Client, spec transport.PartitionSpec, last lockstitch.PartitionID, parallel int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Uint64
	next.Store(uint64(spec.ID))
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			for {
				id := lockstitch.PartitionID(next.Add(1) - 1)
				if id > last || ctx.Err() != nil {
					return
				}
				s := spec
				s.ID = id
				if _, err := cl.CreatePartition(ctx, s); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("partition %d: %w", id, err); cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// cmdPartition: partition create|delete|list|repair.
func cmdPartition(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp("partition", args, stdout, stderr); !ok {
		return code
	}
	fs := flag.NewFlagSet("partition "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	var run func(ctx context.Context, cl *transport.Client) error
	switch args[0] {
	case "create":
		idArg := fs.String("id", "", "partition id, or a range FIRST-LAST of ids created alike (required; a deleted partition's id cannot be used again; --timeout bounds the whole range)")
		parallel := fs.Int("parallel", 32, "with a range of ids, how many creates run at once")
		plugin := fs.String("plugin", "log", "state machine plugin")
		replicas := fs.Int("replicas", 0, "number of replicas (default: 3, or the cluster size)")
		nodes := fs.String("nodes", "", "comma-separated ids of the nodes to place replicas on")
		witnesses := fs.Int("witnesses", 0, "number of witnesses besides the replicas, on other nodes (a witness votes but keeps no data)")
		witnessNodes := fs.String("witness-nodes", "", "comma-separated ids of the nodes to place witnesses on")
		var opts []string
		fs.Func("option", "plugin option key=value (repeatable)", func(s string) error { opts = append(opts, s); return nil })
		if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
			return code
		}
		first, last, err := parseIDRange(*idArg)
		if err != nil {
			return usageError(stderr, "partition create needs --id N or --id FIRST-LAST: %v", err)
		}
		if *parallel < 1 {
			return usageError(stderr, "--parallel must be at least 1")
		}
		spec := transport.PartitionSpec{ID: first, Plugin: *plugin, Replicas: *replicas, Witnesses: *witnesses}
		for _, o := range opts {
			k, v, ok := strings.Cut(o, "=")
			if !ok {
				return usageError(stderr, "--option %q is not key=value", o)
			}
			if spec.Options == nil {
				spec.Options = map[string]string{}
			}
			spec.Options[k] = v
		}
		if *nodes != "" {
			var err error
			if spec.Nodes, err = parseNodes(*nodes); err != nil {
				return usageError(stderr, "--nodes: %v", err)
			}
		}
		if *witnessNodes != "" {
			var err error
			if spec.WitnessNodes, err = parseNodes(*witnessNodes); err != nil {
				return usageError(stderr, "--witness-nodes: %v", err)
			}
		}
		if first != last {
			run = func(ctx context.Context, cl *transport.Client) error {
				start := time.Now()
				if err := createRange(ctx, cl, spec, last, *parallel); err != nil {
					return err
				}
				if *cf.json {
					return printJSON(stdout, map[string]any{"first": first, "last": last, "plugin": spec.Plugin, "seconds": time.Since(start).Seconds()})
				}
				fmt.Fprintf(stdout, "partitions %d-%d created (plugin %s) in %.1fs\n", first, last, spec.Plugin, time.Since(start).Seconds())
				return nil
			}
			break
		}
		run = func(ctx context.Context, cl *transport.Client) error {
			placed, err := cl.CreatePartition(ctx, spec)
			if err != nil {
				return err
			}
			if *cf.json {
				return printJSON(stdout, map[string]any{"partition": spec.ID, "plugin": spec.Plugin, "placement": placementJSON(placed)})
			}
			fmt.Fprintf(stdout, "partition %d created (plugin %s), replicas on nodes:", spec.ID, spec.Plugin)
			for _, p := range placed {
				fmt.Fprintf(stdout, " %d→node %d", p.Replica, p.Node)
				if p.Kind == lockstitch.Witness {
					fmt.Fprint(stdout, " (witness)")
				}
			}
			fmt.Fprintln(stdout)
			return nil
		}
	case "delete":
		id := fs.Uint64("id", 0, "partition id (required)")
		if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
			return code
		}
		if *id == 0 {
			return usageError(stderr, "partition delete needs --id")
		}
		run = func(ctx context.Context, cl *transport.Client) error {
			if err := cl.DeletePartition(ctx, lockstitch.PartitionID(*id)); err != nil {
				return err
			}
			if *cf.json {
				return printJSON(stdout, map[string]any{"partition": *id, "deleted": true})
			}
			fmt.Fprintf(stdout, "partition %d deleted\n", *id)
			return nil
		}
	case "repair":
		id := fs.Uint64("id", 0, "partition id (required)")
		node := fs.Uint64("node", 0, "id of the node whose quarantined replica to rebuild (required)")
		if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
			return code
		}
		if *id == 0 || *node == 0 {
			return usageError(stderr, "partition repair needs --id and --node")
		}
		run = func(ctx context.Context, cl *transport.Client) error {
			replica, err := cl.RepairReplica(ctx, lockstitch.PartitionID(*id), lockstitch.NodeID(*node))
			if err != nil {
				return err
			}
			if *cf.json {
				return printJSON(stdout, map[string]any{"partition": *id, "node": *node, "replica": replica})
			}
			fmt.Fprintf(stdout, "partition %d: node %d hosts replica %d, rebuilt from its peers if it was quarantined\n", *id, *node, replica)
			return nil
		}
	case "list":
		if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
			return code
		}
		run = func(ctx context.Context, cl *transport.Client) error {
			parts, err := cl.ListPartitions(ctx)
			if err != nil {
				return err
			}
			if *cf.json {
				return printJSON(stdout, partitionsJSON(parts))
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PARTITION\tPLUGIN\tLEADER NODE\tEPOCH\tCOMMITTED\tREPLICAS (node:replica:role:applied)")
			for _, p := range parts {
				var reps []string
				for _, r := range p.Replicas {
					reps = append(reps, fmt.Sprintf("%d:%d:%s:%d", r.Node, r.Replica, r.Role, r.Applied))
				}
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\n", p.Partition, p.Plugin, p.Leader, p.Epoch, p.Committed, strings.Join(reps, " "))
			}
			return tw.Flush()
		}
	default:
		return unknownSub(stderr, "partition", args[0])
	}
	return runAdmin(cf, stderr, "partition "+args[0], run)
}

// runAdmin dials and runs an admin command within --timeout.
func runAdmin(cf clientFlags, stderr io.Writer, what string, run func(context.Context, *transport.Client) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer cancel()
	cl, err := adminClient(ctx, cf)
	if err != nil {
		return fail(stderr, err)
	}
	defer cl.Close()
	if err := run(ctx, cl); err != nil {
		return fail(stderr, fmt.Errorf("%s: %w", what, err))
	}
	return 0
}

func placementJSON(ps []transport.Placement) []map[string]any {
	out := make([]map[string]any, 0, len(ps))
	for _, p := range ps {
		m := map[string]any{"replica": p.Replica, "node": p.Node}
		if p.Kind != 0 {
			m["kind"] = p.Kind.String()
		}
		out = append(out, m)
	}
	return out
}

func partitionsJSON(parts []transport.PartitionInfo) []map[string]any {
	out := make([]map[string]any, 0, len(parts))
	for _, p := range parts {
		reps := make([]map[string]any, 0, len(p.Replicas))
		for _, r := range p.Replicas {
			reps = append(reps, map[string]any{"node": r.Node, "replica": r.Replica, "role": r.Role.String(), "applied": r.Applied})
		}
		out = append(out, map[string]any{"partition": p.Partition, "plugin": p.Plugin, "leader_node": p.Leader,
			"leader_replica": p.LeaderReplica, "epoch": p.Epoch, "committed": p.Committed, "replicas": reps})
	}
	return out
}

// cmdMember: member add|remove.
func cmdMember(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp("member", args, stdout, stderr); !ok {
		return code
	}
	fs := flag.NewFlagSet("member "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 0, "partition (required)")
	var run func(ctx context.Context, cl *transport.Client) error
	switch args[0] {
	case "add":
		nodeID := fs.Uint64("node", 0, "id of the node to host the new replica (required)")
		kindName := fs.String("kind", "voter", "voter, non-voting or witness")
		if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
			return code
		}
		if *part == 0 || *nodeID == 0 {
			return usageError(stderr, "member add needs --partition and --node")
		}
		kind, err := lockstitch.ParseKind(*kindName)
		if err != nil {
			return usageError(stderr, "--kind: %v", err)
		}
		run = func(ctx context.Context, cl *transport.Client) error {
			id, err := cl.AddReplica(ctx, lockstitch.PartitionID(*part), lockstitch.NodeID(*nodeID), kind)
			if err != nil {
				return err
			}
			if *cf.json {
				return printJSON(stdout, map[string]any{"partition": *part, "replica": id, "node": *nodeID, "kind": kind.String()})
			}
			fmt.Fprintf(stdout, "replica %d of partition %d added on node %d (%s); it catches up, then serves\n", id, *part, *nodeID, kind)
			return nil
		}
	case "remove":
		replica := fs.Uint64("replica", 0, "replica id to remove (required)")
		if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
			return code
		}
		if *part == 0 || *replica == 0 {
			return usageError(stderr, "member remove needs --partition and --replica")
		}
		run = func(ctx context.Context, cl *transport.Client) error {
			if err := cl.RemoveReplica(ctx, lockstitch.PartitionID(*part), lockstitch.ReplicaID(*replica)); err != nil {
				return err
			}
			if *cf.json {
				return printJSON(stdout, map[string]any{"partition": *part, "replica": *replica, "removed": true})
			}
			fmt.Fprintf(stdout, "replica %d removed from partition %d\n", *replica, *part)
			return nil
		}
	default:
		return unknownSub(stderr, "member", args[0])
	}
	return runAdmin(cf, stderr, "member "+args[0], run)
}

// cmdLeader: leader transfer.
func cmdLeader(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp("leader", args, stdout, stderr); !ok {
		return code
	}
	if args[0] != "transfer" {
		return unknownSub(stderr, "leader", args[0])
	}
	fs := flag.NewFlagSet("leader transfer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 0, "partition (required)")
	to := fs.Uint64("to", 0, "replica id to lead (required)")
	if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	if *part == 0 || *to == 0 {
		return usageError(stderr, "leader transfer needs --partition and --to")
	}
	return runAdmin(cf, stderr, "leader transfer", func(ctx context.Context, cl *transport.Client) error {
		if err := cl.TransferLeader(ctx, lockstitch.PartitionID(*part), lockstitch.ReplicaID(*to)); err != nil {
			return err
		}
		if *cf.json {
			return printJSON(stdout, map[string]any{"partition": *part, "leader": *to})
		}
		fmt.Fprintf(stdout, "replica %d leads partition %d\n", *to, *part)
		return nil
	})
}

// cmdCluster: cluster status.
func cmdCluster(args []string, stdout, stderr io.Writer) int {
	if code, ok := groupHelp("cluster", args, stdout, stderr); !ok {
		return code
	}
	if args[0] != "status" {
		return unknownSub(stderr, "cluster", args[0])
	}
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	if code, ok := parseFlags(fs, args[1:], stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "usage: lockstitch cluster status")
	}
	return runAdmin(cf, stderr, "cluster status", func(ctx context.Context, cl *transport.Client) error {
		nodes, err := cl.ClusterStatus(ctx)
		if err != nil {
			return err
		}
		if *cf.json {
			out := make([]map[string]any, 0, len(nodes))
			for _, n := range nodes {
				out = append(out, map[string]any{"node": n.Node, "raft_addr": n.RaftAddr, "client_addr": n.ClientAddr,
					"reachable": n.Reachable, "error": n.Error, "replicas": n.Partitions, "leading": n.Leading})
			}
			return printJSON(stdout, out)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tCLIENT\tRAFT\tSTATE\tREPLICAS\tLEADING")
		for _, n := range nodes {
			state := "up"
			if !n.Reachable {
				state = "unreachable: " + n.Error
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\n", n.Node, n.ClientAddr, n.RaftAddr, state, n.Partitions, n.Leading)
		}
		return tw.Flush()
	})
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}
