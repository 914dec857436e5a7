package transport

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// QueryRequest is a request for a partition's plugin.
type QueryRequest struct {
	// Partition is the partition to query.
	Partition lockstitch.PartitionID
	// Consistency is the level asked for.
	Consistency lockstitch.Consistency
	// MaxStaleness bounds, for Bounded, how stale the answering
	// replica's state may be: it must hold every op committed before
	// MaxStaleness ago. On the wire, in microseconds.
	MaxStaleness time.Duration
	// Request is opaque to the transport. When decoded, it aliases the
	// frame, or a buffer the server owns for the duration of the call.
	Request []byte
}

const queryFixed = 24

// appendQuery appends a Query frame.
func appendQuery(dst []byte, id uint64, r *QueryRequest) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeQuery, Length: uint32(queryFixed + len(r.Request)), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = append(dst, byte(r.Consistency), 0, 0, 0, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(max(r.MaxStaleness, 0)/time.Microsecond))
	return append(dst, r.Request...)
}

// decodeQuery decodes a Query body into r; r.Request aliases body. An
// unknown consistency level decodes; the server refuses it as an invalid
// argument.
func decodeQuery(body []byte, r *QueryRequest) error {
	if len(body) < queryFixed {
		return fmt.Errorf("%w: Query body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	r.Consistency = lockstitch.Consistency(body[8])
	us := binary.LittleEndian.Uint64(body[16:])
	r.MaxStaleness = time.Duration(min(us, math.MaxInt64/uint64(time.Microsecond))) * time.Microsecond
	r.Request = body[queryFixed:len(body):len(body)]
	return nil
}

// QueryResult is the answer to a QueryRequest.
type QueryResult struct {
	// LSN is the LSN the answer reflects: every op up to it is applied.
	LSN wal.LSN
	// Committed is the committed LSN the answering replica knows.
	Committed wal.LSN
	// Result is opaque to the transport. A Handler appends to it (it
	// starts empty, backed by a pooled buffer); the Client fills it from
	// the frame.
	Result []byte
}

const queryResultFixed = 16

// appendQueryResult appends a QueryResult frame.
func appendQueryResult(dst []byte, id uint64, r *QueryResult) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeQueryResult, Length: uint32(queryResultFixed + len(r.Result)), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.LSN))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Committed))
	return append(dst, r.Result...)
}

// decodeQueryResult decodes a QueryResult body into r; r.Result aliases
// body.
func decodeQueryResult(body []byte, r *QueryResult) error {
	if len(body) < queryResultFixed {
		return fmt.Errorf("%w: QueryResult body of %d bytes", ErrProtocol, len(body))
	}
	r.LSN = wal.LSN(binary.LittleEndian.Uint64(body))
	r.Committed = wal.LSN(binary.LittleEndian.Uint64(body[8:]))
	r.Result = body[queryResultFixed:len(body):len(body)]
	return nil
}
