package main

import (
	"fmt"
	"strconv"
	"strings"
)

// Modes of a cell.
const (
	// modeSync is a closed loop: each of Conc workers does one op and
	// waits for its ack before the next.
	modeSync = "sync"
	// modePipelined keeps Conc ops in flight from one submitter per
	// client: it starts ops until Conc are pending, then waits for the
	// oldest.
	modePipelined = "pipelined"
)

// cell is one workload point, run on every system.
type cell struct {
	Mode    string `json:"mode"`
	Payload int    `json:"payload_bytes"`
	Conc    int    `json:"concurrency"`
}

// label is the cell's short name, as in the table and the chart.
func (c cell) label() string {
	m := "sync"
	if c.Mode == modePipelined {
		m = "pipe"
	}
	return fmt.Sprintf("%s C=%d %s", m, c.Conc, sizeText(c.Payload))
}

// sizeText writes a payload size as 16 B, 1 KiB, 16 KiB.
func sizeText(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// quickCells are the quick mode's cells: the corners users ask about
// first, few enough to run every system in under 3 minutes.
var quickCells = []cell{
	{modeSync, 16, 1},
	{modeSync, 16, 256},
	{modeSync, 1024, 16},
	{modeSync, 1024, 256},
	{modePipelined, 16, 256},
}

// fullPlan returns every combination of modes, payloads and
// concurrencies, mode by mode, then payload, then concurrency.
func fullPlan(modes []string, payloads, concs []int) []cell {
	var cells []cell
	for _, m := range modes {
		for _, p := range payloads {
			for _, c := range concs {
				cells = append(cells, cell{Mode: m, Payload: p, Conc: c})
			}
		}
	}
	return cells
}

// systemOrder returns the order in which n systems run cell i: rotated by
// one more with each cell, so that over n cells each system runs once in
// every position (first after a pause, last before the next cell) and the
// machine's drift is shared.
func systemOrder(n, i int) []int {
	o := make([]int, n)
	for k := range o {
		o[k] = (k + i) % n
	}
	return o
}

// parseInts parses a comma-separated list of positive integers; a size
// may end in k or KiB (times 1024).
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		mul := 1
		for _, suf := range []string{"KiB", "k", "K"} {
			if t, ok := strings.CutSuffix(f, suf); ok {
				f, mul = strings.TrimSpace(t), 1024
				break
			}
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n*mul)
	}
	return out, nil
}

// parseModes parses a comma-separated list of modes.
func parseModes(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case modeSync, modePipelined:
			out = append(out, f)
		default:
			return nil, fmt.Errorf("mode %q is not %s or %s", f, modeSync, modePipelined)
		}
	}
	return out, nil
}
