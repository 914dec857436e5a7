package replicator

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lni/dragonboat/v4"

	"github.com/lockstitch/lockstitch"
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
// per-proposal costs. The wait ends early once BatchGap passes with no
// append: callers coming back arrive microseconds apart, so a gap means
// the rest are not coming. Under light load an append is proposed at
// once. That policy is gather (gather.go), which the batcher drives with
// the clock and the timer.
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
	abandoned    int // of inflight: see gatherQueue
	closed       bool
	// gather decides when the open batch goes.
	gather gather
	// flying holds the batches proposed and not yet released.
	flying []*batch
	// watches holds the contexts of Append calls whose ops are queued
	// or in flight, by their Done channel.
	watches map[<-chan struct{}]*ctxWatch

	// now is the batcher's clock, time.Now; every reading of the time
	// is from it. A test may replace it, under mu, while no append is
	// in progress (the run goroutine reads it under mu).
	now func() time.Time

	kick chan struct{}
	quit chan struct{}
	done chan struct{}
}

type batch struct {
	bufp    *[]byte // from batchBuffers; buf is *bufp grown
	buf     []byte
	waiters []Completion
	watched []*ctxWatch // the context watch of each op, or nil
	starts  []time.Time // when each op was queued
	bytes   int64       // payload bytes, for the pending bound
	// abandoned, under the batcher's mu, marks a batch in flight whose
	// callers were told ErrAborted when the replica lost its leadership
	// (abandonFlying): its outcome, when dragonboat gives it, only
	// releases its slot.
	abandoned bool
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
	clear(bt.watched)
	bt.waiters, bt.watched, bt.starts, bt.bytes, bt.abandoned = bt.waiters[:0], bt.watched[:0], bt.starts[:0], 0, false
	batches.Put(bt)
}

