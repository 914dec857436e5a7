package replicator

import (
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"

	"github.com/lockstitch/lockstitch/wal"
)

func crc32Checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// writeFileAtomic makes data the durable content of path: written to a
// temporary file, fsynced, renamed over path, and the directory fsynced. A
// crash leaves either the old content or the new.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return (wal.OSFS{}).SyncDir(filepath.Dir(path))
}

// fileExists reports whether path exists.
func fileExists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// removeFileDurable removes path, if it is there, and fsyncs its
// directory so the removal survives a crash.
func removeFileDurable(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return (wal.OSFS{}).SyncDir(filepath.Dir(path))
}
