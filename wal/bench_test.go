package wal_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/lockstitch/lockstitch/wal"
)

func benchLog(b *testing.B, policy wal.SyncPolicy) *wal.Log {
	cfg := wal.DefaultConfig()
	cfg.Sync = policy
	return openLog(b, b.TempDir(), cfg)
}

// BenchmarkAppend appends one record per op, without fsync.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{16, 1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			l := benchLog(b, wal.SyncManual)
			r := wal.Record{Payload: make([]byte, size)}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				r.LSN = 0
				if err := l.Append(&r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDurableBatch appends 1 MiB batches of 1 KiB records and fsyncs
// after each: the durable throughput that bench/wal-vs-fio compares with
// fio.
func BenchmarkDurableBatch(b *testing.B) {
	l := benchLog(b, wal.SyncManual)
	batch := make([]wal.Record, 1024)
	payload := make([]byte, 1024)
	for i := range batch {
		batch[i].Payload = payload
	}
	b.SetBytes(1 << 20)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			batch[i].LSN = 0
		}
		if err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroupCommit appends 1 KiB records, each durable before Append
// returns, from several goroutines: they share fsyncs, so throughput grows
// with their number.
func BenchmarkGroupCommit(b *testing.B) {
	for _, appenders := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			l := benchLog(b, wal.SyncEveryBatch)
			payload := make([]byte, 1024)
			b.SetBytes(1024)
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N / appenders
			for g := 0; g < appenders; g++ {
				n := per
				if g == 0 {
					n += b.N % appenders
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := wal.Record{Payload: payload}
					for range n {
						r.LSN = 0
						if err := l.Append(&r); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

// BenchmarkRead reads 1 KiB records forward and backward.
func BenchmarkRead(b *testing.B) {
	l := benchLog(b, wal.SyncManual)
	const n = 1 << 16
	batch := make([]wal.Record, 1024)
	payload := make([]byte, 1024)
	for i := range batch {
		batch[i].Payload = payload
	}
	for range n / len(batch) {
		for i := range batch {
			batch[i].LSN = 0
		}
		if err := l.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	for _, dir := range []string{"forward", "backward"} {
		b.Run(dir, func(b *testing.B) {
			it, err := l.NewIterator(1)
			if err != nil {
				b.Fatal(err)
			}
			defer it.Close()
			var r wal.Record
			b.SetBytes(1024)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if dir == "forward" {
					if err = it.Next(&r); err != nil {
						err = it.Seek(1)
						if err == nil {
							err = it.Next(&r)
						}
					}
				} else {
					if err = it.Prev(&r); err != nil {
						err = it.SeekEnd()
						if err == nil {
							err = it.Prev(&r)
						}
					}
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