func newBatcher(p *partition) *batcher {
	cfg := &p.r.cfg
	b := &batcher{
		p:      p,
		cfg:    cfg,
		gather: gather{linger: cfg.BatchLinger, gap: cfg.BatchGap, slots: cfg.MaxInflightBatches},
		now:    time.Now,
		kick:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go b.run()
	return b
}

// enqueue adds ops to the open batch; cs[i] receives ops[i]'s outcome.
// Either every op is queued or none is and the error says why.
//
// ctx is never nil. If it can end (its Done is not nil), it is the context
// the callers wait with, and cs are then *appendWaiter: enqueue returns
// whether a ctxWatch will cancel their waits when ctx ends; if not, the
// callers must watch ctx themselves. Callers with no context, or whose
// completions are not *appendWaiter and watch their context themselves,
// pass context.Background().
func (b *batcher) enqueue(ctx context.Context, ops []AppendOp, cs []Completion) (watched bool, err error) {
	if err = b.p.usable(); err == nil {
		watched, err = b.enqueueOps(ctx, ops, cs)
	}
	if err != nil && b.p.r.metrics != nil {
		for range ops {
			b.p.r.metrics.appendDone(time.Time{}, time.Time{}, err, false)
		}
	}
	return watched, err
}

func (b *batcher) enqueueOps(ctx context.Context, ops []AppendOp, cs []Completion) (bool, error) {
	now := b.now()
	var total int64
	for i := range ops {
		op := &ops[i]
		if len(op.Payload) > b.cfg.MaxOpBytes {
			return false, fmt.Errorf("%w: op of %d bytes, over the node's limit of %d (its max-op-bytes setting)", lockstitch.ErrTooLarge, len(op.Payload), b.cfg.MaxOpBytes)
		}
		crc := wal.Checksum(op.Payload)
		if op.CRC != 0 && op.CRC != crc {
			return false, fmt.Errorf("%w: op %d: checksum %08x, payload checksum %08x", lockstitch.ErrChecksum, i, op.CRC, crc)
		}
		op.CRC = crc
		total += int64(len(op.Payload))
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return false, lockstitch.ErrClosed
	}
	if !b.p.isLeader() {
		// The error names the leader, which takes the state machine's
		// lock: not under mu, which an apply can hold up for long.
		b.mu.Unlock()
		return false, b.p.notLeader()
	}
	if n, size := b.pendingOps, b.pendingBytes; n+len(ops) > b.cfg.MaxPendingOps || size+total > b.cfg.MaxPendingBytes {
		b.mu.Unlock()
		return false, fmt.Errorf("%w: partition %d has %d ops (%d bytes) pending", lockstitch.ErrBusy, b.p.id, n, size)
	}
	if node := &b.p.r.pendingBytes; node.Add(total) > b.cfg.MaxNodePendingBytes {
		size := node.Add(-total)
		b.mu.Unlock()
		return false, fmt.Errorf("%w: the node has %d bytes of appends pending across its partitions (MaxNodePendingBytes %d)", lockstitch.ErrBusy, size, b.cfg.MaxNodePendingBytes)
	}
	var cw *ctxWatch
	watched := false
	if ctx.Done() != nil {
		cw = b.watchLocked(ctx, len(ops))
		watched = cw.stop != nil // cw may be reused once mu is released
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
		o.watched = append(o.watched, cw)
		o.starts = append(o.starts, now)
		o.bytes += int64(len(op.Payload))
	}
	b.pendingOps += len(ops)
	b.pendingBytes += total
	b.gather.arrived(now, len(ops))
	// Propose from this goroutine what may go now, sparing a hand-off to
	// the batcher's; wake that only if its timer is not set to fire by
	// the deadline.
	wait := b.dispatchLocked(now)
	kick := b.gather.mustKick(now, wait)
	b.mu.Unlock()
	if kick {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return watched, nil
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
	now := b.now()
	wait := b.dispatchLocked(now)
	b.gather.arm(now, wait)
	return wait
}

// dispatchLocked proposes the batches gather says may go (gather.next).
// It is called with mu held and returns with it held, but releases it
// around each proposal, and reads the clock again after each. It returns
// how long, from its last reading, until the linger ends, if that is what
// holds the open batch back, or 0. (Its callers count that wait from the
// reading they passed in: the two differ only if the loop proposed and
// the slot came free again before it went on, by the time that took.)
func (b *batcher) dispatchLocked(now time.Time) time.Duration {
	for {
		var next *batch
		switch move, until := b.gather.next(now, b.queueLocked()); move {
		case gatherReady:
			next = b.ready[0]
			b.ready = b.ready[:copy(b.ready, b.ready[1:])]
		case gatherOpen:
			next, b.open = b.open, nil
		default:
			if until.IsZero() {
				return 0
			}
			return until.Sub(now)
		}
		b.inflight++
		b.flying = append(b.flying, next)
		b.proposeMu.Lock()
		b.mu.Unlock()
		err := b.propose(next, now)
		b.proposeMu.Unlock()
		if err != nil {
			b.finish(next, AppendResult{}, err) // takes mu: not under proposeMu
		}
		b.mu.Lock()
		now = b.now()
	}
}

// queueLocked is what gather sees of the queue; mu is held.
func (b *batcher) queueLocked() gatherQueue {
	return gatherQueue{inflight: b.inflight, abandoned: b.abandoned, ready: len(b.ready) > 0, open: b.open != nil}
}

// propose hands a batch to Raft; a goroutine per batch in flight waits
// for its outcome. It is called with proposeMu held; if the batch could
// not be proposed it returns why, and the caller finishes the batch once
// it has released proposeMu (finishing takes mu, which comes first in
// the lock order). now, the batcher's clock when the batch was taken, is
// the proposer's time the entry carries (Op.Time), unless the Config has
// a ProposerClock.
func (b *batcher) propose(bt *batch, now time.Time) error {
	if b.cfg.ProposerClock != nil {
		now = b.cfg.ProposerClock()
	}
	term, err := b.p.leaderTerm()
	if err != nil {
		bt.releaseBuf()
		return err
	}
	binary.LittleEndian.PutUint64(bt.buf[8:], term)
	setBatchTime(bt.buf, now)
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
		b.finish(bt, AppendResult{}, fmt.Errorf("%w: partition %d: proposal dropped (no leader, or a leader transfer)", lockstitch.ErrUnavailable, b.p.id))
	default:
		b.finish(bt, AppendResult{}, fmt.Errorf("%w: partition %d: proposal did not complete (timeout, replica stopped or rejected)", lockstitch.ErrAborted, b.p.id))
	}
}

// complete hands every waiter of a committed batch its op's outcome.
func (b *batcher) complete(bt *batch, data []byte) {
	rr, err := readResults(data)
	if err == nil && rr.count != len(bt.waiters) {
		err = fmt.Errorf("%w: %d results for %d ops", errBadEntry, rr.count, len(bt.waiters))
	}
	if err != nil {
		b.finish(bt, AppendResult{}, fmt.Errorf("%w: %v", lockstitch.ErrAborted, err))
		return
	}
	if b.release(bt) {
		bt.recycle()
		return
	}
	m, now := b.p.r.metrics, b.now()
	for i, c := range bt.waiters {
		var r opResult
		var res AppendResult
		err := rr.next(&r)
		switch {
		case err != nil:
			err = fmt.Errorf("%w: %v", lockstitch.ErrAborted, err)
		case r.status == statusApplied:
			res = AppendResult{LSN: r.lsn, Epoch: r.epoch, Result: r.result}
		case r.status == statusDuplicate:
			res = AppendResult{LSN: r.lsn, Epoch: r.epoch, Duplicate: true}
		default:
			err = fmt.Errorf("%w: partition %d", lockstitch.ErrStaleSequence, b.p.id)
		}
		m.appendDone(bt.starts[i], now, err, res.Duplicate)
		c.Complete(res, err)
	}
	b.told()
	bt.recycle()
}

// finish fails every waiter of a batch with err.
func (b *batcher) finish(bt *batch, r AppendResult, err error) {
	if b.release(bt) {
		bt.recycle()
		return
	}
	now := b.now()
	for i, c := range bt.waiters {
		b.p.r.metrics.appendDone(bt.starts[i], now, err, false)
		c.Complete(r, err)
	}
	b.told()
	bt.recycle()
}

// release gives back a finished batch's slot and queue space, before its
// callers are told: those that append again at once are then counted
// back, and may find the slot free. It reports whether the batch was
// abandoned: its callers were told already.
func (b *batcher) release(bt *batch) (abandoned bool) {
	b.mu.Lock()
	abandoned = bt.abandoned
	if i := slices.Index(b.flying, bt); i >= 0 {
		b.flying = slices.Delete(b.flying, i, i+1)
	}
	b.unwatchLocked(bt)
	b.inflight--
	if abandoned {
		b.abandoned-- // its callers were told long ago: none is away
	} else {
		b.gather.released(b.now(), len(bt.waiters))
	}
	b.pendingOps -= len(bt.waiters)
	b.pendingBytes -= bt.bytes
	b.p.r.pendingBytes.Add(-bt.bytes)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	return abandoned
}

// told marks the end of a completion (gather.told).
func (b *batcher) told() {
	b.mu.Lock()
	b.gather.told(b.now())
	b.mu.Unlock()
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
		b.p.r.pendingBytes.Add(-bt.bytes)
		b.unwatchLocked(bt)
	}
	b.mu.Unlock()
	now := b.now()
	for _, bt := range queued {
		for i, c := range bt.waiters {
			b.p.r.metrics.appendDone(bt.starts[i], now, err, false)
			c.Complete(AppendResult{}, err)
		}
		bt.recycle()
	}
}

