package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// States of a call.
const (
	callIdle      int32 = iota // owned by its caller, not in flight
	callInFlight               // registered on a connection, awaiting its answer
	callDelivered              // answered; done has been signalled
	callAbandoned              // its caller gave up; the connection recycles it when answered
)

// call is one request of the Client, pooled and reused: it carries the
// request, receives the answer on the connection's reader goroutine and
// wakes its waiter through done. It is retried, with the same producer id
// and sequence for an append, until it succeeds, fails for good, or runs
// out of attempts.
type call struct {
	cl    *Client
	kind  FrameType
	gen   uint64       // incremented when the call returns to the pool
	state atomic.Int32 // callIdle, ...
	done  chan struct{}

	sendErr error // AppendAsync: the error to retry at the next Wait

	// Routing: a partition's leader, or a fixed address (Status, Ping).
	partition lockstitch.PartitionID
	addr      string
	byAddr    bool
	attempt   int
	notFound  int // nodes that answered PartitionNotFound
	// refused is set when the last attempt's error is the server's
	// answer, not a lost connection.
	refused bool
	// uncertain is set once an attempt of an append ended with its
	// outcome unknown: the append's final error is then indeterminate.
	uncertain bool
	conn      *clientConn // where the current attempt went

	// Requests.
	payload  []byte   // Append; the caller's until the call ends
	crc      uint32   // Append
	seq      uint64   // Append, AppendBatch: sequence of the (first) op
	payloads [][]byte // AppendBatch
	crcs     []uint32 // AppendBatch
	read     ReadRequest
	query    QueryRequest
	status   StatusRequest
	cursor   CursorRequest
	admin    []byte // Admin body; the caller's until the call ends

	// Answers, filled by the connection's reader.
	err       error
	res       AppendResult   // Append; Result aliases buf
	batch     []AppendResult // AppendBatch; Results alias buf
	committed wal.LSN        // Read, Query
	lsn       wal.LSN        // Query
	buf       []byte         // answer bytes: plugin results, records, query result
	node      *NodeStatus    // Status
	cursors   CursorResult   // Cursor
}

// getCall returns an idle call of kind t.
func (cl *Client) getCall(t FrameType) *call {
	c, _ := cl.calls.Get().(*call)
	if c == nil {
		c = &call{cl: cl, done: make(chan struct{}, 1)}
	}
	c.kind = t
	return c
}

// putCall returns an idle call to the pool, dropping references to the
// caller's data.
func (cl *Client) putCall(c *call) {
	c.gen++
	c.state.Store(callIdle)
	c.payload, c.payloads, c.query.Request, c.admin, c.node, c.err, c.sendErr, c.conn = nil, nil, nil, nil, nil, nil, nil, nil
	c.addr, c.byAddr, c.attempt, c.notFound, c.refused, c.uncertain = "", false, 0, 0, false, false
	c.cursor, c.cursors = CursorRequest{}, CursorResult{}
	clear(c.batch)
	c.batch = c.batch[:0]
	if cap(c.buf) > maxKeptWriteBuffer {
		c.buf = nil
	}
	c.buf = c.buf[:0]
	cl.calls.Put(c)
}

// deliver hands the answer (already stored in c) to the waiter, or
// recycles c if the waiter gave up. Called once per attempt by the
// connection that carried it.
func (c *call) deliver() {
	if c.state.CompareAndSwap(callInFlight, callDelivered) {
		c.done <- struct{}{}
		return
	}
	// Abandoned: nobody waits.
	c.cl.putCall(c)
}

// do runs c until it succeeds, fails with an error that is not retryable,
// or exhausts ClientConfig.MaxAttempts. If ctx ends while an attempt is in
// flight, the call is abandoned and do returns ctx's error with abandoned
// set: the connection recycles c when the answer comes, and the caller
// must not touch c again.
func (cl *Client) do(ctx context.Context, c *call) (abandoned bool, err error) {
	isAppend := c.kind == TypeAppend || c.kind == TypeAppendBatch
	for {
		err = cl.send(ctx, c)
		if err == nil {
			var answered bool
			if answered, err = c.wait(ctx, true); !answered {
				// Abandoned in flight (c is no longer ours): an append's
				// outcome is unknown.
				if isAppend {
					err = indeterminateError(err)
				}
				return true, err
			}
			if err == nil {
				return false, nil
			}
			c.attempted(err)
		}
		if !cl.retry(ctx, c, err) {
			if cl.isClosed() {
				err = lockstitch.ErrClosed
			}
			return false, c.outcome(err)
		}
	}
}

