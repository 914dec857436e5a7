package wal

import "fmt"

// Span is a byte range of one segment file that holds whole records, in
// the frame format of AppendRecord, back to back. A stream can send a
// span's bytes as they are (sendfile) and its receiver decode them with
// DecodeRecord.
type Span struct {
	// Path is the segment file; open it with Log.OpenSpan.
	Path string
	// Offset and Length locate the records in the file.
	Offset, Length int64
	// First and Last are the LSNs of the first and last record.
	First, Last LSN
}

// Spans appends to dst the spans that hold the records first..last, one
// per segment, in order. It fails with ErrTruncated when first is below
// First and ErrNotFound when last is beyond Last. The spans stay valid
// until retention or Reset drops their segments; OpenSpan then fails with
// ErrTruncated.
func (l *Log) Spans(first, last LSN, dst []Span) ([]Span, error) {
	if first == 0 || first > last {
		return dst, fmt.Errorf("wal: invalid LSN range [%d, %d]", first, last)
	}
	if l.closed.Load() {
		return dst, ErrClosed
	}
	if end := l.Last(); last > end {
		return dst, fmt.Errorf("%w: LSN %d is beyond the last LSN %d", ErrNotFound, last, end)
	}
	it := &Iterator{l: l, r: segReader{buf: make([]byte, l.cfg.ReadBufferBytes)}}
	defer it.Close()
	for lsn := first; lsn <= last; {
		seg, err := l.segmentFor(lsn)
		if err != nil {
			return dst, err
		}
		if err := it.enter(seg); err != nil {
			return dst, err
		}
		start, err := it.locate(seg, lsn)
		if err != nil {
			return dst, err
		}
		spanLast := min(seg.lastLSN(), last)
		end, err := it.locate(seg, spanLast+1)
		if err != nil {
			return dst, err
		}
		dst = append(dst, Span{Path: seg.path, Offset: start, Length: end - start, First: lsn, Last: spanLast})
		lsn = spanLast + 1
	}
	return dst, nil
}

// OpenSpan opens the segment file of s for reading through the log's file
// system. It fails with ErrTruncated when the segment has been dropped.
func (l *Log) OpenSpan(s Span) (File, error) {
	f, err := l.fs.Open(s.Path)
	if err != nil {
		if isNotExist(err) {
			return nil, fmt.Errorf("%w: segment %s has been dropped", ErrTruncated, s.Path)
		}
		return nil, fmt.Errorf("wal: open %s: %w", s.Path, err)
	}
	return f, nil
}
