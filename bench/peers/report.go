package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/lockstitch/lockstitch/bench/harness"
)

// result is one system's figures in one cell.
type result struct {
	System string `json:"system"`
	// Run numbers a run's own result; 0 in a median over runs.
	Run int `json:"run,omitempty"`
	cell
	// Skipped says why the system did not run the cell (empty if it ran).
	Skipped   string  `json:"skipped,omitempty"`
	Ops       int     `json:"ops"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	MBPerSec  float64 `json:"mb_per_sec"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p999_us"`
	// CPUPerMop is CPU seconds (user+system) per million ops of all the
	// system's processes over the window, from /proc; for an in-process
	// system, of this process (its load generator included).
	CPUPerMop float64 `json:"cpu_s_per_mop"`
	// ClientCPUPerMop is the same for this process (the load generator);
	// 0 for an in-process system, whose CPUPerMop includes it.
	ClientCPUPerMop float64 `json:"client_cpu_s_per_mop"`
	// PeakRSSMiB is the sum over the system's processes of each one's
	// peak resident set during the cell (VmHWM, reset before the cell
	// where the kernel allows it).
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// MachineBusy is the share of all CPUs busy over the window
	// (everything on the machine).
	MachineBusy float64 `json:"machine_busy"`
	// Runs is how many runs a median is over, and OpsPerSecMin and
	// OpsPerSecMax the range of their ops/s (0 for one run's result).
	Runs         int     `json:"runs,omitempty"`
	OpsPerSecMin float64 `json:"ops_per_sec_min,omitempty"`
	OpsPerSecMax float64 `json:"ops_per_sec_max,omitempty"`
}

// medianResult returns the median over runs of one system's results in
// one cell: each figure's median on its own (so a row's figures may come
// from different runs), errors and ops summed, and the range of ops/s.
// Runs that did not run the cell are left out; if none did, the first's
// reason is returned.
func medianResult(rs []result) result {
	var ran []result
	for _, r := range rs {
		if r.Skipped == "" {
			ran = append(ran, r)
		}
	}
	if len(ran) == 0 {
		r := rs[0]
		r.Run = 0
		for _, x := range rs[1:] {
			r.Errors += x.Errors
		}
		return r
	}
	if len(rs) == 1 {
		r := rs[0]
		r.Run = 0
		return r
	}
	m := result{System: ran[0].System, cell: ran[0].cell, Runs: len(ran)}
	med := func(f func(result) float64) float64 {
		v := make([]float64, len(ran))
		for i, r := range ran {
			v[i] = f(r)
		}
		return harness.Median(v)
	}
	m.OpsPerSec = med(func(r result) float64 { return r.OpsPerSec })
	m.MBPerSec = med(func(r result) float64 { return r.MBPerSec })
	m.P50us = med(func(r result) float64 { return r.P50us })
	m.P99us = med(func(r result) float64 { return r.P99us })
	m.P999us = med(func(r result) float64 { return r.P999us })
	m.CPUPerMop = med(func(r result) float64 { return r.CPUPerMop })
	m.ClientCPUPerMop = med(func(r result) float64 { return r.ClientCPUPerMop })
	m.PeakRSSMiB = med(func(r result) float64 { return r.PeakRSSMiB })
	m.MachineBusy = med(func(r result) float64 { return r.MachineBusy })
	m.OpsPerSecMin, m.OpsPerSecMax = ran[0].OpsPerSec, ran[0].OpsPerSec
	for _, r := range rs {
		m.Ops += r.Ops
		m.Errors += r.Errors
	}
	for _, r := range ran {
		m.OpsPerSecMin, m.OpsPerSecMax = min(m.OpsPerSecMin, r.OpsPerSec), max(m.OpsPerSecMax, r.OpsPerSec)
	}
	return m
}

// systemInfo describes a system under test.
type systemInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Durability says when the system fsyncs relative to the ack.
	Durability string `json:"durability"`
	// Short is Durability in a few words, for the table's column.
	Short string `json:"durability_short"`
	// Setup says how the system runs (processes, client, storage).
	Setup string `json:"setup"`
}

