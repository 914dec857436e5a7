package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestHelp walks every command of the top-level usage and every
// subcommand, asking each for -h and --help: each prints, on stdout and
// with exit 0, a synopsis and at least one example.
func TestHelp(t *testing.T) {
	var cmds []string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z-]+)`).FindAllStringSubmatch(usage, -1) {
		cmds = append(cmds, m[1])
	}
	if len(cmds) < 14 {
		t.Fatalf("found %d commands in the usage: %q", len(cmds), cmds)
	}
	for name := range helps {
		if g, _, ok := strings.Cut(name, " "); ok {
			cmds = append(cmds, name)
			if !strings.Contains(usage, "  "+g+" ") {
				t.Errorf("subcommand %q of a command the usage does not list", name)
			}
		}
	}
	example := regexp.MustCompile(`(?m)^examples:\n  lockstitch [a-z]`)
	for _, cmd := range cmds {
		if cmd == "version" {
			continue
		}
		for _, h := range []string{"-h", "--help"} {
			args := append(strings.Fields(cmd), h)
			code, out, errOut := cli(t, args...)
			if code != 0 || errOut != "" {
				t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
			}
			if !strings.HasPrefix(out, "usage: lockstitch "+strings.Fields(cmd)[0]) {
				t.Errorf("%q: no synopsis:\n%s", args, out)
			}
			if !example.MatchString(out) {
				t.Errorf("%q: no example:\n%s", args, out)
			}
		}
	}
	code, out, _ := cli(t, "--version")
	if code != 0 || !regexp.MustCompile(`^lockstitch \S+ \(revision \S+?(, modified)?\) go1\.\d+`).MatchString(out) {
		t.Errorf("--version: exit %d, %q", code, out)
	}
}

// TestUsageErrors checks that a usage error is one line that starts with
// lockstitch: and says where the help is, with exit code 2.
func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"append", "--bogus"}, {"tail", "--from", "x"}, {"partition", "bogus"}, {"status", "extra"},
		{"partition"}, {"cursor", "list", "--bogus"},
	} {
		code, out, errOut := cli(t, args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "lockstitch") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
		if len(args) > 1 && strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: not one line: %q", args, errOut)
		}
	}
}
