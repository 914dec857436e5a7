package wal

import (
	"errors"
	"fmt"
	"io"
)

// Iterator reads records in either direction. It sits between two LSNs:
// Next returns the record after its position and Prev the one before.
//
// An Iterator is not safe for concurrent use; use one per goroutine. The
// Payload of a record it fills aliases its buffer and stays valid only
// until its next call. Reads allocate nothing once the buffer has grown to
// the largest record read, except when crossing into another segment.
type Iterator struct {
	l    *Log
	seg  *segment
	file File
	r    segReader
	off  int64 // offset of record next in seg; the end of record next-1
	next LSN
}

// NewIterator returns an iterator positioned before from: its first Next
// returns the record with LSN from, its first Prev the one with from-1.
// from may be Last()+1, the end of the log: Next then returns io.EOF until
// more is appended. It fails with ErrTruncated below First and ErrNotFound
// beyond Last()+1.
func (l *Log) NewIterator(from LSN) (*Iterator, error) {
	it := &Iterator{l: l, r: segReader{buf: make([]byte, l.cfg.ReadBufferBytes)}}
	if err := it.Seek(from); err != nil {
		it.Close()
		return nil, err
	}
	return it, nil
}

// Seek positions the iterator before lsn; see NewIterator.
func (it *Iterator) Seek(lsn LSN) error {
	if it.l.closed.Load() {
		return ErrClosed
	}
	seg, err := it.l.segmentFor(lsn)
	if err != nil {
		return err
	}
	if err := it.enter(seg); err != nil {
		return err
	}
	off, err := it.locate(seg, lsn)
	if err != nil {
		return err
	}
	it.off, it.next = off, lsn
	return nil
}

// SeekEnd positions the iterator after the last record of the log.
func (it *Iterator) SeekEnd() error { return it.Seek(it.l.Last() + 1) }

// Position returns the LSN that the next call to Next would return.
func (it *Iterator) Position() LSN { return it.next }

// Next fills r with the record after the iterator's position and moves
// past it. At the end of the log it returns io.EOF; call it again after
// more appends (Log.Wait) to go on. It returns ErrTruncated if retention
// or Reset removed what the iterator was about to read, and ErrCorrupt
// for damaged data.
func (it *Iterator) Next(r *Record) error {
	if it.l.closed.Load() {
		return ErrClosed
	}
	for {
		// Load sealed before end: once sealed is seen, end is final.
		sealed := it.seg.sealed.Load()
		end := it.seg.end.Load()
		if it.off < end {
			n, err := it.l.decodeAt(&it.r, it.off, end, r)
			if err == nil && r.LSN != it.next {
				err = fmt.Errorf("%w: LSN %d where %d was due", ErrCorrupt, r.LSN, it.next)
			}
			if err != nil {
				return it.corrupt(it.off, err)
			}
			it.off += int64(n)
			it.next++
			return nil
		}
		if !sealed {
			if it.seg.obsolete.Load() {
				return fmt.Errorf("%w: the log was reset past LSN %d", ErrTruncated, it.next)
			}
			return io.EOF
		}
		seg, err := it.l.successor(it.next)
		if err != nil {
			return err
		}
		if err := it.enter(seg); err != nil {
			return err
		}
		it.off = segmentHeaderSize
	}
}

// Prev fills r with the record before the iterator's position and moves
// before it. Before the first retained record it returns io.EOF.
func (it *Iterator) Prev(r *Record) error {
	if it.l.closed.Load() {
		return ErrClosed
	}
	for {
		if it.off > segmentHeaderSize {
			n, err := readBefore(&it.r, it.off, it.l.maxPayload, r)
			if err == nil && r.LSN != it.next-1 {
				err = fmt.Errorf("%w: LSN %d where %d was due", ErrCorrupt, r.LSN, it.next-1)
			}
			if err != nil {
				return it.corrupt(it.off, err)
			}
			it.off -= int64(n)
			it.next--
			return nil
		}
		seg, err := it.l.predecessor(it.seg)
		if err != nil {
			return err
		}
		if err := it.enter(seg); err != nil {
			return err
		}
		it.off = seg.end.Load()
	}
}

