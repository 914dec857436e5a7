// Package faultfs is an in-memory wal.FS for tests that simulates crashes
// and injects failures.
//
// It keeps two states of everything: what was written and what was made
// durable. A file's bytes become durable with File.Sync; a directory's
// entries (creations, renames, removals) with FS.SyncDir. Crash discards
// everything that is not durable, invalidates open files and releases
// locks, as a power failure would. Injected faults fail chosen operations;
// a failed write stores the first half of its bytes, as a torn write does.
package faultfs
