// Package wal is Lockstitch's operation log: a segmented, checksummed,
// append-only log of records with dense LSNs, readable forward and backward
// without an index file, and recoverable after a crash from its files alone.
//
// Each partition replica keeps one Log. The replicator appends committed
// operations to it; catch-up and subscribers read from it; retention drops
// whole segments from its front. The package knows nothing of Raft or
// partitions.
//
// # Records
//
// A record is (LSN, epoch, aux, payload). The LSN is dense: the log accepts
// only the LSN after its last one. Epoch and aux are the caller's, stored
// and returned untouched. Every record is framed with its payload length
// both before and after the payload, so the log reads forward (length
// first) and backward (trailer first) alike, and with two CRC-32C
// (Castagnoli) checksums:
//
//	offset  size  field
//	0       4     length N of the payload, little-endian uint32
//	4       4     payload CRC: CRC-32C of the N payload bytes
//	8       8     LSN, little-endian uint64
//	16      8     epoch, little-endian uint64
//	24      8     aux, little-endian uint64
//	32      4     frame CRC: CRC-32C of the payload followed by bytes [0, 32)
//	36      N     payload
//	36+N    4     length N again
//
// The frame CRC is a CRC-32C over the payload and the header, so any change
// to either is detected; the payload CRC is the same value a producer
// computes for its operation, kept so that a consumer can check a payload
// end to end. A frame is FrameSize(N) = N+40 bytes. This layout is part of
// the format: never change it. The same frames travel on the wire when a
// segment's bytes are streamed as they are (see Spans).
//
// # Segments
//
// Records live in segment files named after their first LSN, 20 decimal
// digits and ".wal" (00000000000000000001.wal), so names sort in LSN order.
// A segment starts with a 32-byte header and holds records back to back:
//
//	offset  size  field
//	0       8     magic "lstchwal"
//	8       4     format version, 1
//	12      4     flags; bit 0: reset (older segments are obsolete)
//	16      8     first LSN, equal to the one in the name
//	24      4     zero
//	28      4     CRC-32C of bytes [0, 28)
//
// The last segment is active: appends go there until it would pass
// Config.SegmentBytes, when it is sealed (fsynced and trimmed to its data)
// and a new one is created. A batch never spans two segments. A new segment
// is written and preallocated under a temporary name, fsynced, renamed into
// place and its directory fsynced, so a segment file either exists whole or
// not at all. A sealed segment never changes; its file size is the end of
// its data.
//
// # Appends and durability
//
// Append and AppendBatch encode their records into one buffer and write it
// with one call; readers see a batch only after that write returns, so they
// never see part of a record. An fsync (fdatasync on Linux) is separate from
// the write and is chosen by Config.Sync: after every batch (group commit:
// one flusher goroutine, and every appender waiting on the fsync that covers
// its batch, so concurrent appenders share fsyncs), periodically by bytes
// and time, or only when the caller calls Sync. Durable returns the last LSN
// an fsync covers. If a write or an fsync fails the Log stops accepting
// appends (ErrFailed): after a failed fsync the state of the page cache is
// unknown, and the records of a failed call must be treated as not durable.
// Close and open the log again to go on.
//
// # Reads
//
// An Iterator reads forward (Next) or backward (Prev) from any retained LSN.
// Each segment keeps a sparse in-memory index (an entry every
// Config.IndexIntervalBytes), built as records are appended or, for
// segments found at Open, on the first seek into them, so a seek reads at
// most one interval of records. Next returns io.EOF at the end of the log
// and continues once more is appended (Wait blocks until then), so an
// Iterator can follow the log. Reads verify both checksums and the LSN
// sequence; damaged data is reported as ErrCorrupt with the segment and
// offset, never returned. Spans gives the raw byte ranges holding an LSN
// range, for streaming without decoding.
//
// # Retention and reset
//
// TruncateFront drops whole segments below an LSN, oldest first, each
// removal made durable before the next. Reset drops everything and restarts
// the log at a given LSN (a replica installing a snapshot); its new segment
// carries the reset flag, so segments a crash left behind are removed at
// the next Open. TruncateBack drops the records after an LSN, newest
// segment first (a replica cutting its log back to a checkpoint during
// recovery). Segments reports each segment's extent, size and seal time
// for size- and age-based retention policies, which belong to the caller.
//
// # Recovery
//
// Open takes an exclusive lock on the directory, removes temporary files,
// checks every segment header, checks that each sealed segment ends with
// the record just before the next segment's first LSN, and scans the active
// segment. There, a record that fails to decode is a torn tail, cut off and
// reported (Repaired, and a warning log), when it looks like an interrupted
// write (the file ends inside it, or it holds a zero header, a zero trailer
// or a zero 512-byte sector) and no valid record with a later LSN follows it
// anywhere in the segment. Any other damage fails Open with ErrCorrupt,
// naming the segment and the offset: a bad record in the middle of the log
// is never skipped. A crash that persists later pages of an unsynced write
// but not earlier ones is reported as corruption too; that errs on the side
// of stopping.
//
// # Errors
//
// Errors wrap the sentinels ErrCorrupt, ErrShort, ErrOutOfOrder,
// ErrTooLarge, ErrTruncated, ErrNotFound, ErrClosed and ErrFailed with the
// location; match them with errors.Is.
//
// # Concurrency
//
// A Log is safe for concurrent use. Appends, Sync, TruncateFront and Reset
// serialize on one mutex that is not held during fsyncs; Iterators read
// concurrently with all of them, each from its own file handle, and need no
// lock per record. All disk access goes through the FS interface.
package wal
