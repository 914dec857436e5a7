package wal

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// FS is the file system the log uses. Every disk access goes through it so
// that tests can inject failures and simulate crashes. OSFS is the real one.
//
// Names are slash- or OS-separated paths as produced by filepath.Join.
type FS interface {
	// MkdirAll creates dir and its parents if they do not exist.
	MkdirAll(dir string) error
	// List returns the names (not paths) of the entries in dir, sorted.
	List(dir string) ([]string, error)
	// Create creates name for reading and writing, truncating it if it
	// exists. The new directory entry is durable only after SyncDir.
	Create(name string) (File, error)
	// OpenReadWrite opens an existing file for reading and writing.
	OpenReadWrite(name string) (File, error)
	// Open opens an existing file for reading. It returns an error
	// matching fs.ErrNotExist when name does not exist.
	Open(name string) (File, error)
	// Remove removes a file. Durable only after SyncDir.
	Remove(name string) error
	// Rename renames a file, replacing newname. Durable only after SyncDir.
	Rename(oldname, newname string) error
	// SyncDir makes the entries of dir durable.
	SyncDir(dir string) error
	// Stat describes a file.
	Stat(name string) (fs.FileInfo, error)
	// Lock takes an exclusive lock on name, creating it if needed, and
	// returns the closer that releases it. It fails if the lock is held.
	Lock(name string) (io.Closer, error)
}

// File is an open file of an FS.
type File interface {
	io.ReaderAt
	io.WriterAt
	io.Closer
	// Sync makes the file's data durable (fdatasync on Linux).
	Sync() error
	// Truncate changes the file's size. Durable only after Sync.
	Truncate(size int64) error
	// Preallocate reserves space for the file up to size bytes; the file's
	// size becomes at least size and the new bytes read as zeros. Durable
	// only after Sync.
	Preallocate(size int64) error
	// Size returns the file's current size.
	Size() (int64, error)
}

// OSFS is the operating system's file system.
type OSFS struct{}

var _ FS = OSFS{}

// MkdirAll implements FS.
func (OSFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o755) }

// List implements FS.
func (OSFS) List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// Create implements FS.
func (OSFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// OpenReadWrite implements FS.
func (OSFS) OpenReadWrite(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Open implements FS.
func (OSFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// Remove implements FS.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename implements FS.
func (OSFS) Rename(oldname, newname string) error { return os.Rename(oldname, newname) }

// SyncDir implements FS.
func (OSFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Stat implements FS.
func (OSFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

// Lock implements FS.
func (OSFS) Lock(name string) (io.Closer, error) { return lockFile(name) }

// osFile is a File backed by an *os.File.
type osFile struct{ f *os.File }

func (f osFile) ReadAt(p []byte, off int64) (int, error)  { return f.f.ReadAt(p, off) }
func (f osFile) WriteAt(p []byte, off int64) (int, error) { return f.f.WriteAt(p, off) }
func (f osFile) Close() error                             { return f.f.Close() }
func (f osFile) Sync() error                              { return fdatasync(f.f) }
func (f osFile) Truncate(size int64) error                { return f.f.Truncate(size) }
func (f osFile) Preallocate(size int64) error             { return preallocate(f.f, size) }

func (f osFile) Size() (int64, error) {
	st, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// OSFile returns the *os.File behind f when f comes from OSFS, so that a
// caller can hand it to a zero-copy path (sendfile). It returns nil for
// files of other file systems.
func OSFile(f File) *os.File {
	if of, ok := f.(osFile); ok {
		return of.f
	}
	return nil
}

// isNotExist reports whether err says a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// join joins path elements the same way for every FS.
func join(dir, name string) string { return filepath.Join(dir, name) }
