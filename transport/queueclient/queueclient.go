// Package queueclient is the typed Go client of the built-in queue
// plugin (replicator/queue): Enqueue, Dequeue with a lease, Ack, Extend,
// Peek and Len on a partition created with --plugin queue. It encodes the
// ops of package ops/queue and sends them with a *transport.Client, which
// routes them to the leader and retries them through leader changes; it
// links neither dragonboat nor pebble.
//
// Leases run on the queue's clock: the leaders' wall clocks, carried in
// each op and never going back (see replicator/queue). A deadline a call
// returns is in that clock, which may differ from the caller's by the
// clock skew between the machines.
//
// Retries. The transport client sends every op under its producer id and
// a sequence number, so an op it retries after a lost answer, across a
// leader change too, is applied once and answered with its first result.
// A call that fails (its context ends first) may or may not have taken
// effect: an Enqueue may have added its item; a Dequeue may have leased
// an item nobody saw, which comes back when its lease expires.
package queueclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch"
	qops "github.com/lockstitch/lockstitch/ops/queue"
	"github.com/lockstitch/lockstitch/transport"
)

// Errors of the calls, beside the transport's.
var (
	// ErrEmpty: Dequeue found no ready item.
	ErrEmpty = errors.New("queueclient: queue empty")
	// ErrLost: Ack or Extend named a delivery that no longer holds its
	// lease (acknowledged, expired, or redelivered).
	ErrLost = errors.New("queueclient: lease lost")
	// ErrRejected: the queue rejected the op as invalid (a lease out of
	// range, or a partition whose plugin is not the queue).
	ErrRejected = errors.New("queueclient: op rejected")
)

// Client calls one queue partition.
type Client struct {
	cl *transport.Client
	p  lockstitch.PartitionID
	// Consistency is how Peek and Len read; zero means Linearizable.
	Consistency lockstitch.Consistency
	// MaxStaleness bounds a Bounded read.
	MaxStaleness time.Duration
}

// New returns a Client of queue partition p over cl.
func New(cl *transport.Client, p lockstitch.PartitionID) *Client {
	return &Client{cl: cl, p: p}
}

// Delivery is an item handed out by Dequeue. ID and Delivery name the
// delivery for Ack and Extend.
type Delivery struct {
	ID uint64
	// Delivery is how many times the item has been handed out, this time
	// included (1 the first time).
	Delivery uint32
	// Deadline is when the lease expires, in the queue's clock.
	Deadline time.Time
	Payload  []byte
	// LSN is the LSN of the dequeue op.
	LSN lockstitch.LSN
}

func (c *Client) do(ctx context.Context, op []byte, kind qops.Kind, r *qops.Result) (lockstitch.LSN, error) {
	res, err := c.cl.Append(ctx, c.p, op)
	if err != nil {
		return 0, fmt.Errorf("queue partition %d: %s: %w", c.p, kind, err)
	}
	if res.Duplicate {
		// A retry answered as a duplicate: the op was applied; what it
		// did (the item a dequeue leased) is not known.
		return res.LSN, fmt.Errorf("queue partition %d: %s at LSN %d: %w", c.p, kind, res.LSN, transport.ErrResultLost)
	}
	if err := qops.DecodeResult(res.Result, r); err != nil {
		return res.LSN, fmt.Errorf("queue partition %d: %s at LSN %d: %w (is its plugin the queue?)", c.p, kind, res.LSN, err)
	}
	switch {
	case r.Status == qops.StatusInvalid:
		return res.LSN, fmt.Errorf("queue partition %d: %s at LSN %d: %w", c.p, kind, res.LSN, ErrRejected)
	case r.Kind != kind:
		return res.LSN, fmt.Errorf("queue partition %d: %s at LSN %d answered as %s", c.p, kind, res.LSN, r.Kind)
	case r.Status == qops.StatusEmpty:
		return res.LSN, ErrEmpty
	case r.Status == qops.StatusLost:
		return res.LSN, fmt.Errorf("queue partition %d: %s at LSN %d: %w", c.p, kind, res.LSN, ErrLost)
	}
	return res.LSN, nil
}

