package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func sampleReport() *report {
	c1, c2 := cell{modeSync, 16, 1}, cell{modePipelined, 1024, 256}
	return &report{
		Commit: "abc1234", Command: "scripts/bench --quick", Mode: "quick", Window: "3s", Warmup: "1s", Clients: 1,
		Machine: machine{CPUs: 2, Model: "Xeon", Kernel: "Linux 6", Go: "go1.26", LoadAvg: "1.00 2.00 3.00", LoadAvgAfter: "4.00 5.00 6.00",
			Fdatasync: &fioSync{IOPS: 14000, P50us: 61, P99us: 1890}, LoopbackMBps: 2383},
		Systems: []systemInfo{
			{Name: "lockstitch", Version: "abc1234", Durability: "quorum fsync before the ack", Short: "quorum fsync", Setup: "3 processes"},
			{Name: "etcd", Version: "3.4.23", Durability: "quorum fsync before the ack", Short: "quorum fsync", Setup: "3 processes"},
		},
		Results: []result{
			{System: "lockstitch", cell: c1, Ops: 3000, OpsPerSec: 1000, MBPerSec: 0.016, P50us: 751, P99us: 3950, P999us: 12345, CPUPerMop: 902.7, ClientCPUPerMop: 90.3, PeakRSSMiB: 130},
			{System: "etcd", cell: c1, Ops: 2400, OpsPerSec: 800, MBPerSec: 0.0128, P50us: 921, P99us: 6020, P999us: 17800, CPUPerMop: 868, ClientCPUPerMop: 220, PeakRSSMiB: 107, Errors: 2},
			{System: "lockstitch", cell: c2, Ops: 276618, OpsPerSec: 92206, MBPerSec: 94.4, P50us: 2140, P99us: 12400, P999us: 25200, CPUPerMop: 8.4, ClientCPUPerMop: 2.4, PeakRSSMiB: 210},
			{System: "etcd", cell: c2, Skipped: "no async API"},
		},
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, sampleReport()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Machine: 2 CPUs (Xeon), Linux 6, go1.26; load average 1.00 2.00 3.00 before, 4.00 5.00 6.00 after.",
		"fio 4 KiB write+fdatasync: 14000/s, fdatasync p50 61 µs, p99 1.89 ms. Loopback TCP, one stream: 2383 MB/s.",
		"| lockstitch | abc1234 | quorum fsync before the ack | 3 processes |",
		"| sync C=1 16 B | lockstitch | quorum fsync | 1,000 | 0.02 | 751 µs | 3.95 ms | 12.3 ms | 902.7 | 90.3 | 130 MiB | 0 |",
		"| sync C=1 16 B | etcd | quorum fsync | 800 | 0.01 | 921 µs | 6.02 ms | 17.8 ms | 868.0 | 220.0 | 107 MiB | 2 |",
		"| pipe C=256 1 KiB | lockstitch | quorum fsync | 92,206 | 94.40 | 2.14 ms | 12.4 ms | 25.2 ms | 8.4 | 2.4 | 210 MiB | 0 |",
		"| pipe C=256 1 KiB | etcd | quorum fsync | - | - | - | - | - | - | - | - | no async API |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("table lacks the line\n%s\nin\n%s", want, out)
		}
	}
	// Every row of the results table has as many cells as its header.
	var header int
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "| cell |") {
			header = strings.Count(l, "|")
		} else if header > 0 && strings.HasPrefix(l, "| ") && strings.Count(l, "|") != header {
			t.Errorf("row with %d bars, header %d: %s", strings.Count(l, "|"), header, l)
		}
	}
	if header == 0 {
		t.Error("no results header")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := sampleReport()
	path := filepath.Join(t.TempDir(), "peers.json")
	var b bytes.Buffer
	if err := writeJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"mode": "pipelined"`, `"payload_bytes": 1024`, `"concurrency": 256`, `"ops_per_sec": 92206`, `"cpu_s_per_mop": 8.4`, `"skipped": "no async API"`, `"durability_short": "quorum fsync"`, `"sync_p99_us": 1890`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := readJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("read back\n%+v\nwant\n%+v", back, r)
	}
}

func TestCellsOf(t *testing.T) {
	got := cellsOf(sampleReport().Results)
	want := []cell{{modeSync, 16, 1}, {modePipelined, 1024, 256}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}

func TestWriteChart(t *testing.T) {
	r := sampleReport()
	var svg bytes.Buffer
	if err := writeChart(&svg, "svg", r); err != nil {
		t.Fatal(err)
	}
	s := svg.String()
	for _, want := range []string{"<svg", "lockstitch (quorum fsync)", "etcd (quorum fsync)", "sync C=1 16 B", "pipe C=256 1 KiB", "ops/s", "p99 latency (ms)", "commit abc1234"} {
		if !strings.Contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	// A result that ran is a point in each of the two panels.
	if n := strings.Count(s, "<path d=\"M") - strings.Count(svgLess(t, r), "<path d=\"M"); n != 2 {
		t.Errorf("%d more paths with one more result, want 2 points", n)
	}
	var pngb bytes.Buffer
	if err := writeChart(&pngb, "png", r); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&pngb)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 400 {
		t.Errorf("PNG of %v", b)
	}
	if err := writeChart(&pngb, "bmp", r); err == nil {
		t.Error("format bmp accepted")
	}
	none := *r
	none.Results = []result{{System: "etcd", cell: cell{modePipelined, 16, 1}, Skipped: "no async API"}}
	if err := writeChart(&pngb, "svg", &none); err == nil {
		t.Error("a chart of nothing drawn")
	}
}

// svgLess draws r's chart with its first result skipped (the axes stay
// the same).
func svgLess(t *testing.T, r *report) string {
	t.Helper()
	c := *r
	c.Results = slices.Clone(r.Results)
	c.Results[0].Skipped = "test"
	var b bytes.Buffer
	if err := writeChart(&b, "svg", &c); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestParseFio(t *testing.T) {
	out, err := os.ReadFile("testdata/fio.json")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parseFio(append([]byte("note: both iodepth >= 1 and synchronous I/O engine are selected\n"), out...))
	if err != nil {
		t.Fatal(err)
	}
	// fio 3.33's output of a 1 s run: write IOPS and the fdatasync
	// latency percentiles (ns in the file).
	if f.IOPS < 14097 || f.IOPS > 14098 || f.P50us != 51.968 || f.P99us != 226.304 {
		t.Errorf("%+v", f)
	}
	if _, err := parseFio([]byte(`{"jobs":[{"write":{"iops":1},"sync":{"lat_ns":{}}}]}`)); err == nil {
		t.Error("no percentiles accepted")
	}
	if _, err := parseFio([]byte(`{"jobs":[]}`)); err == nil {
		t.Error("no jobs accepted")
	}
}

func TestTextHelpers(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 92206.4: "92,206", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := groupDigits(v); got != want {
			t.Errorf("groupDigits(%v) = %q, want %q", v, got, want)
		}
	}
	for v, want := range map[float64]string{61: "61 µs", 999.4: "999 µs", 1890: "1.89 ms", 12345: "12.3 ms"} {
		if got := usText(v); got != want {
			t.Errorf("usText(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestMedianResult(t *testing.T) {
	c := cell{modeSync, 16, 256}
	rs := []result{
		{System: "lockstitch", Run: 1, cell: c, Ops: 300, OpsPerSec: 100, P99us: 9000, CPUPerMop: 5, PeakRSSMiB: 200},
		{System: "lockstitch", Run: 2, cell: c, Ops: 900, OpsPerSec: 300, P99us: 1000, CPUPerMop: 9, PeakRSSMiB: 100, Errors: 1},
		{System: "lockstitch", Run: 3, cell: c, Ops: 600, OpsPerSec: 200, P99us: 5000, CPUPerMop: 7, PeakRSSMiB: 300},
		{System: "lockstitch", Run: 4, cell: c, Skipped: "no op succeeded (4 errors)", Errors: 4},
	}
	m := medianResult(rs)
	want := result{System: "lockstitch", cell: c, Runs: 3, Ops: 1800, Errors: 5, OpsPerSec: 200, P99us: 5000, CPUPerMop: 7, PeakRSSMiB: 200,
		OpsPerSecMin: 100, OpsPerSecMax: 300}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("median\n%+v\nwant\n%+v", m, want)
	}
	// One run: its own result, without a range.
	if one := medianResult(rs[:1]); one.Runs != 0 || one.OpsPerSecMax != 0 || one.OpsPerSec != 100 || one.Run != 0 {
		t.Errorf("one run: %+v", one)
	}
	// No run ran the cell: skipped, errors summed.
	skip := medianResult([]result{rs[3], rs[3]})
	if skip.Skipped == "" || skip.Errors != 8 {
		t.Errorf("all skipped: %+v", skip)
	}
	var b bytes.Buffer
	r := sampleReport()
	r.Runs, r.Results = 3, []result{m}
	if err := writeTable(&b, r); err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"Medians of 3 runs", "| sync C=256 16 B | lockstitch | quorum fsync | 200 (100-300) | 0.00 | 0 µs | 5.00 ms |"} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("table lacks %q:\n%s", line, b.String())
		}
	}
}
