package replicator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch"
)

// The Raft entries a partition proposes. Part of the replicated log format:
// never change; add a kind or a version instead.
//
// An ops entry coalesces many appends:
//
//	offset  size  field
//	0       1     kind = 1
//	1       1     version = 3
//	2       2     zero
//	4       4     op count
//	8       8     proposer's Raft term
//	16      8     proposer's time: its wall clock when it proposed the
//	              entry, Unix nanoseconds, signed (0: none)
//	24      ...   ops, back to back:
//	              uvarint  payload length N
//	              4        payload CRC-32C (the producer's)
//	              uvarint  producer id (0: none)
//	              uvarint  producer sequence, only if the producer id is not 0
//	              N        payload
//
// Version 1, which nodes still read, had a fixed 24-byte op header: the
// payload length (4), the CRC (4), the producer id (8) and the sequence
// (8). Version 2 takes 6 bytes for a small op without a producer: with
// 16-byte ops, an entry of version 1 was 60% headers, and Raft's round
// trip grows with the bytes it writes and sends. Versions 1 and 2 have a
// 16-byte header, without the proposer's time: their ops have the zero
// time (Op.Time). Version 3 added the time, so that every replica hands
// its plugin the same time with an op (a lease expires at the same op
// everywhere); ops of version 1 and 2 have the zero time.
//
// An address entry records a replica's client address:
//
//	0  1  kind = 2
//	1  1  version = 1
//	2  2  zero
//	4  4  address length N
//	8  8  replica id
//	16 N  address
//
// A progress entry reports how far a replica has applied the stream; the
// leader computes each replica's lag from these reports:
//
//	0  1  kind = 3
//	1  1  version = 1
//	2  2  zero
//	4  4  zero
//	8  8  replica id
//	16 8  applied LSN
//
// A cursor entry changes a durable cursor (see cursor.go):
//
//	0  1  kind = 4
//	1  1  version = 1
//	2  1  op: 1 ack, 2 reset, 3 delete, 4 lapse
//	3  1  zero
//	4  4  name length N, 1 to 255
//	8  8  LSN (ack, reset: the cursor's new LSN; lapse: the LSN it
//	      lapses at, a no-op if the cursor moved since; delete: 0)
//	16 N  name
//
// Its result (statemachine Result.Value) is a cursor status (cursor.go).
//
// The result of an ops entry (statemachine Result.Data, returned to the
// proposer) is the op count (4 bytes), then per op: a status byte (0
// applied, 1 duplicate, 2 stale sequence), the op's LSN (8) and epoch (8)
// (a duplicate's are the original op's), the plugin result's length (4)
// and bytes.
const (
	entryOps      = 1
	entryAddr     = 2
	entryProgress = 3
	entryCursor   = 4

	entryVersion    = 1
	opsVersionV1    = 1 // read only: fixed 24-byte op headers
	opsVersionV2    = 2 // read only: no proposer's time
	opsVersion      = 3
	entryHeaderSize = 16
	// opsHeaderSize is the header of a version 3 ops entry; versions 1
	// and 2 have entryHeaderSize.
	opsHeaderSize = 24
	// opHeaderSizeV1 is the op header of version 1 ops entries;
	// maxOpHeaderSize bounds that of version 2.
	opHeaderSizeV1  = 24
	maxOpHeaderSize = 3*binary.MaxVarintLen64 + 4 // length, producer, sequence; CRC
)

// Op statuses in an ops entry result.
const (
	statusApplied   = 0
	statusDuplicate = 1
	statusStale     = 2
)

var errBadEntry = errors.New("replicator: malformed Raft entry")

// appendBatchHeader starts an ops entry in b (which must be empty) for
// term, with the zero time; setBatchTime sets it.
func appendBatchHeader(b []byte, term uint64) []byte {
	var h [opsHeaderSize]byte
	h[0], h[1] = entryOps, opsVersion
	binary.LittleEndian.PutUint64(h[8:], term)
	return append(b, h[:]...)
}

// setBatchTime stamps the ops entry in b with the proposer's time.
func setBatchTime(b []byte, t time.Time) {
	binary.LittleEndian.PutUint64(b[16:], uint64(unixNanos(t)))
}

// unixNanos encodes t as entries and log records carry it: Unix
// nanoseconds, 0 for the zero time (and for times before 1970, which no
// proposer's clock shows).
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 0)
}

// recordTimeBit marks the aux of an operation log record that holds the
// op's time. The log keeps each op's time so that ops replayed from it
// into a plugin after a restart (open.go) have the time they had when
// first applied: a record's aux is 1<<63 | the op's unixNanos, or, for an
// op without a time (of an entry before version 3), the Raft index of its
// entry, as nodes wrote before.
const recordTimeBit = 1 << 63

// recordAux is the aux of the log record of an op with time t, from the
// Raft entry at index.
func recordAux(t time.Time, index uint64) uint64 {
	if n := unixNanos(t); n != 0 {
		return recordTimeBit | uint64(n)
	}
	return index
}

// recordTime is the op time a log record's aux holds (zero if none).
func recordTime(aux uint64) time.Time {
	if aux&recordTimeBit == 0 {
		return time.Time{}
	}
	return timeOfNanos(int64(aux &^ recordTimeBit))
}

