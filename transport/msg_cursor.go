package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// Cursor (0x0C) changes or lists a partition's durable cursors, and
// CursorResult (0x8C) answers it. Not a hot path: the decoders allocate.
//
// Cursor body (part of the format, never change):
//
//	partition  8  PartitionID
//	op         1  CursorOp
//	zero       7
//	LSN        8  the cursor's new LSN (ack, reset), else 0
//	name       uvarint length + bytes, 1 to 255 (empty for list)
//
// CursorResult body: uvarint count, then per cursor: name (uvarint length
// + bytes), LSN (8), flags (1; bit 0: lapsed). Empty (count 0) except for
// a list.

// CursorOp says what a Cursor request asks for. Part of the wire format:
// never renumber.
type CursorOp uint8

// Cursor ops.
const (
	// CursorAck records that the cursor's consumer holds every op up to
	// LSN (never moving the cursor back), creating the cursor.
	CursorAck CursorOp = 1
	// CursorReset sets the cursor to LSN and clears its lapse.
	CursorReset CursorOp = 2
	// CursorDelete deletes the cursor.
	CursorDelete CursorOp = 3
	// CursorList lists the partition's cursors.
	CursorList CursorOp = 4
)

// String returns the op's name.
func (o CursorOp) String() string {
	switch o {
	case CursorAck:
		return "ack"
	case CursorReset:
		return "reset"
	case CursorDelete:
		return "delete"
	case CursorList:
		return "list"
	}
	return fmt.Sprintf("CursorOp(%d)", uint8(o))
}

// maxCursorName bounds a cursor's name on the wire.
const maxCursorName = 255

// CursorRequest is a decoded Cursor request.
type CursorRequest struct {
	Partition lockstitch.PartitionID
	Op        CursorOp
	LSN       wal.LSN
	Name      string
}

// Cursor is one durable cursor in a CursorResult.
type Cursor struct {
	Name   string
	LSN    wal.LSN
	Lapsed bool
}

// CursorResult is the answer to a CursorRequest: the cursors, for a list.
type CursorResult struct {
	Cursors []Cursor
}

// appendCursorReq appends a Cursor frame.
func appendCursorReq(dst []byte, id uint64, r *CursorRequest) []byte {
	dst, start := beginFrame(dst, TypeCursor, id)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = append(dst, byte(r.Op), 0, 0, 0, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.LSN))
	dst = appendString(dst, r.Name)
	return endFrame(dst, start)
}

// decodeCursorReq decodes a Cursor body into r. An unknown op or a name
// out of its bounds decodes; the server refuses them as invalid
// arguments.
func decodeCursorReq(body []byte, r *CursorRequest) error {
	d := decoder{b: body}
	r.Partition = lockstitch.PartitionID(d.u64())
	r.Op = CursorOp(d.u8())
	d.zeros(7)
	r.LSN = wal.LSN(d.u64())
	r.Name = d.str(maxCursorName)
	return d.finish()
}

// appendCursorResult appends a CursorResult frame.
func appendCursorResult(dst []byte, id uint64, r *CursorResult) []byte {
	dst, start := beginFrame(dst, TypeCursorResult, id)
	dst = binary.AppendUvarint(dst, uint64(len(r.Cursors)))
	for _, c := range r.Cursors {
		dst = appendString(dst, c.Name)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(c.LSN))
		flags := byte(0)
		if c.Lapsed {
			flags = 1
		}
		dst = append(dst, flags)
	}
	return endFrame(dst, start)
}

// decodeCursorResult decodes a CursorResult body into r.
func decodeCursorResult(body []byte, r *CursorResult) error {
	d := decoder{b: body}
	n := d.count(1 + 8 + 1)
	r.Cursors = nil
	if n > 0 {
		r.Cursors = make([]Cursor, 0, n)
	}
	for range n {
		c := Cursor{Name: d.str(maxCursorName), LSN: wal.LSN(d.u64())}
		switch flags := d.u8(); flags {
		case 0:
		case 1:
			c.Lapsed = true
		default:
			if d.err == nil {
				d.err = fmt.Errorf("%w: cursor flags %#x", ErrProtocol, flags)
			}
		}
		r.Cursors = append(r.Cursors, c)
	}
	return d.finish()
}
