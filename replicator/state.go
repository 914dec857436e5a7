package replicator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"

	"github.com/lockstitch/lockstitch"
)

// partitionState is the replicated state that the replicator keeps for a
// partition besides the log and the plugin: the LSN and epoch counters, the
// Raft index they reflect, the dedupe table and the replicas' client
// addresses. Every replica computes the same state from the same entries.
type partitionState struct {
	lsn   lockstitch.LSN // last LSN assigned
	epoch lockstitch.    // epoch of the last op
		Epoch
	index   uint64 // Raft index of the last entry applied
	dedupe  *dedupe
	addrs   map[lockstitch.ReplicaID]string
	cursors map[string]*cursorState
}

func newPartitionState() *partitionState {
	return &partitionState{dedupe: newDedupe(), addrs: make(map[lockstitch.ReplicaID]string), cursors: make(map[string]*cursorState)}
}

// Encoded state layout. Part of the checkpoint and snapshot formats:
// never change; bump stateVersion instead.
//
//	0   8  magic "lstchsta"
//	8   4  version: 1, or 2 when the state holds cursors
//	12  4  body length B
//	16  8  LSN
//	24  8  epoch
//	32  8  Raft index
//	40  4  address count, then per address: replica id (8), length (4), bytes
//	...    dedupe table (see dedupe.appendTo)
//	...    version 2 only: cursor count (4), then per cursor in name
//	       order: name length (1), name, LSN (8), flags (1, bit 0 lapsed)
//	16+B 4 CRC-32C of bytes [0, 16+B)
//
// A state without cursors is written as version 1, byte for byte as
// before cursors existed, so nodes that predate them read it.
const (
	stateMagic = "lstchsta"
	// stateVersion is the version of a state without cursors,
	// stateVersionCursors of one with.
	stateVersion        = 1
	stateVersionCursors = 2
	// maxStateBytes bounds an encoded state read from disk or a peer:
	// a full dedupe table is about 24 MiB (see MaxProducers).
	maxStateBytes = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var errBadState = errors.New("replicator: corrupt partition state")

func (s *partitionState) appendTo(b []byte) []byte {
	start := len(b)
	b = append(b, stateMagic...)
	version := uint32(stateVersion)
	if len(s.cursors) > 0 {
		version = stateVersionCursors
	}
	b = binary.LittleEndian.AppendUint32(b, version)
	b = binary.LittleEndian.AppendUint32(b, 0) // body length, filled below
	b = binary.LittleEndian.AppendUint64(b, uint64(s.lsn))
	b = binary.LittleEndian.AppendUint64(b, uint64(s.epoch))
	b = binary.LittleEndian.AppendUint64(b, s.index)
	ids := make([]lockstitch.ReplicaID, 0, len(s.addrs))
	for id := range s.addrs {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b = binary.LittleEndian.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint64(b, uint64(id))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.addrs[id])))
		b = append(b, s.addrs[id]...)
	}
	b = s.dedupe.appendTo(b)
	if version == stateVersionCursors {
		b = appendCursors(b, s.cursors)
	}
	binary.LittleEndian.PutUint32(b[start+12:], uint32(len(b)-start-16))
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// stateSize returns the size of the encoded state that starts with the
// 16-byte header h, or an error if h is not a state header.
func stateSize(h []byte) (int, error) {
	if len(h) < 16 || string(h[:8]) != stateMagic {
		return 0, fmt.Errorf("%w: bad magic", errBadState)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != stateVersion && v != stateVersionCursors {
		return 0, fmt.Errorf("%w: unknown version %d", errBadState, v)
	}
	n := int(binary.LittleEndian.Uint32(h[12:]))
	if n < 28 || n > maxStateBytes {
		return 0, fmt.Errorf("%w: body length %d", errBadState, n)
	}
	return 16 + n + 4, nil
}

func decodePartitionState(b []byte) (*partitionState, error) {
	size, err := stateSize(b)
	if err != nil {
		return nil, err
	}
	if len(b) != size {
		return nil, fmt.Errorf("%w: %d bytes, header says %d", errBadState, len(b), size)
	}
	if got, want := binary.LittleEndian.Uint32(b[size-4:]), crc32.Checksum(b[:size-4], castagnoli); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, stored %08x", errBadState, want, got)
	}
	body := b[16 : size-4]
	s := newPartitionState()
	s.lsn = lockstitch.LSN(binary.LittleEndian.Uint64(body[0:]))
	s.epoch = lockstitch.Epoch(binary.LittleEndian.Uint64(body[8:]))
	s.index = binary.LittleEndian.Uint64(body[16:])
	n := int(binary.LittleEndian.Uint32(body[24:]))
	off := 28
	for range n {
		if len(body)-off < 12 {
			return nil, fmt.Errorf("%w: address cut short", errBadState)
		}
		id := lockstitch.ReplicaID(binary.LittleEndian.Uint64(body[off:]))
		m := int(binary.LittleEndian.Uint32(body[off+8:]))
		off += 12
		if m > len(body)-off {
			return nil, fmt.Errorf("%w: address length %d", errBadState, m)
		}
		s.addrs[id] = string(body[off : off+m])
		off += m
	}
	d, used, err := decodeDedupe(body[off:])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadState, err)
	}
	off += used
	if binary.LittleEndian.Uint32(b[8:]) == stateVersionCursors {
		cursors, n, err := decodeCursors(body[off:])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadState, err)
		}
		s.cursors, off = cursors, off+n
	}
	if off != len(body) {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBadState, len(body)-off)
	}
	s.dedupe = d
	return s, nil
}

const checkpointName = "state.ckpt"

// restoringName marks a snapshot restore in progress: present from before
// the restored checkpoint is written until the log has been restarted.
const restoringName = "restoring"

// writeCheckpoint makes an encoded state the durable checkpoint in dir.
func writeCheckpoint(dir string, state []byte) error {
	return writeFileAtomic(filepath.Join(dir, checkpointName), state)
}

// readCheckpoint loads the checkpoint in dir; a missing one is an empty
// state.
func readCheckpoint(dir string) (*partitionState, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if errors.Is(err, os.ErrNotExist) {
		return newPartitionState(), nil
	}
	if err != nil {
		return nil, err
	}
	return decodePartitionState(b)
}