// attempted records the outcome of an append's attempt that was sent and
// failed with err: whether the op may have been committed.
func (c *call) attempted(err error) {
	if c.kind != TypeAppend && c.kind != TypeAppendBatch {
		return
	}
	if !c.refused || indeterminate(err) {
		c.uncertain = true // the connection was lost with it in flight, or the server could not tell
	}
}

// indeterminate reports whether a server's answer leaves an append's
// outcome unknown.
func indeterminate(err error) bool {
	return errors.Is(err, lockstitch.ErrAborted) || errors.Is(err, lockstitch.ErrTimeout) ||
		errors.Is(err, lockstitch.ErrCanceled) || errors.Is(err, lockstitch.ErrIndeterminate)
}

// outcome returns the error an append's caller gets after its last
// attempt failed with err: marked lockstitch.ErrIndeterminate when any
// attempt left the outcome unknown.
func (c *call) outcome(err error) error {
	if err == nil || c.kind != TypeAppend && c.kind != TypeAppendBatch || !c.uncertain {
		return err
	}
	return indeterminateError(err)
}

// indeterminateError marks err, the last attempt's error of an append
// whose outcome is unknown, with lockstitch.ErrIndeterminate.
func indeterminateError(err error) error {
	if errors.Is(err, lockstitch.ErrIndeterminate) {
		return err
	}
	return fmt.Errorf("%w: it may have been committed; the last attempt: %w", lockstitch.ErrIndeterminate, err)
}

// wait waits for the answer to the attempt in flight and returns its
// error, with answered set. When ctx ends first, it abandons the call if
// abandon is set (the connection recycles it when the answer comes; the
// caller must not touch it again) or else leaves it in flight to be
// waited for again; either way answered is false.
func (c *call) wait(ctx context.Context, abandon bool) (answered bool, err error) {
	select {
	case <-c.done:
	case <-ctx.Done():
		if !abandon {
			return false, ctx.Err()
		}
		if c.state.CompareAndSwap(callInFlight, callAbandoned) {
			return false, ctx.Err()
		}
		<-c.done // answered meanwhile
	}
	c.state.Store(callIdle)
	return true, c.err
}

// retry decides whether c should be sent again after err: the error is
// retryable, attempts remain and ctx allows a backoff. It updates the
// routing (a NotLeader hint, a lost connection) and sleeps the backoff.
func (cl *Client) retry(ctx context.Context, c *call, err error) bool {
	if errors.Is(err, lockstitch.ErrPartitionNotFound) && !c.byAddr && ctx.Err() == nil && !cl.isClosed() {
		// The node may have lost its replica (removed, moved): ask the
		// other seeds before concluding the partition does not exist.
		c.notFound++
		if c.notFound >= len(cl.seeds) {
			return false
		}
		ps := cl.part(c.partition)
		ps.conn.CompareAndSwap(c.conn, nil)
		next := cl.seeds[int(cl.next.Add(1))%len(cl.seeds)]
		if c.conn != nil && next == c.conn.ep.addr {
			next = cl.seeds[int(cl.next.Add(1))%len(cl.seeds)]
		}
		ps.mu.Lock()
		ps.hint = next
		ps.mu.Unlock()
		return true
	}
	// Only answers of PartitionNotFound in a row mean no node hosts it;
	// any other answer (a host electing a leader, say) starts the count
	// again.
	c.notFound = 0
	if !retryable(err) || ctx.Err() != nil || cl.isClosed() {
		return false
	}
	if c.kind == TypeAdmin && c.refused && !errors.Is(err, lockstitch.ErrBusy) {
		// The node that answered has retried what it depends on (its
		// peers) itself; another node may fare better (Client.admin).
		return false
	}
	c.attempt++
	if c.attempt >= cl.cfg.MaxAttempts {
		return false
	}
	immediate := cl.reroute(c.partition, c.conn, c.byAddr, err)
	if cl.log.Enabled(ctx, slog.LevelDebug) {
		addr := ""
		if c.conn != nil {
			addr = c.conn.ep.addr
		}
		cl.log.Debug("transport: retrying", "kind", c.kind, "partition", uint64(c.partition), "attempt", c.attempt, "addr", addr, "err", err)
	}
	if immediate && c.attempt == 1 {
		return true // a leader hint, or another node: go there at once
	}
	t := time.NewTimer(cl.backoff(c.attempt))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-cl.done:
		return false
	}
}

// backoff returns the wait before attempt n (1-based): exponential from
// BackoffMin to BackoffMax, with full jitter.
func (cl *Client) backoff(n int) time.Duration {
	d := cl.cfg.BackoffMax
	if n < 30 {
		d = min(cl.cfg.BackoffMin<<(n-1), cl.cfg.BackoffMax)
	}
	return d/2 + rand.N(d/2+1)
}

