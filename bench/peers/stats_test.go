package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/bench/harness"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var d []time.Duration
		for _, x := range v {
			d = append(d, time.Duration(x)*time.Millisecond)
		}
		return d
	}
	// 1..100 ms: the nearest rank of q is the value q*100 ms.
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{ms(7), 0.5, 7 * time.Millisecond},
		{ms(7), 0.999, 7 * time.Millisecond},
		{ms(1, 2), 0.5, 1 * time.Millisecond},
		{ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{hundred, 0.5, 50 * time.Millisecond},
		{hundred, 0.99, 99 * time.Millisecond},
		{hundred, 0.999, 100 * time.Millisecond},
		{hundred, 1, 100 * time.Millisecond},
		{hundred, 0.01, 1 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.in), tc.q, got, tc.want)
		}
	}
	// 1000 values: p99.9 is the 999th, not the largest.
	var thousand []time.Duration
	for i := 1; i <= 1000; i++ {
		thousand = append(thousand, time.Duration(i))
	}
	if got := percentile(thousand, 0.999); got != 999 {
		t.Errorf("p99.9 of 1..1000 = %v, want 999", got)
	}
}

func TestSummarize(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var lats []time.Duration
	for i := 1; i <= 2000; i++ {
		lats = append(lats, time.Duration(i)*time.Microsecond)
	}
	r.Shuffle(len(lats), func(i, j int) { lats[i], lats[j] = lats[j], lats[i] })
	s := summarize(lats, 2*time.Second, 1024)
	if s.ops != 2000 || s.perSec != 1000 {
		t.Errorf("ops %d, %v/s; want 2000, 1000/s", s.ops, s.perSec)
	}
	if s.mbSec != 1000*1024/1e6 {
		t.Errorf("%v MB/s, want %v", s.mbSec, 1000*1024/1e6)
	}
	if s.p50 != 1000*time.Microsecond || s.p99 != 1980*time.Microsecond || s.p999 != 1998*time.Microsecond {
		t.Errorf("p50 %v p99 %v p99.9 %v; want 1ms, 1.98ms, 1.998ms (summarize must sort)", s.p50, s.p99, s.p999)
	}
	if z := summarize(nil, time.Second, 16); z.ops != 0 || z.perSec != 0 || z.p99 != 0 {
		t.Errorf("no ops: %+v", z)
	}
}

func TestPerMillion(t *testing.T) {
	if got := perMillion(3*time.Second, 1_000_000); got != 3 {
		t.Errorf("3 s over 1M ops: %v s/Mop", got)
	}
	if got := perMillion(time.Second, 0); got != 0 {
		t.Errorf("no ops: %v", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 5},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		in := append([]float64(nil), tc.in...)
		if got := harness.Median(tc.in); got != tc.want {
			t.Errorf("harness.Median(%v) = %v, want %v", in, got, tc.want)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Errorf("median reordered its input: %v", tc.in)
			}
		}
	}
}
