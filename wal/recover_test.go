package wal_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lockstitch/lockstitch/internal/testutil/faultfs"
	"github.com/lockstitch/lockstitch/wal"
)

// lastSegment returns the path and extent of the active segment.
func lastSegment(t testing.TB, l *wal.Log) wal.SegmentInfo {
	t.Helper()
	segs := l.Segments(nil)
	return segs[len(segs)-1]
}

// recordOffset returns the offset of lsn's record in its segment.
func recordOffset(t testing.TB, l *wal.Log, lsn wal.LSN) int64 {
	t.Helper()
	spans, err := l.Spans(lsn, lsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	return spans[0].Offset
}

// TestTornTailEveryOffset cuts the last record at every byte offset, both as
// a short file (no preallocation) and as zeros up to a preallocated size,
// and checks that Open recovers to the record before it.
func TestTornTailEveryOffset(t *testing.T) {
	for _, prealloc := range []bool{false, true} {
		t.Run(fmt.Sprintf("preallocate=%v", prealloc), func(t *testing.T) {
			fs := faultfs.New()
			cfg := testConfig(fs)
			cfg.Preallocate = prealloc
			l, err := wal.Open("/wal", cfg)
			if err != nil {
				t.Fatal(err)
			}
			appendRange(t, l, 1, 60, 4)
			seg := lastSegment(t, l)
			start := recordOffset(t, l, 60)
			end := seg.Bytes
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			good, err := fs.ReadFile(seg.Path)
			if err != nil {
				t.Fatal(err)
			}
			for cut := start; cut < end; cut++ {
				damaged := append([]byte(nil), good[:cut]...)
				if prealloc {
					damaged = append(damaged, make([]byte, cfg.SegmentBytes-cut)...)
				}
				fs.WriteFile(seg.Path, damaged)
				l, err := wal.Open("/wal", cfg)
				if err != nil {
					t.Fatalf("cut at %d (record %d..%d): Open: %v", cut, start, end, err)
				}
				// Zeros written over bytes that were zero anyway (the high
				// bytes of the trailer) leave the record whole.
				intact := prealloc && isZeros(good[cut:end])
				want := wal.LSN(59)
				if intact {
					want = 60
				}
				if got := l.Last(); got != want {
					t.Fatalf("cut at %d: Last = %d, want %d", cut, got, want)
				}
				rep, ok := l.Repaired()
				if torn := cut > start && !intact; ok != torn {
					t.Fatalf("cut at %d: Repaired reported %v, want %v", cut, ok, torn)
				}
				if ok && (rep.Offset != start || rep.LastLSN != 59 || rep.Segment != seg.Path) {
					t.Fatalf("cut at %d: repair %+v", cut, rep)
				}
				// The log goes on from the cut.
				appendRange(t, l, want+1, 61, 2)
				checkForward(t, l, 1, 61)
				checkBackward(t, l, 1, 61)
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestTornTailOnDisk runs one torn-tail recovery through the real file
// system, with preallocation.
func TestTornTailOnDisk(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(nil)
	cfg.Preallocate = true
	l, err := wal.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 1, 30, 1)
	seg := lastSegment(t, l)
	start := recordOffset(t, l, 30)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash mid-write: the process dies (no Close), the last
	// record half written and the rest of the preallocated file zero.
	f, err := os.OpenFile(seg.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	half := start + (seg.Bytes-start)/2
	if _, err := f.WriteAt(make([]byte, seg.Bytes-half), half); err != nil {
		t.Fatal(err)
	}
	f.Close()
	l.Close() // trims the segment to its end; restore the zeros after it
	if err := os.Truncate(seg.Path, cfg.SegmentBytes); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir, cfg)
	rep, ok := l.Repaired()
	if !ok || rep.Offset != start || l.Last() != 29 {
		t.Fatalf("repair %+v (reported %v), Last %d: want a cut at %d leaving 29", rep, ok, l.Last(), start)
	}
	checkForward(t, l, 1, 29)
}

func isZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// flipBit flips one bit of a file in fs.
func flipBit(t testing.TB, fs *faultfs.FS, path string, off int64, bit uint) {
	t.Helper()
	b, err := fs.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 1 << bit
	fs.WriteFile(path, b)
}

// TestFlippedBitInActiveSegment flips a bit at every byte of a record in
// the middle of the active segment: Open must fail with ErrCorrupt naming
// the segment and the record's offset.
func TestFlippedBitInActiveSegment(t *testing.T) {
	fs := faultfs.New()
	cfg := testConfig(fs)
	l, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 1, 40, 1)
	seg := lastSegment(t, l)
	start, end := recordOffset(t, l, 20), recordOffset(t, l, 21)
	l.Close()
	good, _ := fs.ReadFile(seg.Path)
	for off := start; off < end; off++ {
		fs.WriteFile(seg.Path, good)
		flipBit(t, fs, seg.Path, off, uint(off%8))
		l, err := wal.Open("/wal", cfg)
		if err == nil {
			l.Close()
			t.Fatalf("flipped bit at offset %d of record 20 [%d, %d): Open succeeded", off, start, end)
		}
		if !errors.Is(err, wal.ErrCorrupt) {
			t.Fatalf("flipped bit at offset %d: %v, want ErrCorrupt", off, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, filepath.Base(seg.Path)) || !strings.Contains(msg, fmt.Sprintf("offset %d", start)) {
			t.Fatalf("flipped bit at offset %d: error %q does not name the segment and offset %d", off, msg, start)
		}
	}
}

// TestFlippedBitInSealedSegment damages a sealed segment: a record in its
// middle is reported by reads (never returned as data), its last record
// by Open.
func TestFlippedBitInSealedSegment(t *testing.T) {
	fs := faultfs.New()
	cfg := testConfig(fs)
	l, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 1, 400, 5)
	sealed := l.Segments(nil)[1]
	mid := sealed.First + (sealed.Last-sealed.First)/2
	midOff := recordOffset(t, l, mid)
	lastOff := recordOffset(t, l, sealed.Last)
	l.Close()
	good, _ := fs.ReadFile(sealed.Path)

	flipBit(t, fs, sealed.Path, midOff+wal.HeaderSize+1, 3)
	l = openLog(t, "/wal", cfg)
	it, err := l.NewIterator(1)
	if err != nil {
		t.Fatal(err)
	}
	var r wal.Record
	var readErr error
	for lsn := wal.LSN(1); readErr == nil && lsn <= 400; lsn++ {
		readErr = it.Next(&r)
		if readErr == nil && r.LSN >= mid {
			t.Fatalf("read returned record %d from the damaged range", r.LSN)
		}
	}
	it.Close()
	if !errors.Is(readErr, wal.ErrCorrupt) || !strings.Contains(readErr.Error(), fmt.Sprintf("offset %d", midOff)) {
		t.Fatalf("forward read over damage: %v, want ErrCorrupt at offset %d", readErr, midOff)
	}
	it, err = l.NewIterator(sealed.Last + 1)
	if err != nil {
		t.Fatal(err)
	}
	for readErr = nil; readErr == nil; {
		readErr = it.Prev(&r)
		if readErr == nil && r.LSN <= mid {
			t.Fatalf("backward read returned record %d across the damage", r.LSN)
		}
	}
	it.Close()
	if !errors.Is(readErr, wal.ErrCorrupt) {
		t.Fatalf("backward read over damage: %v, want ErrCorrupt", readErr)
	}
	l.Close()

	fs.WriteFile(sealed.Path, good)
	flipBit(t, fs, sealed.Path, lastOff+10, 0)
	if _, err := wal.Open("/wal", cfg); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("Open with the last record of a sealed segment damaged: %v, want ErrCorrupt", err)
	}

	fs.WriteFile(sealed.Path, good[:len(good)-1])
	if _, err := wal.Open("/wal", cfg); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("Open with a sealed segment cut short: %v, want ErrCorrupt", err)
	}
}

// TestMissingSegmentIsCorruption removes a sealed segment from the middle.
func TestMissingSegmentIsCorruption(t *testing.T) {
	fs := faultfs.New()
	cfg := testConfig(fs)
	l, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 1, 400, 5)
	segs := l.Segments(nil)
	l.Close()
	if err := fs.Remove(segs[1].Path); err != nil {
		t.Fatal(err)
	}
	if _, err := wal.Open("/wal", cfg); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("Open with a segment missing: %v, want ErrCorrupt", err)
	}
}

