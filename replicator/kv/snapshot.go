package kv

import (
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

// restoreBatchSize is the bytes per pebble batch while restoring.
const restoreBatchSize = 4 << 20

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

// WriteTo streams the snapshot's keys in ops/kv's snapshot format.
func (s *snapshot) WriteTo(ctx context.Context, w io.Writer) error {
	if err := s.writeTo(ctx, w); err != nil {
		return fmt.Errorf("kv plugin: snapshot at LSN %d: %w", s.lsn, err)
	}
	return nil
}

func (s *snapshot) writeTo(ctx context.Context, w io.Writer) error {
	sw, err := kvops.NewSnapshotWriter(w, s.lsn, s.epoch)
	if err != nil {
		return err
	}
	it := s.snap.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	defer it.Close()
	// ctx is looked at first and then every 1 MiB of values or 1024 keys,
	// whichever comes first.
	since, keys := 1<<20, 0
	for ok := it.First(); ok; ok = it.Next() {
		if since >= 1<<20 || keys >= 1024 {
			if err := ctx.Err(); err != nil {
				return err
			}
			since, keys = 0, 0
		}
		k, v := it.Key()[1:], it.Value()
		since, keys = since+len(v), keys+1
		if len(v) < 8 {
			return fmt.Errorf("%w: value of key %q has %d bytes", ErrCorrupt, k, len(v))
		}
		if err := sw.Add(k, binary.LittleEndian.Uint64(v), v[8:]); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	return sw.Close()
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
	var rec []byte
	got, epoch, err := kvops.ReadSnapshot(r, func(it kvops.Item) error {
		rec = append(append(rec[:0], dataPrefix), it.Key...)
		rec = binary.LittleEndian.AppendUint64(rec, it.Version)
		rec = append(rec, it.Value...)
		if err := b.Set(rec[:1+len(it.Key)], rec[1+len(it.Key):], nil); err != nil {
			return err
		}
		if b.Len() < restoreBatchSize {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		b.Close()
		b = db.NewBatch()
		return nil
	})
	if err != nil {
		return 0, err
	}
	if got != lsn {
		return 0, fmt.Errorf("%w: snapshot at LSN %d, expected %d", ErrCorrupt, got, lsn)
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
