package copy

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestChunkStream(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, MaxChunkBytes - 1, MaxChunkBytes, 3*MaxChunkBytes + 17} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 13)
		}
		var buf bytes.Buffer
		w := NewChunkWriter(&buf)
		// Write in odd pieces.
		for rest := data; len(rest) > 0; {
			n := min(len(rest), 1000+len(rest)%777)
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		stream := buf.Bytes()
		got, err := io.ReadAll(NewChunkReader(bytes.NewReader(stream)))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("size %d: read back %d bytes, err %v", size, len(got), err)
		}
		if len(stream) > 0 {
			if _, err := io.ReadAll(NewChunkReader(bytes.NewReader(stream[:len(stream)-1]))); !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("size %d: cut stream: %v", size, err)
			}
		}
		if size > 0 {
			c := append([]byte(nil), stream...)
			c[ChunkHeaderSize+size/2] ^= 1
			if _, err := io.ReadAll(NewChunkReader(bytes.NewReader(c))); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("size %d: damaged chunk: %v", size, err)
			}
		}
	}
}

func FuzzChunkReader(f *testing.F) {
	var buf bytes.Buffer
	w := NewChunkWriter(&buf)
	w.Write([]byte("some snapshot bytes"))
	w.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		io.ReadAll(NewChunkReader(bytes.NewReader(b)))
	})
}
