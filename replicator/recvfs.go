package replicator

import (
	"strings"

	"github.com/lni/vfs"
)

// recvFS is the file system dragonboat runs on: the OS's, except that
// the files of a snapshot being received (in a directory named
// snapshot-...receiving) are written back as they arrive instead of all
// at once at the end.
//
// Dragonboat appends a received copy to its file chunk by chunk without
// syncing, then fsyncs the whole file after the last chunk: for a copy of
// hundreds of megabytes, that fsync takes seconds, and on a shared file
// system it stalls the fsyncs of live appends for as long (ext4 commits
// the delayed data with the journal). Meanwhile the leader, told that the
// copy was sent, asks the replica for entries it does not have yet and
// sends the whole copy a second time. recvFS starts the writeback of each
// chunk as it is written and waits for the writeback of what was written
// more than recvWritebackBytes before it, so the final fsync has little
// left to do (see writeback).
type recvFS struct {
	vfs.FS
	// writeback starts the writeback of f's bytes [off, off+n) and waits
	// for that of [0, wait); writeback in recvfs_linux.go, a no-op
	// elsewhere. Tests replace it.
	writeback func(f vfs.File, off, n, wait int64)
}

// recvWritebackBytes is how far behind a received copy's writes its
// writeback may be.
const recvWritebackBytes = 8 << 20

func newRecvFS(fs vfs.FS) *recvFS { return &recvFS{FS: fs, writeback: writeback} }

// receiving reports whether name is a file of a snapshot being received.
func (fs *recvFS) receiving(name string) bool {
	return strings.HasSuffix(fs.PathBase(fs.PathDir(name)), ".receiving")
}

func (fs *recvFS) Create(name string) (vfs.File, error) {
	f, err := fs.FS.Create(name)
	if err != nil || !fs.receiving(name) {
		return f, err
	}
	return &recvFile{File: f, fs: fs}, nil
}

func (fs *recvFS) OpenForAppend(name string) (vfs.File, error) {
	f, err := fs.FS.OpenForAppend(name)
	if err != nil || !fs.receiving(name) {
		return f, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &recvFile{File: f, fs: fs, off: st.Size()}, nil
}

// recvFile is a file of a snapshot being received, written at its end.
type recvFile struct {
	vfs.File
	fs  *recvFS
	off int64 // the end of the file
}

func (f *recvFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if n > 0 {
		f.fs.writeback(f.File, f.off, int64(n), f.off-recvWritebackBytes)
		f.off += int64(n)
	}
	return n, err
}
