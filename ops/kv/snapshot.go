package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/lockstitch/lockstitch"
)

// The snapshot format: a kv partition's whole state at one LSN, as the
// plugin writes it for a new replica or for a consumer that subscribes
// with a restore (transport.SubscribeOptions.Restore). A snapshot is a
// header, blocks of records, and an end block:
//
//	header  4 magic "LKVS", 1 version = 1, 3 zero, 8 LSN, 8 epoch,
//	        4 CRC-32C (Castagnoli) of the 24 bytes before it
//	block   4 length N (1 to MaxSnapshotBlockBytes: about 64 KiB, or one
//	        larger record), 4 CRC-32C of the N bytes, N bytes:
//	        records back to back, in key order, each
//	        uvarint key length K (1 to MaxKeyBytes), K key,
//	        uvarint length S (at least 8), then S bytes:
//	        8 version, S-8 value
//	end     4 zero, 4 CRC-32C of the next 8 bytes, 8 record count
//
// Integers are little-endian. ReadSnapshot checks every checksum, the
// keys' order and the count, so a damaged or truncated snapshot is
// refused.

// SnapshotMagic begins every kv snapshot.
const SnapshotMagic = "LKVS"

const (
	snapVersion     = 1
	snapHeaderBytes = 28
	blockTarget     = 64 << 10 // a block is cut once it holds this much
)

// MaxSnapshotBlockBytes bounds a snapshot block: one record at least, and
// a value is at most an op (64 MiB at most, see replicator.Config.MaxOpBytes).
const MaxSnapshotBlockBytes = 80 << 20

// ErrCorrupt is returned, wrapped, for a snapshot (or a plugin database)
// whose bytes are not what the plugin wrote.
var ErrCorrupt = errors.New("kv: corrupt")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C (Castagnoli) the snapshot format uses.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// SnapshotWriter writes a snapshot in the format above: NewSnapshotWriter
// writes the header, Add each record in key order, Close the end block.
type SnapshotWriter struct {
	w      io.Writer
	block  []byte
	count  uint64
	last   []byte // the last key added
	closed bool
	err    error
}

// errWriterClosed is the error of a SnapshotWriter used after Close.
var errWriterClosed = errors.New("kv: snapshot writer closed")

// NewSnapshotWriter writes the header of a snapshot taken at lsn, in
// epoch, to w.
func NewSnapshotWriter(w io.Writer, lsn lockstitch.LSN, epoch lockstitch.Epoch) (*SnapshotWriter, error) {
	hdr := append([]byte(SnapshotMagic), snapVersion, 0, 0, 0)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(lsn))
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(epoch))
	hdr = binary.LittleEndian.AppendUint32(hdr, Checksum(hdr))
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	return &SnapshotWriter{w: w, block: make([]byte, 8, blockTarget+8)}, nil
}

// Add writes a key's record. Keys must come in increasing order, 1 to
// MaxKeyBytes bytes each, and a record must fit in a block
// (MaxSnapshotBlockBytes): what ReadSnapshot accepts.
func (s *SnapshotWriter) Add(key []byte, version uint64, value []byte) error {
	if s.err != nil {
		return s.err
	}
	switch {
	case len(key) == 0 || len(key) > MaxKeyBytes:
		return fmt.Errorf("%w: a key of %d bytes (1 to %d)", ErrMalformed, len(key), MaxKeyBytes)
	case s.count > 0 && bytes.Compare(key, s.last) <= 0:
		return fmt.Errorf("%w: key %q after %q: keys must increase", ErrMalformed, key, s.last)
	case len(key)+len(value)+8+2*binary.MaxVarintLen64 > MaxSnapshotBlockBytes:
		return fmt.Errorf("%w: a record of %d bytes, more than a block holds", ErrMalformed, len(key)+len(value)+8)
	}
	s.last = append(s.last[:0], key...)
	// A record that would overflow the block starts the next one, which
	// it may fill alone.
	if len(s.block) > 8 && len(s.block)-8+len(key)+len(value)+8+2*binary.MaxVarintLen64 > blockTarget {
		s.flush()
	}
	s.block = binary.AppendUvarint(s.block, uint64(len(key)))
	s.block = append(s.block, key...)
	s.block = binary.AppendUvarint(s.block, uint64(8+len(value)))
	s.block = binary.LittleEndian.AppendUint64(s.block, version)
	s.block = append(s.block, value...)
	s.count++
	if len(s.block)-8 >= blockTarget {
		s.flush()
	}
	return s.err
}

func (s *SnapshotWriter) flush() {
	if len(s.block) == 8 || s.err != nil {
		return
	}
	binary.LittleEndian.PutUint32(s.block, uint32(len(s.block)-8))
	binary.LittleEndian.PutUint32(s.block[4:], Checksum(s.block[8:]))
	_, s.err = s.w.Write(s.block)
	s.block = s.block[:8]
}

// Close writes what is left and the end block. It does not close the
// underlying writer.
func (s *SnapshotWriter) Close() error {
	if s.closed {
		return errWriterClosed
	}
	s.closed = true
	s.flush()
	if s.err != nil {
		return s.err
	}
	var end [16]byte
	binary.LittleEndian.PutUint64(end[8:], s.count)
	binary.LittleEndian.PutUint32(end[4:], Checksum(end[8:]))
	_, s.err = s.w.Write(end[:])
	if s.err == nil {
		s.err = errWriterClosed // for a later Add
		return nil
	}
	return s.err
}

// ReadSnapshot reads a snapshot from r, checking it as it goes, and calls
// fn with each record in key order; the Item's slices are valid only
// during the call. It returns the snapshot's LSN and epoch. A damaged or
// truncated snapshot fails with an error wrapping ErrCorrupt, possibly
// after fn has seen some records: a caller that must change nothing on
// failure builds its state aside and keeps it only on success. An error
// from fn is returned as it is.
func ReadSnapshot(r io.Reader, fn func(Item) error) (lockstitch.LSN, lockstitch.Epoch, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [snapHeaderBytes]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, 0, fmt.Errorf("%w: snapshot header: %w", ErrCorrupt, err)
	}
	if string(hdr[:4]) != SnapshotMagic || hdr[4] != snapVersion || binary.LittleEndian.Uint32(hdr[24:]) != Checksum(hdr[:24]) {
		return 0, 0, fmt.Errorf("%w: bad snapshot header %x", ErrCorrupt, hdr)
	}
	lsn := lockstitch.LSN(binary.LittleEndian.Uint64(hdr[8:]))
	epoch := lockstitch.Epoch(binary.LittleEndian.Uint64(hdr[16:]))
	var count uint64
	var block, last []byte
	var lens [8]byte
	for {
		if _, err := io.ReadFull(br, lens[:]); err != nil {
			return 0, 0, fmt.Errorf("%w: block header after record %d: %w", ErrCorrupt, count, err)
		}
		n, crc := binary.LittleEndian.Uint32(lens[:]), binary.LittleEndian.Uint32(lens[4:])
		if n == 0 {
			var c [8]byte
			if _, err := io.ReadFull(br, c[:]); err != nil {
				return 0, 0, fmt.Errorf("%w: end of snapshot: %w", ErrCorrupt, err)
			}
			if crc != Checksum(c[:]) || binary.LittleEndian.Uint64(c[:]) != count {
				return 0, 0, fmt.Errorf("%w: snapshot ends after %d records, its end says %d (checksum %s)", ErrCorrupt, count, binary.LittleEndian.Uint64(c[:]), okText(crc == Checksum(c[:])))
			}
			return lsn, epoch, nil
		}
		if n > MaxSnapshotBlockBytes {
			return 0, 0, fmt.Errorf("%w: block of %d bytes after record %d", ErrCorrupt, n, count)
		}
		if cap(block) < int(n) {
			block = make([]byte, n)
		}
		block = block[:n]
		if _, err := io.ReadFull(br, block); err != nil {
			return 0, 0, fmt.Errorf("%w: block after record %d: %w", ErrCorrupt, count, err)
		}
		if Checksum(block) != crc {
			return 0, 0, fmt.Errorf("%w: checksum mismatch in the block after record %d", ErrCorrupt, count)
		}
		for rest := block; len(rest) > 0; count++ {
			it, r, err := nextSnapshotRecord(rest)
			if err != nil {
				return 0, 0, fmt.Errorf("record %d: %w", count, err)
			}
			rest = r
			if count > 0 && bytes.Compare(it.Key, last) <= 0 {
				return 0, 0, fmt.Errorf("%w: record %d: key %q after %q (keys increase)", ErrCorrupt, count, it.Key, last)
			}
			last = append(last[:0], it.Key...)
			if err := fn(it); err != nil {
				return 0, 0, err
			}
		}
	}
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "bad"
}

func nextSnapshotRecord(b []byte) (Item, []byte, error) {
	kn, n := binary.Uvarint(b)
	if n <= 0 || kn == 0 || kn > MaxKeyBytes || kn > uint64(len(b)-n) {
		return Item{}, nil, fmt.Errorf("%w: bad key length", ErrCorrupt)
	}
	k, b := b[n:n+int(kn)], b[n+int(kn):]
	vn, n := binary.Uvarint(b)
	if n <= 0 || vn < 8 || vn > uint64(len(b)-n) {
		return Item{}, nil, fmt.Errorf("%w: bad value length", ErrCorrupt)
	}
	v := b[n : n+int(vn)]
	return Item{Key: k, Version: binary.LittleEndian.Uint64(v), Value: v[8:]}, b[n+int(vn):], nil
}
