package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the q quantile (0 < q <= 1) of sorted latencies by
// the nearest-rank method: the smallest value at or above which a
// fraction q of the values lie. It returns 0 for no values.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q*float64(len(sorted)) - 1e-9))
	return sorted[max(0, min(rank-1, len(sorted)-1))]
}

// summary is what a cell's latencies and counts come to.
type summary struct {
	ops            int
	perSec, mbSec  float64
	p50, p99, p999 time.Duration
}

// summarize sorts lats (the latencies of the ops that ended within a
// window of length window, each moving payload bytes) and computes the
// cell's rates and percentiles. MB is 10^6 bytes.
func summarize(lats []time.Duration, window time.Duration, payload int) summary {
	slices.Sort(lats)
	s := summary{ops: len(lats)}
	if window > 0 {
		s.perSec = float64(len(lats)) / window.Seconds()
		s.mbSec = s.perSec * float64(payload) / 1e6
	}
	s.p50, s.p99, s.p999 = percentile(lats, 0.5), percentile(lats, 0.99), percentile(lats, 0.999)
	return s
}

// perMillion returns CPU seconds per million ops.
func perMillion(cpu time.Duration, ops int) float64 {
	if ops == 0 {
		return 0
	}
	return cpu.Seconds() / float64(ops) * 1e6
}
