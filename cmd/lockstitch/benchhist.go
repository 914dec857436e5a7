package main

import (
	"strconv"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are kept in HDR histograms (github.com/HdrHistogram/hdrhistogram-go,
// the Go port of Gil Tene's HdrHistogram, already in the module graph through
// pebble): fixed memory, recording in constant time, and every value within
// 0.1% (three significant digits) of what was recorded, from 1 µs to 1 min.
const (
	histLowest  = 1                         // µs
	histHighest = int64(time.Minute / 1000) // µs; longer latencies are recorded as 1 min
	histDigits  = 3
)

// newHist returns an empty latency histogram, in microseconds.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// recordLatency records d in h, clamped to the histogram's range.
func recordLatency(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	us = min(max(us, histLowest), histHighest)
	h.RecordValue(us) // in range: cannot fail
}

// latencySummary is the percentiles of a histogram, in microseconds.
type latencySummary struct {
	P50  int64 `json:"p50"`
	P90  int64 `json:"p90"`
	P99  int64 `json:"p99"`
	P999 int64 `json:"p999"`
	Max  int64 `json:"max"`
}

// quantile returns the q quantile (0 < q <= 1) of h in µs: the smallest
// recorded value (to within 0.1%) that at least q of the values are at or
// below. The library's ValueAtQuantile takes a percentage, despite its
// name; this takes a fraction.
func quantile(h *hdrhistogram.Histogram, q float64) int64 {
	return h.ValueAtPercentile(q * 100)
}

// summarize returns h's percentiles.
func summarize(h *hdrhistogram.Histogram) latencySummary {
	return latencySummary{
		P50:  quantile(h, 0.50),
		P90:  quantile(h, 0.90),
		P99:  quantile(h, 0.99),
		P999: quantile(h, 0.999),
		Max:  h.Max(),
	}
}

// usText formats a latency in µs for a line of text: "850µs", "1.29ms",
// "23.1ms", "1.20s".
func usText(us int64) string {
	switch {
	case us < 1000:
		return time.Duration(us * 1000).String()
	case us < 10_000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 2, 64) + "ms"
	case us < 1_000_000:
		return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(float64(us)/1e6, 'f', 2, 64) + "s"
}
