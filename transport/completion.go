package transport

import "fmt"

// AppendCompletion completes one Append: call Complete or Fail exactly
// once, from any goroutine. It is a small value; copy it freely. A second
// completion, or a completion of a request that has already ended, is a
// violated contract and panics. Completing after the connection has
// closed is allowed and does nothing.
type AppendCompletion struct{ ref callRef }

// Complete answers the append with r. r.Result is copied before Complete
// returns.
func (d AppendCompletion) Complete(r AppendResult) {
	c := d.ref.c
	b, open := c.out.lock()
	id := c.endCallLocked(b, d.ref, "AppendCompletion.Complete")
	if open {
		if appendResultFixed+len(r.Result) > c.maxOut {
			b = c.appendErrorLocked(b, id, &errorMsg{Code: CodeTooLarge, Message: "plugin result exceeds the client's frame limit"})
		} else {
			n := len(b)
			b = appendAppendResult(b, id, &r)
			c.m.FrameSent(TypeAppendResult, len(b)-n)
		}
	}
	c.out.unlock(b)
}

// Fail answers the append with err, mapped to a wire code as the Handler
// documentation says.
func (d AppendCompletion) Fail(err error) { d.ref.fail(err, "AppendCompletion.Fail") }

// BatchCompletion completes one AppendBatch, with the rules of
// AppendCompletion.
type BatchCompletion struct{ ref callRef }

// Complete answers the batch with one result per op, in order; results
// and their Result slices are copied before Complete returns. A count
// that differs from the request's panics.
func (d BatchCompletion) Complete(results []AppendResult) {
	c := d.ref.c
	b, open := c.out.lock()
	want := c.slots[d.ref.slot].ops
	id := c.endCallLocked(b, d.ref, "BatchCompletion.Complete")
	if len(results) != want {
		c.out.unlock(b)
		panic(fmt.Sprintf("transport: BatchCompletion.Complete with %d results for a batch of %d ops", len(results), want))
	}
	if open {
		n := len(b)
		b = appendBatchResults(b, id, results)
		if len(b)-n-HeaderSize > c.maxOut {
			b = c.appendErrorLocked(b[:n], id, &errorMsg{Code: CodeTooLarge, Message: "plugin results exceed the client's frame limit"})
		} else {
			c.m.FrameSent(TypeAppendBatchResult, len(b)-n)
		}
	}
	c.out.unlock(b)
}

// Fail answers the batch with err.
func (d BatchCompletion) Fail(err error) { d.ref.fail(err, "BatchCompletion.Fail") }

// callRef names one request in flight on a server connection: a slot of
// its in-flight table and the slot's generation when the request began,
// so that a stale or repeated completion is detected.
type callRef struct {
	c    *serverConn
	slot uint32
	gen  uint32
}

// slotState is one entry of a connection's in-flight table.
type slotState struct {
	id    uint64 // correlation id of the request
	gen   uint32 // incremented when a request takes the slot
	busy  bool
	async bool // served on its own goroutine, registered in calls
	ops   int  // ops of an AppendBatch
}

// fail ends the request with an Error frame for err.
func (r callRef) fail(err error, who string) {
	if err == nil {
		err = fmt.Errorf("%w: %s with a nil error", ErrInternal, who)
	}
	m := errorFor(err)
	c := r.c
	b, open := c.out.lock()
	id := c.endCallLocked(b, r, who)
	if open {
		b = c.appendErrorLocked(b, id, &m)
	}
	c.out.unlock(b)
}

// send ends the request with frame, a complete frame of type t.
func (r callRef) send(t FrameType, frame []byte) {
	c := r.c
	b, open := c.out.lock()
	c.endCallLocked(b, r, "send")
	if open {
		b = append(b, frame...)
		c.m.FrameSent(t, len(frame))
	}
	c.out.unlock(b)
}
