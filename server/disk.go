package server

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descDataAvail = prometheus.NewDesc("lockstitch_data_dir_available_bytes", "Bytes the filesystem of the node's data directory has available to the node (statfs: blocks available to unprivileged users).", nil, nil)
	descDataSize  = prometheus.NewDesc("lockstitch_data_dir_size_bytes", "Size in bytes of the filesystem of the node's data directory.", nil, nil)
)

// diskCollector exports the space of the filesystem that holds dir at
// scrape time, so that an alert can fire before the disk fills (a full
// disk stops the node's replicas, docs/operations.md section 7). On a
// system without statfs, or when it fails, it exports nothing.
type diskCollector struct{ dir string }

func (c diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDataAvail
	ch <- descDataSize
}

func (c diskCollector) Collect(ch chan<- prometheus.Metric) {
	avail, size, err := diskSpace(c.dir)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descDataAvail, prometheus.GaugeValue, float64(avail))
	ch <- prometheus.MustNewConstMetric(descDataSize, prometheus.GaugeValue, float64(size))
}
