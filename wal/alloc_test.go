//go:build !race

package wal_test

import (
	"testing"

	"github.com/lockstitch/lockstitch/wal"
)

// TestZeroAllocHotPaths asserts that appending, syncing and reading in
// either direction allocate nothing per record once warmed up.
func TestZeroAllocHotPaths(t *testing.T) {
	for _, policy := range []wal.SyncPolicy{wal.SyncManual, wal.SyncEveryBatch} {
		t.Run(policy.String(), func(t *testing.T) {
			cfg := wal.DefaultConfig()
			cfg.Sync = policy
			l := openLog(t, t.TempDir(), cfg)
			payload := make([]byte, 1024)
			r := wal.Record{Payload: payload}
			batch := make([]wal.Record, 16)
			for i := range batch {
				batch[i].Payload = payload
			}
			// Warm up: grow the encode buffer to its working size.
			for range 10 {
				if err := l.AppendBatch(batch); err != nil {
					t.Fatal(err)
				}
				for i := range batch {
					batch[i].LSN = 0
				}
			}
			if n := testing.AllocsPerRun(200, func() {
				r.LSN = 0
				if err := l.Append(&r); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Append: %v allocs per record", n)
			}
			if n := testing.AllocsPerRun(50, func() {
				for i := range batch {
					batch[i].LSN = 0
				}
				if err := l.AppendBatch(batch); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("AppendBatch: %v allocs per batch", n)
			}
			if n := testing.AllocsPerRun(50, func() {
				if err := l.Sync(); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Sync: %v allocs per call", n)
			}

			it, err := l.NewIterator(1)
			if err != nil {
				t.Fatal(err)
			}
			defer it.Close()
			var rec wal.Record
			if n := testing.AllocsPerRun(500, func() {
				if err := it.Next(&rec); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Next: %v allocs per record", n)
			}
			if n := testing.AllocsPerRun(500, func() {
				if err := it.Prev(&rec); err != nil {
					t.Fatal(err)
				}
			}); n != 0 {
				t.Errorf("Prev: %v allocs per record", n)
			}
		})
	}
}
