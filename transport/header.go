package transport

import (
	"encoding/binary"
	"fmt"
)

// Version is the protocol version this package speaks.
const Version = 1

// HeaderSize is the size of the fixed frame header. Part of the wire
// format in every version: never change.
const HeaderSize = 16

// Limits on frame sizes that any configuration must respect.
const (
	// minFrameBytes is the smallest frame body limit a peer may announce.
	minFrameBytes = 4 << 10
)

// Header field offsets. Part of the wire format: never change.
const (
	offVersion = 0
	offType    = 1
	offFlags   = 2
	offLength  = 4
	offID      = 8
)

// FrameType is the message type carried in a frame header.
type FrameType uint8

// Frame types. The answer to request type t has type t|0x80.
const (
	TypeHello       FrameType = 0x01
	TypePing        FrameType = 0x02
	TypeAppend      FrameType = 0x03
	TypeAppendBatch FrameType = 0x04
	TypeRead        FrameType = 0x05
	TypeSubscribe   FrameType = 0x06
	TypeCredit      FrameType = 0x07
	TypeCancel      FrameType = 0x08
	TypeQuery       FrameType = 0x09
	TypeStatus      FrameType = 0x0A
	TypeAdmin       FrameType = 0x0B
	TypeCursor      FrameType = 0x0C

	TypeWelcome           FrameType = 0x81
	TypePong              FrameType = 0x82
	TypeAppendResult      FrameType = 0x83
	TypeAppendBatchResult FrameType = 0x84
	TypeReadResult        FrameType = 0x85
	TypeData              FrameType = 0x86
	TypeEnd               FrameType = 0x87
	TypeSnapshot          FrameType = 0x88
	TypeQueryResult       FrameType = 0x89
	TypeStatusResult      FrameType = 0x8A
	TypeAdminResult       FrameType = 0x8B
	TypeCursorResult      FrameType = 0x8C
	TypeError             FrameType = 0xFF
)

// String returns the message name, or the number for an unknown type.
func (t FrameType) String() string {
	switch t {
	case TypeHello:
		return "Hello"
	case TypePing:
		return "Ping"
	case TypeAppend:
		return "Append"
	case TypeAppendBatch:
		return "AppendBatch"
	case TypeRead:
		return "Read"
	case TypeSubscribe:
		return "Subscribe"
	case TypeCredit:
		return "Credit"
	case TypeCancel:
		return "Cancel"
	case TypeQuery:
		return "Query"
	case TypeStatus:
		return "Status"
	case TypeAdmin:
		return "Admin"
	case TypeCursor:
		return "Cursor"
	case TypeCursorResult:
		return "CursorResult"
	case TypeWelcome:
		return "Welcome"
	case TypePong:
		return "Pong"
	case TypeAppendResult:
		return "AppendResult"
	case TypeAppendBatchResult:
		return "AppendBatchResult"
	case TypeReadResult:
		return "ReadResult"
	case TypeData:
		return "Data"
	case TypeEnd:
		return "End"
	case TypeSnapshot:
		return "Snapshot"
	case TypeQueryResult:
		return "QueryResult"
	case TypeStatusResult:
		return "StatusResult"
	case TypeAdminResult:
		return "AdminResult"
	case TypeError:
		return "Error"
	}
	return fmt.Sprintf("FrameType(%#02x)", uint8(t))
}

// Header is a decoded frame header.
type Header struct {
	// Version is the protocol version of the frame.
	Version uint8
	// Type is the message type.
	Type FrameType
	// Flags are reserved: zero when sent, ignored when received.
	Flags uint16
	// Length is the length of the body that follows the header.
	Length uint32
	// ID is the correlation id.
	ID uint64
}

// AppendHeader appends the 16-byte encoding of h to dst and returns the
// extended slice.
func AppendHeader(dst []byte, h Header) []byte {
	dst = append(dst, h.Version, byte(h.Type))
	dst = binary.LittleEndian.AppendUint16(dst, h.Flags)
	dst = binary.LittleEndian.AppendUint32(dst, h.Length)
	return binary.LittleEndian.AppendUint64(dst, h.ID)
}

// DecodeHeader decodes the header at the start of b into h. It checks only
// that b holds HeaderSize bytes (ErrShortFrame otherwise); the caller
// checks the version, the type and the length against its limits before
// reading the body.
func DecodeHeader(b []byte, h *Header) error {
	if len(b) < HeaderSize {
		return ErrShortFrame
	}
	h.Version = b[offVersion]
	h.Type = FrameType(b[offType])
	h.Flags = binary.LittleEndian.Uint16(b[offFlags:])
	h.Length = binary.LittleEndian.Uint32(b[offLength:])
	h.ID = binary.LittleEndian.Uint64(b[offID:])
	return nil
}

// beginFrame appends a header with a zero length for a frame of type t and
// correlation id id, and returns the extended slice and the offset of the
// header; endFrame patches the length once the body is appended.
func beginFrame(dst []byte, t FrameType, id uint64) ([]byte, int) {
	start := len(dst)
	return AppendHeader(dst, Header{Version: Version, Type: t, ID: id}), start
}

// endFrame sets the length of the frame whose header starts at dst[start].
func endFrame(dst []byte, start int) []byte {
	binary.LittleEndian.PutUint32(dst[start+offLength:], uint32(len(dst)-start-HeaderSize))
	return dst
}
