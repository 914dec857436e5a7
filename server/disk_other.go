//go:build !unix

package server

import "errors"

// diskSpace is not implemented here: the disk gauges are not exported.
func diskSpace(string) (avail, size uint64, err error) {
	return 0, 0, errors.New("server: disk space: not supported on this system")
}
