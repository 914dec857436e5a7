package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// ReadRequest asks for committed ops of a partition from an LSN on.
type ReadRequest struct {
	// Partition is the partition to read.
	Partition lockstitch.PartitionID
	// From is the first LSN wanted, at least 1.
	From wal.LSN
	// MaxOps bounds the number of records returned, at least 1.
	MaxOps int
	// MaxBytes bounds the records returned, counted in log frame bytes
	// (wal.FrameSize), at least 1. One record is returned even if it alone
	// exceeds MaxBytes.
	MaxBytes int
}

const readSize = 24

// appendRead appends a Read frame. MaxOps and MaxBytes must fit in 32
// bits.
func appendRead(dst []byte, id uint64, r *ReadRequest) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeRead, Length: readSize, ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.From))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(r.MaxOps))
	return binary.LittleEndian.AppendUint32(dst, uint32(r.MaxBytes))
}

// decodeRead decodes a Read body into r. Zero limits decode; the server
// refuses them as invalid arguments.
func decodeRead(body []byte, r *ReadRequest) error {
	if len(body) != readSize {
		return fmt.Errorf("%w: Read body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	r.From = wal.LSN(binary.LittleEndian.Uint64(body[8:]))
	r.MaxOps = int(binary.LittleEndian.Uint32(body[16:]))
	r.MaxBytes = int(binary.LittleEndian.Uint32(body[20:]))
	return nil
}

// appendChecked appends the log frame of rec to dst, as wal.AppendRecord
// does, and checks that the payload CRC-32C it computes equals rec.CRC
// (the CRC stored with the op, which wal reads fill in after verifying
// it), so that a payload damaged in memory between the log and the
// socket is refused rather than sent with a fresh, matching CRC. A zero
// rec.CRC means unknown and is not checked. On a mismatch dst is returned
// unchanged.
func appendChecked(dst []byte, rec *wal.Record) ([]byte, error) {
	n := len(dst)
	dst = wal.AppendRecord(dst, rec)
	if got := binary.LittleEndian.Uint32(dst[n+4:]); rec.CRC != 0 && got != rec.CRC {
		return dst[:n], fmt.Errorf("%w: record %d: payload CRC-32C %08x, stored %08x", lockstitch.ErrChecksum, rec.LSN, got, rec.CRC)
	}
	return dst, nil
}

// ReadResult collects the answer to a ReadRequest. A Handler adds records
// with Add, in LSN order from the request's From, and sets Committed.
type ReadResult struct {
	// Committed is the committed LSN the answering replica knows.
	Committed wal.LSN

	buf      []byte  // the frame being built, header and committed LSN first
	next     wal.LSN // LSN the next record must have
	ops      int
	maxOps   int
	maxBytes int // limit on record bytes asked for
	maxFrame int // limit on record bytes the frame can carry
	tooLarge bool
	err      error // a record refused by its CRC
}

// reset prepares r to collect the answer to req in buf, which must be
// empty, with at most maxFrame bytes of records.
func (r *ReadResult) reset(buf []byte, req *ReadRequest, maxFrame int) {
	*r = ReadResult{
		buf:      append(buf, make([]byte, readResultFixed+HeaderSize)...),
		next:     req.From,
		maxOps:   req.MaxOps,
		maxBytes: req.MaxBytes,
		maxFrame: maxFrame,
	}
}

// Add appends rec to the answer and reports whether there is room for
// another record. It refuses (and returns false) a record that would
// exceed the request's limits, except for the first record, which is
// refused only if it cannot fit in a frame at all (the server then answers
// ErrTooLarge when the result is empty). Records must come in LSN order
// starting at the request's From: Add panics otherwise, because a reader
// that skips or repeats an LSN is broken. Add copies rec; rec.Payload may
// be reused once Add returns. It computes the frame (and the payload
// CRC-32C) from rec, as wal.AppendRecord does, and refuses a record whose
// rec.CRC (unless 0) differs from its payload's: the server then answers
// ErrChecksum.
func (r *ReadResult) Add(rec *wal.Record) bool {
	if r.ops >= r.maxOps || r.err != nil {
		return false
	}
	if rec.LSN != r.next {
		panic(fmt.Sprintf("transport: ReadResult.Add got LSN %d, want %d: records must be consecutive from the request's From", rec.LSN, r.next))
	}
	size := wal.FrameSize(len(rec.Payload))
	used := r.bytes()
	if used+size > r.maxFrame {
		if r.ops == 0 {
			r.tooLarge = true
		}
		return false
	}
	if r.ops > 0 && used+size > r.maxBytes {
		return false
	}
	var err error
	if r.buf, err = appendChecked(r.buf, rec); err != nil {
		r.err = err
		return false
	}
	r.ops++
	r.next++
	return r.ops < r.maxOps && r.bytes() < r.maxBytes
}

// Len returns the number of records added.
func (r *ReadResult) Len() int { return r.ops }

// bytes returns the record bytes added so far.
func (r *ReadResult) bytes() int { return len(r.buf) - HeaderSize - readResultFixed }

const readResultFixed = 8

// finish completes the ReadResult frame in r.buf with correlation id id.
func (r *ReadResult) finish(id uint64) []byte {
	AppendHeader(r.buf[:0], Header{Version: Version, Type: TypeReadResult, Length: uint32(len(r.buf) - HeaderSize), ID: id})
	binary.LittleEndian.PutUint64(r.buf[HeaderSize:], uint64(r.Committed))
	return r.buf
}

// appendReadResult appends a ReadResult frame carrying records, which
// must be log frames.
func appendReadResult(dst []byte, id uint64, committed wal.LSN, records []byte) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeReadResult, Length: uint32(readResultFixed + len(records)), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(committed))
	return append(dst, records...)
}

// decodeRecords decodes the body of a ReadResult or Data frame: the
// committed LSN and the records, which alias body. The records are checked
// when iterated, by wal.DecodeRecord.
func decodeRecords(t FrameType, body []byte) (wal.LSN, []byte, error) {
	if len(body) < readResultFixed {
		return 0, nil, fmt.Errorf("%w: %v body of %d bytes", ErrProtocol, t, len(body))
	}
	return wal.LSN(binary.LittleEndian.Uint64(body)), body[readResultFixed:], nil
}
