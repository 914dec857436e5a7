package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// AppendRequest is one op to append to a partition.
type AppendRequest struct {
	// Partition is the partition to append to.
	Partition lockstitch.PartitionID
	// Producer identifies the producer for duplicate detection; 0 means
	// none.
	Producer uint64
	// Sequence is the op's sequence number for Producer. A retry carries
	// the same Producer and Sequence; the partition answers a duplicate
	// of a committed op with the original result.
	Sequence uint64
	// CRC is the CRC-32C (wal.Checksum) of Payload, computed by the
	// producer. The server has verified it before a Handler sees it.
	CRC uint32
	// Payload is the op. When decoded, it aliases the frame.
	Payload []byte
}

const appendFixed = 28

// appendAppend appends an Append frame with correlation id id.
func appendAppend(dst []byte, id uint64, r *AppendRequest) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeAppend, Length: uint32(appendFixed + len(r.Payload)), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = binary.LittleEndian.AppendUint64(dst, r.Producer)
	dst = binary.LittleEndian.AppendUint64(dst, r.Sequence)
	dst = binary.LittleEndian.AppendUint32(dst, r.CRC)
	return append(dst, r.Payload...)
}

// decodeAppend decodes an Append body into r. r.Payload aliases body. It
// does not verify the CRC.
func decodeAppend(body []byte, r *AppendRequest) error {
	if len(body) < appendFixed {
		return fmt.Errorf("%w: Append body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	r.Producer = binary.LittleEndian.Uint64(body[8:])
	r.Sequence = binary.LittleEndian.Uint64(body[16:])
	r.CRC = binary.LittleEndian.Uint32(body[24:])
	r.Payload = body[appendFixed:len(body):len(body)]
	return nil
}

// AppendResult is the outcome of one appended op.
type AppendResult struct {
	// LSN is the op's log sequence number.
	LSN wal.LSN
	// Epoch is the epoch of the leader that proposed the op.
	Epoch uint64
	// Result is the plugin's answer to the op, possibly empty. The Client
	// returns a copy; a Handler's slice is copied before Complete returns.
	Result []byte
	// Duplicate says the op was a retry of one the partition had applied
	// (by its producer sequence): LSN and Epoch are the original op's,
	// and Result is empty, since plugins' results are not kept. It travels
	// as flag FlagDuplicate of the AppendResult frame's header; servers
	// before it never set it, clients before it ignore it.
	Duplicate bool
}

const appendResultFixed = 16

// FlagDuplicate is the AppendResult header flag of AppendResult.Duplicate.
const FlagDuplicate uint16 = 1

// appendAppendResult appends an AppendResult frame.
func appendAppendResult(dst []byte, id uint64, r *AppendResult) []byte {
	var flags uint16
	if r.Duplicate {
		flags = FlagDuplicate
	}
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeAppendResult, Flags: flags, Length: uint32(appendResultFixed + len(r.Result)), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.LSN))
	dst = binary.LittleEndian.AppendUint64(dst, r.Epoch)
	return append(dst, r.Result...)
}

// decodeAppendResult decodes an AppendResult body into r, but for
// Duplicate, which is in the frame's header (FlagDuplicate).
// r.Result aliases body.
func decodeAppendResult(body []byte, r *AppendResult) error {
	if len(body) < appendResultFixed {
		return fmt.Errorf("%w: AppendResult body of %d bytes", ErrProtocol, len(body))
	}
	r.LSN = wal.LSN(binary.LittleEndian.Uint64(body))
	r.Epoch = binary.LittleEndian.Uint64(body[8:])
	r.Result = body[appendResultFixed:len(body):len(body)]
	return nil
}
