package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
)

const kvUsage = `usage: lockstitch kv <command> [flags] [arguments]

Reads and writes a partition of the kv plugin (lockstitch dev creates one
as partition 2; lockstitch partition create --plugin kv makes others).
Writes are applied once, even when retried through a leader change; every
answer says its version (the LSN of the write that last changed the key)
and the LSN it reflects.

commands:
  put KEY VALUE              set KEY to VALUE
  get KEY                    print KEY's value (exit status 1 if absent)
  del KEY                    delete KEY
  cas KEY VALUE --version V  set KEY to VALUE if its version is V (0: if absent);
                             with --delete and no VALUE, delete it instead
  scan [--prefix P] [--start S | --after K] [--limit N]
                             print the keys that begin with P, from S on
                             (or after K): key, version and value,
                             tab-separated; says on stderr if more follow

flags (after the command; each command's -h lists them):
  --partition P     the kv partition (default 2)
  --consistency C   reads: linearizable (default), leader or any
  --json            print JSON
  --addr, --timeout as for the other client commands

examples:
  lockstitch kv put greeting hello
  lockstitch kv get greeting --json
  lockstitch kv cas greeting bye --version 12
  lockstitch kv scan --prefix user/ --limit 10
`

// cmdKV runs lockstitch kv put|get|del|cas|scan.
func cmdKV(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return usageError(stderr, "%s needs a command: %s (lockstitch %s -h for help)", "kv", strings.Join(subcommands("kv"), ", "), "kv")
	}
	op := args[0]
	switch op {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, kvUsage)
		return 0
	case "put", "get", "del", "cas", "scan":
	default:
		return unknownSub(stderr, "kv", op)
	}
	fs := flag.NewFlagSet("kv "+op, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	part := fs.Uint64("partition", 2, "the kv partition")
	var (
		consistency, prefix, start *string
		after                      *string
		staleness                  *time.Duration
		limit                      *int
		version                    *uint64
		del                        = new(bool)
	)
	synopsis := map[string]string{"put": "KEY VALUE", "get": "KEY", "del": "KEY", "cas": "KEY [VALUE] --version V", "scan": ""}[op]
	switch op {
	case "get", "scan":
		consistency = fs.String("consistency", "linearizable", "linearizable, leader (leader-local) or any (any replica within --max-staleness)")
		staleness = fs.Duration("max-staleness", time.Second, "for --consistency any: how stale the answer may be")
	case "cas":
		version = fs.Uint64("version", 0, "the version KEY must have (0: KEY must be absent)")
		del = fs.Bool("delete", false, "delete KEY instead of setting it")
	}
	if op == "scan" {
		prefix = fs.String("prefix", "", "only keys that begin with this")
		start = fs.String("start", "", "only keys >= this")
		after = fs.String("after", "", "only keys > this (to page on from the last key printed)")
		limit = fs.Int("limit", 100, "at most this many keys (at most 10000)")
	}
	// Flags may come before or after the arguments.
	var pos []string
	rest := args[1:]
	for {
		if code, ok := parseFlags(fs, rest, stdout, stderr); !ok {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	want := map[string]int{"put": 2, "get": 1, "del": 1, "cas": 2, "scan": 0}[op]
	if op == "cas" && *del {
		want = 1
	}
	if len(pos) != want {
		return usageError(stderr, "usage: lockstitch kv %s [flags] %s (got %d arguments)", op, synopsis, len(pos))
	}
	if want > 0 && pos[0] == "" {
		return usageError(stderr, "kv %s: the key is empty", op)
	}
	var opts kvclient.ReadOptions
	if consistency != nil {
		var err error
		if opts, err = readOptions(*consistency, *staleness); err != nil {
			return usageError(stderr, "%v", err)
		}
	}
	if limit != nil && (*limit < 1 || *limit > 10000) {
		return usageError(stderr, "--limit must be between 1 and 10000")
	}

	ctx, cancel := context.WithTimeout(context.Background(), *cf.timeout)
	defer cancel()
	cl, err := cf.dial(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	defer cl.Close()
	p := lockstitch.PartitionID(*part)
	kc := kvclient.New(cl, p)
	var key []byte
	if want > 0 {
		key = []byte(pos[0])
	}
	switch op {
	case "put", "del", "cas":
		var w kvclient.Write
		switch {
		case op == "put":
			w, err = kc.Put(ctx, key, []byte(pos[1]))
		case op == "del":
			w, err = kc.Delete(ctx, key)
		case *del:
			w, err = kc.CASDelete(ctx, key, *version)
		default:
			w, err = kc.CAS(ctx, key, []byte(pos[1]), *version)
		}
		var conflict *kvclient.ConflictError
		if errors.As(err, &conflict) {
			if *cf.json {
				printJSON(stdout, map[string]any{"key": pos[0], "ok": false, "version": conflict.Current, "lsn": conflict.LSN})
			}
			return fail(stderr, fmt.Errorf("cas %q: its version is %d, not %d", pos[0], conflict.Current, *version))
		}
		if err != nil {
			return fail(stderr, fmt.Errorf("kv %s on partition %d: %w", op, p, err))
		}
		if *cf.json {
			return jsonExit(stderr, printJSON(stdout, map[string]any{"key": pos[0], "ok": true, "found": w.Found, "version": w.Version, "lsn": w.LSN}))
		}
		switch {
		case !w.Found:
			fmt.Fprintf(stdout, "%q was absent (LSN %d)\n", pos[0], w.LSN)
		case op == "del" || *del:
			fmt.Fprintf(stdout, "%q deleted at LSN %d\n", pos[0], w.LSN)
		default:
			fmt.Fprintf(stdout, "%q at version %d\n", pos[0], w.Version)
		}
		return 0
	case "get":
		item, lsn, err := kc.Get(ctx, key, opts)
		if errors.Is(err, kvclient.ErrNotFound) {
			if *cf.json {
				printJSON(stdout, map[string]any{"key": pos[0], "found": false, "lsn": lsn})
			}
			fmt.Fprintf(stderr, "lockstitch: %q not found (at LSN %d)\n", pos[0], lsn)
			return exitNotFound
		}
		if err != nil {
			return fail(stderr, fmt.Errorf("kv get on partition %d: %w", p, err))
		}
		if *cf.json {
			return jsonExit(stderr, printJSON(stdout, bytesJSON(bytesJSON(map[string]any{"found": true, "version": item.Version, "lsn": lsn}, "key", key), "value", item.Value)))
		}
		fmt.Fprintln(stdout, payloadText(item.Value))
		return 0
	}
	// scan
	from := []byte(*start)
	if *after != "" {
		from = append([]byte(*after), 0)
	}
	res, err := kc.Scan(ctx, kvclient.ScanRequest{Prefix: []byte(*prefix), Start: from, Limit: *limit}, opts)
	if err != nil {
		return fail(stderr, fmt.Errorf("kv scan on partition %d: %w", p, err))
	}
	if *cf.json {
		items := make([]map[string]any, 0, len(res.Items))
		for _, it := range res.Items {
			items = append(items, bytesJSON(bytesJSON(map[string]any{"version": it.Version}, "key", it.Key), "value", it.Value))
		}
		out := map[string]any{"items": items, "more": res.More, "lsn": res.LSN}
		return jsonExit(stderr, printJSON(stdout, out))
	}
	for _, it := range res.Items {
		fmt.Fprintf(stdout, "%s\t%d\t%s\n", payloadText(it.Key), it.Version, payloadText(it.Value))
	}
	if res.More {
		fmt.Fprintf(stderr, "(more keys follow: --after %s)\n", strconv.Quote(string(res.Items[len(res.Items)-1].Key)))
	}
	return 0
}

func jsonExit(stderr io.Writer, err error) int {
	if err != nil {
		return fail(stderr, err)
	}
	return 0
}

// readOptions maps --consistency and --max-staleness, as lockstitch
// query takes them.
func readOptions(consistency string, staleness time.Duration) (transport.QueryOptions, error) {
	opts := transport.QueryOptions{MaxStaleness: staleness}
	switch consistency {
	case "linearizable":
		opts.Consistency = lockstitch.Linearizable
	case "leader":
		opts.Consistency = lockstitch.LeaderLocal
	case "any":
		opts.Consistency = lockstitch.Bounded
	default:
		return opts, fmt.Errorf("--consistency %q is not linearizable, leader or any", consistency)
	}
	return opts, nil
}
