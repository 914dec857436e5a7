package replicator

import (
	"github.com/lni/vfs"
	"golang.org/x/sys/unix"
)

// writeback starts the writeback of f's bytes [off, off+n) and waits for
// the writeback of [0, wait) to end (sync_file_range: data only, no
// metadata, so not a substitute for the fsync that follows). Errors are
// ignored: the fsync at the end reports them. Files other than OS files
// are left alone.
func writeback(f vfs.File, off, n, wait int64) {
	fd, ok := f.(interface{ Fd() uintptr })
	if !ok {
		return
	}
	if wait > 0 {
		unix.SyncFileRange(int(fd.Fd()), 0, wait, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	}
	unix.SyncFileRange(int(fd.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
