package replicator

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/lockstitch/lockstitch"
)

// AppendOp is one operation to append.
type AppendOp struct {
	// Payload is the op. Append copies it before returning; the caller
	// may reuse it then, even if the append is still in flight.
	Payload []byte
	// CRC is the CRC-32C of Payload (wal.Checksum) if the caller has it,
	// as a producer does for integrity end to end: an op whose payload
	// does not match is rejected. Zero means "compute it".
	CRC uint32
	// Producer and Seq make the append idempotent: an op with the same
	// producer and sequence as one already committed is not applied
	// again, and its result carries the original LSN. Sequences of a
	// producer must increase; zero Producer means no deduplication.
	Producer lockstitch.ProducerID
	Seq      uint64
}

// AppendResult is the outcome of a committed append.
type AppendResult struct {
	// LSN and Epoch are the op's (for a duplicate, those it was committed
	// with the first time).
	LSN   lockstitch.LSN
	Epoch lockstitch.Epoch
	// Result is the plugin's result for the op (nil for a duplicate). It
	// is not shared with anyone else; the receiver owns it.
	Result []byte
	// Duplicate reports that the op had been committed before.
	Duplicate bool
}

// Completion receives the outcome of an asynchronous append exactly once,
// from a replicator goroutine. Complete must not block.
type Completion interface {
	Complete(AppendResult, error)
}

// Future is a Completion to wait on.
type Future struct {
	done chan struct{}
	res  AppendResult
	err  error
}

// NewFuture returns a Future ready to be passed to AppendTo.
func NewFuture() *Future { return &Future{done: make(chan struct{})} }

// Complete implements Completion.
func (f *Future) Complete(r AppendResult, err error) {
	f.res, f.err = r, err
	close(f.done)
}

// Done is closed when the append has completed.
func (f *Future) Done() <-chan struct{} { return f.done }

// Result returns the outcome; it must be called after Done is closed.
func (f *Future) Result() (AppendResult, error) { return f.res, f.err }

// Wait waits for the outcome or for ctx to end. An append whose wait ends
// with ctx may still commit.
func (f *Future) Wait(ctx context.Context) (AppendResult, error) {
	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return AppendResult{}, ctx.Err()
	}
}

// appendWaiter is Append's Completion. Unlike a Future it can be reused:
// Complete signals on a buffered channel instead of closing it, so
// Append takes one from appendWaiters and gives it back once it has
// been completed, sparing a future and a channel per append.
//
// The batcher may also end the wait early, when the append's context
// ends (see ctxWatch): state says which of the two came first, and only
// that one signals, so done never holds more than one signal.
type appendWaiter struct {
	done  chan struct{} // capacity 1
	state atomic.Uint32 // waiterWaiting, then waiterCompleted or waiterCanceled
	res   AppendResult
	err   error
}

const (
	waiterWaiting uint32 = iota
	waiterCompleted
	waiterCanceled
)

var appendWaiters = sync.Pool{New: func() any { return &appendWaiter{done: make(chan struct{}, 1)} }}

// Complete implements Completion. An outcome that comes after the wait
// was canceled is dropped.
func (w *appendWaiter) Complete(r AppendResult, err error) {
	if !w.state.CompareAndSwap(waiterWaiting, waiterCompleted) {
		return
	}
	w.res, w.err = r, err
	w.done <- struct{}{}
}

// cancel ends the wait with err (the context's), unless the outcome came
// first.
func (w *appendWaiter) cancel(err error) {
	if !w.state.CompareAndSwap(waiterWaiting, waiterCanceled) {
		return
	}
	w.err = err
	w.done <- struct{}{}
}
