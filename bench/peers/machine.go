package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/lockstitch/lockstitch/bench/harness"
)

// describeMachine fills what is known without measuring.
func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadAvg: harness.LoadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.Model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	return m
}

// fioFdatasync runs fio's sequential 4 KiB writes, each followed by
// fdatasync, in dir for d and returns the rate and the fdatasync latency.
func fioFdatasync(ctx context.Context, fio, dir string, d time.Duration) (*fioSync, error) {
	work, err := os.MkdirTemp(dir, "fio.")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	out, err := exec.CommandContext(ctx, fio, "--name=fdatasync", "--directory="+work, "--rw=write", "--bs=4k",
		"--size=64m", "--ioengine=sync", "--fdatasync=1", "--time_based", fmt.Sprintf("--runtime=%ds", max(1, int(d.Seconds()))),
		"--output-format=json").Output()
	if err != nil {
		return nil, fmt.Errorf("fio: %w", err)
	}
	return parseFio(out)
}

// parseFio reads fio's JSON output: the job's write IOPS and its sync
// (fdatasync) latency percentiles.
func parseFio(out []byte) (*fioSync, error) {
	var doc struct {
		Jobs []struct {
			Write struct {
				IOPS float64 `json:"iops"`
			} `json:"write"`
			Sync struct {
				LatNs struct {
					Percentile map[string]float64 `json:"percentile"`
				} `json:"lat_ns"`
			} `json:"sync"`
		} `json:"jobs"`
	}
	// fio may print notes before the JSON.
	if i := strings.IndexByte(string(out), '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("fio output: %w", err)
	}
	if len(doc.Jobs) != 1 {
		return nil, fmt.Errorf("fio output: %d jobs, want 1", len(doc.Jobs))
	}
	j := doc.Jobs[0]
	p50, ok50 := j.Sync.LatNs.Percentile["50.000000"]
	p99, ok99 := j.Sync.LatNs.Percentile["99.000000"]
	if !ok50 || !ok99 {
		return nil, fmt.Errorf("fio output: no sync latency percentiles")
	}
	return &fioSync{IOPS: j.Write.IOPS, P50us: p50 / 1e3, P99us: p99 / 1e3}, nil
}

// loopbackMBps measures one TCP stream over 127.0.0.1 for d: 64 KiB
// writes, read and dropped at the other end.
func loopbackMBps(ctx context.Context, d time.Duration) (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", l.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	start := time.Now()
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	n := <-got
	return float64(n) / time.Since(start).Seconds() / 1e6, nil
}
