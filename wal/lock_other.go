//go:build !unix

package wal

import (
	"errors"
	"io"
)

// lockFile fails: the log relies on advisory file locks, which this
// package implements on Unix systems only.
func lockFile(name string) (io.Closer, error) {
	return nil, errors.New("wal: locking " + name + ": directory locks need a Unix system")
}
