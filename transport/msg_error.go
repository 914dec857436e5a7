package transport

import (
	"encoding/binary"
	"fmt"
)

// errorMsg is the body of an Error frame.
type errorMsg struct {
	// Code is the stable error code.
	Code Code
	// Detail is the first retained LSN for CodeTruncated, the committed
	// LSN for CodeDiverged, else 0.
	Detail uint64
	// Epoch is the partition's epoch for CodeDiverged, else 0. It travels
	// in the 6 bytes that version 1 reserved (zero, ignored by older
	// receivers), so it is cut to 48 bits: an epoch is a Raft term and
	// never reaches 2^48.
	Epoch uint64
	// LeaderAddr is the leader's client address for CodeNotLeader.
	LeaderAddr string
	// Message is for people.
	Message string
}

// maxErrorEpoch is the largest epoch an Error frame carries.
const maxErrorEpoch = 1<<48 - 1

// appendError appends an Error frame. It cuts the address and message to
// their limits.
func appendError(dst []byte, id uint64, m *errorMsg) []byte {
	dst, start := beginFrame(dst, TypeError, id)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(m.Code))
	var epoch [8]byte
	binary.LittleEndian.PutUint64(epoch[:], min(m.Epoch, maxErrorEpoch))
	dst = append(dst, epoch[:6]...)
	dst = binary.LittleEndian.AppendUint64(dst, m.Detail)
	dst = appendString(dst, truncateUTF8(m.LeaderAddr, maxAddr))
	dst = appendString(dst, truncateUTF8(m.Message, maxErrorMessage))
	return endFrame(dst, start)
}

// decodeError decodes an Error body into m. It allocates the strings.
func decodeError(body []byte, m *errorMsg) error {
	d := decoder{b: body}
	m.Code = Code(d.u16())
	m.Epoch = uint64(d.u16()) | uint64(d.u32())<<16
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
