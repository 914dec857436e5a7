package kv

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cockroachdb/pebble"

	"github.com/lockstitch/lockstitch"
	kvops "github.com/lockstitch/lockstitch/ops/kv"
	"github.com/lockstitch/lockstitch/replicator"
)

const (
	snapMagic       = "LKVS"
	snapVersion     = 1
	snapHeaderBytes = 28
	blockTarget     = 64 << 10 // a block is cut once it holds this much
	// maxBlockBytes bounds a block: one record at least, and a value is
	// at most an op (64 MiB at most, see replicator.Config.MaxOpBytes).
	maxBlockBytes    = 80 << 20
	restoreBatchSize = 4 << 20 // bytes per pebble batch while restoring
)

// PrepareSnapshot takes a pebble snapshot at the last applied op.
func (p *Plugin) PrepareSnapshot() (replicator.Snapshot, error) {
	p.db.acquire()
	return &snapshot{h: p.db, snap: p.db.db.NewSnapshot(), lsn: lockstitch.LSN(p.lsn.Load()), epoch: p.epoch}, nil
}

type snapshot struct {
	h     *handle
	snap  *pebble.Snapshot
	lsn   lockstitch.LSN
	epoch lockstitch.Epoch
}

func appendSnapHeader(dst []byte, lsn lockstitch.LSN, epoch lockstitch.Epoch) []byte {
	dst = append(dst, snapMagic...)
	dst = append(dst, snapVersion, 0, 0, 0)
	dst = appendMeta(dst, lsn, epoch)
	return binary.LittleEndian.AppendUint32(dst, checksum(dst[len(dst)-24:]))
}

// WriteTo streams the snapshot's keys in the format of the package doc.
func (s *snapshot) WriteTo(ctx context.Context, w io.Writer) error {
	if _, err := w.Write(appendSnapHeader(nil, s.lsn, s.epoch)); err != nil {
		return fmt.Errorf("kv plugin: snapshot at LSN %d: %w", s.lsn, err)
	}
	it := s.snap.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	defer it.Close()
	block := make([]byte, 8, blockTarget+8)
	var count uint64
	flush := func() error {
		if len(block) == 8 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(block, uint32(len(block)-8))
		binary.LittleEndian.PutUint32(block[4:], checksum(block[8:]))
		_, err := w.Write(block)
		block = block[:8]
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		k, v := it.Key()[1:], it.Value()
		// A record that would overflow the block starts the next one, which
		// it may fill alone.
		if len(block) > 8 && len(block)-8+len(k)+len(v)+2*binary.MaxVarintLen64 > blockTarget {
			if err := flush(); err != nil {
				return fmt.Errorf("kv plugin: snapshot at LSN %d: %w", s.lsn, err)
			}
		}
		block = binary.AppendUvarint(block, uint64(len(k)))
		block = append(block, k...)
		block = binary.AppendUvarint(block, uint64(len(v)))
		block = append(block, v...)
		count++
		if len(block)-8 >= blockTarget {
			if err := flush(); err != nil {
				return fmt.Errorf("kv plugin: snapshot at LSN %d: %w", s.lsn, err)
			}
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("kv plugin: snapshot at LSN %d: %w", s.lsn, err)
	}
	if err := flush(); err != nil {
		return fmt.Errorf("kv plugin: snapshot at LSN %d: %w", s.lsn, err)
	}
	var end [16]byte
	binary.LittleEndian.PutUint64(end[8:], count)
	binary.LittleEndian.PutUint32(end[4:], checksum(end[8:]))
	if _, err := w.Write(end[:]); err != nil {
		return fmt.Errorf("kv plugin: snapshot at LSN %d: %w", s.lsn, err)
	}
	return nil
}

func (s *snapshot) Release() {
	s.snap.Close()
	s.h.release()
}

// Restore builds a new database from the snapshot in r, taken at lsn,
// checking it end to end, then switches to it; on any error the current
// state stays as it was.
func (p *Plugin) Restore(r io.Reader, lsn lockstitch.LSN) error {
	gen := p.gen + 1
	dir := filepath.Join(p.dir, dbDir(gen))
	if err := p.fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("kv plugin: restore: %w", err)
	}
	epoch, err := p.build(dir, r, lsn)
	if err != nil {
		p.fs.RemoveAll(dir)
		return fmt.Errorf("kv plugin: restore at LSN %d: %w", lsn, err)
	}
	db, err := p.openDB(dir)
	if err != nil {
		p.fs.RemoveAll(dir)
		return fmt.Errorf("kv plugin: restore at LSN %d: %w", lsn, err)
	}
	if err := writeCurrent(p.fs, p.dir, gen); err != nil {
		db.Close()
		p.fs.RemoveAll(dir)
		return err
	}
	old := p.db
	old.mu.Lock()
	old.old = true
	old.mu.Unlock()
	// build synced the new database.
	p.db, p.gen, p.epoch, p.synced = &handle{db: db, fs: p.fs, dir: dir, refs: 1}, gen, epoch, lsn
	p.lsn.Store(uint64(lsn))
	if err := old.release(); err != nil {
		p.log.Warn("kv plugin: closing the database a restore replaced", "err", err)
	}
	p.log.Info("kv plugin: restored a snapshot", "lsn", uint64(lsn), "dir", dbDir(gen))
	return nil
}