// TestGarbageTailIsCutButValidRecordsAfterDamageAreNot distinguishes a torn
// tail followed by garbage from damage followed by valid records.
func TestGarbageTailIsCutButValidRecordsAfterDamageAreNot(t *testing.T) {
	fs := faultfs.New()
	cfg := testConfig(fs)
	cfg.Preallocate = true
	l, err := wal.Open("/wal", cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendRange(t, l, 1, 10, 1)
	seg := lastSegment(t, l)
	start8 := recordOffset(t, l, 8)
	start10 := recordOffset(t, l, 10)
	l.Close()
	good, _ := fs.ReadFile(seg.Path)

	// Record 10's trailer region zeroed: an interrupted write. Garbage
	// (no valid record) follows.
	b := append([]byte(nil), good...)
	for i := seg.Bytes - wal.TrailerSize; i < seg.Bytes; i++ {
		b[i] = 0
	}
	b = append(b, []byte("garbage, not a record")...)
	fs.WriteFile(seg.Path, b)
	l = openLog(t, "/wal", cfg)
	if rep, ok := l.Repaired(); !ok || rep.Offset != start10 || l.Last() != 9 {
		t.Fatalf("repair %+v (%v), Last %d: want a cut at %d", rep, ok, l.Last(), start10)
	}
	l.Close()

	// Record 8's header zeroed, records 9 and 10 intact after it.
	b = append([]byte(nil), good...)
	for i := start8; i < start8+wal.HeaderSize; i++ {
		b[i] = 0
	}
	fs.WriteFile(seg.Path, b)
	if _, err := wal.Open("/wal", cfg); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("zeroed record followed by valid ones: %v, want ErrCorrupt", err)
	}
}
