package transport

import (
	"encoding/binary"
	"fmt"
)

// errorMsg is the body of an Error frame.
type errorMsg struct {
	// Code is the stable error code.
	Code Code
	// Detail is the first retained LSN for CodeTruncated, else 0.
	Detail uint64
	// LeaderAddr is the leader's client address for CodeNotLeader.
	LeaderAddr string
	// Message is for people.
	Message string
}

// appendError appends an Error frame. It cuts the address and message to
// their limits.
func appendError(dst []byte, id uint64, m *errorMsg) []byte {
	dst, start := beginFrame(dst, TypeError, id)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(m.Code))
	dst = append(dst, 0, 0, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, m.Detail)
	dst = appendString(dst, truncateUTF8(m.LeaderAddr, maxAddr))
	dst = appendString(dst, truncateUTF8(m.Message, maxErrorMessage))
	return endFrame(dst, start)
}

// decodeError decodes an Error body into m. It allocates the strings.
func decodeError(body []byte, m *errorMsg) error {
	d := decoder{b: body}
	m.Code = Code(d.u16())
	d.zeros(6)
	m.Detail = d.u64()
	m.LeaderAddr = d.str(maxAddr)
	m.Message = d.str(maxErrorMessage)
	if err := d.finish(); err != nil {
		return err
	}
	if m.Code == 0 {
		return fmt.Errorf("%w: error code 0", ErrProtocol)
	}
	return nil
}
