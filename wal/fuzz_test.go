package wal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// goldenSegment returns the committed golden segment file.
func goldenSegment(tb testing.TB) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "00000000000000000001.wal"))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder: it must
// never panic or read past its input, and whatever it accepts must
// re-encode to exactly the bytes it consumed.
func FuzzDecodeRecord(f *testing.F) {
	seg := goldenSegment(f)
	body := seg[segmentHeaderSize:]
	f.Add(body)
	for len(body) > 0 {
		var r Record
		n, err := DecodeRecord(body, MaxPayloadLimit, &r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(body[:n])
		f.Add(body[:n-1])
		body = body[n:]
	}
	f.Add([]byte{})
	f.Add(make([]byte, FrameOverhead))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		n, err := DecodeRecord(b, 1<<20, &r)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with %d bytes consumed", err, n)
			}
			return
		}
		if n > len(b) || n != FrameSize(len(r.Payload)) {
			t.Fatalf("consumed %d of %d bytes for a %d-byte payload", n, len(b), len(r.Payload))
		}
		if r.CRC != Checksum(r.Payload) {
			t.Fatalf("accepted payload with CRC %08x, checksum %08x", r.CRC, Checksum(r.Payload))
		}
		if again := AppendRecord(nil, &r); !bytes.Equal(again, b[:n]) {
			t.Fatalf("decoded record re-encodes differently")
		}
	})
}

// FuzzDecodeSegmentHeader feeds arbitrary bytes to the segment header
// decoder.
func FuzzDecodeSegmentHeader(f *testing.F) {
	f.Add(goldenSegment(f)[:segmentHeaderSize])
	f.Add(make([]byte, segmentHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeSegmentHeader(b)
		if err != nil {
			return
		}
		var again [segmentHeaderSize]byte
		h.encode(again[:])
		if !bytes.Equal(again[:], b[:segmentHeaderSize]) {
			t.Fatalf("accepted header re-encodes differently")
		}
	})
}
