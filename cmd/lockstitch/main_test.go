package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// The tests run the command in-process through run, and run the server
// (lockstitch dev) as a child process: this test binary, re-executed with
// LOCKSTITCH_TEST_MAIN set, acts as the lockstitch binary.
func TestMain(m *testing.M) {
	if os.Getenv("LOCKSTITCH_TEST_MAIN") != "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cli runs a command in-process and returns its exit code and output.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// devProcess is a lockstitch dev child process.
type devProcess struct {
	cmd    *exec.Cmd
	base   int
	stdout io.Reader
	stderr *bytes.Buffer
	exited bool
}

// startDev starts lockstitch dev on a random base port and waits for its
// banner. Its ports are not probed first: when one is taken the child
// exits with "address already in use", and another base is tried.
func startDev(t *testing.T) *devProcess {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		d := &devProcess{base: 20000 + rand.IntN(35000), stderr: new(bytes.Buffer)}
		d.cmd = exec.Command(os.Args[0], "dev", "--base-port", fmt.Sprint(d.base), "--dir", t.TempDir(), "--log-level", "info")
		d.cmd.Env = append(os.Environ(), "LOCKSTITCH_TEST_MAIN=1")
		stdout, err := d.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		d.stdout, d.cmd.Stderr = stdout, d.stderr
		if err := d.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The banner says the cluster is up and its partitions created.
		banner := bufio.NewScanner(stdout)
		for banner.Scan() {
			if strings.Contains(banner.Text(), "Press Ctrl-C to stop") {
				t.Cleanup(func() {
					if !d.exited {
						d.cmd.Process.Kill()
						d.cmd.Wait()
					}
				})
				return d
			}
		}
		d.cmd.Wait()
		if !strings.Contains(d.stderr.String(), "address already in use") {
			t.Fatalf("dev did not start:\n%s", d.stderr.String())
		}
		t.Logf("base port %d is taken, trying another", d.base)
	}
	t.Fatal("no free base port in 5 attempts")
	return nil
}

// epochOf returns the epoch column of the first line of tail's output.
func epochOf(t *testing.T, out string) string {
	t.Helper()
	f := strings.Split(strings.SplitN(out, "\n", 2)[0], "\t")
	if len(f) < 2 {
		t.Fatalf("tail printed %q", out)
	}
	return f[1]
}

func TestDevClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	d := startDev(t)
	cmd, base, stdout, stderr := d.cmd, d.base, d.stdout, d.stderr
	go io.Copy(io.Discard, stdout)
	addr := fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", base+1, base+2, base+3)
	t.Setenv("LOCKSTITCH_ADDR", addr)

	if code, out, errOut := cli(t, "append", "--partition", "1", "first", "second"); code != 0 || !strings.Contains(out, "LSN 2") {
		t.Fatalf("append: %d %q %q", code, out, errOut)
	}
	// A file of ops, one per line.
	file := filepath.Join(t.TempDir(), "ops")
	var lines strings.Builder
	for i := 0; i < 500; i++ {
		fmt.Fprintf(&lines, "line %d\n", i)
	}
	os.WriteFile(file, []byte(lines.String()), 0o644)
	if code, out, errOut := cli(t, "append", "--partition", "1", "--file", file, "--json"); code != 0 || !strings.Contains(out, `"count":500`) || !strings.Contains(out, `"last":502`) {
		t.Fatalf("append --file: %d %q %q", code, out, errOut)
	}
	code, out, errOut := cli(t, "tail", "--partition", "1", "--from", "1", "--limit", "3")
	if code != 0 || !strings.HasSuffix(out, "\tline 0\n") || strings.Count(out, "\n") != 3 || !strings.Contains(out, "\tfirst\n") {
		t.Fatalf("tail: %d %q %q", code, out, errOut)
	}
	if code, out, _ := cli(t, "tail", "--partition", "1", "--from", "500", "--json"); code != 0 || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"text":"line 499"`) {
		t.Fatalf("tail --json: %d %q", code, out)
	}
	if code, out, errOut := cli(t, "tail", "--partition", "1", "--reverse", "--limit", "2"); code != 0 || out != "502\t"+epochOf(t, out)+"\tline 499\n501\t"+epochOf(t, out)+"\tline 498\n" {
		t.Fatalf("tail --reverse --limit 2: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "tail", "--partition", "1", "--reverse", "--from", "2"); code != 0 || !strings.HasPrefix(out, "2\t") || !strings.Contains(out, "\tsecond\n1\t") || strings.Count(out, "\n") != 2 {
		t.Fatalf("tail --reverse --from 2: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "query", "--partition", "1"); code != 0 || !strings.Contains(out, `"lsn":502`) {
		t.Fatalf("query: %d %q %q", code, out, errOut)
	}
	// dev's partition 3 is a queue (1 log, 2 kv).
	if code, out, errOut := cli(t, "queue", "push", "--partition", "3", "job"); code != 0 || out != "1\n" {
		t.Fatalf("queue push: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "queue", "pop", "--partition", "3"); code != 0 || out != "1 1 job\n" {
		t.Fatalf("queue pop: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "status"); code != 0 || !strings.Contains(out, "PARTITION") || !strings.Contains(out, "502") {
		t.Fatalf("status: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "status", "--json"); code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("status --json: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "cursor", "ack", "--partition", "1", "--name", "indexer", "--lsn", "500"); code != 0 || !strings.Contains(out, `"indexer" of partition 1 at LSN 500`) {
		t.Fatalf("cursor ack: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "cursor", "list", "--partition", "1"); code != 0 || !strings.Contains(out, "indexer  500  holds retention") {
		t.Fatalf("cursor list: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "cursor", "delete", "--partition", "1", "--name", "indexer", "--json"); code != 0 || !strings.Contains(out, `"op":"delete"`) {
		t.Fatalf("cursor delete: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "cursor", "list", "--partition", "1", "--json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("cursor list --json: %d %q %q", code, out, errOut)
	}
	if code, _, _ := cli(t, "cursor", "ack", "--partition", "1"); code != 2 {
		t.Fatalf("cursor ack without --name: exit %d, want 2", code)
	}
	if code, out, errOut := cli(t, "partition", "create", "--id", "7", "--replicas", "3"); code != 0 || !strings.Contains(out, "partition 7 created") {
		t.Fatalf("partition create: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "partition", "create", "--id", "20-29", "--parallel", "4", "--timeout", "2m"); code != 0 || !strings.Contains(out, "partitions 20-29 created") {
		t.Fatalf("partition create of a range: %d %q %q", code, out, errOut)
	}
	if code, _, _ := cli(t, "partition", "create", "--id", "29-20"); code != 2 {
		t.Fatalf("partition create --id 29-20: exit %d, want 2", code)
	}
	if code, out, errOut := cli(t, "partition", "list"); code != 0 || !strings.Contains(out, "\n7 ") || !strings.Contains(out, "\n20 ") || !strings.Contains(out, "\n29 ") {
		t.Fatalf("partition list: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli(t, "leader", "transfer", "--partition", "7", "--to", "2"); code != 0 {
		t.Fatalf("leader transfer: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, "member", "remove", "--partition", "7", "--replica", "3"); code != 0 {
		t.Fatalf("member remove: %d %q", code, errOut)
	}
	if code, out, errOut := cli(t, "member", "add", "--partition", "7", "--node", "3"); code != 0 || !strings.Contains(out, "replica 4") {
		t.Fatalf("member add: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := cli(t, "cluster", "status"); code != 0 || strings.Count(out, " up ") != 3 {
		t.Fatalf("cluster status: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := cli(t, "partition", "delete", "--id", "7"); code != 0 {
		t.Fatalf("partition delete: %d %q", code, errOut)
	}
	if code, _, errOut := cli(t, "partition", "create", "--id", "7"); code != 1 || !strings.Contains(errOut, "cannot be used again") {
		t.Fatalf("partition create with a deleted id: %d %q", code, errOut)
	}
	// Failures: one line on stderr, exit code 1; usage errors exit 2.
	if code, out, errOut := cli(t, "append", "--partition", "99", "x"); code != exitNotFound || out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "partition not found") {
		t.Fatalf("append to a missing partition: %d %q %q", code, out, errOut)
	}
	if code, _, _ := cli(t, "tail", "--from", "0"); code != 2 {
		t.Fatalf("tail --from 0: exit %d, want 2", code)
	}

	// The admin port: metrics and pprof.
	admin := fmt.Sprintf("http://127.0.0.1:%d", base+21)
	for path, want := range map[string]string{
		"/metrics":                       "lockstitch_appends_total",
		"/debug/pprof/heap?debug=1":      "heap profile",
		"/debug/pprof/goroutine?debug=1": "goroutine",
		"/readyz":                        "ok",
	} {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}

	// SIGTERM: a clean stop.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		d.exited = true
		if err != nil {
			t.Fatalf("dev exited with %v after SIGTERM:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("dev did not stop within 30s of SIGTERM:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopped") {
		t.Fatalf("no clean stop logged:\n%s", stderr.String())
	}
}

// TestConfigPrecedence checks flag over environment over file over
// default, setting by setting.
func TestConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lockstitch.toml")
	os.WriteFile(file, []byte(`
