package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// helpText is what `lockstitch <command> -h` prints before the flags.
type helpText struct {
	synopsis string   // after "usage: lockstitch "
	about    string   // what the command does, one paragraph
	examples []string // command lines, after "lockstitch "
}

// helps holds every command's and subcommand's help, by the name of its
// flag set. TestHelp walks it and the groups.
var helps = map[string]helpText{
	"dev": {"dev [flags]", "Runs a local cluster on 127.0.0.1 with a partition of each built-in plugin (1 log, 2 kv, 3 queue), until interrupted.",
		[]string{"dev", "dev --base-port 41000 --dir /tmp/ls-dev"}},
	"serve": {"serve [flags]", "Runs a Lockstitch node. Every flag is also an environment variable (LOCKSTITCH_ and the flag's name in capitals, - as _) and a key of the --config TOML file; flags override the environment, which overrides the file. A client or Raft port on a non-loopback address needs TLS, or --insecure.",
		[]string{"serve --id 1 --data-dir /var/lib/lockstitch --peers 1=10.0.0.1:7410/10.0.0.1:7400,2=10.0.0.2:7410/10.0.0.2:7400,3=10.0.0.3:7410/10.0.0.3:7400",
			"serve --config /etc/lockstitch.toml",
			"serve --id 1 --client-listen 0.0.0.0:7400 --tls-cert node1.crt --tls-key node1.key --tls-ca ca.crt --raft-tls (docs/security.md)"}},
	"append": {"append [flags] [op ...]", "Appends each argument as an op; with no argument (or --file), one op per line of the file or stdin; with --op-file, the file's bytes as one op.",
		[]string{"append --partition 1 hello world", "append --partition 1 --file ops.txt", "append --partition 1 --op-file image.bin --json"}},
	"tail": {"tail [flags]", "Prints a partition's ops from an LSN on: LSN, epoch and payload, tab-separated (see docs/operations.md for how payloads are escaped), or one JSON object per op with --json. --follow keeps printing as ops commit.",
		[]string{"tail --partition 1 --from 1", "tail --partition 1 --follow --json", "tail --partition 1 --reverse --limit 10"}},
	"query": {"query [flags] [request]", "Sends request (default empty) to a partition's plugin and prints its answer. The log plugin answers an empty request with its last LSN.",
		[]string{"query --partition 1", "query --partition 1 --consistency any --max-staleness 5s --json"}},
	"status": {"status [flags]", "Shows every node listed and the partitions they host: leader, epoch, committed and applied LSNs, and each replica's lag. Exits 1 when a partition has no leader. --watch shows it again every interval until Ctrl-C.",
		[]string{"status", "status --partition 1 --json", "status --watch 5s"}},
	"partition create": {"partition create --id N|FIRST-LAST [flags]", "Creates a partition (or a range of them, --parallel at a time): its replicas on the nodes given, or spread over the cluster, and its witnesses.",
		[]string{"partition create --id 4 --plugin kv", "partition create --id 5 --nodes 1,2,3 --option max_deliveries=3 --plugin queue",
			"partition create --id 6 --replicas 2 --witnesses 1", "partition create --id 100-199 --parallel 32"}},
	"partition delete": {"partition delete --id N", "Deletes a partition and its data on every node. Its id cannot be used again.",
		[]string{"partition delete --id 4"}},
	"partition list": {"partition list", "Lists the partitions: plugin, leader and replicas.",
		[]string{"partition list", "partition list --json"}},
	"partition repair": {"partition repair --id N --node NODE", "Rebuilds a node's quarantined replica of a partition from its peers.",
		[]string{"partition repair --id 1 --node 2"}},
	"member add": {"member add --partition P --node NODE [--kind voter|non-voting|witness]", "Adds a replica of a partition on a node; it catches up, then serves.",
		[]string{"member add --partition 1 --node 4", "member add --partition 1 --node 5 --kind witness"}},
	"member remove": {"member remove --partition P --replica R", "Removes a replica from a partition.",
		[]string{"member remove --partition 1 --replica 3"}},
	"leader transfer": {"leader transfer --partition P --to REPLICA", "Moves a partition's leadership to one of its replicas.",
		[]string{"leader transfer --partition 1 --to 2"}},
	"cluster status": {"cluster status", "Shows every node: reachable or not, the replicas it hosts and leads.",
		[]string{"cluster status", "cluster status --json"}},
	"cursor ack": {"cursor ack --partition P --name N --lsn L", "Records that the consumer of cursor N holds every op up to LSN L (it only moves forward).",
		[]string{"cursor ack --partition 1 --name billing --lsn 1200"}},
	"cursor reset": {"cursor reset --partition P --name N --lsn L", "Sets cursor N to LSN L, backwards too.",
		[]string{"cursor reset --partition 1 --name billing --lsn 0"}},
	"cursor delete": {"cursor delete --partition P --name N", "Deletes cursor N: it no longer holds log retention.",
		[]string{"cursor delete --partition 1 --name billing"}},
	"hash-token": {"hash-token [--new] < token", "Prints the SHA-256 (hex) of the token on stdin, what a principal's token_sha256 holds in an auth file (serve --auth-file); with --new, makes a random token and prints it and its SHA-256.",
		[]string{"hash-token --new", "hash-token < client.token"}},
	"cursor list": {"cursor list --partition P", "Lists a partition's cursors and their LSNs.",
		[]string{"cursor list --partition 1 --json"}},
	"queue push":   {"queue push --partition P [item ...]", "Enqueues each argument, or each line of stdin.", []string{"queue push --partition 3 job-1 job-2"}},
	"queue pop":    {"queue pop --partition P [--lease 30s]", "Leases the first ready item and prints its id and delivery number (exit 3 if none is ready).", []string{"queue pop --partition 3 --lease 1m"}},
	"queue ack":    {"queue ack --partition P --id I --delivery D", "Acknowledges a delivery: the item is removed.", []string{"queue ack --partition 3 --id 7 --delivery 1"}},
	"queue extend": {"queue extend --partition P --id I --delivery D [--lease 30s]", "Moves a delivery's lease deadline.", []string{"queue extend --partition 3 --id 7 --delivery 1 --lease 2m"}},
	"queue peek":   {"queue peek --partition P [--list ready|leased|dead] [--limit N]", "Shows the first items of a list, leasing nothing.", []string{"queue peek --partition 3 --list dead"}},
	"queue len":    {"queue len --partition P", "Counts the ready, leased and dead-lettered items.", []string{"queue len --partition 3 --json"}},
	"bench append": {"bench append [flags]", "Measures appends to a partition: --concurrency workers, each appending and waiting for the answer (or keeping --async appends in flight), over --clients client connections. Prints ops/s, MB/s and the p50 and p99 latency of every second, then a summary of the measured window: ops, errors by kind, ops/s, MB/s, p50, p90, p99, p99.9 and max latency. Ctrl-C prints the summary so far.",
		[]string{"bench append --partition 1 --size 16 --concurrency 256 --duration 10s", "bench append --size 1024 --concurrency 16 --json", "bench append --concurrency 1 --async 256", "bench append --concurrency 64 --rate 5000"}},
	"bench read": {"bench read [flags]", "Measures reading a partition's stream: --concurrency subscribers, each from --from to the LSN committed when the bench starts (with --follow, on as ops commit until --duration). Prints ops/s and MB/s of every second, then a summary.",
		[]string{"bench read --partition 1 --from 1", "bench read --partition 1 --concurrency 4 --follow --duration 30s"}},
	"bench kv": {"bench kv [flags]", "Measures puts and gets on a partition of the kv plugin: --concurrency workers, each doing a get (a --reads fraction of the ops) or a put of a key drawn from --keys. Prints ops/s, MB/s, p50 and p99 of every second, then a summary with the latencies of puts and gets apart.",
		[]string{"bench kv --partition 2 --reads 0.9 --concurrency 64", "bench kv --reads 0 --size 1024 --json"}},
	"kv put":  {"kv put [flags] KEY VALUE", "Sets KEY to VALUE.", []string{"kv put greeting hello"}},
	"kv get":  {"kv get [flags] KEY", "Prints KEY's value (exit 1 if absent).", []string{"kv get greeting --json"}},
	"kv del":  {"kv del [flags] KEY", "Deletes KEY.", []string{"kv del greeting"}},
	"kv cas":  {"kv cas [flags] KEY [VALUE] --version V", "Sets KEY to VALUE if its version is V (0: if absent); with --delete and no VALUE, deletes it instead.", []string{"kv cas greeting bye --version 12"}},
	"kv scan": {"kv scan [--prefix P] [--start S | --after K] [--limit N]", "Prints the keys that begin with P, from S on (or after K): key, version and value, tab-separated.", []string{"kv scan --prefix user/ --limit 10"}},
}

