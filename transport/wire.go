package transport

import (
	"encoding/binary"
	"fmt"
)

// Limits of variable-length fields. Part of the wire format.
const (
	maxName         = 255
	maxCredentials  = 4096
	maxAddr         = 255
	maxErrorMessage = 1024
)

// appendBytes appends b with a uvarint length prefix.
func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// appendString appends s with a uvarint length prefix.
func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads the fields of a message body in order. The first failure
// sticks: later reads return zero values, and err reports the failure.
// It never allocates except in str, and never reads past the body.
type decoder struct {
	b   []byte
	err error
}

// need reports whether n more bytes are available, recording a failure
// otherwise.
func (d *decoder) need(n int) bool {
	if d.err != nil {
		return false
	}
	if n < 0 || len(d.b) < n {
		d.err = fmt.Errorf("%w: message ends early", ErrProtocol)
		return false
	}
	return true
}

func (d *decoder) u8() uint8 {
	if !d.need(1) {
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u16() uint16 {
	if !d.need(2) {
		return 0
	}
	v := binary.LittleEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) u32() uint32 {
	if !d.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if !d.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// zeros consumes n bytes that the format says are zero. Version 1
// receivers ignore their value, so a later version may use them.
func (d *decoder) zeros(n int) {
	if d.need(n) {
		d.b = d.b[n:]
	}
}

// uvarint reads a uvarint.
func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint", ErrProtocol)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes reads a uvarint-prefixed byte string of at most max bytes. The
// result aliases the body.
func (d *decoder) bytes(max int) []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(max) {
		d.err = fmt.Errorf("%w: field length %d exceeds %d", ErrProtocol, n, max)
		return nil
	}
	if !d.need(int(n)) {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

// str reads a uvarint-prefixed string of at most max bytes.
func (d *decoder) str(max int) string {
	b := d.bytes(max)
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// count reads a uvarint count of items that take at least minSize bytes
// each, and fails unless the unread bytes could hold that many: a count
// is checked before anything is allocated for it.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.b)/minSize) {
		d.err = fmt.Errorf("%w: count %d exceeds what %d bytes can hold", ErrProtocol, n, len(d.b))
		return 0
	}
	return int(n)
}

// finish returns the first failure, or a failure if bytes are left over.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d unexpected trailing bytes", ErrProtocol, len(d.b))
	}
	return d.err
}