// build writes the snapshot in r into a new database at dir, durably, and
// returns the snapshot's epoch.
func (p *Plugin) build(dir string, r io.Reader, lsn lockstitch.LSN) (epoch lockstitch.Epoch, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var hdr [snapHeaderBytes]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: snapshot header: %w", ErrCorrupt, err)
	}
	if string(hdr[:4]) != snapMagic || hdr[4] != snapVersion || binary.LittleEndian.Uint32(hdr[24:]) != checksum(hdr[:24]) {
		return 0, fmt.Errorf("%w: bad snapshot header %x", ErrCorrupt, hdr)
	}
	if got := lockstitch.LSN(binary.LittleEndian.Uint64(hdr[8:])); got != lsn {
		return 0, fmt.Errorf("%w: snapshot at LSN %d, expected %d", ErrCorrupt, got, lsn)
	}
	epoch = lockstitch.Epoch(binary.LittleEndian.Uint64(hdr[16:]))

	db, err := p.openDB(dir)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	b := db.NewBatch()
	defer func() { b.Close() }()
	var count uint64
	var block []byte
	var lens [8]byte
	for {
		if _, err := io.ReadFull(br, lens[:]); err != nil {
			return 0, fmt.Errorf("%w: block %d bytes after record %d: %w", ErrCorrupt, len(lens), count, err)
		}
		n, crc := binary.LittleEndian.Uint32(lens[:]), binary.LittleEndian.Uint32(lens[4:])
		if n == 0 {
			var c [8]byte
			if _, err := io.ReadFull(br, c[:]); err != nil {
				return 0, fmt.Errorf("%w: end of snapshot: %w", ErrCorrupt, err)
			}
			if crc != checksum(c[:]) || binary.LittleEndian.Uint64(c[:]) != count {
				return 0, fmt.Errorf("%w: snapshot ends after %d records, its end says %d (checksum %s)", ErrCorrupt, count, binary.LittleEndian.Uint64(c[:]), okText(crc == checksum(c[:])))
			}
			break
		}
		if n > maxBlockBytes {
			return 0, fmt.Errorf("%w: block of %d bytes after record %d", ErrCorrupt, n, count)
		}
		if cap(block) < int(n) {
			block = make([]byte, n)
		}
		block = block[:n]
		if _, err := io.ReadFull(br, block); err != nil {
			return 0, fmt.Errorf("%w: block after record %d: %w", ErrCorrupt, count, err)
		}
		if checksum(block) != crc {
			return 0, fmt.Errorf("%w: checksum mismatch in the block after record %d", ErrCorrupt, count)
		}
		for rest := block; len(rest) > 0; count++ {
			k, v, r, err := nextRecord(rest)
			if err != nil {
				return 0, fmt.Errorf("record %d: %w", count, err)
			}
			rest = r
			if err := b.Set(append([]byte{dataPrefix}, k...), v, nil); err != nil {
				return 0, err
			}
		}
		if b.Len() >= restoreBatchSize {
			if err := b.Commit(pebble.NoSync); err != nil {
				return 0, err
			}
			b.Close()
			b = db.NewBatch()
		}
	}
	if err := b.Set(metaKey, appendMeta(nil, lsn, epoch), nil); err != nil {
		return 0, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return 0, err
	}
	if err := db.Flush(); err != nil {
		return 0, err
	}
	return epoch, nil
}

func okText(ok bool) string {
	if ok {
		return "ok"
	}
	return "bad"
}

func nextRecord(b []byte) (k, v, rest []byte, err error) {
	kn, n := binary.Uvarint(b)
	if n <= 0 || kn == 0 || kn > kvops.MaxKeyBytes || kn > uint64(len(b)-n) {
		return nil, nil, nil, fmt.Errorf("%w: bad key length", ErrCorrupt)
	}
	k, b = b[n:n+int(kn)], b[n+int(kn):]
	vn, n := binary.Uvarint(b)
	if n <= 0 || vn < 8 || vn > uint64(len(b)-n) {
		return nil, nil, nil, fmt.Errorf("%w: bad value length", ErrCorrupt)
	}
	return k, b[n : n+int(vn)], b[n+int(vn):], nil
}
