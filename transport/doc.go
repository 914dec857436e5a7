// Package transport is Lockstitch's wire protocol: the binary frames that
// applications, tools and replicas exchange with a node over TCP or a Unix
// socket, the Server a node runs, and the Go Client. Every operation
// crosses it, so its hot paths (append, subscribe) allocate nothing in
// steady state and copy a payload at most once per hop.
//
// The protocol is specified in docs/protocol.md; this comment mirrors its
// essentials. The package knows frames and connections, not partitions:
// the Server dispatches to a Handler, which the replicator implements.
//
// # Frames
//
// Every frame is a 16-byte header and a body. All integers are
// little-endian. The header's layout is the same in every protocol
// version: never change it.
//
//	offset  size  field
//	0       1     version: 1
//	1       1     type (TypeHello, TypeAppend, ...; an answer is request|0x80)
//	2       2     flags: zero when sent, ignored when received
//	4       4     length of the body, checked against the receiver's limit
//	              before the body is read
//	8       8     correlation id: chosen by the client, echoed by the server;
//	              0 is for Hello, Welcome and connection-level Errors
//
// With ServerConfig.TLS and ClientConfig.TLS, a TCP connection runs a
// TLS handshake before Hello and carries the same frames inside TLS; a
// refused handshake is ErrTLS at the client, not retried. Unix sockets
// are always plain.
//
// A connection starts with Hello (protocol versions, the client's frame
// limit, a credentials slot) and Welcome (node id, the server's frame and
// in-flight limits). Then the client pipelines requests, up to the
// in-flight limit, and the server answers each one with the request's
// correlation id, in any order. Bodies use fixed-width fields, with
// uvarint lengths for strings in messages off the hot path (Hello, Error,
// StatusResult). Records travel as runs of log frames in the exact format
// of wal.AppendRecord, so a node can send retained log bytes as they are.
//
// # Guarantees
//
//  1. Integrity end to end: a producer computes each op's CRC-32C
//     (wal.Checksum) and sends it; the server checks it before the Handler
//     sees the op (ErrChecksum otherwise); the Handler stores it in the
//     log; records come back in log frames whose payload CRC is that same
//     value, and the Client checks every record with wal.DecodeRecord on
//     receipt (Records.Next, Subscription.Next).
//  2. Idempotent retries: the Client sends every append with its producer
//     id and a sequence number per partition, and retries through lost
//     connections and leader changes with the same pair, so a partition
//     that deduplicates (the Handler's duty) applies each op once.
//  3. Bounded memory: a receiver never allocates in proportion to a
//     length it has not checked against its limit, and a connection's read
//     buffer grows only as a large frame's bytes actually arrive. A server
//     connection queues at most MaxQueuedBytes of answers before it stops
//     reading requests (plus the answers to requests already in flight), a
//     subscription never sends beyond the credit its receiver granted, and
//     a client that does not read is disconnected after WriteTimeout: a
//     slow or stalled client blocks nothing but itself.
//  4. Bad input never panics and never crashes the process: garbage,
//     truncated frames, absurd lengths, unknown types and stalls (mid-frame,
//     before Hello, idle) get an Error frame where the protocol allows one,
//     and the connection is closed.
//  5. Zero allocations in steady state: encoding and decoding frames, an
//     append round trip through Client and Server (Append, AppendAsync and
//     Wait), Records.Next and Subscription.Next. TestCodecAllocs and
//     TestRoundTripAllocs assert it. Read, Query and Status allocate a few
//     objects per request on the server (a goroutine and a cancellable
//     context); Status allocates freely.
//
// # Implementing a Handler
//
// The Handler's documentation is the contract; in short:
//
//  1. Append and AppendBatch run on the connection's reader goroutine:
//     queue the proposal and return. Complete or Fail the completion exactly
//     once, from any goroutine, now or later. Copy the payload if you keep
//     it past the call. A Handler that is also a GroupAppender gets the
//     Append frames of one partition that arrived together in one
//     AppendGroup call, so that it can queue them with one hand-off.
//  2. Read, Query and Status run on their own goroutine with a context
//     that the client's Cancel, the connection's end or the server's end
//     cancels; honour it, because Server.Close waits for them.
//  3. Subscribe runs on its own goroutine for the life of a subscription:
//     Send records in LSN order with non-decreasing epochs, Flush when
//     caught up, wait for more, and return when the context ends.
//  4. Report failures with package lockstitch's sentinels
//     (lockstitch.ErrNotLeader with a *lockstitch.NotLeaderError hint,
//     ErrBusy, ErrTruncated with a *lockstitch.TruncatedError, ...): they
//     choose the wire code (Code), the Client returns the same sentinel,
//     and its retry policy keys on them.
//
// # Concurrency
//
// A Server and a Client are safe for concurrent use. A Server connection
// has a reader goroutine (decoding and dispatching requests) and a writer
// goroutine (which writes everything queued since its last write in one
// call); completions and streams queue frames under the connection's
// queue lock, the innermost lock of a connection. A Client connection has
// the same two goroutines; a call waits on its own channel, so thousands
// of appends can be in flight from one goroutine (AppendAsync) or many.
// A Subscription's Next must be called from one goroutine at a time.
//
// Buffers given to a Handler alias the connection's read buffer and are
// valid until the Handler's method returns; buffers a Handler gives back
// (results, records) are copied before the call that takes them returns.
// Records and Subscription payloads handed to a Client's user alias the
// Client's buffers until the next call that fills them.
package transport
