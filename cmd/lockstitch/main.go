package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/kvclient"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: lockstitch <command> [flags]

commands:
  dev                     run a local cluster of three nodes with a partition of each built-in plugin
  serve                   run a node
  append                  append ops to a partition
  tail                    print a partition's ops from an LSN on (--follow to keep going)
  query                   ask a partition's plugin
  status                  show leader, epoch, committed and applied LSNs and lag per partition
  partition create|delete|list|repair
  member add|remove       change a partition's replicas
  leader transfer         move a partition's leadership
  cluster status          show every node: reachable or not, replicas hosted and leading
  cursor ack|reset|delete|list
                          a partition's durable cursors (consumer markers that hold log retention)
  queue push|pop|ack|extend|peek|len
                          a queue partition's items: enqueue, lease, acknowledge (lockstitch queue -h)
  kv put|get|del|cas|scan read and write a partition of the kv plugin (lockstitch kv -h)
  bench append|read|kv    measure a running cluster: throughput and latency every second, then a summary
  hash-token              print the SHA-256 of a token read from stdin (or of a --new one) for an auth file
  version, --version      print the version: module version, VCS revision, Go version

Run lockstitch <command> -h for its synopsis, examples and flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return cmdDev(rest, stdout, stderr)
	case "serve":
		return cmdServe(rest, stdout, stderr)
	case "append":
		return cmdAppend(rest, stdout, stderr)
	case "tail":
		return cmdTail(rest, stdout, stderr)
	case "query":
		return cmdQuery(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "partition":
		return cmdPartition(rest, stdout, stderr)
	case "member":
		return cmdMember(rest, stdout, stderr)
	case "leader":
		return cmdLeader(rest, stdout, stderr)
	case "cluster":
		return cmdCluster(rest, stdout, stderr)
	case "cursor":
		return cmdCursor(rest, stdout, stderr)
	case "queue":
		return cmdQueue(rest, stdout, stderr)
	case "kv":
		return cmdKV(rest, stdout, stderr)
	case "bench":
		return cmdBench(rest, stdout, stderr)
	case "hash-token":
		return cmdHashToken(rest, os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "lockstitch: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// Exit codes (docs/operations.md). 3 is the queue's "nothing ready".
const (
	exitFailure       = 1 // any other failure
	exitUsage         = 2 // an unknown command or flag, a bad argument
	exitUnavailable   = 4 // no node could serve it now: retrying later may succeed
	exitNotFound      = 5 // the partition (or the kv key) does not exist
	exitIndeterminate = 6 // an append (or plugin op) may or may not have been applied
	exitDenied        = 7 // the node refused the credentials, or the principal may not do this
)

// fail prints err as one line and returns its exit code: what a script
// needs to tell apart (retry, give up, check what was applied).
func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "lockstitch: %s\n", errorLine(err))
	return exitCode(err)
}

// exitCode is the exit code of a command that failed with err.
func exitCode(err error) int {
	switch {
	case errors.Is(err, lockstitch.ErrIndeterminate), errors.Is(err, transport.ErrResultLost):
		return exitIndeterminate
	case errors.Is(err, lockstitch.ErrPartitionNotFound), errors.Is(err, kvclient.ErrNotFound):
		return exitNotFound
	case errors.Is(err, transport.ErrUnauthenticated), errors.Is(err, transport.ErrPermissionDenied):
		return exitDenied
	case errors.Is(err, lockstitch.ErrUnavailable), errors.Is(err, lockstitch.ErrBusy),
		errors.Is(err, lockstitch.ErrShuttingDown), errors.Is(err, lockstitch.ErrTimeout):
		return exitUnavailable
	}
	return exitFailure
}

// errorLine is err as one line, said once: the "lockstitch: " of the
// sentinels it wraps is dropped (the line starts with it), and a hint
// follows when the fix is known.
func errorLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", "; ")
	s = strings.TrimPrefix(strings.ReplaceAll(s, ": lockstitch: ", ": "), "lockstitch: ")
	switch {
	case errors.Is(err, lockstitch.ErrPartitionNotFound):
		s += " (lockstitch partition list shows the partitions)"
	case errors.Is(err, transport.ErrUnauthenticated):
		s += " (--token-file or LOCKSTITCH_TOKEN gives the token; docs/security.md)"
	case errors.Is(err, lockstitch.ErrUnavailable) && !strings.Contains(s, "--addr"):
		s += " (is a node running there? --addr or LOCKSTITCH_ADDR names the nodes)"
	}
	return s
}

// usageError prints a usage problem and returns the usage exit code.
func usageError(stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "lockstitch: "+format+"\n", args...)
	return 2
}

// version is the module version, VCS revision and Go version the binary
// was built from (runtime/debug build info): "lockstitch v1.2.3 (revision
// 0123abcd, modified) go1.26.0". A binary built outside a module or a
// repository says "(devel)" or "unknown".
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "lockstitch unknown version (no build info) " + runtime.Version()
	}
	rev, modified := "unknown", ""
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			modified = ", modified"
		}
	}
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	return fmt.Sprintf("lockstitch %s (revision %s%s) %s", v, rev, modified, info.GoVersion)
}
