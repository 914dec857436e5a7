package main

import (
	"slices"
	"testing"
)

func TestFullPlan(t *testing.T) {
	cells := fullPlan([]string{modeSync, modePipelined}, []int{16, 128, 1024, 16384}, []int{1, 16, 256, 1024})
	if len(cells) != 32 {
		t.Fatalf("%d cells, want 2 x 4 x 4 = 32", len(cells))
	}
	// Mode, then payload, then concurrency; each combination once.
	want := []cell{{modeSync, 16, 1}, {modeSync, 16, 16}, {modeSync, 16, 256}, {modeSync, 16, 1024}, {modeSync, 128, 1}}
	if !slices.Equal(cells[:5], want) {
		t.Errorf("first cells %v, want %v", cells[:5], want)
	}
	if last := cells[31]; last != (cell{modePipelined, 16384, 1024}) {
		t.Errorf("last cell %v", last)
	}
	seen := map[cell]bool{}
	for _, c := range cells {
		if seen[c] {
			t.Errorf("cell %v twice", c)
		}
		seen[c] = true
	}
}

func TestQuickPlanIsInFullPlan(t *testing.T) {
	full := fullPlan([]string{modeSync, modePipelined}, []int{16, 128, 1024, 16384}, []int{1, 16, 256, 1024})
	for _, c := range quickCells {
		if !slices.Contains(full, c) {
			t.Errorf("quick cell %v is not in the full plan", c)
		}
	}
	// 3 s windows and 1 s warm-ups for 4 systems (etcd skips the
	// pipelined cell) must leave room for start-up and fio in 3 minutes.
	runs := 0
	for _, c := range quickCells {
		runs += 3
		if c.Mode == modeSync {
			runs++
		}
	}
	if secs := runs * 4; secs > 120 {
		t.Errorf("the quick plan measures for %d s", secs)
	}
}

func TestSystemOrder(t *testing.T) {
	const n = 4
	pos := make([][]int, n) // pos[system] = positions it took
	for i := range n {
		o := systemOrder(n, i)
		s := slices.Clone(o)
		slices.Sort(s)
		if !slices.Equal(s, []int{0, 1, 2, 3}) {
			t.Fatalf("cell %d: order %v is not a permutation", i, o)
		}
		for p, k := range o {
			pos[k] = append(pos[k], p)
		}
	}
	for k, ps := range pos {
		slices.Sort(ps)
		if !slices.Equal(ps, []int{0, 1, 2, 3}) {
			t.Errorf("system %d took positions %v over %d cells, want each once", k, ps, n)
		}
	}
	if o := systemOrder(1, 7); !slices.Equal(o, []int{0}) {
		t.Errorf("one system: %v", o)
	}
}

func TestParseInts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"16,128,1k,16k", []int{16, 128, 1024, 16384}},
		{" 1, 16 ,256", []int{1, 16, 256}},
		{"2KiB,4K", []int{2048, 4096}},
	} {
		got, err := parseInts(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseInts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "x", "1,,2", "1.5k"} {
		if got, err := parseInts(bad); err == nil {
			t.Errorf("parseInts(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseModes(t *testing.T) {
	got, err := parseModes("sync, pipelined")
	if err != nil || !slices.Equal(got, []string{modeSync, modePipelined}) {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := parseModes("async"); err == nil {
		t.Error("async accepted")
	}
}

func TestCellLabel(t *testing.T) {
	for c, want := range map[cell]string{
		{modeSync, 16, 1}:           "sync C=1 16 B",
		{modePipelined, 16384, 256}: "pipe C=256 16 KiB",
		{modeSync, 1000, 16}:        "sync C=16 1000 B",
	} {
		if got := c.label(); got != want {
			t.Errorf("%v: %q, want %q", c, got, want)
		}
	}
}
