package transport

import (
	"bytes"
	"context"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// Append appends payload to partition p and returns its result once a
// quorum has committed it. It retries through leader changes and lost
// connections with the same producer id and sequence number, so the op is
// applied once. If ctx ends first, Append returns ctx's error and the op
// may or may not be applied. payload may be reused once Append returns.
// It does not allocate unless the plugin returns a result (copied into
// AppendResult.Result).
func (cl *Client) Append(ctx context.Context, p lockstitch.PartitionID, payload []byte) (AppendResult, error) {
	c := cl.newAppend(p, payload)
	abandoned, err := cl.do(ctx, c)
	if abandoned {
		return AppendResult{}, err
	}
	res := c.res
	if err != nil {
		res = AppendResult{}
	} else if len(res.Result) > 0 {
		res.Result = bytes.Clone(res.Result)
	} else {
		res.Result = nil
	}
	cl.putCall(c)
	return res, err
}

// newAppend returns a call appending payload to p with the partition's
// next sequence number.
func (cl *Client) newAppend(p lockstitch.PartitionID, payload []byte) *call {
	c := cl.getCall(TypeAppend)
	c.partition = p
	c.payload = payload
	c.crc = wal.Checksum(payload)
	c.seq = cl.part(p).seq.Add(1)
	return c
}

// AppendFuture is the pending result of AppendAsync. It is a small value;
// copy it freely, but Wait for it only until Wait returns something other
// than a context error: the future is then spent (its resources are
// reused), and waiting again panics.
type AppendFuture struct {
	c   *call
	gen uint64
}

// AppendAsync starts appending payload to partition p and returns at
// once, unless the connection's in-flight limit is reached, in which case
// it waits for a slot (bounded by ctx). Wait returns the result. Appends
// started in order from one goroutine are sent in that order; a retry may
// reorder them. payload must not be changed until Wait has returned the
// result, as a retry sends it again. In steady state, AppendAsync and Wait
// do not allocate.
func (cl *Client) AppendAsync(ctx context.Context, p lockstitch.PartitionID, payload []byte) AppendFuture {
	c := cl.newAppend(p, payload)
	c.sendErr = cl.send(ctx, c)
	return AppendFuture{c: c, gen: c.gen}
}

// Wait returns the result of the append, retrying it as Append does if it
// failed for a retryable reason. If ctx ends first, Wait returns ctx's
// error and the future may be waited for again. A plugin result is
// returned in a new slice (nil when empty); see WaitResult.
func (f AppendFuture) Wait(ctx context.Context) (AppendResult, error) {
	return f.WaitResult(ctx, nil)
}

// WaitResult is Wait, with the plugin result appended to dst and returned
// as AppendResult.Result (dst as it was when the result is empty), so
// that a caller that reuses dst allocates nothing.
func (f AppendFuture) WaitResult(ctx context.Context, dst []byte) (AppendResult, error) {
	c := f.c
	if c == nil || c.gen != f.gen {
		panic("transport: AppendFuture waited for after it returned its result")
	}
	cl := c.cl
	for {
		err := c.sendErr
		c.sendErr = nil
		if err == nil {
			var answered bool
			if answered, err = c.wait(ctx, false); !answered {
				// Still in flight: wait again later. Until then, its
				// outcome is unknown.
				c.uncertain = true
				return AppendResult{}, c.outcome(err)
			}
			if err != nil {
				c.attempted(err)
			}
		}
		if err != nil && cl.retry(ctx, c, err) {
			if serr := cl.send(ctx, c); serr != nil {
				c.sendErr = serr
				if ctx.Err() != nil {
					c.sendErr = err // retry it at the next Wait
				}
			}
			continue
		}
		if err != nil && ctx.Err() != nil && retryable(err) && c.attempt < cl.cfg.MaxAttempts && !cl.isClosed() {
			c.sendErr = err // the backoff was cut short: retry at the next Wait
			return AppendResult{}, c.outcome(ctx.Err())
		}
		if err != nil && cl.isClosed() {
			err = lockstitch.ErrClosed
		}
		err = c.outcome(err)
		res := AppendResult{Result: dst}
		if err == nil {
			res = AppendResult{LSN: c.res.LSN, Epoch: c.res.Epoch, Result: append(dst, c.res.Result...)}
		}
		cl.putCall(c)
		return res, err
	}
}

// AppendBatch appends payloads to partition p as one batch, committed
// together or not at all, and appends one result per op to results,
// returning the extended slice. It retries as Append does. payloads may be
// reused once AppendBatch returns.
func (cl *Client) AppendBatch(ctx context.Context, p lockstitch.PartitionID, payloads [][]byte, results []AppendResult) ([]AppendResult, error) {
	if len(payloads) == 0 {
		return results, nil
	}
	c := cl.getCall(TypeAppendBatch)
	c.partition = p
	c.payloads = payloads
	c.crcs = c.crcs[:0]
	for _, pl := range payloads {
		c.crcs = append(c.crcs, wal.Checksum(pl))
	}
	c.seq = cl.part(p).seq.Add(uint64(len(payloads))) - uint64(len(payloads)) + 1
	abandoned, err := cl.do(ctx, c)
	if abandoned {
		return results, err
	}
	if err == nil {
		for _, r := range c.batch {
			if len(r.Result) > 0 {
				r.Result = bytes.Clone(r.Result)
			} else {
				r.Result = nil
			}
			results = append(results, r)
		}
	}
	cl.putCall(c)
	return results, err
}