// timeOfNanos decodes unixNanos; 0 is the zero time.
func timeOfNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// appendBatchOp adds one op to the ops entry in b and bumps its count.
func appendBatchOp(b []byte, payload []byte, crc uint32, producer lockstitch.ProducerID, seq uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(payload)))
	b = binary.LittleEndian.AppendUint32(b, crc)
	b = binary.AppendUvarint(b, uint64(producer))
	if producer != 0 {
		b = binary.AppendUvarint(b, seq)
	}
	b = append(b, payload...)
	binary.LittleEndian.PutUint32(b[4:], binary.LittleEndian.Uint32(b[4:])+1)
	return b
}

// entryOp is one op decoded from an ops entry; Payload aliases the entry.
type entryOp struct {
	Payload  []byte
	CRC      uint32
	Producer lockstitch.ProducerID
	Seq      uint64
}

// opsReader walks the ops of an ops entry without allocating.
type opsReader struct {
	b       []byte
	count   int
	term    uint64
	time    time.Time // the proposer's; zero before version 3
	version byte
}

// readOps checks the header of an ops entry.
func readOps(b []byte) (opsReader, error) {
	if len(b) < entryHeaderSize || b[0] != entryOps {
		return opsReader{}, fmt.Errorf("%w: not an ops entry", errBadEntry)
	}
	r := opsReader{
		count:   int(binary.LittleEndian.Uint32(b[4:])),
		term:    binary.LittleEndian.Uint64(b[8:]),
		version: b[1],
	}
	switch b[1] {
	case opsVersionV1, opsVersionV2:
		r.b = b[entryHeaderSize:]
	case opsVersion:
		if len(b) < opsHeaderSize {
			return opsReader{}, fmt.Errorf("%w: ops entry header cut short", errBadEntry)
		}
		r.time = timeOfNanos(int64(binary.LittleEndian.Uint64(b[16:])))
		r.b = b[opsHeaderSize:]
	default:
		return opsReader{}, fmt.Errorf("%w: ops entry version %d", errBadEntry, b[1])
	}
	return r, nil
}

// next decodes the next op into op; it returns false after the last one.
func (r *opsReader) next(op *entryOp) (bool, error) {
	if r.count == 0 {
		if len(r.b) != 0 {
			return false, fmt.Errorf("%w: %d bytes after the last op", errBadEntry, len(r.b))
		}
		return false, nil
	}
	if r.version == 1 {
		return r.nextV1(op)
	}
	b := r.b
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return false, fmt.Errorf("%w: op length cut short or too long", errBadEntry)
	}
	b = b[k:]
	if len(b) < 4 {
		return false, fmt.Errorf("%w: op checksum cut short", errBadEntry)
	}
	op.CRC = binary.LittleEndian.Uint32(b)
	b = b[4:]
	producer, k := binary.Uvarint(b)
	if k <= 0 {
		return false, fmt.Errorf("%w: producer id cut short or too long", errBadEntry)
	}
	b = b[k:]
	op.Producer, op.Seq = lockstitch.ProducerID(producer), 0
	if producer != 0 {
		if op.Seq, k = binary.Uvarint(b); k <= 0 {
			return false, fmt.Errorf("%w: producer sequence cut short or too long", errBadEntry)
		}
		b = b[k:]
	}
	if n > uint64(len(b)) {
		return false, fmt.Errorf("%w: op length %d exceeds the entry", errBadEntry, n)
	}
	op.Payload = b[:n:n]
	r.b = b[n:]
	r.count--
	return true, nil
}

// nextV1 decodes an op of a version 1 entry.
func (r *opsReader) nextV1(op *entryOp) (bool, error) {
	if len(r.b) < opHeaderSizeV1 {
		return false, fmt.Errorf("%w: op header cut short", errBadEntry)
	}
	n := int(binary.LittleEndian.Uint32(r.b[0:]))
	if n > len(r.b)-opHeaderSizeV1 {
		return false, fmt.Errorf("%w: op length %d exceeds the entry", errBadEntry, n)
	}
	op.CRC = binary.LittleEndian.Uint32(r.b[4:])
	op.Producer = lockstitch.ProducerID(binary.LittleEndian.Uint64(r.b[8:]))
	op.Seq = binary.LittleEndian.Uint64(r.b[16:])
	op.Payload = r.b[opHeaderSizeV1 : opHeaderSizeV1+n : opHeaderSizeV1+n]
	r.b = r.b[opHeaderSizeV1+n:]
	r.count--
	return true, nil
}

// appendAddrEntry encodes an address entry.
func appendAddrEntry(b []byte, replica lockstitch.ReplicaID, addr string) []byte {
	var h [entryHeaderSize]byte
	h[0], h[1] = entryAddr, entryVersion
	binary.LittleEndian.PutUint32(h[4:], uint32(len(addr)))
	binary.LittleEndian.PutUint64(h[8:], uint64(replica))
	b = append(b, h[:]...)
	return append(b, addr...)
}

