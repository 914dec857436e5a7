package wal_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/lockstitch/lockstitch/wal"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenRecords are the records of testdata/golden: payloads of several
// sizes, including an empty one.
func goldenRecords() []wal.Record {
	return []wal.Record{
		{LSN: 1, Epoch: 1, Aux: 10, Payload: []byte("hello, lockstitch")},
		{LSN: 2, Epoch: 1, Aux: 11, Payload: nil},
		{LSN: 3, Epoch: 2, Aux: 15, Payload: bytes.Repeat([]byte{0xA5}, 300)},
		{LSN: 4, Epoch: 7, Aux: 1 << 40, Payload: []byte{0}},
	}
}

// TestGoldenSegment pins the on-disk format: a log written with the golden
// records must be byte for byte the committed segment, and the committed
// segment must read back as the golden records. Run with -update to
// rewrite it after an intended format change (which also needs a new
// format version: old files must still decode).
func TestGoldenSegment(t *testing.T) {
	golden := filepath.Join("testdata", "golden", "00000000000000000001.wal")
	dir := t.TempDir()
	cfg := wal.DefaultConfig()
	cfg.Preallocate = false
	cfg.Sync = wal.SyncManual
	l, err := wal.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch(goldenRecords()); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	written, err := os.ReadFile(filepath.Join(dir, "00000000000000000001.wal"))
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, written, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(written, want) {
		t.Fatalf("segment bytes differ from %s: the format changed", golden)
	}

	// The committed file reads back.
	copyDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(copyDir, filepath.Base(golden)), want, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = wal.Open(copyDir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	it, err := l.NewIterator(1)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for _, g := range goldenRecords() {
		var r wal.Record
		if err := it.Next(&r); err != nil {
			t.Fatal(err)
		}
		if r.LSN != g.LSN || r.Epoch != g.Epoch || r.Aux != g.Aux || !bytes.Equal(r.Payload, g.Payload) || r.CRC != wal.Checksum(g.Payload) {
			t.Fatalf("golden record %d read back as %+v", g.LSN, r)
		}
	}
}
