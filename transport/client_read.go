package transport

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/wal"
)

// ReadOptions bounds a Read. Zero fields take the defaults: 1024 ops and
// 1 MiB.
type ReadOptions struct {
	// MaxOps bounds the records returned.
	MaxOps int
	// MaxBytes bounds the records returned, in log frame bytes
	// (wal.FrameSize); one record is returned even if it alone is larger.
	MaxBytes int
	// Reverse reads from the given LSN down (from 0: from the last
	// committed op): the records come highest LSN first.
	Reverse bool
}

// Read reads committed records of partition p from LSN from on (with
// opts.Reverse, from from down), within opts, into into, replacing what
// it held. It returns a *TruncatedError
// when from is below the first retained LSN; it returns no records when
// from is beyond the commit LSN (into.Committed says how far the log goes).
// Read reuses into's buffer: with a reused Records, it does not allocate
// in steady state.
func (cl *Client) Read(ctx context.Context, p lockstitch.PartitionID, from wal.LSN, opts ReadOptions, into *Records) error {
	if opts.MaxOps <= 0 {
		opts.MaxOps = 1024
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 20
	}
	c := cl.getCall(TypeRead)
	c.partition = p
	c.read = ReadRequest{Partition: p, From: from, MaxOps: min(opts.MaxOps, math.MaxUint32), MaxBytes: min(opts.MaxBytes, math.MaxUint32), Reverse: opts.Reverse}
	abandoned, err := cl.do(ctx, c)
	if abandoned {
		return err
	}
	if err == nil {
		into.buf, c.buf = c.buf, into.buf[:0]
		into.off, into.next, into.epoch, into.reverse = 0, from, 0, opts.Reverse
		into.committed = c.committed
		into.maxPayload = cl.cfg.MaxFrameBytes
	}
	cl.putCall(c)
	return err
}

// Records holds the records of a Read. Next decodes them one by one,
// verifying each frame's and payload's CRC-32C (the end-to-end check of
// the producer's checksum) and that LSNs are consecutive and epochs never
// decrease (going back: never increase). The zero value is empty and
// ready for Read.
type Records struct {
	buf        []byte
	off        int
	next       wal.LSN
	epoch      uint64
	reverse    bool
	committed  wal.LSN
	maxPayload int
}

// Next fills rec with the next record and returns io.EOF after the last.
// rec.Payload aliases the Records' buffer: it is valid until the next Read
// into the same Records. A damaged record fails with an error matching
// ErrChecksum and wal.ErrCorrupt; the rest of the records are dropped.
func (r *Records) Next(rec *wal.Record) error {
	if r.off >= len(r.buf) {
		return io.EOF
	}
	n, err := wal.DecodeRecord(r.buf[r.off:], r.maxPayload, rec)
	if err != nil {
		r.off = len(r.buf)
		return fmt.Errorf("%w: record %d received damaged: %w", lockstitch.ErrChecksum, r.next, err)
	}
	if r.reverse {
		first := r.off == 0
		if first && (r.next == 0 || rec.LSN < r.next) {
			r.next = rec.LSN // from the end: from was 0 or beyond it
		}
		if rec.LSN != r.next || rec.LSN == 0 || (!first && rec.Epoch > r.epoch) {
			r.off = len(r.buf)
			return fmt.Errorf("%w: received LSN %d epoch %d, want LSN %d epoch at most %d", ErrProtocol, rec.LSN, rec.Epoch, r.next, r.epoch)
		}
		r.off += n
		r.next--
		r.epoch = rec.Epoch
		return nil
	}
	if rec.LSN != r.next || rec.Epoch < r.epoch {
		r.off = len(r.buf)
		return fmt.Errorf("%w: received LSN %d epoch %d, want LSN %d epoch at least %d", ErrProtocol, rec.LSN, rec.Epoch, r.next, r.epoch)
	}
	r.off += n
	r.next++
	r.epoch = rec.Epoch
	return nil
}

// Committed returns the commit LSN the answering replica knew.
func (r *Records) Committed() wal.LSN { return r.committed }
