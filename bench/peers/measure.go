package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/lockstitch/lockstitch/bench/harness"
)

// waiter waits for an op started by system.start and returns its outcome.
type waiter func(ctx context.Context) error

// system is a cluster under test (started and stopped by run).
type system interface {
	info() systemInfo
	// do does one op of payload through client number client and waits
	// for its ack.
	do(ctx context.Context, client int, payload []byte) error
	// start starts one op and returns at once (or when the client's own
	// in-flight bound lets it); nil if the system has no pipelined API.
	start(ctx context.Context, client int, payload []byte) waiter
	// pipelined reports whether start is implemented.
	pipelined() bool
	// pids are the system's processes; an in-process system gives this
	// process's.
	pids() []int
	// inProcess reports whether the system runs in this process.
	inProcess() bool
}

// opTimeout bounds one op.
const opTimeout = 10 * time.Second

// measure runs one cell on s: warmup, then window, counting the ops that
// end within the window.
func measure(ctx context.Context, s system, c cell, clients int, warmup, window time.Duration) result {
	res := result{System: s.info().Name, cell: c}
	if c.Mode == modePipelined && !s.pipelined() {
		res.Skipped = "no async API"
		return res
	}
	payload := make([]byte, c.Payload)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	begin := time.Now().Add(warmup)
	end := begin.Add(window)
	type tally struct {
		lats  []time.Duration
		errs  int
		first error
	}
	var tallies []*tally
	done := func(t *tally, t0, t1 time.Time, err error) {
		if t1.Before(begin) || t1.After(end) {
			return
		}
		if err != nil {
			t.errs++
			if t.first == nil {
				t.first = err
			}
			return
		}
		t.lats = append(t.lats, t1.Sub(t0))
	}
	var wg sync.WaitGroup
	if c.Mode == modeSync {
		for w := range c.Conc {
			t := &tally{lats: make([]time.Duration, 0, 1024)}
			tallies = append(tallies, t)
			wg.Go(func() {
				for time.Now().Before(end) && ctx.Err() == nil {
					octx, cancel := context.WithTimeout(ctx, opTimeout)
					t0 := time.Now()
					err := s.do(octx, w%clients, payload)
					done(t, t0, time.Now(), err)
					cancel()
				}
			})
		}
	} else {
		// One submitter per client, each keeping its share of Conc in
		// flight; the oldest is waited for first.
		subs := min(clients, c.Conc)
		for sub := range subs {
			n := c.Conc / subs
			if sub < c.Conc%subs {
				n++
			}
			t := &tally{lats: make([]time.Duration, 0, 1024)}
			tallies = append(tallies, t)
			wg.Go(func() {
				type pending struct {
					w  waiter
					t0 time.Time
				}
				ring := make([]pending, 0, n)
				octx, cancel := context.WithTimeout(ctx, window+warmup+opTimeout)
				defer cancel()
				wait := func(p pending) { err := p.w(octx); done(t, p.t0, time.Now(), err) }
				for time.Now().Before(end) && ctx.Err() == nil {
					if len(ring) == n {
						wait(ring[0])
						ring = append(ring[:0], ring[1:]...)
					}
					ring = append(ring, pending{s.start(octx, sub, payload), time.Now()})
				}
				for _, p := range ring {
					wait(p)
				}
			})
		}
	}
	// CPU and memory over the window.
	pids, self := s.pids(), []int{os.Getpid()}
	var srv0, srv1, cli0, cli1 time.Duration
	var busy0, busy1, total0, total1 int64
	var rss int64
	var mwg sync.WaitGroup
	mwg.Go(func() {
		time.Sleep(time.Until(begin))
		harness.ResetPeakRSS(pids)
		srv0, cli0 = harness.ProcsCPU(pids), harness.ProcsCPU(self)
		busy0, total0 = harness.MachineCPU()
		time.Sleep(time.Until(end))
		srv1, cli1 = harness.ProcsCPU(pids), harness.ProcsCPU(self)
		busy1, total1 = harness.MachineCPU()
		rss = harness.PeakRSS(pids)
	})
	wg.Wait()
	mwg.Wait()

	var all []time.Duration
	var errs []error
	for _, t := range tallies {
		all = append(all, t.lats...)
		res.Errors += t.errs
		if t.first != nil {
			errs = append(errs, t.first)
		}
	}
	sum := summarize(all, window, c.Payload)
	res.Ops, res.OpsPerSec, res.MBPerSec = sum.ops, sum.perSec, sum.mbSec
	res.P50us, res.P99us, res.P999us = us(sum.p50), us(sum.p99), us(sum.p999)
	res.CPUPerMop = perMillion(srv1-srv0, sum.ops)
	if !s.inProcess() {
		res.ClientCPUPerMop = perMillion(cli1-cli0, sum.ops)
	}
	res.PeakRSSMiB = float64(rss) / (1 << 20)
	if total1 > total0 {
		res.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	if res.Errors > 0 {
		log.Printf("peers: %s %s: %d errors, for example: %v", res.System, c.label(), res.Errors, errors.Join(errs...))
	}
	if res.Ops == 0 {
		res.Skipped = fmt.Sprintf("no op succeeded (%d errors)", res.Errors)
	}
	return res
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }
