package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Segment header layout. Part of the on-disk format: never change.
const (
	segmentHeaderSize = 32
	segmentMagic      = "lstchwal"
	segmentVersion    = 1

	// flagReset marks a segment written by Log.Reset: every segment with a
	// lower first LSN is obsolete, even if a crash left it on disk.
	flagReset = 1 << 0

	segmentSuffix = ".wal"
	tempSuffix    = ".tmp"
	lockName      = "LOCK"
)

// segmentName returns the file name of the segment whose first LSN is lsn.
// Names sort in LSN order.
func segmentName(first LSN) string { return fmt.Sprintf("%020d%s", uint64(first), segmentSuffix) }

// parseSegmentName returns the first LSN encoded in a segment file name.
func parseSegmentName(name string) (LSN, bool) {
	if len(name) != 20+len(segmentSuffix) || name[20:] != segmentSuffix {
		return 0, false
	}
	v, err := strconv.ParseUint(name[:20], 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return LSN(v), true
}

type segmentHeader struct {
	flags uint32
	first LSN
}

func (h segmentHeader) encode(b []byte) {
	_ = b[segmentHeaderSize-1]
	copy(b[0:8], segmentMagic)
	binary.LittleEndian.PutUint32(b[8:], segmentVersion)
	binary.LittleEndian.PutUint32(b[12:], h.flags)
	binary.LittleEndian.PutUint64(b[16:], uint64(h.first))
	binary.LittleEndian.PutUint32(b[24:], 0)
	binary.LittleEndian.PutUint32(b[28:], crc32.Checksum(b[:28], castagnoli))
}

func decodeSegmentHeader(b []byte) (segmentHeader, error) {
	if len(b) < segmentHeaderSize {
		return segmentHeader{}, fmt.Errorf("%w: segment header is %d bytes", ErrCorrupt, len(b))
	}
	if got, want := binary.LittleEndian.Uint32(b[28:]), crc32.Checksum(b[:28], castagnoli); got != want {
		return segmentHeader{}, fmt.Errorf("%w: segment header checksum %08x, stored %08x", ErrCorrupt, want, got)
	}
	if string(b[0:8]) != segmentMagic {
		return segmentHeader{}, fmt.Errorf("%w: bad segment magic %q", ErrCorrupt, b[0:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != segmentVersion {
		return segmentHeader{}, fmt.Errorf("%w: unknown segment version %d", ErrCorrupt, v)
	}
	return segmentHeader{
		flags: binary.LittleEndian.Uint32(b[12:]),
		first: LSN(binary.LittleEndian.Uint64(b[16:])),
	}, nil
}

// indexEntry maps an LSN to the offset of its record in a segment.
type indexEntry struct {
	lsn LSN
	off int64
}

// segment is one file of the log. The Log's segment list owns it.
//
// Invariants: first <= last+1; the bytes [segmentHeaderSize, end) hold the
// records first..last, whole and checksummed; those bytes never change
// while the segment is in the list.
type segment struct {
	first LSN
	path  string

	// end is the offset just past the last whole record. For the active
	// segment it grows as appends complete; readers never look past it.
	// It is stored before last, and readers load last before end, so a
	// reader that sees last also sees the bytes of last. The end it loads
	// may be past records appended after that last, though: it bounds
	// reads, and is the position after last only once sealed is seen.
	end  atomic.Int64
	last atomic.Uint64

	// sealed is set once a successor segment is in the list; end and
	// last no longer change.
	sealed atomic.Bool
	// obsolete is set when the segment leaves the list (retention or
	// Reset). Open files still read it; iterators stop at its end.
	obsolete atomic.Bool

	mu sync.Mutex // guards the fields below
	// index is sparse: an entry every Config.IndexIntervalBytes, ascending.
	// For the active segment it grows with appends; a sealed segment
	// opened from disk builds it on first seek (indexed false until then).
	index   []indexEntry
	indexed bool
	// sealedAt is when the segment was sealed (its file's modification
	// time for segments found at Open). Zero while active.
	sealedAt time.Time
}

func newSegment(dir string, first LSN) *segment {
	s := &segment{first: first, path: join(dir, segmentName(first))}
	s.last.Store(uint64(first) - 1)
	s.end.Store(segmentHeaderSize)
	return s
}

func (s *segment) lastLSN() LSN { return LSN(s.last.Load()) }

// publish makes the records up to last, ending at end, visible to readers.
func (s *segment) publish(end int64, last LSN) {
	s.end.Store(end)
	s.last.Store(uint64(last))
}

// lookup returns the indexed position at or before lsn, which must be in
// the segment or follow its last record: the offset of a record whose LSN
// is returned.
func (s *segment) lookup(lsn LSN) (LSN, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.index), func(i int) bool { return s.index[i].lsn > lsn })
	if i == 0 {
		return s.first, segmentHeaderSize
	}
	e := s.index[i-1]
	return e.lsn, e.off
}

// segReader reads a segment file through a buffer, so that sequential
// record reads in either direction cost one ReadAt per buffer, not one
// per record. It never buffers bytes at or past the limit it is given,
// so bytes appended later are never served stale.
type segReader struct {
	f     File
	buf   []byte
	start int64 // file offset of buf[0]
	n     int   // valid bytes in buf
}

func (r *segReader) reset(f File) {
	r.f = f
	r.start, r.n = 0, 0
}

// at returns the size bytes of the file at off, reading forward from off
// when they are not buffered. limit bounds the read.
func (r *segReader) at(off int64, size int, limit int64) ([]byte, error) {
	if off >= r.start && off+int64(size) <= r.start+int64(r.n) {
		b := r.buf[off-r.start:]
		return b[:size:size], nil
	}
	return r.fill(off, size, off, limit)
}

// before returns the size bytes of the file that end at end, reading
// backward (the buffer ends at end) when they are not buffered. floor is
// the lowest offset worth buffering.
func (r *segReader) before(end int64, size int, floor int64) ([]byte, error) {
	off := end - int64(size)
	if off >= r.start && end <= r.start+int64(r.n) {
		b := r.buf[off-r.start:]
		return b[:size:size], nil
	}
	from := end - int64(cap(r.buf))
	if from > off {
		from = off
	}
	if from < floor {
		from = floor
	}
	return r.fill(off, size, from, end)
}

// fill reads [from, limit) (capped at the buffer's size, at least
// [off, off+size)) into the buffer and returns the bytes at off.
func (r *segReader) fill(off int64, size int, from, limit int64) ([]byte, error) {
	if off+int64(size) > limit {
		return nil, io.ErrUnexpectedEOF
	}
	want := int(limit - from)
	if need := int(off-from) + size; cap(r.buf) < need {
		r.buf = make([]byte, need)
	}
	if want > cap(r.buf) {
		want = cap(r.buf)
	}
	r.start, r.n = from, 0
	buf := r.buf[:want]
	n, err := r.f.ReadAt(buf, from)
	if n < int(off-from)+size {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.n = n
	return r.buf[off-from : off-from+int64(size) : off-from+int64(size)], nil
}
