package replicator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstitch/lockstitch/wal"
)

// batcher coalesces a leader's concurrent appends to one partition into
// Raft entries (see entry.go), so Raft's per-entry costs are paid once per
// batch. Each op keeps its own LSN and result.
//
// Appends go into the open batch under mu. It is a group commit: a full
// batch is proposed as soon as one of MaxInflightBatches slots is free,
// and the open, partial batch once nothing is in flight. When a batch
// completes, its callers tend to append again at once, so the open batch
// then waits, up to BatchLinger, until as many ops have been appended as
// the batch had: the appenders stay in one cohort per Raft round trip
// instead of splitting into many small batches, each paying Raft's
// per-proposal costs. Under light load an append is proposed at once.
// The queue (open, ready and in-flight batches) is bounded by
// MaxPendingOps and MaxPendingBytes; beyond them appends fail at once
// with ErrBusy.
type batcher struct {
	p   *partition
	cfg *Config

	mu sync.Mutex
	// proposeMu orders proposals: it is taken while mu is held and the
	// next batch taken, and held through Propose, so batches reach Raft
	// in the order they were queued. A producer's sequences stay in
	// order, and so do its LSNs. Lock order: mu, then proposeMu.
	proposeMu    sync.Mutex
	open         *batch
	ready        []*batch // full, waiting for a slot
	pendingOps   int
	pendingBytes int64
	inflight     int
	closed       bool
	// away counts the ops of completed batches whose callers have not
	// appended again (as far as the batcher can tell: it counts ops, not
	// callers). While it is above zero the open batch waits for them, but
	// no later than gatherUntil, the last completion plus BatchLinger.
	away        int
	gatherUntil time.Time
	// armed is the deadline the run goroutine's timer is set for.
	armed time.Time

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

type batch struct {
	bufp    *[]byte // from batchBuffers; buf is *bufp grown
	buf     []byte
	waiters []Completion
	starts  []time.Time // when each op was queued
	bytes   int64       // payload bytes, for the pending bound
}

// batchBuffers pools the encode buffers of batches; dragonboat copies a
// proposal, so a buffer returns to the pool as soon as Propose returns.
var batchBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// batches pools batches, for their waiters and starts, once every caller
// of one has been told its outcome.
var batches = sync.Pool{New: func() any { return new(batch) }}

// maxPooledBatchBytes and maxPooledBatchOps keep buffers grown by a large
// op or batch out of the pools.
const (
	maxPooledBatchBytes = 256 << 10
	maxPooledBatchOps   = 1024
)

func newBatch() *batch {
	bt := batches.Get().(*batch)
	bt.bufp = batchBuffers.Get().(*[]byte)
	bt.buf = appendBatchHeader((*bt.bufp)[:0], 0)
	return bt
}

// releaseBuf gives the batch's encode buffer back, once it is proposed
// or will not be.
func (bt *batch) releaseBuf() {
	if bt.bufp != nil && cap(bt.buf) <= maxPooledBatchBytes {
		*bt.bufp = bt.buf[:0]
		batchBuffers.Put(bt.bufp)
	}
	bt.buf, bt.bufp = nil, nil
}

// recycle gives the batch back once its callers have been told; they
// keep no reference to it.
func (bt *batch) recycle() {
	bt.releaseBuf()
	if cap(bt.waiters) > maxPooledBatchOps {
		return
	}
	clear(bt.waiters)
	bt.waiters, bt.starts, bt.bytes = bt.waiters[:0], bt.starts[:0], 0
	batches.Put(bt)
}

func newBatcher(p *partition) *batcher {
	b := &batcher{
		p:    p,
		cfg:  &p.r.cfg,
		kick: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go b.run()
	return b
}

// enqueue adds ops to the open batch; cs[i] receives ops[i]'s outcome.
// Either every op is queued or none is and the error says why.
func (b *batcher) enqueue(ops []AppendOp, cs []Completion) error {
	err := b.enqueueOps(ops, cs)
	if err != nil && b.p.r.metrics != nil {
		for range ops {
			b.p.r.metrics.appendDone(time.Time{}, time.Time{}, err, false)
		}
	}
	return err
}

func (b *batcher) enqueueOps(ops []AppendOp, cs []Completion) error {
	now := time.Now()
	var total int64
	for i := range ops {
		op := &ops[i]
		if len(op.Payload) > b.cfg.MaxOpBytes {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(op.Payload), b.cfg.MaxOpBytes)
		}
		crc := wal.Checksum(op.Payload)
		if op.CRC != 0 && op.CRC != crc {
			return fmt.Errorf("%w: op %d: checksum %08x, payload checksum %08x", ErrChecksum, i, op.CRC, crc)
		}
		op.CRC = crc
		total += int64(len(op.Payload))
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	if err := b.p.leaderOnly(); err != nil {
		b.mu.Unlock()
		return err
	}
	if n, size := b.pendingOps, b.pendingBytes; n+len(ops) > b.cfg.MaxPendingOps || size+total > b.cfg.MaxPendingBytes {
		b.mu.Unlock()
		return fmt.Errorf("%w: partition %d has %d ops (%d bytes) pending", ErrBusy, b.p.id, n, size)
	}
	for i := range ops {
		op := &ops[i]
		size := maxOpHeaderSize + len(op.Payload)
		if o := b.open; o != nil && (len(o.buf)+size > b.cfg.MaxBatchBytes || len(o.waiters) >= b.cfg.MaxBatchOps) {
			b.ready = append(b.ready, o)
			b.open = nil
		}
		if b.open == nil {
			b.open = newBatch()
		}
		o := b.open
		o.buf = appendBatchOp(o.buf, op.Payload, op.CRC, op.Producer, op.Seq)
		o.waiters = append(o.waiters, cs[i])
		o.starts = append(o.starts, now)
		o.bytes += int64(len(op.Payload))
	}
	b.pendingOps += len(ops)
	b.pendingBytes += total
	b.away = max(b.away-len(ops), 0)
	// Propose from this goroutine what may go now, sparing a hand-off to
	// the batcher's; wake that only to set its timer for a new deadline.
	wait := b.dispatchLocked(now)
	kick := wait > 0 && !b.armed.Equal(b.gatherUntil)
	b.mu.Unlock()
	if kick {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

func (b *batcher) run() {
	defer close(b.done)
	var linger *time.Timer
	var lingerC <-chan time.Time
	for {
		select {
		case <-b.quit:
			return
		case <-b.kick:
		case <-lingerC:
		}
		wait := b.dispatch()
		if wait > 0 {
			if linger == nil {
				linger = time.NewTimer(wait)
			} else {
				linger.Reset(wait)
			}
			lingerC = linger.C
		} else {
			lingerC = nil
		}
	}
}

// dispatch proposes what may be proposed and returns how long the open
// batch may still linger (0 if nothing waits on a timer).
func (b *batcher) dispatch() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	wait := b.dispatchLocked(time.Now())
	if wait > 0 {
		b.armed = b.gatherUntil
	}
	return wait
}

// dispatchLocked proposes batches while a slot is free for them: full
// ones first, in order, then the open one once nothing is in flight and
// the callers of the last batches are back, or the linger is over. It is
// called with mu held and returns with it held, but releases it around
// each proposal. It returns how long until the linger ends, if that is
// what holds the open batch back, or 0.
func (b *batcher) dispatchLocked(now time.Time) time.Duration {
	for b.inflight < b.cfg.MaxInflightBatches {
		var next *batch
		switch {
		case len(b.ready) > 0:
			next = b.ready[0]
			b.ready = b.ready[:copy(b.ready, b.ready[1:])]
		case b.open != nil:
			if b.inflight > 0 {
				return 0 // a completion kicks
			}
			if b.away > 0 {
				if now.Before(b.gatherUntil) {
					return b.gatherUntil.Sub(now)
				}
				// The callers not back by now are taken to have gone.
				b.away = 0
			}
			next, b.open = b.open, nil
		default:
			return 0
		}
		b.inflight++
		b.proposeMu.Lock()
		b.mu.Unlock()
		err := b.propose(next)
		b.proposeMu.Unlock()
		if err != nil {
			b.finish(next, AppendResult{}, err) // takes mu: not under proposeMu
		}
		b.mu.Lock()
		now = time.Now()
	}
	return 0
}

// propose hands a batch to Raft; a goroutine per batch in flight waits
// for its outcome. It is called with proposeMu held; if the batch could
// not be proposed it returns why, and the caller finishes the batch once
// it has released proposeMu (finishing takes mu, which comes first in
// the lock order).
func (b *batcher) propose(bt *batch) error {
	term, err := b.p.leaderTerm()
	if err != nil {
		bt.releaseBuf()
		return err
	}
	binary.LittleEndian.PutUint64(bt.buf[8:], term)
	b.p.r.metrics.batchProposed(len(bt.waiters))
	rs, err := b.p.r.nh.Propose(b.p.session, bt.buf, b.cfg.ProposalTimeout)
	bt.releaseBuf()
	if err != nil {
		return proposeError(b.p.id, err)
	}
	go b.await(rs, bt)
	return nil
}

func (b *batcher) await(rs *dragonboat.RequestState, bt *batch) {
	res := <-rs.ResultC()
	rs.Release()
	switch {
	case res.Completed():
		b.complete(bt, res.GetResult().Data)
	case res.Dropped():
		// Dropped before it reached the log: not committed.
		b.finish(bt, AppendResult{}, fmt.Errorf("%w: partition %d: proposal dropped (no leader, or a leader transfer)", ErrUnavailable, b.p.id))
	default:
		b.finish(bt, AppendResult{}, fmt.Errorf("%w: partition %d: proposal did not complete (timeout, replica stopped or rejected)", ErrAborted, b.p.id))
	}
}

// complete hands every waiter of a committed batch its op's outcome.
func (b *batcher) complete(bt *batch, data []byte) {
	rr, err := readResults(data)
	if err == nil && rr.count != len(bt.waiters) {
		err = fmt.Errorf("%w: %d results for %d ops", errBadEntry, rr.count, len(bt.waiters))
	}
	if err != nil {
		b.finish(bt, AppendResult{}, fmt.Errorf("%w: %v", ErrAborted, err))
		return
	}
	b.release(bt)
	m, now := b.p.r.metrics, time.Now()
	for i, c := range bt.waiters {
		var r opResult
		var res AppendResult
		err := rr.next(&r)
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %v", ErrAborted, err)
		case r.status == statusApplied:
			res = AppendResult{LSN: r.lsn, Epoch: r.epoch, Result: r.result}
		case r.status == statusDuplicate:
			res = AppendResult{LSN: r.lsn, Epoch: r.epoch, Duplicate: true}
		default:
			err = fmt.Errorf("%w: partition %d", ErrStaleSequence, b.p.id)
		}
		m.appendDone(bt.starts[i], now, err, res.Duplicate)
		c.Complete(res, err)
	}
	bt.recycle()
}

// finish fails every waiter of a batch with err.
func (b *batcher) finish(bt *batch, r AppendResult, err error) {
	b.release(bt)
	now := time.Now()
	for i, c := range bt.waiters {
		b.p.r.metrics.appendDone(bt.starts[i], now, err, false)
		c.Complete(r, err)
	}
	bt.recycle()
}

// release gives back a finished batch's slot and queue space, before its
// callers are told: those that append again at once are then counted
// back, and may find the slot free.
func (b *batcher) release(bt *batch) {
	b.mu.Lock()
	b.inflight--
	b.away += len(bt.waiters)
	b.gatherUntil = time.Now().Add(b.cfg.BatchLinger)
	b.pendingOps -= len(bt.waiters)
	b.pendingBytes -= bt.bytes
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// failQueued fails the appends not yet proposed (the replica lost its
// leadership, or is closing): they never reached the log.
func (b *batcher) failQueued(err error) {
	b.mu.Lock()
	queued := b.ready
	if b.open != nil {
		queued = append(queued, b.open)
	}
	b.ready, b.open = nil, nil
	for _, bt := range queued {
		b.pendingOps -= len(bt.waiters)
		b.pendingBytes -= bt.bytes
	}
	b.mu.Unlock()
	now := time.Now()
	for _, bt := range queued {
		for i, c := range bt.waiters {
			b.p.r.metrics.appendDone(bt.starts[i], now, err, false)
			c.Complete(AppendResult{}, err)
		}
		bt.recycle()
	}
}

// close stops the batcher; queued appends fail with ErrClosed. Batches in
// flight complete when dragonboat stops the replica.
func (b *batcher) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	close(b.quit)
	<-b.done
	b.failQueued(ErrClosed)
}

// proposeError maps an error from Propose, which means the batch was not
// proposed, to ours.
func proposeError(id PartitionID, err error) error {
	switch {
	case errors.Is(err, dragonboat.ErrSystemBusy):
		return fmt.Errorf("%w: partition %d: Raft proposal queue full", ErrBusy, id)
	case errors.Is(err, dragonboat.ErrPayloadTooBig):
		return fmt.Errorf("%w: partition %d: %v", ErrTooLarge, id, err)
	case dragonboat.IsTempError(err):
		return fmt.Errorf("%w: partition %d: %v", ErrUnavailable, id, err)
	}
	return fmt.Errorf("%w: partition %d: %v", ErrUnavailable, id, err)
}
