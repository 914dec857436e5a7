//go:build unix

package server

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

// TestDiskCollector checks the data directory gauges against statfs, and
// that a directory that does not exist exports nothing.
func TestDiskCollector(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(diskCollector{dir: dir})
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	size := float64(uint64(st.Blocks) * uint64(st.Bsize))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
	}
	if got["lockstitch_data_dir_size_bytes"] != size || size == 0 {
		t.Errorf("lockstitch_data_dir_size_bytes = %v, want %v from statfs", got["lockstitch_data_dir_size_bytes"], size)
	}
	// Available space moves with other writers: it is only bounded.
	if a := got["lockstitch_data_dir_available_bytes"]; a <= 0 || a > size {
		t.Errorf("lockstitch_data_dir_available_bytes = %v, want in (0, %v]", a, size)
	}
	if n := testutil.CollectAndCount(diskCollector{dir: dir + "/missing"}); n != 0 {
		t.Errorf("a missing directory exported %d series, want none", n)
	}
}
