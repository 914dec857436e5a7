package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	o, err := parseOptions([]string{"-lockstitch", "/x", "-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.cells, quickCells) || o.window != 3*time.Second || !slices.Equal(o.systems, allSystems) || o.runs != 1 {
		t.Errorf("quick: %+v", o)
	}
	o, err = parseOptions([]string{"-lockstitch", "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.cells) != 32 || o.window != 5*time.Second {
		t.Errorf("default (full): %d cells, window %v", len(o.cells), o.window)
	}
	o, err = parseOptions([]string{"-systems", "etcd,jetstream", "-modes", "sync", "-payloads", "1k", "-conc", "8,64", "-window", "2s"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []cell{{modeSync, 1024, 8}, {modeSync, 1024, 64}}; !slices.Equal(o.cells, want) || o.window != 2*time.Second {
		t.Errorf("chosen cells %v (window %v), want %v", o.cells, o.window, want)
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-quick"}, "-lockstitch is required"},
		{[]string{"-systems", "lockstitch-kv"}, "-lockstitch is required"},
		{[]string{"-lockstitch", "/x", "-quick", "-full"}, "exclude each other"},
		{[]string{"-systems", "redis"}, `unknown system "redis"`},
		{[]string{"-systems", "etcd", "-conc", "0"}, "-conc"},
		{[]string{"-systems", "etcd", "-runs", "0"}, "-runs"},
		{[]string{"-replot", "peers.json"}, "-replot needs -out"},
		{[]string{"-systems", "etcd", "extra"}, "unexpected arguments"},
	} {
		_, err := parseOptions(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: %v, want an error with %q", tc.args, err, tc.err)
		}
	}
}