// abandonFlying ends the waits of the appends in flight, with err, when
// the replica has lost its leadership: their proposals may still commit
// under the new leader, or not, and dragonboat would tell only at
// ProposalTimeout; err says the outcome is unknown (ErrAborted), and a
// caller retries with its producer sequence at the new leader within an
// election. The batches keep their slots until dragonboat gives their
// outcome (release), but the open batch no longer waits for them: a
// replica that leads again at once (or never saw the new leader) must not
// hold its next appends until ProposalTimeout.
func (b *batcher) abandonFlying(err error) {
	// The waiters are copied under mu: once a batch is marked abandoned,
	// its outcome may arrive at any time, and release recycles it.
	b.mu.Lock()
	var (
		waiters []Completion
		starts  []time.Time
	)
	for _, bt := range b.flying {
		if bt.abandoned {
			continue
		}
		bt.abandoned = true
		b.abandoned++
		b.unwatchLocked(bt)
		clear(bt.watched) // release must not uncount them again
		waiters = append(waiters, bt.waiters...)
		starts = append(starts, bt.starts...)
	}
	b.mu.Unlock()
	now := b.now()
	for i, c := range waiters {
		b.p.r.metrics.appendDone(starts[i], now, err, false)
		c.Complete(AppendResult{}, err)
	}
	if len(waiters) > 0 {
		b.told()
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
	b.failQueued(lockstitch.ErrClosed)
}

// ctxWatch ends the waits of Append calls that share a context when it
// ends. A caller waiting alone selects on its context and its waiter; but
// when many share one context (goroutines of a service serving under one
// long-lived context, a benchmark's run), their selects contend on the
// context's channel, and waking them costs about a fifth more. (The
// transport's handler appends with AppendTo and its own completions.) So the second op queued with a context still
// pending starts a goroutine that watches it for all of them, and those
// callers wait on their waiter alone.
type ctxWatch struct {
	ctx  context.Context
	done <-chan struct{}
	// refs counts the queued and in-flight ops queued with ctx.
	refs int
	// stop, once the watching goroutine runs, ends it.
	stop chan struct{}
}

var ctxWatches = sync.Pool{New: func() any { return new(ctxWatch) }}

// watchLocked counts n more ops queued with ctx and returns its watch.
func (b *batcher) watchLocked(ctx context.Context, n int) *ctxWatch {
	done := ctx.Done()
	cw := b.watches[done]
	switch {
	case cw == nil:
		cw = ctxWatches.Get().(*ctxWatch)
		cw.ctx, cw.done = ctx, done
		if b.watches == nil {
			b.watches = make(map[<-chan struct{}]*ctxWatch)
		}
		b.watches[done] = cw
	case cw.stop == nil:
		cw.stop = make(chan struct{})
		go b.watch(cw)
	}
	cw.refs += n
	return cw
}

// unwatchLocked uncounts a released batch's ops from their watches and
// ends the watches no op needs any more.
func (b *batcher) unwatchLocked(bt *batch) {
	for _, cw := range bt.watched {
		if cw == nil {
			continue
		}
		if cw.refs--; cw.refs > 0 {
			continue
		}
		if b.watches[cw.done] == cw {
			delete(b.watches, cw.done)
		}
		if cw.stop != nil {
			close(cw.stop) // the goroutine still uses cw: not reused
			continue
		}
		*cw = ctxWatch{}
		ctxWatches.Put(cw)
	}
}

// watch cancels the waits of cw's ops once its context ends.
func (b *batcher) watch(cw *ctxWatch) {
	select {
	case <-cw.done:
	case <-cw.stop:
		return
	case <-b.quit:
		return
	}
	err := cw.ctx.Err()
	b.mu.Lock()
	defer b.mu.Unlock()
	// Later appends with this context (the check before queuing raced
	// with its end) get a watch of their own, which ends at once.
	if b.watches[cw.done] == cw {
		delete(b.watches, cw.done)
	}
	cancel := func(bt *batch) {
		for i, w := range bt.watched {
			if w == cw {
				bt.waiters[i].(*appendWaiter).cancel(err)
			}
		}
	}
	for _, bt := range b.flying {
		cancel(bt)
	}
	for _, bt := range b.ready {
		cancel(bt)
	}
	if b.open != nil {
		cancel(b.open)
	}
}

// proposeError maps an error from Propose, which means the batch was not
// proposed, to ours.
func proposeError(id lockstitch.PartitionID, err error) error {
	switch {
	case errors.Is(err, dragonboat.ErrSystemBusy):
		return fmt.Errorf("%w: partition %d: Raft proposal queue full", lockstitch.ErrBusy, id)
	case errors.Is(err, dragonboat.ErrPayloadTooBig):
		return fmt.Errorf("%w: partition %d: %v", lockstitch.ErrTooLarge, id, err)
	case dragonboat.IsTempError(err):
		return fmt.Errorf("%w: partition %d: %v", lockstitch.ErrUnavailable, id, err)
	}
	return fmt.Errorf("%w: partition %d: %v", lockstitch.ErrUnavailable, id, err)
}