// groups are the commands made of subcommands, with their one-line
// descriptions for the group's help.
var groups = map[string]string{
	"partition": "create, delete, list or repair partitions",
	"member":    "add or remove a partition's replicas",
	"leader":    "move a partition's leadership",
	"cluster":   "show the cluster's nodes",
	"cursor":    "a partition's durable cursors (consumer markers that hold log retention)",
	"bench":     "measure appends, reads or kv ops against a running cluster",
}

// subcommands returns a group's subcommands, sorted.
func subcommands(group string) []string {
	var subs []string
	for name := range helps {
		if g, sub, ok := strings.Cut(name, " "); ok && g == group {
			subs = append(subs, sub)
		}
	}
	sort.Strings(subs)
	return subs
}

// groupHelp handles a group command's arguments before its subcommand is
// known: none (a usage error, exit 2) or a request for help (help on
// stdout, exit 0). ok is false when it handled them.
func groupHelp(group string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if len(args) > 0 && !isHelp(args[0]) {
		return 0, true
	}
	if len(args) == 0 {
		return usageError(stderr, "%s needs a command: %s (lockstitch %s -h for help)", group, strings.Join(subcommands(group), ", "), group), false
	}
	w := stdout
	fmt.Fprintf(w, "usage: lockstitch %s <command> [flags]\n\n%s.\n\ncommands:\n", group, strings.ToUpper(groups[group][:1])+groups[group][1:])
	subs := subcommands(group)
	for _, sub := range subs {
		h := helps[group+" "+sub]
		fmt.Fprintf(w, "  %-10s %s\n", sub, h.about)
	}
	fmt.Fprintf(w, "\nexamples:\n")
	for _, sub := range subs {
		fmt.Fprintf(w, "  lockstitch %s\n", helps[group+" "+sub].examples[0])
	}
	fmt.Fprintf(w, "\nRun lockstitch %s <command> -h for its flags.\n", group)
	return 0, false
}

// unknownSub reports an unknown subcommand of a group as a usage error.
func unknownSub(stderr io.Writer, group, sub string) int {
	return usageError(stderr, "unknown %s command %q: %s (lockstitch %s -h for help)", group, sub, strings.Join(subcommands(group), ", "), group)
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// parseFlags parses a command's flags. -h prints the command's help to
// stdout (exit 0); a bad flag is one line on stderr (exit 2). ok is false
// when the command should return code.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if err == nil {
		return 0, true
	}
	if errors.Is(err, flag.ErrHelp) {
		printHelp(stdout, fs)
		return 0, false
	}
	return usageError(stderr, "%s: %v (lockstitch %s -h for help)", fs.Name(), err, fs.Name()), false
}

// printHelp prints a command's synopsis, description, examples and
// flags.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	h, ok := helps[fs.Name()]
	if !ok {
		panic("no help for command " + fs.Name()) // TestHelp walks them all
	}
	fmt.Fprintf(w, "usage: lockstitch %s\n\n%s\n\nexamples:\n", h.synopsis, h.about)
	for _, e := range h.examples {
		fmt.Fprintf(w, "  lockstitch %s\n", e)
	}
	fmt.Fprintf(w, "\nflags:\n")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}
