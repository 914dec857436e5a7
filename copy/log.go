package copy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/lockstitch/lockstitch/wal"
)

// Log section format, a chunked stream (part of the snapshot format:
// never change):
//
//	first  8   LSN of the first record (little-endian)
//	last   8   LSN of the last record; last = first-1 for no record
//	then the records first..last back to back, each in the wal's frame
//	format (wal.AppendRecord: header, payload, trailer, two CRC-32Cs)
//
// The sender copies the frames as its log holds them on disk, without
// decoding them; the receiver verifies every frame's checksums and that
// the LSNs run from first to last with no gap, so a damaged or truncated
// section is refused (ErrCorrupt, io.ErrUnexpectedEOF) and never applied
// in part as if it were whole.

// logHeaderSize is the size of a log section's header.
const logHeaderSize = 16

// LogSource is the retained operation log a copy reads from: a *wal.Log
// is one. It is declared here, by the package that consumes it.
type LogSource interface {
	// Spans returns the byte ranges of the segment files that hold the
	// records first..last; see wal.Log.Spans.
	Spans(first, last wal.LSN, dst []wal.Span) ([]wal.Span, error)
	// OpenSpan opens the segment file of a span; see wal.Log.OpenSpan.
	OpenSpan(s wal.Span) (wal.File, error)
}

// WriteLog writes the log section of records first..last of src to w,
// as a chunked stream. Every segment file is opened before the first
// byte is written: a segment that the log's retention drops meanwhile
// stays readable through its open file (on Linux), and a range that is
// no longer retained fails at once with an error wrapping
// wal.ErrTruncated, before anything is written. first = last+1 writes a
// section with no record. WriteLog stops with ctx's error between reads
// of 64 KiB.
func WriteLog(ctx context.Context, w io.Writer, src LogSource, first, last wal.LSN) error {
	if first == 0 || first > last+1 {
		return fmt.Errorf("copy: invalid log range [%d, %d]", first, last)
	}
	var files []wal.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var spans []wal.Span
	if first <= last {
		var err error
		if spans, err = src.Spans(first, last, nil); err != nil {
			return fmt.Errorf("copy: log records %d to %d: %w", first, last, err)
		}
		for _, s := range spans {
			f, err := src.OpenSpan(s)
			if err != nil {
				return fmt.Errorf("copy: log records %d to %d: %w", s.First, s.Last, err)
			}
			files = append(files, f)
		}
	}
	cw := NewChunkWriter(w)
	var h [logHeaderSize]byte
	binary.LittleEndian.PutUint64(h[0:], uint64(first))
	binary.LittleEndian.PutUint64(h[8:], uint64(last))
	if _, err := cw.Write(h[:]); err != nil {
		return err
	}
	buf := make([]byte, MaxChunkBytes)
	for i, s := range spans {
		sr := io.NewSectionReader(files[i], s.Offset, s.Length)
		for {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := sr.Read(buf)
			if n > 0 {
				if _, werr := cw.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("copy: reading %s: %w", s.Path, err)
			}
		}
	}
	return cw.Close()
}

// LogBatchBytes and LogBatchRecords bound the batches ReadLog hands to
// its apply function.
const (
	LogBatchBytes   = 1 << 20
	LogBatchRecords = 1024
)

// ReadLog reads a log section from r, verifying each record, and hands
// the records to apply in order, in batches of at most LogBatchRecords
// records and about LogBatchBytes of payload. The records' payloads alias
// a buffer that is reused once apply returns; apply copies what it keeps
// (wal.Log.AppendBatch does). maxPayload bounds a record's payload.
//
// It returns the section's first and last LSN. It fails with an error
// wrapping ErrCorrupt when a record fails its checksums, a record's LSN
// is out of sequence or the section holds more than its header says,
// with io.ErrUnexpectedEOF when the stream ends early, and with apply's
// error. Batches applied before a failure stay applied: the caller
// treats the section as all or nothing itself.
func ReadLog(r io.Reader, maxPayload int, apply func([]wal.Record) error) (first, last wal.LSN, err error) {
	cr := NewChunkReader(r)
	var h [logHeaderSize]byte
	if _, err := io.ReadFull(cr, h[:]); err != nil {
		return 0, 0, unexpected(err)
	}
	first = wal.LSN(binary.LittleEndian.Uint64(h[0:]))
	last = wal.LSN(binary.LittleEndian.Uint64(h[8:]))
	if first == 0 || first > last+1 {
		return 0, 0, fmt.Errorf("%w: log range [%d, %d]", ErrCorrupt, first, last)
	}
	br := bufio.NewReaderSize(cr, MaxChunkBytes)
	var (
		frame []byte // the frame being read
		arena []byte // payloads of the batch
		batch []wal.Record
		rec   wal.Record
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := apply(batch)
		batch, arena = batch[:0], arena[:0]
		return err
	}
	for next := first; next <= last; next++ {
		head, err := br.Peek(wal.HeaderSize)
		if err != nil {
			return first, last, fmt.Errorf("copy: log record %d: %w", next, unexpected(err))
		}
		size, err := wal.FrameSizeOf(head, maxPayload)
		if err != nil {
			return first, last, fmt.Errorf("%w: log record %d: %v", ErrCorrupt, next, err)
		}
		if cap(frame) < size {
			frame = make([]byte, size)
		}
		frame = frame[:size]
		if _, err := io.ReadFull(br, frame); err != nil {
			return first, last, fmt.Errorf("copy: log record %d: %w", next, unexpected(err))
		}
		if _, err := wal.DecodeRecord(frame, maxPayload, &rec); err != nil {
			return first, last, fmt.Errorf("%w: log record %d: %v", ErrCorrupt, next, err)
		}
		if rec.LSN != next {
			return first, last, fmt.Errorf("%w: log record %d carries LSN %d", ErrCorrupt, next, rec.LSN)
		}
		start := len(arena)
		arena = append(arena, rec.Payload...)
		rec.Payload = arena[start:len(arena):len(arena)]
		batch = append(batch, rec)
		if len(batch) >= LogBatchRecords || len(arena) >= LogBatchBytes {
			// The arena may have moved as it grew: point the payloads at
			// its final backing array before handing them out.
			repoint(batch, arena)
			if err := flush(); err != nil {
				return first, last, err
			}
		}
	}
	repoint(batch, arena)
	if err := flush(); err != nil {
		return first, last, err
	}
	// Nothing may follow the last record.
	if _, err := br.ReadByte(); err == nil {
		return first, last, fmt.Errorf("%w: bytes after log record %d", ErrCorrupt, last)
	} else if !errors.Is(err, io.EOF) {
		return first, last, unexpected(err)
	}
	return first, last, nil
}

// repoint makes the batch's payloads, appended to arena in order, alias
// arena's current backing array.
func repoint(batch []wal.Record, arena []byte) {
	off := 0
	for i := range batch {
		n := len(batch[i].Payload)
		batch[i].Payload = arena[off : off+n : off+n]
		off += n
	}
}
