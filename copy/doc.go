// Package copy holds what a replica or consumer that is behind receives
// to catch up, and the plan of how it does: the chunked stream format that carries a plugin's snapshot
// of unknown size, and the log section that carries the retained
// operation log with it, so that a replica rebuilt from a copy serves the
// same history as its peers.
//
// Its name hides Go's builtin copy in a file that imports it: import it
// under the alias catchup, everywhere.
//
// # Chunked stream
//
// Part of the snapshot format: never change.
//
//	chunk:      length N (4, little-endian) | CRC-32C of the data (4) | N bytes, 1 <= N <= 64 KiB
//	terminator: length 0 | CRC 0
//
// A ChunkReader verifies each chunk before it hands out any of its bytes,
// so a receiver never holds more than one chunk and never uses a damaged
// byte.
//
// # Log section
//
// A chunked stream whose content is the first and last LSN (8 bytes
// each) and then the records first..last in the wal's frame format; see
// WriteLog and ReadLog. The sender copies the frames as its log holds
// them on disk; the receiver verifies every record's checksums and the
// LSN sequence.
//
// # Catch-up planning
//
// PlanCatchUp decides how a replica or consumer holding a marker catches
// up: the ops after it from the retained log (Delta), a snapshot at an
// LSN at or above it and then the ops after that (SnapshotThenDelta), or
// an error: a *lockstitch.TruncatedError when the ops after the marker
// are gone and no snapshot may bridge the gap, a *lockstitch.DivergedError
// when the marker is beyond everything committed. It is pure: the
// replicator gathers its inputs and acts on its answer.
//
// # Concurrency
//
// ChunkWriter and ChunkReader are not safe for concurrent use. WriteLog
// reads a LogSource concurrently with appends to it; ReadLog calls its
// apply function from the calling goroutine.
package copy
