//go:build unix

package server

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// diskSpace returns the bytes available to unprivileged users and the
// size of the filesystem that holds dir.
func diskSpace(dir string) (avail, size uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("server: statfs %s: %w", dir, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), uint64(st.Blocks) * uint64(st.Bsize), nil
}