// Enqueue adds payload at the tail and returns its item id and the op's
// LSN.
func (c *Client) Enqueue(ctx context.Context, payload []byte) (id uint64, lsn lockstitch.LSN, err error) {
	var r qops.Result
	lsn, err = c.do(ctx, qops.AppendEnqueue(nil, payload), qops.KindEnqueue, &r)
	return r.ID, lsn, err
}

// Dequeue leases the first ready item for lease (up to qops.MaxLease);
// ErrEmpty if there is none. Ack it before the deadline, or it comes
// back.
func (c *Client) Dequeue(ctx context.Context, lease time.Duration) (Delivery, error) {
	if lease <= 0 || lease > qops.MaxLease {
		return Delivery{}, fmt.Errorf("%w: lease %v out of (0, %v]", lockstitch.ErrInvalidArgument, lease, qops.MaxLease)
	}
	var r qops.Result
	lsn, err := c.do(ctx, qops.AppendDequeue(nil, lease), qops.KindDequeue, &r)
	if err != nil {
		return Delivery{LSN: lsn}, err
	}
	return Delivery{ID: r.ID, Delivery: r.Delivery, Deadline: r.Deadline, Payload: r.Payload, LSN: lsn}, nil
}

// Ack acknowledges delivery number delivery of item id: the item is
// done and removed. ErrLost if that delivery no longer holds the lease.
func (c *Client) Ack(ctx context.Context, id uint64, delivery uint32) error {
	var r qops.Result
	_, err := c.do(ctx, qops.AppendAck(nil, id, delivery), qops.KindAck, &r)
	return err
}

// Extend moves the deadline of delivery number delivery of item id to
// lease after the op's time and returns it. ErrLost if that delivery no
// longer holds the lease.
func (c *Client) Extend(ctx context.Context, id uint64, delivery uint32, lease time.Duration) (time.Time, error) {
	if lease <= 0 || lease > qops.MaxLease {
		return time.Time{}, fmt.Errorf("%w: lease %v out of (0, %v]", lockstitch.ErrInvalidArgument, lease, qops.MaxLease)
	}
	var r qops.Result
	_, err := c.do(ctx, qops.AppendExtend(nil, id, delivery, lease), qops.KindExtend, &r)
	return r.Deadline, err
}

func (c *Client) query(ctx context.Context, req []byte) (transport.QueryResult, error) {
	res, err := c.cl.Query(ctx, c.p, transport.QueryOptions{Consistency: c.Consistency, MaxStaleness: c.MaxStaleness}, req, nil)
	if err != nil {
		return res, fmt.Errorf("queue partition %d: query: %w", c.p, err)
	}
	return res, nil
}

// Lengths is Len's answer.
type Lengths struct {
	qops.Lengths
	// LSN is the LSN the answer reflects.
	LSN lockstitch.LSN
}

// Len returns how many items are ready, leased and dead-lettered, and the
// queue's clock.
func (c *Client) Len(ctx context.Context) (Lengths, error) {
	res, err := c.query(ctx, qops.AppendLenQuery(nil))
	if err != nil {
		return Lengths{}, err
	}
	var l Lengths
	if err := qops.DecodeLengths(res.Result, &l.Lengths); err != nil {
		return Lengths{}, fmt.Errorf("queue partition %d: length: %w", c.p, err)
	}
	l.LSN = res.LSN
	return l, nil
}

// Peek returns the first limit items (1 to qops.MaxPeek) of list,
// without leasing them, and the LSN the answer reflects.
func (c *Client) Peek(ctx context.Context, list qops.List, limit int) ([]qops.Item, lockstitch.LSN, error) {
	if limit < 1 || limit > qops.MaxPeek {
		return nil, 0, fmt.Errorf("%w: peek limit %d out of [1, %d]", lockstitch.ErrInvalidArgument, limit, qops.MaxPeek)
	}
	res, err := c.query(ctx, qops.AppendPeekQuery(nil, list, uint32(limit)))
	if err != nil {
		return nil, 0, err
	}
	items, err := qops.DecodePeek(res.Result)
	if err != nil {
		return nil, 0, fmt.Errorf("queue partition %d: peek: %w", c.p, err)
	}
	return items, res.LSN, nil
}