data-dir = "/from/file"
raft-addr = "file:1"
client-addr = "file:2"
segment-bytes = "32MiB"
rtt = "20ms"
`), 0o644)
	t.Setenv("LOCKSTITCH_RAFT_ADDR", "env:1")
	t.Setenv("LOCKSTITCH_CLIENT_ADDR", "env:2")
	t.Setenv("LOCKSTITCH_ELECTION_RTT", "30")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	s := defaultServeSettings()
	settings := bindSettings(fs, &s)
	if err := fs.Parse([]string{"--client-addr", "flag:2", "--heartbeat-rtt", "2"}); err != nil {
		t.Fatal(err)
	}
	if err := loadSettings(settings, file); err != nil {
		t.Fatal(err)
	}
	def := defaultServeSettings()
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"data-dir (file)", s.DataDir, "/from/file"},
		{"raft-addr (env over file)", s.RaftAddr, "env:1"},
		{"client-addr (flag over env over file)", s.ClientAddr, "flag:2"},
		{"segment-bytes (file, with a unit)", s.SegmentBytes, int64(32 << 20)},
		{"rtt (file)", s.RTT, 20 * time.Millisecond},
		{"election-rtt (env)", s.ElectionRTT, uint64(30)},
		{"heartbeat-rtt (flag)", s.HeartbeatRTT, uint64(2)},
		{"admin-addr (default)", s.AdminAddr, def.AdminAddr},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestBadConfig: every problem is reported, on one line, before anything
// starts, with exit code 1.
func TestBadConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(file, []byte("rtt = \"fast\"\nno-such-setting = 1\n"), 0o644)
	code, out, errOut := cli(t, "serve", "--config", file, "--data-dir", t.TempDir(), "--election-rtt", "2")
	if code != 1 || out != "" {
		t.Fatalf("bad config: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"invalid configuration", "rtt", "not a duration", "unknown setting \"no-such-setting\""} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error %q lacks %q", errOut, want)
		}
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("error is not one line: %q", errOut)
	}
	// Valid syntax, invalid values: caught by validation.
	code, _, errOut = cli(t, "serve", "--data-dir", t.TempDir(), "--election-rtt", "2", "--peers", "1=a")
	if code != 1 || !strings.Contains(errOut, "--election-rtt 2 must be at least 10 x --heartbeat-rtt") || !strings.Contains(errOut, "peers") {
		t.Fatalf("invalid values: exit %d, %q", code, errOut)
	}
	// A decimal size unit: the error suggests the binary one.
	os.WriteFile(file, []byte("max-op-bytes = \"5MB\"\n"), 0o644)
	code, _, errOut = cli(t, "serve", "--config", file, "--data-dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "max-op-bytes") || !strings.Contains(errOut, "write 5MiB") {
		t.Fatalf("max-op-bytes = \"5MB\": exit %d, %q", code, errOut)
	}
	if code, _, _ := cli(t, "serve", "extra"); code != 2 {
		t.Fatalf("serve with an argument: exit %d, want 2", code)
	}
	if code, _, _ := cli(t, "frobnicate"); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}

// TestExitCodes: the failures a script tells apart get their own codes.
func TestExitCodes(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{errors.New("refused"), exitFailure},
		{fmt.Errorf("create: %w", lockstitch.ErrPartitionExists), exitFailure},
		{fmt.Errorf("dial: %w", lockstitch.ErrUnavailable), exitUnavailable},
		{lockstitch.ErrBusy, exitUnavailable},
		{fmt.Errorf("append: %w", lockstitch.ErrPartitionNotFound), exitNotFound},
		{fmt.Errorf("%w: %w", lockstitch.ErrIndeterminate, lockstitch.ErrUnavailable), exitIndeterminate},
		{fmt.Errorf("put: %w", transport.ErrResultLost), exitIndeterminate},
	}
	for _, c := range cases {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
