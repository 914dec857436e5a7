package faultfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/lockstitch/lockstitch/wal"
)

// Op names an operation that a fault can fail.
type Op int

// Operations that faults can fail.
const (
	OpCreate Op = iota
	OpOpen
	OpRead
	OpWrite
	OpSync
	OpSyncDir
	OpTruncate
	OpPreallocate
	OpRemove
	OpRename
)

func (o Op) String() string {
	return [...]string{"create", "open", "read", "write", "sync", "syncdir", "truncate", "preallocate", "remove", "rename"}[o]
}

// ErrInjected is the error injected faults return, wrapped with the
// operation and path.
var ErrInjected = errors.New("faultfs: injected fault")

// ErrStale is returned by files opened before the last Crash.
var ErrStale = errors.New("faultfs: file handle from before a crash")

// Fault decides whether an operation fails: it returns true to fail it.
type Fault func(op Op, path string) bool

// FS is the in-memory file system. The zero value is not usable; call New.
type FS struct {
	mu      sync.Mutex
	files   map[string]*node // the namespace as seen now
	durable map[string]*node // the namespace that survives a crash
	dirs    map[string]bool
	locks   map[string]bool
	gen     int // incremented by Crash; handles of older generations are stale
	fault   Fault
}

type node struct {
	mu      sync.Mutex
	data    []byte
	synced  []byte
	modTime time.Time
}

var _ wal.FS = (*FS)(nil)

// New returns an empty file system.
func New() *FS {
	return &FS{
		files:   make(map[string]*node),
		durable: make(map[string]*node),
		dirs:    make(map[string]bool),
		locks:   make(map[string]bool),
	}
}

// SetFault installs f (nil removes it).
func (m *FS) SetFault(f Fault) {
	m.mu.Lock()
	m.fault = f
	m.mu.Unlock()
}

// FailAfter returns a Fault that lets n operations of kind op succeed and
// fails every later one.
func FailAfter(op Op, n int) Fault {
	var mu sync.Mutex
	return func(o Op, _ string) bool {
		if o != op {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		n--
		return n < 0
	}
}

func (m *FS) check(op Op, path string) error {
	m.mu.Lock()
	f := m.fault
	m.mu.Unlock()
	if f != nil && f(op, path) {
		return fmt.Errorf("%w: %s %s", ErrInjected, op, path)
	}
	return nil
}

// Crash discards what is not durable: unsynced bytes of every file and
// directory entries not made durable by SyncDir. Open files become stale
// and locks are released.
func (m *FS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files = make(map[string]*node, len(m.durable))
	for p, n := range m.durable {
		n.mu.Lock()
		n.data = append([]byte(nil), n.synced...)
		n.mu.Unlock()
		m.files[p] = n
	}
	m.locks = make(map[string]bool)
	m.gen++
}

// ReadFile returns a copy of a file's current bytes.
func (m *FS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	n, ok := m.files[filepath.Clean(name)]
	m.mu.Unlock()
	if !ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]byte(nil), n.data...), nil
}

// WriteFile replaces a file's bytes, durably; tests use it to damage data.
func (m *FS) WriteFile(name string, data []byte) {
	name = filepath.Clean(name)
	m.mu.Lock()
	n, ok := m.files[name]
	if !ok {
		n = &node{}
		m.files[name] = n
		m.durable[name] = n
	}
	m.mu.Unlock()
	n.mu.Lock()
	n.data = append([]byte(nil), data...)
	n.synced = append([]byte(nil), data...)
	n.modTime = time.Now()
	n.mu.Unlock()
}

