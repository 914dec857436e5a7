package replicator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// A chunked stream carries a plugin snapshot of unknown size with a
// checksum per chunk, so a receiver never holds more than one chunk and
// detects damage as it reads. Part of the snapshot format: never change.
//
//	chunk:      length N (4, little-endian) | CRC-32C of the data (4) | N bytes
//	terminator: length 0 | CRC 0
const (
	chunkHeaderSize = 8
	// maxChunkBytes bounds a chunk; a writer cuts chunks of this size.
	maxChunkBytes = 64 << 10
)

var errBadChunk = errors.New("replicator: corrupt snapshot chunk")

// chunkWriter cuts what is written to it into checksummed chunks.
type chunkWriter struct {
	w   io.Writer
	buf []byte
}

func newChunkWriter(w io.Writer) *chunkWriter {
	return &chunkWriter{w: w, buf: make([]byte, chunkHeaderSize, chunkHeaderSize+maxChunkBytes)}
}

func (c *chunkWriter) Write(p []byte) (int, error) {
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

func (c *chunkWriter) flush() error {
	data := c.buf[chunkHeaderSize:]
	if len(data) == 0 {
		return nil
	}
	binary.LittleEndian.PutUint32(c.buf[0:], uint32(len(data)))
	binary.LittleEndian.PutUint32(c.buf[4:], crc32.Checksum(data, castagnoli))
	_, err := c.w.Write(c.buf)
	c.buf = c.buf[:chunkHeaderSize]
	return err
}

// Close writes the last chunk and the terminator; it does not close w.
func (c *chunkWriter) Close() error {
	if err := c.flush(); err != nil {
		return err
	}
	var end [chunkHeaderSize]byte
	_, err := c.w.Write(end[:])
	return err
}

// chunkReader reads a chunked stream back, verifying every chunk. Read
// returns io.EOF at the terminator, io.ErrUnexpectedEOF if the stream ends
// before it, and an error wrapping errBadChunk for damage.
type chunkReader struct {
	r    io.Reader
	buf  []byte
	data []byte // unread part of the current chunk
	done bool
}

func newChunkReader(r io.Reader) *chunkReader {
	return &chunkReader{r: r, buf: make([]byte, maxChunkBytes)}
}

func (c *chunkReader) Read(p []byte) (int, error) {
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

func (c *chunkReader) next() error {
	var h [chunkHeaderSize]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return unexpected(err)
	}
	n := int(binary.LittleEndian.Uint32(h[0:]))
	crc := binary.LittleEndian.Uint32(h[4:])
	if n == 0 {
		if crc != 0 {
			return fmt.Errorf("%w: terminator with checksum %08x", errBadChunk, crc)
		}
		c.done = true
		return nil
	}
	if n > maxChunkBytes {
		return fmt.Errorf("%w: chunk of %d bytes, limit %d", errBadChunk, n, maxChunkBytes)
	}
	if _, err := io.ReadFull(c.r, c.buf[:n]); err != nil {
		return unexpected(err)
	}
	if got := crc32.Checksum(c.buf[:n], castagnoli); got != crc {
		return fmt.Errorf("%w: checksum %08x, stored %08x", errBadChunk, got, crc)
	}
	c.data = c.buf[:n]
	return nil
}

// drain reads to the terminator, so that a stream's end is verified even
// when its reader stopped early.
func (c *chunkReader) drain() error {
	_, err := io.Copy(io.Discard, c)
	return err
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