// machine is what was measured of the machine itself.
type machine struct {
	CPUs    int    `json:"cpus"`
	Model   string `json:"cpu_model"`
	Kernel  string `json:"kernel"`
	Go      string `json:"go"`
	LoadAvg string `json:"load_average_before"`
	// LoadAvgAfter is /proc/loadavg's first three fields at the end.
	LoadAvgAfter string `json:"load_average_after"`
	// Fdatasync is fio's 4 KiB write + fdatasync loop on the data
	// directory's disk (nil if fio was not run).
	Fdatasync *fioSync `json:"fio_fdatasync,omitempty"`
	// LoopbackMBps is one TCP stream's throughput over 127.0.0.1.
	LoopbackMBps float64 `json:"loopback_mb_per_sec"`
}

// fioSync is fio's figures for writes each followed by fdatasync.
type fioSync struct {
	IOPS  float64 `json:"iops"`
	P50us float64 `json:"sync_p50_us"`
	P99us float64 `json:"sync_p99_us"`
}

// report is the JSON document of a run.
type report struct {
	Commit  string       `json:"commit"`
	Command string       `json:"command"`
	Started string       `json:"started"`
	Mode    string       `json:"mode"`
	Window  string       `json:"window"`
	Warmup  string       `json:"warmup"`
	Clients int          `json:"clients"`
	Runs    int          `json:"runs"`
	Machine machine      `json:"machine"`
	Systems []systemInfo `json:"systems"`
	// Results are one per cell and system: with more than one run, the
	// medians over them.
	Results []result `json:"results"`
	// RunResults are each run's own results when there were several.
	RunResults []result `json:"run_results,omitempty"`
}

func writeJSON(w io.Writer, r *report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// writeTable writes the report as Markdown: the machine, the systems and
// their durability, and one row per cell and system, cells in plan order.
func writeTable(w io.Writer, r *report) error {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s, %s; load average %s before, %s after.\n", m.CPUs, m.Model, m.Kernel, m.Go, m.LoadAvg, m.LoadAvgAfter)
	if f := m.Fdatasync; f != nil {
		fmt.Fprintf(&b, "fio 4 KiB write+fdatasync: %.0f/s, fdatasync p50 %s, p99 %s. ", f.IOPS, usText(f.P50us), usText(f.P99us))
	}
	fmt.Fprintf(&b, "Loopback TCP, one stream: %.0f MB/s.\n", m.LoopbackMBps)
	fmt.Fprintf(&b, "Window %s after %s of warm-up per cell; %d client(s) per system.", r.Window, r.Warmup, r.Clients)
	if r.Runs > 1 {
		fmt.Fprintf(&b, " Medians of %d runs, each figure on its own; ops/s with its range.", r.Runs)
	}
	b.WriteString("\n\n")
	b.WriteString("| system | version | durability (fsync vs ack) | setup |\n|---|---|---|---|\n")
	for _, s := range r.Systems {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.Name, s.Version, s.Durability, s.Setup)
	}
	b.WriteString("\n| cell | system | fsync | ops/s | MB/s | p50 | p99 | p99.9 | CPU s/Mop | client CPU s/Mop | peak RSS | errors |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	short := map[string]string{}
	for _, s := range r.Systems {
		short[s.Name] = s.Short
	}
	for _, x := range r.Results {
		if x.Skipped != "" {
			fmt.Fprintf(&b, "| %s | %s | %s | - | - | - | - | - | - | - | - | %s |\n", x.label(), x.System, short[x.System], x.Skipped)
			continue
		}
		client := "-"
		if x.ClientCPUPerMop > 0 {
			client = fmt.Sprintf("%.1f", x.ClientCPUPerMop)
		}
		rate := groupDigits(x.OpsPerSec)
		if x.Runs > 1 {
			rate += fmt.Sprintf(" (%s-%s)", groupDigits(x.OpsPerSecMin), groupDigits(x.OpsPerSecMax))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f | %s | %s | %s | %.1f | %s | %.0f MiB | %d |\n",
			x.label(), x.System, short[x.System], rate, x.MBPerSec,
			usText(x.P50us), usText(x.P99us), usText(x.P999us), x.CPUPerMop, client, x.PeakRSSMiB, x.Errors)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// usText writes microseconds as µs below 1 ms, else as ms.
func usText(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 10000:
		return fmt.Sprintf("%.2f ms", us/1000)
	default:
		return fmt.Sprintf("%.1f ms", us/1000)
	}
}

// groupDigits writes a rate rounded to a whole number with thousands
// separated by commas.
func groupDigits(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// cellsOf returns the distinct cells of results, in their first order.
func cellsOf(results []result) []cell {
	var cells []cell
	for _, x := range results {
		if !slices.Contains(cells, x.cell) {
			cells = append(cells, x.cell)
		}
	}
	return cells
}

func readJSON(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}
