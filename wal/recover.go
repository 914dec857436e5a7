package wal

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// recover loads the segments in l.dir and readies the last one for
// appends. It runs once, from Open, before any other goroutine sees l.
func (l *Log) recover() error {
	names, err := l.fs.List(l.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", l.dir, err)
	}
	var segs []*segment
	var sizes []int64
	var modTimes []time.Time
	resetAt := 0
	for _, name := range names {
		if strings.HasSuffix(name, tempSuffix) {
			// A segment whose creation a crash interrupted.
			if err := l.fs.Remove(join(l.dir, name)); err != nil {
				return fmt.Errorf("wal: remove %s: %w", name, err)
			}
			continue
		}
		first, ok := parseSegmentName(name)
		if !ok {
			if name != lockName {
				l.log.Warn("ignoring unknown file", "file", name)
			}
			continue
		}
		s := newSegment(l.dir, first)
		hdr, size, modTime, err := l.readSegmentHeader(s.path)
		if err != nil {
			return err
		}
		if hdr.first != first {
			return fmt.Errorf("%w: segment %s: header says first LSN %d", ErrCorrupt, s.path, hdr.first)
		}
		if hdr.flags&flagReset != 0 {
			resetAt = len(segs)
		}
		segs = append(segs, s)
		sizes = append(sizes, size)
		modTimes = append(modTimes, modTime)
	}
	if resetAt > 0 {
		// A crash interrupted a Reset after its new segment was durable.
		for _, s := range segs[:resetAt] {
			if err := l.fs.Remove(s.path); err != nil && !isNotExist(err) {
				return fmt.Errorf("wal: remove obsolete %s: %w", s.path, err)
			}
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("wal: sync %s: %w", l.dir, err)
		}
		l.log.Info("removed segments made obsolete by an interrupted reset", "count", resetAt)
		segs, sizes, modTimes = segs[resetAt:], sizes[resetAt:], modTimes[resetAt:]
	}
	if len(segs) == 0 {
		f, s, err := l.createSegment(1, 0)
		if err != nil {
			return err
		}
		l.segs, l.active, l.file, l.next = []*segment{s}, s, f, 1
		l.nextIndexOff = segmentHeaderSize
		return nil
	}

	r := segReader{buf: make([]byte, recoveryBufferBytes)}
	for i, s := range segs[:len(segs)-1] {
		if err := l.checkSealed(&r, s, sizes[i], segs[i+1].first); err != nil {
			return err
		}
		s.sealedAt = modTimes[i]
		s.sealed.Store(true)
		l.sealedBytes += sizes[i]
	}
	active := segs[len(segs)-1]
	if err := l.recoverActive(&r, active, sizes[len(sizes)-1]); err != nil {
		return err
	}
	l.segs, l.active = segs, active
	l.next = active.lastLSN() + 1
	l.synced = active.lastLSN()
	return nil
}

// recoveryBufferBytes is the read buffer used while recovering.
const recoveryBufferBytes = 1 << 20

func (l *Log) readSegmentHeader(path string) (segmentHeader, int64, time.Time, error) {
	f, err := l.fs.Open(path)
	if err != nil {
		return segmentHeader{}, 0, time.Time{}, fmt.Errorf("wal: open %s: %w", path, err)
	}
	defer f.Close()
	var b [segmentHeaderSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		if err == io.EOF {
			err = fmt.Errorf("%w: file shorter than its header", ErrCorrupt)
		}
		return segmentHeader{}, 0, time.Time{}, fmt.Errorf("wal: segment %s: %w", path, err)
	}
	hdr, err := decodeSegmentHeader(b[:])
	if err != nil {
		return segmentHeader{}, 0, time.Time{}, fmt.Errorf("wal: segment %s: %w", path, err)
	}
	info, err := l.fs.Stat(path)
	if err != nil {
		return segmentHeader{}, 0, time.Time{}, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	return hdr, info.Size(), info.ModTime(), nil
}

// checkSealed checks that the sealed segment s, size bytes long, ends with
// a whole record whose LSN is next-1, and publishes its extent.
func (l *Log) checkSealed(r *segReader, s *segment, size int64, next LSN) error {
	if next <= s.first {
		return fmt.Errorf("%w: segment %s starts at LSN %d but the next segment starts at %d", ErrCorrupt, s.path, s.first, next)
	}
	if size == segmentHeaderSize {
		return fmt.Errorf("%w: sealed segment %s is empty but the next segment starts at LSN %d, not %d", ErrCorrupt, s.path, next, s.first)
	}
	f, err := l.fs.Open(s.path)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", s.path, err)
	}
	defer f.Close()
	r.reset(f)
	var rec Record
	if _, err := readBefore(r, size, l.maxPayload, &rec); err != nil {
		return fmt.Errorf("wal: last record of sealed segment %s (%d bytes): %w", s.path, size, err)
	}
	if rec.LSN != next-1 {
		return fmt.Errorf("%w: sealed segment %s ends at LSN %d but the next segment starts at %d", ErrCorrupt, s.path, rec.LSN, next)
	}
	s.publish(size, rec.LSN)
	return nil
}