// Close releases the iterator's file. It is idempotent.
func (it *Iterator) Close() error {
	if it.file == nil {
		return nil
	}
	err := it.file.Close()
	it.file, it.seg = nil, nil
	return err
}

func (it *Iterator) corrupt(off int64, err error) error {
	if it.seg.obsolete.Load() {
		// TruncateBack cut the file under the iterator.
		return fmt.Errorf("%w: segment %s was truncated while being read", ErrTruncated, it.seg.path)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: record cut short", ErrCorrupt)
	}
	return fmt.Errorf("wal: segment %s, offset %d: %w", it.seg.path, off, err)
}

// enter makes seg the iterator's current segment.
func (it *Iterator) enter(seg *segment) error {
	if it.seg == seg {
		return nil
	}
	f, err := it.l.fs.Open(seg.path)
	if err != nil {
		if isNotExist(err) {
			return fmt.Errorf("%w: segment %s has been dropped", ErrTruncated, seg.path)
		}
		return fmt.Errorf("wal: open %s: %w", seg.path, err)
	}
	if it.file != nil {
		it.file.Close()
	}
	it.seg, it.file = seg, f
	it.r.reset(f)
	return nil
}

// testHookLocate, set only by tests, runs in locate between its loads of
// a segment's last LSN and end offset.
var testHookLocate func()

// locate returns the offset of lsn in seg (the end of the segment's last
// record for the LSN after it).
//
// It relies on this invariant: an end offset loaded after last (publish
// stores end before last) bounds the records up to last, but is the end of
// last itself only once the segment is sealed. In the active segment an
// append may publish between the two loads, leaving end past records the
// caller has not been told of; returning it for last+1 would place the
// iterator after them (Prev then reads a later LSN, Next skips records,
// a Span covers more than it says). So end is taken as a position only
// when sealed was seen before last; otherwise the records before lsn,
// all of which end by end, are walked from the index.
func (it *Iterator) locate(seg *segment, lsn LSN) (int64, error) {
	if err := it.ensureIndex(seg); err != nil {
		return 0, err
	}
	sealed := seg.sealed.Load()
	last := seg.lastLSN()
	if testHookLocate != nil {
		testHookLocate()
	}
	end := seg.end.Load()
	if lsn == last+1 && sealed {
		return end, nil
	}
	at, off := seg.lookup(lsn)
	for at < lsn {
		n, err := it.skip(off, end, at)
		if err != nil {
			return 0, err
		}
		off += int64(n)
		at++
	}
	return off, nil
}

// skip returns the size of the record at off, checking only that its
// header carries the expected LSN; Next verifies checksums.
func (it *Iterator) skip(off, end int64, want LSN) (int, error) {
	h, err := it.r.at(off, HeaderSize, end)
	if err != nil {
		return 0, it.corrupt(off, err)
	}
	n := frameLength(h)
	if n > it.l.maxPayload || off+int64(FrameSize(n)) > end {
		return 0, it.corrupt(off, fmt.Errorf("%w: payload length %d", ErrCorrupt, n))
	}
	if got := frameLSN(h); got != want {
		return 0, it.corrupt(off, fmt.Errorf("%w: LSN %d where %d was due", ErrCorrupt, got, want))
	}
	return FrameSize(n), nil
}

// ensureIndex builds the sparse index of a sealed segment found at Open,
// on its first seek.
func (it *Iterator) ensureIndex(seg *segment) error {
	seg.mu.Lock()
	indexed := seg.indexed
	seg.mu.Unlock()
	if indexed {
		return nil
	}
	interval := it.l.cfg.IndexIntervalBytes
	end := seg.end.Load()
	index := make([]indexEntry, 0, end/interval+1)
	off, lsn, due := int64(segmentHeaderSize), seg.first, int64(segmentHeaderSize)
	for off < end {
		n, err := it.skip(off, end, lsn)
		if err != nil {
			return err
		}
		if off >= due {
			index = append(index, indexEntry{lsn: lsn, off: off})
			due = off + interval
		}
		off += int64(n)
		lsn++
	}
	seg.mu.Lock()
	if !seg.indexed {
		seg.index, seg.indexed = index, true
	}
	seg.mu.Unlock()
	return nil
}
