package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// LSN is a log sequence number: dense, starting at 1, one per record.
// The zero LSN means "no record".
type LSN uint64

// Record is one entry of the log.
//
// When a Record is filled by a read (Iterator.Next, DecodeRecord), Payload
// aliases a buffer owned by the reader and is valid only until the reader's
// next call; copy it to keep it.
type Record struct {
	// LSN is the record's log sequence number.
	LSN LSN
	// Epoch is the caller's epoch at the time the record was written. The
	// log stores it and never interprets it.
	Epoch uint64
	// Aux is a caller-owned value stored with the record (the replicator
	// keeps the Raft index there). The log never interprets it.
	Aux uint64
	// CRC is the CRC-32C (Castagnoli) of Payload. Reads fill it in after
	// verifying it; appends ignore the caller's value and compute it.
	CRC uint32
	// Payload is the record's opaque body.
	Payload []byte
}

// Frame layout constants. Part of the on-disk and on-wire format: never change.
const (
	// HeaderSize is the size of the fixed header before a record's payload.
	HeaderSize = 36
	// TrailerSize is the size of the copy of the length after the payload.
	TrailerSize = 4
	// FrameOverhead is the number of bytes a record adds to its payload.
	FrameOverhead = HeaderSize + TrailerSize
	// MaxPayloadLimit is the largest payload the format can describe. A
	// Config may set a lower limit; no limit may exceed this one.
	MaxPayloadLimit = 1<<31 - 1 - FrameOverhead

	offLength     = 0
	offPayloadCRC = 4
	offLSN        = 8
	offEpoch      = 16
	offAux        = 24
	offFrameCRC   = 32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum returns the CRC-32C (Castagnoli) of b, the checksum used for
// payloads everywhere in Lockstitch: in the log, on the wire and in clients.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// FrameSize returns the number of bytes a record with a payload of n bytes
// occupies in the log.
func FrameSize(n int) int { return n + FrameOverhead }

// AppendRecord appends the frame of r to dst and returns the extended slice.
// It computes the payload's CRC-32C itself and ignores r.CRC. It does not
// check r.LSN or the payload size: the Log does that before encoding.
func AppendRecord(dst []byte, r *Record) []byte {
	n := len(r.Payload)
	start := len(dst)
	dst = grow(dst, FrameSize(n))
	frame := dst[start : start+FrameSize(n)]
	h := frame[:HeaderSize]
	payloadCRC := crc32.Update(0, castagnoli, r.Payload)
	binary.LittleEndian.PutUint32(h[offLength:], uint32(n))
	binary.LittleEndian.PutUint32(h[offPayloadCRC:], payloadCRC)
	binary.LittleEndian.PutUint64(h[offLSN:], uint64(r.LSN))
	binary.LittleEndian.PutUint64(h[offEpoch:], r.Epoch)
	binary.LittleEndian.PutUint64(h[offAux:], r.Aux)
	binary.LittleEndian.PutUint32(h[offFrameCRC:], crc32.Update(payloadCRC, castagnoli, h[:offFrameCRC]))
	copy(frame[HeaderSize:], r.Payload)
	binary.LittleEndian.PutUint32(frame[HeaderSize+n:], uint32(n))
	return dst
}

// grow extends b by n bytes, reallocating only when its capacity is short.
func grow(b []byte, n int) []byte {
	if need := len(b) + n; need <= cap(b) {
		return b[:need]
	}
	nb := make([]byte, len(b)+n, 2*cap(b)+n)
	copy(nb, b)
	return nb
}

// DecodeRecord decodes the frame at the start of b into r and returns the
// number of bytes it occupies. r.Payload aliases b.
//
// It returns an error wrapping ErrShort when b holds only the start of a
// frame (read more and call again), and an error wrapping ErrCorrupt when
// the bytes cannot be a valid frame: a payload length above maxPayload
// (which must not exceed MaxPayloadLimit), a trailer that disagrees with
// the header, or a checksum mismatch. It never allocates and never reads
// past the frame's validated length.
func DecodeRecord(b []byte, maxPayload int, r *Record) (int, error) {
	if len(b) < HeaderSize {
		return 0, ErrShort
	}
	n := int(binary.LittleEndian.Uint32(b[offLength:]))
	if n > maxPayload || n > MaxPayloadLimit {
		return 0, fmt.Errorf("%w: payload length %d exceeds limit %d", ErrCorrupt, n, maxPayload)
	}
	size := FrameSize(n)
	if len(b) < size {
		return 0, ErrShort
	}
	if t := int(binary.LittleEndian.Uint32(b[HeaderSize+n:])); t != n {
		return 0, fmt.Errorf("%w: trailer length %d, header length %d", ErrCorrupt, t, n)
	}
	payload := b[HeaderSize : HeaderSize+n : HeaderSize+n]
	payloadCRC := crc32.Update(0, castagnoli, payload)
	if stored := binary.LittleEndian.Uint32(b[offPayloadCRC:]); stored != payloadCRC {
		return 0, fmt.Errorf("%w: payload checksum %08x, stored %08x", ErrCorrupt, payloadCRC, stored)
	}
	frameCRC := crc32.Update(payloadCRC, castagnoli, b[:offFrameCRC])
	if stored := binary.LittleEndian.Uint32(b[offFrameCRC:]); stored != frameCRC {
		return 0, fmt.Errorf("%w: frame checksum %08x, stored %08x", ErrCorrupt, frameCRC, stored)
	}
	r.LSN = LSN(binary.LittleEndian.Uint64(b[offLSN:]))
	r.Epoch = binary.LittleEndian.Uint64(b[offEpoch:])
	r.Aux = binary.LittleEndian.Uint64(b[offAux:])
	r.CRC = payloadCRC
	r.Payload = payload
	return size, nil
}

// FrameSizeOf returns the size of the frame whose header is at the start
// of b, which must hold at least HeaderSize bytes: a reader of frames
// back to back learns from it how much to read next. It fails with an
// error wrapping ErrShort when b is shorter than a header, and ErrCorrupt
// when the payload length is above maxPayload. DecodeRecord verifies the
// frame once it is read whole.
func FrameSizeOf(b []byte, maxPayload int) (int, error) {
	if len(b) < HeaderSize {
		return 0, ErrShort
	}
	n := frameLength(b)
	if n > maxPayload || n > MaxPayloadLimit {
		return 0, fmt.Errorf("%w: payload length %d exceeds limit %d", ErrCorrupt, n, maxPayload)
	}
	return FrameSize(n), nil
}

// frameLength returns the payload length stored in the header at the start
// of b, which must hold at least HeaderSize bytes.
func frameLength(b []byte) int { return int(binary.LittleEndian.Uint32(b[offLength:])) }

// frameLSN returns the LSN stored in the header at the start of b.
func frameLSN(b []byte) LSN { return LSN(binary.LittleEndian.Uint64(b[offLSN:])) }

// trailerLength returns the payload length stored in the trailer that ends
// at the end of b, which must hold at least TrailerSize bytes.
func trailerLength(b []byte) int {
	return int(binary.LittleEndian.Uint32(b[len(b)-TrailerSize:]))
}