// readBefore decodes the record that ends at end.
func readBefore(r *segReader, end int64, maxPayload int, rec *Record) (int, error) {
	if end-segmentHeaderSize < FrameOverhead {
		return 0, fmt.Errorf("%w: no room for a record before offset %d", ErrCorrupt, end)
	}
	t, err := r.before(end, TrailerSize, segmentHeaderSize)
	if err != nil {
		return 0, err
	}
	n := trailerLength(t)
	if n > maxPayload || int64(FrameSize(n)) > end-segmentHeaderSize {
		return 0, fmt.Errorf("%w: trailer length %d at offset %d", ErrCorrupt, n, end-TrailerSize)
	}
	frame, err := r.before(end, FrameSize(n), segmentHeaderSize)
	if err != nil {
		return 0, err
	}
	return DecodeRecord(frame, maxPayload, rec)
}

// recoverActive scans the last segment, builds its index, cuts off a torn
// tail, and opens it for appending.
func (l *Log) recoverActive(r *segReader, s *segment, size int64) error {
	f, err := l.fs.OpenReadWrite(s.path)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", s.path, err)
	}
	sf := newSharedFile(f)
	if err := l.scanActive(r, s, f, size); err != nil {
		sf.release()
		return err
	}
	l.file = sf
	return nil
}

