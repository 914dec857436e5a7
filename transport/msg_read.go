package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// ReadRequest asks for committed ops of a partition from an LSN on, or,
// with Reverse, from an LSN down.
type ReadRequest struct {
	// Partition is the partition to read.
	Partition lockstitch.PartitionID
	// From is the first LSN wanted, at least 1. With Reverse, it is the
	// highest, and 0 means the last committed op.
	From wal.LSN
	// MaxOps bounds the number of records returned, at least 1.
	MaxOps int
	// MaxBytes bounds the records returned, counted in log frame bytes
	// (wal.FrameSize), at least 1. One record is returned even if it alone
	// exceeds MaxBytes.
	MaxBytes int
	// Reverse reads from From down to the first retained LSN: the records
	// come highest LSN first.
	Reverse bool
}

// Read body sizes: a forward read has no flags; a read with flags (bit 0:
// reverse) is longer by a flags word and a zero word, so that a server
// that predates them still serves forward reads.
const (
	readSize      = 24
	readFlagsSize = 32
	readReverse   = 1
)

// appendRead appends a Read frame. MaxOps and MaxBytes must fit in 32
// bits.
func appendRead(dst []byte, id uint64, r *ReadRequest) []byte {
	size := readSize
	if r.Reverse {
		size = readFlagsSize
	}
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeRead, Length: uint32(size), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.From))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(r.MaxOps))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(r.MaxBytes))
	if r.Reverse {
		dst = binary.LittleEndian.AppendUint32(dst, readReverse)
		dst = binary.LittleEndian.AppendUint32(dst, 0)
	}
	return dst
}

// decodeRead decodes a Read body into r. Zero limits decode; the server
// refuses them as invalid arguments.
func decodeRead(body []byte, r *ReadRequest) error {
	if len(body) != readSize && len(body) != readFlagsSize {
		return fmt.Errorf("%w: Read body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	r.From = wal.LSN(binary.LittleEndian.Uint64(body[8:]))
	r.MaxOps = int(binary.LittleEndian.Uint32(body[16:]))
	r.MaxBytes = int(binary.LittleEndian.Uint32(body[20:]))
	r.Reverse = false
	if len(body) == readFlagsSize {
		flags := binary.LittleEndian.Uint32(body[24:])
		if flags&^readReverse != 0 || binary.LittleEndian.Uint32(body[28:]) != 0 {
			return fmt.Errorf("%w: Read flags %#x", ErrProtocol, flags)
		}
		r.Reverse = flags&readReverse != 0
	}
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
	reverse  bool    // records come highest LSN first
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
		reverse:  req.Reverse,
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
// starting at the request's From (descending for a reverse read, whose
// first record may be below From: From was 0 or beyond the commit LSN):
// Add panics otherwise, because a
// reader that skips or repeats an LSN is broken. Add copies rec; rec.Payload may
// be reused once Add returns. It computes the frame (and the payload
// CRC-32C) from rec, as wal.AppendRecord does, and refuses a record whose
// rec.CRC (unless 0) differs from its payload's: the server then answers
// ErrChecksum.
func (r *ReadResult) Add(rec *wal.Record) bool {
	if r.ops >= r.maxOps || r.err != nil {
		return false
	}
	if r.reverse && r.ops == 0 && (r.next == 0 || rec.LSN < r.next) {
		r.next = rec.LSN // from the end: From was 0 or beyond it
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
	if r.reverse {
		r.next--
		if r.next == 0 {
			r.maxOps = r.ops // LSN 1 was the last there is
		}
	} else {
		r.next++
	}
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
