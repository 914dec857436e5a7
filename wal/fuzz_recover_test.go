package wal_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/lockstitch/lockstitch/internal/testutil/faultfs"
	"github.com/lockstitch/lockstitch/wal"
)

// FuzzRecover opens a log whose only segment holds arbitrary bytes after a
// valid header. Open must not panic; if it succeeds, everything it then
// reads must be whole, checksummed records with dense LSNs, and appends
// must work.
func FuzzRecover(f *testing.F) {
	golden, err := os.ReadFile(filepath.Join("testdata", "golden", "00000000000000000001.wal"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden[32:])
	f.Add(golden[32 : len(golden)-3])
	f.Add(append(append([]byte(nil), golden[32:]...), make([]byte, 100)...))
	f.Fuzz(func(t *testing.T, body []byte) {
		fs := faultfs.New()
		fs.MkdirAll("/wal")
		fs.WriteFile("/wal/00000000000000000001.wal", append(append([]byte(nil), golden[:32]...), body...))
		cfg := wal.DefaultConfig()
		cfg.FS = fs
		cfg.Preallocate = false
		cfg.Sync = wal.SyncManual
		cfg.MaxPayloadBytes = 1 << 16
		l, err := wal.Open("/wal", cfg)
		if err != nil {
			if !errors.Is(err, wal.ErrCorrupt) {
				t.Fatalf("Open failed with %v, not ErrCorrupt", err)
			}
			return
		}
		defer l.Close()
		it, err := l.NewIterator(1)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		var r wal.Record
		for lsn := wal.LSN(1); ; lsn++ {
			err := it.Next(&r)
			if err == io.EOF {
				if lsn != l.Last()+1 {
					t.Fatalf("read up to %d, Last is %d", lsn-1, l.Last())
				}
				break
			}
			if err != nil {
				t.Fatalf("reading a recovered log: %v", err)
			}
			if r.LSN != lsn || r.CRC != wal.Checksum(r.Payload) {
				t.Fatalf("record %d read as LSN %d", lsn, r.LSN)
			}
		}
		if err := l.Append(&wal.Record{Payload: []byte("after")}); err != nil {
			t.Fatalf("append after recovery: %v", err)
		}
	})
}