func (l *Log) scanActive(r *segReader, s *segment, f File, size int64) error {
	r.reset(f)
	s.index = make([]indexEntry, 0, l.cfg.SegmentBytes/l.cfg.IndexIntervalBytes+1)
	s.indexed = true
	off, next := int64(segmentHeaderSize), s.first
	nextIndexOff := off
	var rec Record
	var damage error
	for off < size {
		n, err := l.decodeAt(r, off, size, &rec)
		if err == nil && rec.LSN != next {
			err = fmt.Errorf("%w: LSN %d where %d was due", ErrCorrupt, rec.LSN, next)
		}
		if err != nil {
			damage = err
			break
		}
		if off >= nextIndexOff {
			s.index = append(s.index, indexEntry{lsn: next, off: off})
			nextIndexOff = off + l.cfg.IndexIntervalBytes
		}
		off += int64(n)
		next++
	}
	s.publish(off, next-1)
	l.nextIndexOff = nextIndexOff
	if off < size {
		torn, nonZero, err := l.classifyDamage(r, s.path, off, size, next, damage)
		if err != nil {
			return err
		}
		if torn {
			if err := f.Truncate(off); err != nil {
				return fmt.Errorf("wal: cut torn tail of %s at offset %d: %w", s.path, off, err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("wal: sync %s: %w", s.path, err)
			}
			if nonZero {
				l.repair = &Repair{Segment: s.path, Offset: off, DroppedBytes: size - off, LastLSN: next - 1}
				l.log.Warn("cut torn tail", "segment", s.path, "offset", off, "dropped_bytes", size-off, "last", next-1)
			}
		}
	}
	if l.cfg.Preallocate {
		if err := f.Preallocate(l.cfg.SegmentBytes); err != nil {
			return fmt.Errorf("wal: preallocate %s: %w", s.path, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("wal: sync %s: %w", s.path, err)
		}
	}
	return nil
}

// decodeAt decodes the record at off, which must end by limit.
func (l *Log) decodeAt(r *segReader, off, limit int64, rec *Record) (int, error) {
	h, err := r.at(off, HeaderSize, limit)
	if err != nil {
		return 0, err
	}
	n := frameLength(h)
	if n > l.maxPayload {
		return 0, fmt.Errorf("%w: payload length %d exceeds limit %d", ErrCorrupt, n, l.maxPayload)
	}
	frame, err := r.at(off, FrameSize(n), limit)
	if err != nil {
		return 0, err
	}
	return DecodeRecord(frame, l.maxPayload, rec)
}

// classifyDamage decides what the bytes [off, size) of the last segment
// are, given that no record with LSN next starts at off. They are a torn
// tail (torn true), to be cut off, when no valid record with LSN next or
// higher starts anywhere in them and the damaged record looks like an
// interrupted write: it runs past the end of the file, or it holds zeros
// where a write would have put data (a zero header, a zero trailer, or a
// zero 512-byte sector). nonZero reports whether any byte there is not
// zero; an all-zero tail is preallocated space, not damage. Anything else
// is corruption in the middle of the log and an error.
func (l *Log) classifyDamage(r *segReader, path string, off, size int64, next LSN, damage error) (torn, nonZero bool, err error) {
	var rec Record
	// The highest LSN that could fit in the rest of the segment.
	maxLSN := next + LSN((size-off)/FrameOverhead)
	for p := off; p+FrameOverhead <= size; p++ {
		h, err := r.at(p, HeaderSize, size)
		if err != nil {
			return false, false, fmt.Errorf("wal: read %s at offset %d: %w", path, p, err)
		}
		if isZero(h) {
			// No record starts within the next 20 bytes: its LSN field
			// would lie inside these zeros, and LSNs are not zero.
			p += HeaderSize - (offLSN + 8)
			continue
		}
		nonZero = true
		if lsn := frameLSN(h); lsn < next || lsn > maxLSN {
			continue
		}
		if _, err := l.decodeAt(r, p, size, &rec); err == nil {
			return false, true, fmt.Errorf("%w: segment %s: bad record at offset %d (%v) followed by a valid record (LSN %d) at offset %d",
				ErrCorrupt, path, off, damage, rec.LSN, p)
		}
	}
	if !nonZero {
		nonZero, err = anyNonZero(r, off, size)
		if err != nil {
			return false, false, fmt.Errorf("wal: read %s: %w", path, err)
		}
		if !nonZero {
			return true, false, nil
		}
	}
	if l.looksTorn(r, off, size) {
		return true, true, nil
	}
	return false, true, fmt.Errorf("%w: segment %s: bad record at offset %d: %v", ErrCorrupt, path, off, damage)
}

// looksTorn reports whether the record at off looks like an interrupted
// write rather than damaged data.
func (l *Log) looksTorn(r *segReader, off, size int64) bool {
	if off+HeaderSize > size {
		return true
	}
	h, err := r.at(off, HeaderSize, size)
	if err != nil {
		return false
	}
	n := frameLength(h)
	end := off + int64(FrameSize(n))
	if n > l.maxPayload || end > size {
		// The file ends inside the record, or the length is garbage
		// left by a partly written header.
		return true
	}
	if isZero(h) {
		return true
	}
	if t, err := r.at(end-TrailerSize, TrailerSize, size); err == nil && isZero(t) {
		return true
	}
	// A zero sector inside the record: pages persisted out of order.
	for p := off; p < end; {
		next := (p/sectorSize + 1) * sectorSize
		if next > end {
			next = end
		}
		if next-p == sectorSize {
			if b, err := r.at(p, sectorSize, size); err == nil && isZero(b) {
				return true
			}
		}
		p = next
	}
	return false
}

const sectorSize = 512

// anyNonZero reports whether any byte in [off, size) is not zero.
func anyNonZero(r *segReader, off, size int64) (bool, error) {
	for off < size {
		n := int64(sectorSize)
		if size-off < n {
			n = size - off
		}
		b, err := r.at(off, int(n), size)
		if err != nil {
			return false, err
		}
		if !isZero(b) {
			return true, nil
		}
		off += n
	}
	return false, nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
