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
	// Snapshot allows the server to send a snapshot (Snapshot frames)
	// before the records when Marker+1 is no longer retained.
	Snapshot bool
}

// Subscribe body sizes: without flags 28 bytes; with flags (bit 0:
// snapshot allowed) longer by a flags word, sent only when a flag is set,
// so that a server that predates them still serves the short form.
const (
	subscribeSize         = 28
	subscribeFlagsSize    = 32
	subscribeSnapshotFlag = 1
)

// appendSubscribe appends a Subscribe frame.
func appendSubscribe(dst []byte, id uint64, r *SubscribeRequest) []byte {
	size := subscribeSize
	if r.Snapshot {
		size = subscribeFlagsSize
	}
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeSubscribe, Length: uint32(size), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Partition))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.Marker))
	dst = binary.LittleEndian.AppendUint64(dst, r.CreditBytes)
	dst = binary.LittleEndian.AppendUint32(dst, r.CreditOps)
	if r.Snapshot {
		dst = binary.LittleEndian.AppendUint32(dst, subscribeSnapshotFlag)
	}
	return dst
}

// decodeSubscribe decodes a Subscribe body into r.
func decodeSubscribe(body []byte, r *SubscribeRequest) error {
	if len(body) != subscribeSize && len(body) != subscribeFlagsSize {
		return fmt.Errorf("%w: Subscribe body of %d bytes", ErrProtocol, len(body))
	}
	r.Partition = lockstitch.PartitionID(binary.LittleEndian.Uint64(body))
	r.Marker = wal.LSN(binary.LittleEndian.Uint64(body[8:]))
	r.CreditBytes = binary.LittleEndian.Uint64(body[16:])
	r.CreditOps = binary.LittleEndian.Uint32(body[24:])
	r.Snapshot = false
	if len(body) == subscribeFlagsSize {
		flags := binary.LittleEndian.Uint32(body[28:])
		// A flags word without a flag is not the form a sender writes.
		if flags != subscribeSnapshotFlag {
			return fmt.Errorf("%w: Subscribe flags %#x", ErrProtocol, flags)
		}
		r.Snapshot = true
	}
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

// Snapshot frame layout: the snapshot's LSN and epoch, then one chunk of
// the chunked stream format of package copy (part of its snapshot
// format), verbatim:
//
//	0   8  LSN of the snapshot
//	8   8  epoch of the op at that LSN
//	16  4  chunk length N, 0 for the terminator
//	20  4  CRC-32C of the chunk's data (0 for the terminator)
//	24  N  data, N <= MaxSnapshotChunk
const (
	snapshotFixed = 24
	// MaxSnapshotChunk bounds the data of a Snapshot frame's chunk: the
	// chunk size of package copy.
	MaxSnapshotChunk = 64 << 10
)

// snapshotMsg is a decoded Snapshot body; Data aliases it.
type snapshotMsg struct {
	LSN   wal.LSN
	Epoch uint64
	CRC   uint32
	Data  []byte
}

// appendSnapshot appends a Snapshot frame carrying m's chunk, with m.CRC
// as it is (a sender copies the chunk it was given; tests damage it).
func appendSnapshot(dst []byte, id uint64, m *snapshotMsg) []byte {
	dst = AppendHeader(dst, Header{Version: Version, Type: TypeSnapshot, Length: uint32(snapshotFixed + len(m.Data)), ID: id})
	dst = binary.LittleEndian.AppendUint64(dst, uint64(m.LSN))
	dst = binary.LittleEndian.AppendUint64(dst, m.Epoch)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(m.Data)))
	dst = binary.LittleEndian.AppendUint32(dst, m.CRC)
	return append(dst, m.Data...)
}

// decodeSnapshot decodes a Snapshot body into m, checking its structure:
// the chunk's length matches the body and its limit, and a terminator
// has a zero CRC. It does not verify the data's CRC (see verify).
func decodeSnapshot(body []byte, m *snapshotMsg) error {
	if len(body) < snapshotFixed {
		return fmt.Errorf("%w: Snapshot body of %d bytes", ErrProtocol, len(body))
	}
	m.LSN = wal.LSN(binary.LittleEndian.Uint64(body))
	m.Epoch = binary.LittleEndian.Uint64(body[8:])
	n := binary.LittleEndian.Uint32(body[16:])
	m.CRC = binary.LittleEndian.Uint32(body[20:])
	m.Data = body[snapshotFixed:len(body):len(body)]
	switch {
	case int64(n) != int64(len(m.Data)):
		return fmt.Errorf("%w: Snapshot chunk of %d bytes in a body of %d", ErrProtocol, n, len(body))
	case n > MaxSnapshotChunk:
		return fmt.Errorf("%w: Snapshot chunk of %d bytes, limit %d", ErrProtocol, n, MaxSnapshotChunk)
	case n == 0 && m.CRC != 0:
		return fmt.Errorf("%w: Snapshot terminator with checksum %08x", ErrProtocol, m.CRC)
	}
	return nil
}

// verify checks the chunk's data against its CRC-32C.
func (m *snapshotMsg) verify() error {
	if got := wal.Checksum(m.Data); got != m.CRC {
		return fmt.Errorf("%w: snapshot chunk at LSN %d: checksum %08x, sent %08x", lockstitch.ErrChecksum, m.LSN, got, m.CRC)
	}
	return nil
}