func readAddrEntry(b []byte) (lockstitch.ReplicaID, string, error) {
	if len(b) < entryHeaderSize || b[0] != entryAddr || b[1] != entryVersion {
		return 0, "", fmt.Errorf("%w: bad address entry header", errBadEntry)
	}
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if n != len(b)-entryHeaderSize {
		return 0, "", fmt.Errorf("%w: address length %d, %d bytes follow", errBadEntry, n, len(b)-entryHeaderSize)
	}
	return lockstitch.ReplicaID(binary.LittleEndian.Uint64(b[8:])), string(b[entryHeaderSize:]), nil
}

const progressEntrySize = 24

func appendProgressEntry(b []byte, replica lockstitch.ReplicaID, applied lockstitch.LSN) []byte {
	var h [progressEntrySize]byte
	h[0], h[1] = entryProgress, entryVersion
	binary.LittleEndian.PutUint64(h[8:], uint64(replica))
	binary.LittleEndian.PutUint64(h[16:], uint64(applied))
	return append(b, h[:]...)
}

func readProgressEntry(b []byte) (lockstitch.ReplicaID, lockstitch.LSN, error) {
	if len(b) != progressEntrySize || b[0] != entryProgress || b[1] != entryVersion {
		return 0, 0, fmt.Errorf("%w: bad progress entry", errBadEntry)
	}
	return lockstitch.ReplicaID(binary.LittleEndian.Uint64(b[8:])), lockstitch.LSN(binary.LittleEndian.Uint64(b[16:])), nil
}

// opResult is one op's outcome, decoded from an ops entry result.
type opResult struct {
	status byte
	lsn    lockstitch.LSN
	epoch  lockstitch.Epoch
	// result aliases the entry result.
	result []byte
}

const (
	resultHeaderSize   = 4
	opResultHeaderSize = 21
)

func appendResultHeader(b []byte, count int) []byte {
	return binary.LittleEndian.AppendUint32(b, uint32(count))
}

func appendOpResult(b []byte, status byte, lsn lockstitch.LSN, epoch lockstitch.Epoch, result []byte) []byte {
	var h [opResultHeaderSize]byte
	h[0] = status
	binary.LittleEndian.PutUint64(h[1:], uint64(lsn))
	binary.LittleEndian.PutUint64(h[9:], uint64(epoch))
	binary.LittleEndian.PutUint32(h[17:], uint32(len(result)))
	b = append(b, h[:]...)
	return append(b, result...)
}

// resultReader walks an ops entry result.
type resultReader struct {
	b     []byte
	count int
}

func readResults(b []byte) (resultReader, error) {
	if len(b) < resultHeaderSize {
		return resultReader{}, fmt.Errorf("%w: result cut short", errBadEntry)
	}
	return resultReader{b: b[resultHeaderSize:], count: int(binary.LittleEndian.Uint32(b))}, nil
}

func (r *resultReader) next(res *opResult) error {
	if len(r.b) < opResultHeaderSize {
		return fmt.Errorf("%w: op result cut short", errBadEntry)
	}
	n := int(binary.LittleEndian.Uint32(r.b[17:]))
	if n > len(r.b)-opResultHeaderSize {
		return fmt.Errorf("%w: op result length %d exceeds the result", errBadEntry, n)
	}
	res.status = r.b[0]
	res.lsn = lockstitch.LSN(binary.LittleEndian.Uint64(r.b[1:]))
	res.epoch = lockstitch.Epoch(binary.LittleEndian.Uint64(r.b[9:]))
	res.result = r.b[opResultHeaderSize : opResultHeaderSize+n : opResultHeaderSize+n]
	r.b = r.b[opResultHeaderSize+n:]
	return nil
}

// Cursor entry ops.
const (
	cursorAck    = 1
	cursorReset  = 2
	cursorDelete = 3
	cursorLapse  = 4
)

// maxCursorName bounds a cursor's name.
const maxCursorName = 255

func appendCursorEntry(b []byte, op byte, name string, lsn lockstitch.LSN) []byte {
	var h [entryHeaderSize]byte
	h[0], h[1], h[2] = entryCursor, entryVersion, op
	binary.LittleEndian.PutUint32(h[4:], uint32(len(name)))
	binary.LittleEndian.PutUint64(h[8:], uint64(lsn))
	b = append(b, h[:]...)
	return append(b, name...)
}

func readCursorEntry(b []byte) (op byte, name string, lsn lockstitch.LSN, err error) {
	if len(b) < entryHeaderSize || b[0] != entryCursor || b[1] != entryVersion || b[3] != 0 {
		return 0, "", 0, fmt.Errorf("%w: bad cursor entry header", errBadEntry)
	}
	op = b[2]
	n := int(binary.LittleEndian.Uint32(b[4:]))
	if op < cursorAck || op > cursorLapse || n < 1 || n > maxCursorName || n != len(b)-entryHeaderSize {
		return 0, "", 0, fmt.Errorf("%w: cursor entry op %d, name of %d bytes in %d", errBadEntry, op, n, len(b)-entryHeaderSize)
	}
	return op, string(b[entryHeaderSize:]), lockstitch.LSN(binary.LittleEndian.Uint64(b[8:])), nil
}
