package transport

import (
	"context"
)

// Handler serves the requests a Server receives. The replicator implements
// it; tests use an in-memory fake. A Handler is shared by every connection
// and must be safe for concurrent use.
//
// Errors: a Handler fails a request with an error that matches one of the
// package's sentinels (errors.Is) or is a *NotLeaderError or
// *TruncatedError; the server sends the matching code, with the error's
// text as the message. wal.ErrTruncated and wal.ErrTooLarge map to
// Truncated and TooLarge, context.Canceled to Canceled and
// context.DeadlineExceeded to Timeout. Any other error is sent as
// Internal. The mapping, by code:
//
//	NotLeader          *NotLeaderError{LeaderAddr} (hint) or ErrNotLeader (no hint)
//	Busy               ErrBusy: the proposal queue is full; the client backs off
//	PartitionNotFound  ErrPartitionNotFound
//	Truncated          *TruncatedError{First} or ErrTruncated (first LSN unknown)
//	Checksum           ErrChecksum (the server checks CRCs itself before Append)
//	TooLarge           ErrTooLarge: an op above the partition's limit
//	Unavailable        ErrUnavailable: no quorum, too far behind, catching up
//	ShuttingDown       ErrShuttingDown
//	InvalidArgument    ErrInvalidArgument
//	Timeout            ErrTimeout or context.DeadlineExceeded
//	Canceled           ErrCanceled or context.Canceled
//	StaleSequence      ErrStaleSequence: a producer sequence too old to tell
//	Diverged           *DivergedError{Committed, Epoch}: a marker ahead of the committed stream
//	CursorLapsed       ErrCursorLapsed: a durable cursor fell too far behind
//
// Buffers: every slice in a request aliases a buffer the server reuses
// once the method returns (for Append and AppendBatch: once Append or
// AppendBatch returns, not once the completion is called). Copy what
// must outlive the call. Slices a Handler passes to the server (results,
// records) are copied before the call that takes them returns.
type Handler interface {
	// Append proposes one op and arranges for done to be completed
	// exactly once, with the op's result or an error, from any goroutine,
	// before Append returns or later. The server has verified
	// req.CRC == wal.Checksum(req.Payload); the CRC is the one to store
	// with the op in the wal. req.Producer and req.Sequence identify a
	// retry: an op already committed for the pair must be answered with
	// its original result, not appended again.
	//
	// Append is called on the connection's reader goroutine: it must not
	// block (queue the proposal and return; fail with ErrBusy when the
	// queue is full), and it must copy req.Payload if it needs it after
	// returning. No goroutine is started per append.
	Append(req *AppendRequest, done AppendCompletion)

	// AppendBatch is Append for several ops of one partition, with the
	// same rules. The batch succeeds or fails as a whole: done is
	// completed with one result per op, in order, or with an error.
	AppendBatch(req *AppendBatchRequest, done BatchCompletion)

	// Read adds the partition's committed records from req.From on to res,
	// with res.Add, up to req's limits (Add says when to stop), and sets
	// res.Committed. It adds nothing when req.From is beyond the commit
	// LSN, and fails with a *lockstitch.TruncatedError when req.From is
	// below the first retained LSN. With req.Reverse it adds the records
	// from req.From (0 or beyond the commit LSN: the last committed one)
	// down to the first retained one, highest first. Read runs on its own goroutine and should honour
	// ctx, which is cancelled when the client cancels the request, the
	// connection closes or the server stops.
	Read(ctx context.Context, req *ReadRequest, res *ReadResult) error

	// Subscribe streams the partition's committed records from
	// req.Marker+1 on to s, then each record as it commits, with s.Send,
	// calling s.Flush whenever it has sent what is at hand (before it
	// waits for more), and s.SetCommitted as the commit LSN moves. Send
	// waits for the subscriber's credit; Subscribe must not hold locks
	// others need while in Send. It returns when ctx is cancelled (the
	// subscriber cancelled, the connection closed, the server is
	// stopping) or with an error that ends the stream: a *TruncatedError
	// when Marker+1 is no longer retained, a *NotLeaderError, ... A nil
	// return or ctx's error ends the stream normally. Subscribe runs on
	// its own goroutine, one per subscription.
	Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error

	// Query answers a plugin request at req.Consistency, appending the
	// answer to res.Result and setting res.LSN (what the answer reflects)
	// and res.Committed. A replica that cannot answer at that level fails
	// with a *NotLeaderError (Linearizable, LeaderLocal on a follower) or
	// ErrUnavailable (Bounded, too far behind). Query runs on its own
	// goroutine and should honour ctx.
	Query(ctx context.Context, req *QueryRequest, res *QueryResult) error

	// Admin serves an administrative request (creating partitions,
	// changing membership, ...; see AdminOp), filling res. It fails with
	// lockstitch.ErrInvalidArgument for an op it does not know or fields
	// that make no sense for it. req and res are the Handler's until
	// Admin returns. Admin runs on its own goroutine and is not on a hot
	// path.
	Admin(ctx context.Context, req *AdminRequest, res *AdminResult) error

	// Cursor changes a partition's durable cursor (CursorAck,
	// CursorReset, CursorDelete: on the leader, a *NotLeaderError
	// elsewhere) or lists its cursors into res (CursorList, from this
	// replica). It fails with lockstitch.ErrCursorLapsed for an ack of a
	// lapsed cursor and lockstitch.ErrInvalidArgument for an unknown op,
	// a bad name or a missing cursor. Cursor runs on its own goroutine.
	Cursor(ctx context.Context, req *CursorRequest, res *CursorResult) error

	// Status describes the node, or one partition of it when
	// req.OnePartition is set (failing with ErrPartitionNotFound when the
	// node does not host it). The server encodes the result before
	// Status's caller returns; the Handler may reuse it afterwards. Status
	// runs on its own goroutine and is not on a hot path.
	Status(ctx context.Context, req *StatusRequest) (*NodeStatus, error)
}

// GroupAppender is an optional capability of a Handler. A server whose
// Handler has it hands over, in one call, the Append requests for one
// partition that it decoded from one connection's read buffer in a row
// (frames that had all arrived when the first was read), instead of one
// Append call each, so that the Handler queues them with one hand-off.
// Every rule of Append holds for each request and its completion:
// done[i] completes reqs[i], exactly once; AppendGroup must not block;
// the server has verified each CRC; reqs, done and the payloads alias the
// server's buffers and must be copied if needed after AppendGroup
// returns.
type GroupAppender interface {
	AppendGroup(reqs []AppendRequest, done []AppendCompletion)
}
