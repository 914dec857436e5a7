package wal

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these with
// the location (segment file, offset, LSN); match them with errors.Is.
var (
	// ErrCorrupt reports bytes that cannot be a valid record or segment:
	// a checksum mismatch, a length that disagrees with its copy, an LSN
	// out of sequence, a missing segment. Corrupt data is never returned
	// as a record.
	ErrCorrupt = errors.New("wal: corrupt")

	// ErrShort reports that a buffer holds only the start of a frame.
	// DecodeRecord returns it; a caller reading a stream reads more and
	// tries again.
	ErrShort = errors.New("wal: short frame")

	// ErrOutOfOrder reports an append whose LSN is not the next one.
	ErrOutOfOrder = errors.New("wal: LSN out of order")

	// ErrTooLarge reports an append whose payload exceeds the configured
	// maximum.
	ErrTooLarge = errors.New("wal: payload too large")

	// ErrTruncated reports a read of an LSN that retention or Reset has
	// already dropped from the log.
	ErrTruncated = errors.New("wal: LSN truncated")

	// ErrNotFound reports a read of an LSN beyond the end of the log.
	ErrNotFound = errors.New("wal: LSN not found")

	// ErrClosed reports a call on a closed Log or Iterator.
	ErrClosed = errors.New("wal: closed")

	// ErrFailed reports an append or sync on a Log that has already failed
	// to write or sync. After a failed write or fsync the state of the
	// file is unknown, so the Log refuses further writes; close it and
	// open it again to recover.
	ErrFailed = errors.New("wal: log failed")
)
