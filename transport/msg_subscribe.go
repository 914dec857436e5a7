package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// SubscribeRequest asks for a partition's committed ops after a marker,
// and then for each op as it commits, under flow control by credit.
type SubscribeRequest struct {
	// Partition is the partition to follow.
	Partition lockstitch.PartitionID
	// Marker is the last LSN the subscriber holds; the stream starts at
	// Marker+1.
	Marker wal.LSN
	// CreditBytes is the initial byte credit, counted in log frame bytes.
	CreditBytes uint64
	// CreditOps is the initial op credit.
	CreditOps uint32
}

const subscribeSize = 28

// appendSubscribe appends a Subscribe frame.
func appendSubscribe(dst []byte, id uint64, r *SubscribeRequest) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeSubscribe, Length: subscribeSize, ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Marker))
	dst = binary.LittleEndian.AppendUint64(dst, r.CreditBytes)
	return binary.LittleEndian.AppendUint32(dst, r.CreditOps)
}

// decodeSubscribe decodes a Subscribe body into r.
func decodeSubscribe(body []byte, r *SubscribeRequest) error {
	if len(body) != subscribeSize {
		return fmt.Errorf("%w: Subscribe body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	r.Marker = wal.LSN(binary.LittleEndian.Uint64(body[8:]))
	r.CreditBytes = binary.LittleEndian.Uint64(body[16:])
	r.CreditOps = binary.LittleEndian.Uint32(body[24:])
	return nil
}

// creditMsg adds to a subscription's credits.
type creditMsg struct {
	Bytes uint64
	Ops   uint32
}

const creditSize = 12

// appendCredit appends a Credit frame for subscription id.
func appendCredit(dst []byte, id uint64, m creditMsg) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeCredit, Length: creditSize, ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, m.Bytes)
	return binary.LittleEndian.AppendUint32(dst, m.Ops)
}

// decodeCredit decodes a Credit body.
func decodeCredit(body []byte, m *creditMsg) error {
	if len(body) != creditSize {
		return fmt.Errorf("%w: Credit body of %d bytes", ErrProtocol, len(body))
	}
	m.Bytes = binary.LittleEndian.Uint64(body)
	m.Ops = binary.LittleEndian.Uint32(body[8:])
	return nil
}

// appendData appends a Data frame carrying records, which must be one or
// more log frames.
func appendData(dst []byte, id uint64, committed wal.LSN, records []byte) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeData, Length: uint32(readResultFixed + len(records)), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(committed))
	return append(dst, records...)
}
