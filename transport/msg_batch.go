package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// AppendBatchRequest is several ops for one partition, proposed together:
// the batch succeeds or fails as a whole. The ops are read with Ops.
type AppendBatchRequest struct {
	// Partition is the partition to append to.
	Partition lockstitch.PartitionID
	// Producer identifies the producer for duplicate detection; 0 means
	// none.
	Producer uint64
	// Sequence is the sequence number of the first op; op i has
	// Sequence+i.
	Sequence uint64

	n   int    // number of ops
	ops []byte // the encoded ops, validated
}

// Len returns the number of ops, at least 1.
func (r *AppendBatchRequest) Len() int { return r.n }

// Ops returns an iterator over the ops, in order.
func (r *AppendBatchRequest) Ops() BatchOps { return BatchOps{b: r.ops} }

// verify checks every op's CRC.
func (r *AppendBatchRequest) verify() error {
	it := r.Ops()
	var op BatchOp
	for i := 0; it.Next(&op); i++ {
		if wal.Checksum(op.Payload) != op.CRC {
			return fmt.Errorf("%w: op %d of the batch", lockstitch.ErrChecksum, i)
		}
	}
	return nil
}

// BatchOp is one op of an AppendBatchRequest.
type BatchOp struct {
	// CRC is the CRC-32C of Payload, computed by the producer and
	// verified by the server.
	CRC uint32
	// Payload aliases the request's frame.
	Payload []byte
}

// BatchOps iterates over the ops of an AppendBatchRequest.
type BatchOps struct{ b []byte }

// Next fills op with the next op and reports whether there was one.
func (it *BatchOps) Next(op *BatchOp) bool {
	if len(it.b) < batchOpFixed {
		return false
	}
	n := int(binary.LittleEndian.Uint32(it.b))
	op.CRC = binary.LittleEndian.Uint32(it.b[4:])
	op.Payload = it.b[batchOpFixed : batchOpFixed+n : batchOpFixed+n]
	it.b = it.b[batchOpFixed+n:]
	return true
}

const (
	batchFixed   = 28
	batchOpFixed = 8
)

// appendAppendBatch appends an AppendBatch frame for the payloads, with
// their CRCs in crcs (one per payload).
func appendAppendBatch(dst []byte, id uint64, r *AppendBatchRequest, payloads [][]byte, crcs []uint32) []byte {
	dst, start := beginFrame(dst, TypeAppendBatch, id)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = binary.LittleEndian.AppendUint64(dst, r.Producer)
	dst = binary.LittleEndian.AppendUint64(dst, r.Sequence)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payloads)))
	for i, p := range payloads {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p)))
		dst = binary.LittleEndian.AppendUint32(dst, crcs[i])
		dst = append(dst, p...)
	}
	return endFrame(dst, start)
}

// decodeAppendBatch decodes an AppendBatch body into r, checking that the
// ops fill the body exactly. The ops alias body. It does not verify CRCs.
func decodeAppendBatch(body []byte, r *AppendBatchRequest) error {
	if len(body) < batchFixed {
		return fmt.Errorf("%w: AppendBatch body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	r.Producer = binary.LittleEndian.Uint64(body[8:])
	r.Sequence = binary.LittleEndian.Uint64(body[16:])
	n := binary.LittleEndian.Uint32(body[24:])
	ops := body[batchFixed:]
	if n == 0 || uint64(n) > uint64(len(ops)/batchOpFixed) {
		return fmt.Errorf("%w: AppendBatch of %d ops in %d bytes", ErrProtocol, n, len(ops))
	}
	b := ops
	for i := uint32(0); i < n; i++ {
		if len(b) < batchOpFixed {
			return fmt.Errorf("%w: AppendBatch op %d truncated", ErrProtocol, i)
		}
		l := uint64(binary.LittleEndian.Uint32(b))
		if l > uint64(len(b)-batchOpFixed) {
			return fmt.Errorf("%w: AppendBatch op %d of %d bytes overruns the frame", ErrProtocol, i, l)
		}
		b = b[batchOpFixed+int(l):]
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after AppendBatch ops", ErrProtocol, len(b))
	}
	r.n, r.ops = int(n), ops
	return nil
}

const batchResultFixed = 20

// appendBatchResults appends an AppendBatchResult frame.
func appendBatchResults(dst []byte, id uint64, results []AppendResult) []byte {
	dst, start := beginFrame(dst, TypeAppendBatchResult, id)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(results)))
	for i := range results {
		r := &results[i]
		dst = binary.LittleEndian.AppendUint64(dst, uint64(r.LSN))
		dst = binary.LittleEndian.AppendUint64(dst, r.Epoch)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(r.Result)))
		dst = append(dst, r.Result...)
	}
	return endFrame(dst, start)
}

// batchResults iterates over the results of a decoded AppendBatchResult.
type batchResults struct {
	n int
	b []byte
}

// next fills r with the next result, r.Result aliasing the frame, and
// reports whether there was one.
func (it *batchResults) next(r *AppendResult) bool {
	if len(it.b) < batchResultFixed {
		return false
	}
	r.LSN = wal.LSN(binary.LittleEndian.Uint64(it.b))
	r.Epoch = binary.LittleEndian.Uint64(it.b[8:])
	n := int(binary.LittleEndian.Uint32(it.b[16:]))
	r.Result = it.b[batchResultFixed : batchResultFixed+n : batchResultFixed+n]
	it.b = it.b[batchResultFixed+n:]
	return true
}

// decodeBatchResults validates an AppendBatchResult body and returns an
// iterator over its results.
func decodeBatchResults(body []byte) (batchResults, error) {
	if len(body) < 4 {
		return batchResults{}, fmt.Errorf("%w: AppendBatchResult body of %d bytes", ErrProtocol, len(body))
	}
	n := binary.LittleEndian.Uint32(body)
	rs := body[4:]
	if uint64(n) > uint64(len(rs)/batchResultFixed) {
		return batchResults{}, fmt.Errorf("%w: AppendBatchResult of %d results in %d bytes", ErrProtocol, n, len(rs))
	}
	b := rs
	for i := uint32(0); i < n; i++ {
		if len(b) < batchResultFixed {
			return batchResults{}, fmt.Errorf("%w: AppendBatchResult result %d truncated", ErrProtocol, i)
		}
		l := uint64(binary.LittleEndian.Uint32(b[16:]))
		if l > uint64(len(b)-batchResultFixed) {
			return batchResults{}, fmt.Errorf("%w: AppendBatchResult result %d overruns the frame", ErrProtocol, i)
		}
		b = b[batchResultFixed+int(l):]
	}
	if len(b) != 0 {
		return batchResults{}, fmt.Errorf("%w: %d trailing bytes after AppendBatchResult", ErrProtocol, len(b))
	}
	return batchResults{n: int(n), b: rs}, nil
}
