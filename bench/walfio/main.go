package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lockstitch/lockstitch/wal"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure")
	size := flag.String("size", "1GiB", "payload bytes the wal appends per round (KiB, MiB, GiB suffixes)")
	rounds := flag.Int("rounds", 5, "rounds of each side, alternating")
	record := flag.Int("record", 1024, "payload bytes per record")
	batch := flag.Int("batch", 1<<20, "payload bytes per batch; one fsync per batch")
	prealloc := flag.Bool("preallocate", true, "preallocate wal segments")
	flag.Parse()

	total, err := parseSize(*size)
	if err != nil {
		log.Fatalf("walfio: -size: %v", err)
	}
	if _, err := exec.LookPath("fio"); err != nil {
		log.Fatal("walfio: fio not found: install it (apt-get install fio)")
	}
	work, err := os.MkdirTemp(*dir, "walfio-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)

	perBatch := *batch / *record
	batches := int(total / int64(perBatch**record))
	diskBytes := int64(batches) * int64(perBatch) * int64(wal.FrameSize(*record))
	fmt.Printf("dir %s: %d batches of %d x %d B records per round (%d payload bytes, %d bytes on disk); fio writes %d bytes in %d B blocks\n",
		work, batches, perBatch, *record, int64(batches)*int64(perBatch**record), diskBytes, diskBytes, *batch)

	var walRates, fioRates []float64
	for r := 1; r <= *rounds; r++ {
		w, err := runWAL(filepath.Join(work, "wal"), batches, perBatch, *record, *prealloc)
		if err != nil {
			log.Fatalf("walfio: wal round %d: %v", r, err)
		}
		f, err := runFio(filepath.Join(work, "fio.dat"), diskBytes, *batch)
		if err != nil {
			log.Fatalf("walfio: fio round %d: %v", r, err)
		}
		wr := float64(diskBytes) / w.Seconds() / (1 << 20)
		walRates, fioRates = append(walRates, wr), append(fioRates, f)
		fmt.Printf("round %d: wal %7.1f MiB/s on disk (%7.1f MiB/s payload)   fio %7.1f MiB/s   ratio %.2f\n",
			r, wr, wr*float64(*record)/float64(wal.FrameSize(*record)), f, wr/f)
	}
	wm, fm := median(walRates), median(fioRates)
	fmt.Printf("median: wal %.1f MiB/s on disk (%.1f MiB/s payload), fio %.1f MiB/s, wal/fio %.2f\n",
		wm, wm*float64(*record)/float64(wal.FrameSize(*record)), fm, wm/fm)
}

// runWAL appends batches to a fresh log and returns the time from the first
// append to the last fsync.
func runWAL(dir string, batches, perBatch, record int, prealloc bool) (time.Duration, error) {
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	cfg := wal.DefaultConfig()
	cfg.Sync = wal.SyncManual
	cfg.Preallocate = prealloc
	l, err := wal.Open(dir, cfg)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	payload := make([]byte, record)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	recs := make([]wal.Record, perBatch)
	for i := range recs {
		recs[i].Payload = payload
	}
	start := time.Now()
	for range batches {
		for i := range recs {
			recs[i].LSN = 0
		}
		if err := l.AppendBatch(recs); err != nil {
			return 0, err
		}
		if err := l.Sync(); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// runFio writes size bytes with fio and returns its bandwidth in MiB/s.
func runFio(file string, size int64, block int) (float64, error) {
	os.Remove(file)
	defer os.Remove(file)
	out, err := exec.Command("fio", "--name=seqwrite", "--filename="+file, "--rw=write",
		"--bs="+strconv.Itoa(block), "--size="+strconv.FormatInt(size, 10), "--fdatasync=1",
		"--ioengine=psync", "--direct=0", "--output-format=json").Output()
	if err != nil {
		return 0, fmt.Errorf("fio: %w", err)
	}
	var res struct {
		Jobs []struct {
			Write struct {
				BwBytes float64 `json:"bw_bytes"`
			} `json:"write"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Jobs) == 0 {
		return 0, fmt.Errorf("parse fio output: %v", err)
	}
	return res.Jobs[0].Write.BwBytes / (1 << 20), nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
