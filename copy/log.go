package copy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

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

// ReadLogFrames reads a log section from r, verifying each record (its
// checksums, and LSNs from first to last with no gap), and hands the
// records to apply as their frames, back to back as the sender's log held
// them, in batches of about LogBatchBytes: wal.Log.AppendFrames writes
// them as they are, without encoding them again. frames aliases a buffer
// that is reused once apply returns; batchFirst and batchLast are the
// LSNs of its first and last record. maxPayload bounds a record's
// payload.
//
// It returns the section's first and last LSN, and fails as ReadLog does.
// Batches applied before a failure stay applied: the caller treats the
// section as all or nothing itself.
func ReadLogFrames(r io.Reader, maxPayload int, apply func(frames []byte, batchFirst, batchLast wal.LSN) error) (first, last wal.LSN, err error) {
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
		batch      []byte // the frames of the batch
		batchFirst = first
		rec        wal.Record
	)
	for next := first; next <= last; next++ {
		head, err := br.Peek(wal.HeaderSize)
		if err != nil {
			return first, last, fmt.Errorf("copy: log record %d: %w", next, unexpected(err))
		}
		size, err := wal.FrameSizeOf(head, maxPayload)
		if err != nil {
			return first, last, fmt.Errorf("%w: log record %d: %v", ErrCorrupt, next, err)
		}
		start := len(batch)
		batch = slices.Grow(batch, size)[:start+size]
		frame := batch[start:]
		if _, err := io.ReadFull(br, frame); err != nil {
			return first, last, fmt.Errorf("copy: log record %d: %w", next, unexpected(err))
		}
		if _, err := wal.DecodeRecord(frame, maxPayload, &rec); err != nil {
			return first, last, fmt.Errorf("%w: log record %d: %v", ErrCorrupt, next, err)
		}
		if rec.LSN != next {
			return first, last, fmt.Errorf("%w: log record %d carries LSN %d", ErrCorrupt, next, rec.LSN)
		}
		if len(batch) >= LogBatchBytes || next == last {
			if err := apply(batch, batchFirst, next); err != nil {
				return first, last, err
			}
			batch, batchFirst = batch[:0], next+1
		}
	}
	// Nothing may follow the last record.
	if _, err := br.ReadByte(); err == nil {
		return first, last, fmt.Errorf("%w: bytes after log record %d", ErrCorrupt, last)
	} else if !errors.Is(err, io.EOF) {
		return first, last, unexpected(err)
	}
	return first, last, nil
}

// ReadLog reads a log section from r, verifying each record, and hands
// the records to apply in order, in batches of at most LogBatchRecords
// records and about LogBatchBytes of frames. The records' payloads alias
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
	var batch []wal.Record
	return ReadLogFrames(r, maxPayload, func(frames []byte, _, _ wal.LSN) error {
		for len(frames) > 0 {
			var rec wal.Record
			n, err := wal.DecodeRecord(frames, maxPayload, &rec)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err) // verified already: not reached
			}
			batch, frames = append(batch, rec), frames[n:]
			if len(batch) == LogBatchRecords || len(frames) == 0 {
				err := apply(batch)
				batch = batch[:0]
				if err != nil {
					return err
				}
			}
		}
		return nil
	})
}
