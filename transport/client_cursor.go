package transport

import (
	"context"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// AckCursor records at partition p's leader that the consumer behind
// durable cursor name holds every op up to lsn, creating the cursor if
// there is none; an ack never moves a cursor back. While a cursor lags by
// at most the node's CursorRetainOps, the partition retains the ops after
// it. It fails with lockstitch.ErrCursorLapsed once the cursor lapsed
// (come back through SubscribeWith's Restore, then ResetCursor). It is
// retried as Append is: an ack is idempotent.
func (cl *Client) AckCursor(ctx context.Context, p lockstitch.PartitionID, name string, lsn wal.LSN) error {
	_, err := cl.cursor(ctx, CursorRequest{Partition: p, Op: CursorAck, Name: name, LSN: lsn})
	return err
}

// ResetCursor sets durable cursor name of partition p to lsn, creating it
// if there is none, and clears its lapse.
func (cl *Client) ResetCursor(ctx context.Context, p lockstitch.PartitionID, name string, lsn wal.LSN) error {
	_, err := cl.cursor(ctx, CursorRequest{Partition: p, Op: CursorReset, Name: name, LSN: lsn})
	return err
}

// DeleteCursor deletes durable cursor name of partition p. A missing
// cursor fails with lockstitch.ErrInvalidArgument (also when a retry
// finds the cursor deleted by the attempt before it).
func (cl *Client) DeleteCursor(ctx context.Context, p lockstitch.PartitionID, name string) error {
	_, err := cl.cursor(ctx, CursorRequest{Partition: p, Op: CursorDelete, Name: name})
	return err
}

// Cursors lists partition p's durable cursors, by name, as the node the
// Client routes p's requests to (its leader, once known) has applied
// them.
func (cl *Client) Cursors(ctx context.Context, p lockstitch.PartitionID) ([]Cursor, error) {
	return cl.cursor(ctx, CursorRequest{Partition: p, Op: CursorList})
}

func (cl *Client) cursor(ctx context.Context, req CursorRequest) ([]Cursor, error) {
	c := cl.getCall(TypeCursor)
	c.partition, c.cursor = req.Partition, req
	abandoned, err := cl.do(ctx, c)
	if abandoned {
		return nil, err
	}
	cursors := c.cursors.Cursors
	cl.putCall(c)
	return cursors, err
}
