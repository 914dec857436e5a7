package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestOutputShapes and deploy/grafana/lockstitch.json (TestDashboard)")

// golden compares got, with its epochs and producer ids (which vary from
// run to run) replaced by E and P, with testdata/name; -update rewrites
// the file.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = regexp.MustCompile(`"epoch":\d+`).ReplaceAllString(got, `"epoch":E`)
	got = regexp.MustCompile(`"producer":\d+`).ReplaceAllString(got, `"producer":P`)
	got = regexp.MustCompile(`(?m)^(\d+)\t\d+\t`).ReplaceAllString(got, "$1\tE\t")
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", name, got, want)
	}
}

// TestOutputShapes holds the text and --json output of append, tail,
// query, status and partition list stable (golden files in testdata), and checks that a binary op
// goes through append --op-file and tail --json byte for byte.
func TestOutputShapes(t *testing.T) {
	c, ctx, cl := serveTest(t, 1, time.Minute)
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Nodes: []lockstitch.NodeID{1}}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	binary := []byte{0, 1, 0xff, '\t', '\n', 'x', 0xc3} // not UTF-8, with a tab and a newline
	os.WriteFile(bin, binary, 0o644)
	lines := filepath.Join(dir, "lines")
	// Text that looks like the old hex form, a tab, a leading quote,
	// non-ASCII text and an empty line.
	os.WriteFile(lines, []byte("0x0001ff\na\tb\n\"quoted\"\nhéllo wörld\n\n"), 0o644)
	one := filepath.Join(dir, "one")
	os.WriteFile(one, []byte("single\n"), 0o644)
	addr := "--addr=" + c.addr(0, 1)

	run := func(args ...string) string {
		t.Helper()
		code, out, errOut := cli(t, append(append(strings.Fields(args[0]), addr), args[1:]...)...)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errOut)
		}
		return out
	}
	golden(t, "append-op-file.json", run("append", "--partition", "1", "--op-file", bin, "--json"))
	golden(t, "append-args.json", run("append", "--partition", "1", "--json", "one", "two"))
	golden(t, "append-file.json", run("append", "--partition", "1", "--file", lines, "--json"))
	golden(t, "append-one.txt", regexp.MustCompile(` in \S+\n`).ReplaceAllString(run("append", "--partition", "1", "--file", one), " in T\n"))
	tailJSON := run("tail", "--partition", "1", "--from", "1", "--json")
	golden(t, "tail.json", tailJSON)
	golden(t, "tail.txt", run("tail", "--partition", "1", "--from", "1"))
	golden(t, "query.json", run("query", "--partition", "1", "--json"))
	status := run("status", "--json")
	// Addresses are learned, and progress reported, in the background:
	// their values vary, not the shape.
	status = regexp.MustCompile(`"(addr|leader_addr)":"[^"]*"`).ReplaceAllString(status, `"$1":"ADDR"`)
	status = regexp.MustCompile(`,"report_age_seconds":[0-9.e+-]+`).ReplaceAllString(status, "")
	status = regexp.MustCompile(`"applied":\d+,"down"`).ReplaceAllString(status, `"applied":N,"down"`)
	status = regexp.MustCompile(`"lag":\d+`).ReplaceAllString(status, `"lag":N`)
	golden(t, "status.json", status)
	golden(t, "partition-list.json", run("partition list", "--json"))

	// The round trip: LSN 1 is the file's bytes.
	var rec struct {
		LSN     uint64  `json:"lsn"`
		Payload []byte  `json:"payload"`
		Text    *string `json:"text"`
	}
	if err := json.Unmarshal([]byte(tailJSON[:bytes.IndexByte([]byte(tailJSON), '\n')]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.LSN != 1 || !bytes.Equal(rec.Payload, binary) || rec.Text != nil {
		t.Fatalf("LSN %d: payload %q, text %v; want LSN 1 payload %q and no text", rec.LSN, rec.Payload, rec.Text, binary)
	}
}