// frameSize returns the body size of c's request frame.
func (c *call) frameSize() int {
	switch c.kind {
	case TypeAppend:
		return appendFixed + len(c.payload)
	case TypeAppendBatch:
		n := batchFixed
		for _, p := range c.payloads {
			n += batchOpFixed + len(p)
		}
		return n
	case TypeQuery:
		return queryFixed + len(c.query.Request)
	case TypeAdmin:
		return len(c.admin)
	}
	return 0
}

// encode appends c's request frame with correlation id id.
func (c *call) encode(b []byte, id uint64, producer uint64) []byte {
	switch c.kind {
	case TypeAppend:
		return appendAppend(b, id, &AppendRequest{Partition: c.partition, Producer: producer, Sequence: c.seq, CRC: c.crc, Payload: c.payload})
	case TypeAppendBatch:
		return appendAppendBatch(b, id, &AppendBatchRequest{Partition: c.partition, Producer: producer, Sequence: c.seq}, c.payloads, c.crcs)
	case TypeRead:
		return appendRead(b, id, &c.read)
	case TypeQuery:
		return appendQuery(b, id, &c.query)
	case TypeStatus:
		return appendStatus(b, id, &c.status)
	case TypeAdmin:
		return appendAdmin(b, id, c.admin)
	case TypeCursor:
		return appendCursorReq(b, id, &c.cursor)
	case TypePing:
		return appendPing(b, id)
	}
	panic(fmt.Sprintf("transport: encode of a %v call", c.kind))
}

// receive stores the answer body of type t in c. It returns an error only
// for a malformed answer, a protocol violation by the server.
func (c *call) receive(t FrameType, flags uint16, body []byte) error {
	if t == TypeError {
		var m errorMsg
		if err := decodeError(body, &m); err != nil {
			return err
		}
		c.err, c.refused = errorOf(&m), true
		return nil
	}
	if t != c.kind|0x80 {
		return fmt.Errorf("%w: %v answer to a %v request", ErrProtocol, t, c.kind)
	}
	c.err = nil
	switch t {
	case TypeAppendResult:
		var r AppendResult
		if err := decodeAppendResult(body, &r); err != nil {
			return err
		}
		c.buf = append(c.buf[:0], r.Result...)
		c.res = AppendResult{LSN: r.LSN, Epoch: r.Epoch, Result: c.buf, Duplicate: flags&FlagDuplicate != 0}
	case TypeAppendBatchResult:
		it, err := decodeBatchResults(body)
		if err != nil {
			return err
		}
		if it.n != len(c.payloads) {
			return fmt.Errorf("%w: %d results for a batch of %d ops", ErrProtocol, it.n, len(c.payloads))
		}
		c.buf = append(c.buf[:0], it.b...) // results alias the copy
		it.b = c.buf
		c.batch = c.batch[:0]
		var r AppendResult
		for it.next(&r) {
			c.batch = append(c.batch, r)
		}
	case TypeReadResult:
		committed, records, err := decodeRecords(t, body)
		if err != nil {
			return err
		}
		c.committed = committed
		c.buf = append(c.buf[:0], records...)
	case TypeQueryResult:
		var r QueryResult
		if err := decodeQueryResult(body, &r); err != nil {
			return err
		}
		c.lsn, c.committed = r.LSN, r.Committed
		c.buf = append(c.buf[:0], r.Result...)
	case TypeStatusResult:
		var s NodeStatus
		if err := decodeStatusResult(body, &c.status, &s); err != nil {
			return err
		}
		c.node = &s
	case TypeAdminResult:
		c.buf = append(c.buf[:0], body...)
	case TypeCursorResult:
		if err := decodeCursorResult(body, &c.cursors); err != nil {
			return err
		}
	case TypePong:
		if err := decodeEmpty(t, body); err != nil {
			return err
		}
	}
	return nil
}

// retryable reports whether a request that failed with err may succeed if
// sent again, after a backoff or to another node. An append is retried
// with its producer id and sequence, so a retry never applies it twice.
func retryable(err error) bool {
	return errors.Is(err, lockstitch.ErrNotLeader) || errors.Is(err, lockstitch.ErrBusy) ||
		errors.Is(err, lockstitch.ErrUnavailable) || errors.Is(err, lockstitch.ErrShuttingDown) ||
		errors.Is(err, lockstitch.ErrChecksum) || errors.Is(err, lockstitch.ErrTimeout) ||
		errors.Is(err, lockstitch.ErrAborted)
}
