package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// TestAppendResumes interrupts (SIGINT) a bulk `lockstitch append` process
// part way through its input, against three serve processes, then runs
// the command it prints to resume: the stream then holds every input
// line exactly once.
func TestAppendResumes(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 3*time.Minute)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1}); err != nil {
		t.Fatal(err)
	}
	const total = 60000
	input := filepath.Join(t.TempDir(), "ops.txt")
	var b strings.Builder
	for i := 0; i < total; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	if err := os.WriteFile(input, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addrs := strings.Join([]string{c.addr(0, 1), c.addr(0, 2), c.addr(0, 3)}, ",")
	args := []string{"append", "--addr", addrs, "--partition", "1", "--file", input, "--window", "16"}

	run := exec.Command(os.Args[0], args...)
	run.Env = append(os.Environ(), "LOCKSTITCH_TEST_MAIN=1")
	stderr := new(syncBuffer)
	run.Stderr = stderr
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if run.ProcessState == nil {
			run.Process.Kill()
			run.Wait()
		}
	})
	testutil.WaitFor(t, "the append to be part way through", time.Minute, func() bool {
		st, err := cl.PartitionStatus(ctx, 1)
		return err == nil && st.Committed >= 5000
	})
	if err := run.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := run.Wait()
	if code := run.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("interrupted append: %v (exit %d), want exit 1\n%s", err, code, stderr)
	}
	m := regexp.MustCompile(`adding: (--producer \d+ --seq 1 --resume)`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("the interrupted append did not say how to resume:\n%s", stderr)
	}
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if st.Committed >= total {
		t.Fatalf("all %d ops were appended before the interrupt: the test did not interrupt anything", total)
	}
	t.Logf("interrupted at LSN %d:\n%s", st.Committed, stderr)

	code, out, errOut := cli(t, append(args, strings.Fields(m[1])...)...)
	if code != 0 {
		t.Fatalf("resumed append: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("resumed: %s%s", out, errOut)

	// Every line exactly once.
	seen := make([]bool, total)
	var recs transport.Records
	var rec wal.Record
	n := 0
	for from := lockstitch.LSN(1); ; {
		if err := cl.Read(ctx, 1, from, transport.ReadOptions{MaxOps: 10000, MaxBytes: 4 << 20}, &recs); err != nil {
			t.Fatalf("read from %d: %v", from, err)
		}
		got := 0
		for recs.Next(&rec) == nil {
			var i int
			if _, err := fmt.Sscanf(string(rec.Payload), "line %d", &i); err != nil || i < 0 || i >= total {
				t.Fatalf("LSN %d holds %q", rec.LSN, rec.Payload)
			}
			if seen[i] {
				t.Fatalf("line %d is in the stream twice (again at LSN %d)", i, rec.LSN)
			}
			seen[i] = true
			from, got, n = rec.LSN+1, got+1, n+1
		}
		if got == 0 {
			break
		}
	}
	if n != total {
		for i, ok := range seen {
			if !ok {
				t.Fatalf("%d of %d lines in the stream; line %d is missing", n, total, i)
			}
		}
	}
}
