package copy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Chunk format constants. Part of the snapshot format: never change.
const (
	// ChunkHeaderSize is the size of a chunk's header: its length and the
	// CRC-32C of its data.
	ChunkHeaderSize = 8
	// MaxChunkBytes bounds a chunk's data; a ChunkWriter cuts chunks of
	// this size.
	MaxChunkBytes = 64 << 10
)

// ErrCorrupt reports a copy stream whose bytes fail a check: a chunk
// whose checksum does not match, a chunk above MaxChunkBytes, a record
// that does not decode, an LSN out of sequence. The stream cannot be
// used; the receiver asks for it again.
var ErrCorrupt = errors.New("copy: corrupt stream")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ChunkWriter cuts what is written to it into checksummed chunks, so that
// a stream of unknown size can be sent in pieces a receiver verifies one
// at a time. Close writes the terminator. It is not safe for concurrent
// use.
type ChunkWriter struct {
	w   io.Writer
	buf []byte
}

// NewChunkWriter returns a ChunkWriter writing to w. It allocates one
// chunk buffer.
func NewChunkWriter(w io.Writer) *ChunkWriter {
	return &ChunkWriter{w: w, buf: make([]byte, ChunkHeaderSize, ChunkHeaderSize+MaxChunkBytes)}
}

// Write implements io.Writer: it buffers p, sending each full chunk.
func (c *ChunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:n]...)
		p, written = p[n:], written+n
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (c *ChunkWriter) flush() error {
	data := c.buf[ChunkHeaderSize:]
	if len(data) == 0 {
		return nil
	}
	binary.LittleEndian.PutUint32(c.buf[0:], uint32(len(data)))
	binary.LittleEndian.PutUint32(c.buf[4:], crc32.Checksum(data, castagnoli))
	_, err := c.w.Write(c.buf)
	c.buf = c.buf[:ChunkHeaderSize]
	return err
}

// Close writes the last chunk and the terminator; it does not close the
// underlying writer.
func (c *ChunkWriter) Close() error {
	if err := c.flush(); err != nil {
		return err
	}
	var end [ChunkHeaderSize]byte
	_, err := c.w.Write(end[:])
	return err
}

// ChunkReader reads a chunked stream back, verifying every chunk before
// it hands out any of its bytes. Read returns io.EOF at the terminator,
// io.ErrUnexpectedEOF if the stream ends before it, and an error wrapping
// ErrCorrupt for damage. It is not safe for concurrent use.
type ChunkReader struct {
	r    io.Reader
	buf  []byte
	data []byte // unread part of the current chunk
	done bool
}

// NewChunkReader returns a ChunkReader reading from r. It allocates one
// chunk buffer.
func NewChunkReader(r io.Reader) *ChunkReader {
	return &ChunkReader{r: r, buf: make([]byte, MaxChunkBytes)}
}

// Read implements io.Reader.
func (c *ChunkReader) Read(p []byte) (int, error) {
	for len(c.data) == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.data)
	c.data = c.data[n:]
	return n, nil
}

func (c *ChunkReader) next() error {
	var h [ChunkHeaderSize]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return unexpected(err)
	}
	n := int(binary.LittleEndian.Uint32(h[0:]))
	crc := binary.LittleEndian.Uint32(h[4:])
	if n == 0 {
		if crc != 0 {
			return fmt.Errorf("%w: terminator with checksum %08x", ErrCorrupt, crc)
		}
		c.done = true
		return nil
	}
	if n > MaxChunkBytes {
		return fmt.Errorf("%w: chunk of %d bytes, limit %d", ErrCorrupt, n, MaxChunkBytes)
	}
	if _, err := io.ReadFull(c.r, c.buf[:n]); err != nil {
		return unexpected(err)
	}
	if got := crc32.Checksum(c.buf[:n], castagnoli); got != crc {
		return fmt.Errorf("%w: chunk checksum %08x, stored %08x", ErrCorrupt, got, crc)
	}
	c.data = c.buf[:n]
	return nil
}

// Drain reads to the terminator, so that a stream's end is verified even
// when its reader stopped early.
func (c *ChunkReader) Drain() error {
	_, err := io.Copy(io.Discard, c)
	return err
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