// MkdirAll implements wal.FS.
func (m *FS) MkdirAll(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		m.dirs[d] = true
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// List implements wal.FS.
func (m *FS) List(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[dir] {
		return nil, &fs.PathError{Op: "list", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for p := range m.files {
		if filepath.Dir(p) == dir {
			names = append(names, filepath.Base(p))
		}
	}
	sort.Strings(names)
	return names, nil
}

// Create implements wal.FS.
func (m *FS) Create(name string) (wal.File, error) {
	if err := m.check(OpCreate, name); err != nil {
		return nil, err
	}
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.dirs[filepath.Dir(name)] {
		return nil, &fs.PathError{Op: "create", Path: name, Err: fs.ErrNotExist}
	}
	n := &node{modTime: time.Now()}
	m.files[name] = n
	return &file{fs: m, n: n, path: name, gen: m.gen, write: true}, nil
}

// OpenReadWrite implements wal.FS.
func (m *FS) OpenReadWrite(name string) (wal.File, error) { return m.open(name, true) }

// Open implements wal.FS.
func (m *FS) Open(name string) (wal.File, error) { return m.open(name, false) }

func (m *FS) open(name string, write bool) (wal.File, error) {
	if err := m.check(OpOpen, name); err != nil {
		return nil, err
	}
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.files[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &file{fs: m, n: n, path: name, gen: m.gen, write: write}, nil
}

// Remove implements wal.FS.
func (m *FS) Remove(name string) error {
	if err := m.check(OpRemove, name); err != nil {
		return err
	}
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

// Rename implements wal.FS.
func (m *FS) Rename(oldname, newname string) error {
	if err := m.check(OpRename, oldname); err != nil {
		return err
	}
	oldname, newname = filepath.Clean(oldname), filepath.Clean(newname)
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.files[oldname]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	delete(m.files, oldname)
	m.files[newname] = n
	return nil
}

// SyncDir implements wal.FS: the entries of dir as seen now become durable.
func (m *FS) SyncDir(dir string) error {
	if err := m.check(OpSyncDir, dir); err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	m.mu.Lock()
	defer m.mu.Unlock()
	for p := range m.durable {
		if filepath.Dir(p) == dir {
			if _, ok := m.files[p]; !ok {
				delete(m.durable, p)
			}
		}
	}
	for p, n := range m.files {
		if filepath.Dir(p) == dir {
			m.durable[p] = n
		}
	}
	return nil
}

// Stat implements wal.FS.
func (m *FS) Stat(name string) (fs.FileInfo, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	n, ok := m.files[name]
	m.mu.Unlock()
	if !ok {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return fileInfo{name: filepath.Base(name), size: int64(len(n.data)), modTime: n.modTime}, nil
}

// Lock implements wal.FS.
func (m *FS) Lock(name string) (io.Closer, error) {
	name = filepath.Clean(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locks[name] {
		return nil, &fs.PathError{Op: "lock", Path: name, Err: errors.New("already locked")}
	}
	m.locks[name] = true
	return &lock{fs: m, name: name, gen: m.gen}, nil
}

type lock struct {
	fs   *FS
	name string
	gen  int
	once sync.Once
}

func (l *lock) Close() error {
	l.once.Do(func() {
		l.fs.mu.Lock()
		if l.fs.gen == l.gen {
			delete(l.fs.locks, l.name)
		}
		l.fs.mu.Unlock()
	})
	return nil
}

type file struct {
	fs     *FS
	n      *node
	path   string
	gen    int
	write  bool
	closed bool
}

func (f *file) stale() error {
	if f.closed {
		return fs.ErrClosed
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.gen != f.gen {
		return fmt.Errorf("%w: %s", ErrStale, f.path)
	}
	return nil
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if err := f.stale(); err != nil {
		return 0, err
	}
	if err := f.fs.check(OpRead, f.path); err != nil {
		return 0, err
	}
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if err := f.stale(); err != nil {
		return 0, err
	}
	if !f.write {
		return 0, fmt.Errorf("faultfs: %s opened read-only", f.path)
	}
	ferr := f.fs.check(OpWrite, f.path)
	if ferr != nil {
		p = p[:len(p)/2]
	}
	f.n.mu.Lock()
	if end := off + int64(len(p)); end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	copy(f.n.data[off:], p)
	f.n.modTime = time.Now()
	f.n.mu.Unlock()
	if ferr != nil {
		return len(p), ferr
	}
	return len(p), nil
}

func (f *file) Sync() error {
	if err := f.stale(); err != nil {
		return err
	}
	if err := f.fs.check(OpSync, f.path); err != nil {
		return err
	}
	f.n.mu.Lock()
	f.n.synced = append(f.n.synced[:0], f.n.data...)
	f.n.mu.Unlock()
	return nil
}

func (f *file) Truncate(size int64) error {
	if err := f.stale(); err != nil {
		return err
	}
	if err := f.fs.check(OpTruncate, f.path); err != nil {
		return err
	}
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	if size <= int64(len(f.n.data)) {
		f.n.data = f.n.data[:size:size]
	} else {
		f.n.data = append(f.n.data, make([]byte, size-int64(len(f.n.data)))...)
	}
	return nil
}

func (f *file) Preallocate(size int64) error {
	if err := f.stale(); err != nil {
		return err
	}
	if err := f.fs.check(OpPreallocate, f.path); err != nil {
		return err
	}
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	if size > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, size-int64(len(f.n.data)))...)
	}
	return nil
}

func (f *file) Size() (int64, error) {
	if err := f.stale(); err != nil {
		return 0, err
	}
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	return int64(len(f.n.data)), nil
}

func (f *file) Close() error {
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}

type fileInfo struct {
	name    string
	size    int64
	modTime time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return 0o644 }
func (i fileInfo) ModTime() time.Time { return i.modTime }
func (i fileInfo) IsDir() bool        { return false }
func (i fileInfo) Sys() any           { return nil }
