package transport

import (
	"context"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch"
)

// QueryOptions chooses a Query's consistency.
type QueryOptions struct {
	// Consistency is the level; zero means Linearizable.
	Consistency lockstitch.Consistency
	// MaxStaleness bounds, for Bounded, how stale the answering replica's
	// state may be.
	MaxStaleness time.Duration
}

// Query sends request to partition p's plugin and returns the answer,
// with Result appended to dst. It is sent to the partition's leader and
// retried as Append is. With a reused dst of enough capacity, it does not
// allocate in steady state.
func (cl *Client) Query(ctx context.Context, p lockstitch.PartitionID, opts QueryOptions, request, dst []byte) (QueryResult, error) {
	if opts.Consistency == 0 {
		opts.Consistency = lockstitch.Linearizable
	}
	c := cl.getCall(TypeQuery)
	c.partition = p
	c.query = QueryRequest{Partition: p, Consistency: opts.Consistency, MaxStaleness: opts.MaxStaleness, Request: request}
	abandoned, err := cl.do(ctx, c)
	if abandoned {
		return QueryResult{Result: dst}, err
	}
	res := QueryResult{Result: dst}
	if err == nil {
		res = QueryResult{LSN: c.lsn, Committed: c.committed, Result: append(dst, c.buf...)}
	}
	cl.putCall(c)
	return res, err
}

// Status returns the status of the node at addr, or of any node the
// Client is connected to when addr is "".
func (cl *Client) Status(ctx context.Context, addr string) (*NodeStatus, error) {
	return cl.status(ctx, addr, true, StatusRequest{})
}

// PartitionStatus returns the status of partition p as the node the
// Client routes p's requests to sees it: the leader, with every replica's
// progress, once a call has found the leader; any node before that.
func (cl *Client) PartitionStatus(ctx context.Context, p lockstitch.PartitionID) (*PartitionStatus, error) {
	st, err := cl.status(ctx, "", false, StatusRequest{OnePartition: true, Partition: p})
	if err != nil {
		return nil, err
	}
	if len(st.Partitions) != 1 || st.Partitions[0].Partition != p {
		return nil, fmt.Errorf("%w: status of partition %d has %d partitions", ErrProtocol, p, len(st.Partitions))
	}
	return &st.Partitions[0], nil
}

// ProducerStatus returns what partition p remembers of this client's
// producer (ClientConfig.ProducerID), as its leader sees it: a producer
// that restarts with the same id resumes from it (see SetSequence)
// with no gap and no duplicate. A server from before this call takes the
// request for a protocol error and closes the connection (the calls in
// flight on it are retried elsewhere): ask only servers that have it.
func (cl *Client) ProducerStatus(ctx context.Context, p lockstitch.PartitionID) (*ProducerStatus, error) {
	st, err := cl.status(ctx, "", false, StatusRequest{OnePartition: true, Partition: p, Producer: lockstitch.ProducerID(cl.producer)})
	if err != nil {
		return nil, err
	}
	if st.Producer == nil || st.Producer.Producer != lockstitch.ProducerID(cl.producer) {
		return nil, fmt.Errorf("%w: status of producer %d of partition %d has no answer for it", ErrProtocol, cl.producer, p)
	}
	return st.Producer, nil
}

func (cl *Client) status(ctx context.Context, addr string, byAddr bool, req StatusRequest) (*NodeStatus, error) {
	c := cl.getCall(TypeStatus)
	req.ReportAges = true // servers that predate them answer without
	c.addr, c.byAddr, c.partition, c.status = addr, byAddr, req.Partition, req
	abandoned, err := cl.do(ctx, c)
	if abandoned {
		return nil, err
	}
	st := c.node
	cl.putCall(c)
	return st, err
}

// Ping sends a Ping to the node at addr (any connected node for "") and
// waits for its Pong.
func (cl *Client) Ping(ctx context.Context, addr string) error {
	c := cl.getCall(TypePing)
	c.addr, c.byAddr = addr, true
	abandoned, err := cl.do(ctx, c)
	if !abandoned {
		cl.putCall(c)
	}
	return err
}
