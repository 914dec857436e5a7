package wal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Log is a segmented, checksummed log of records with dense LSNs, kept in
// one directory. One Log owns its directory (a lock file enforces it).
//
// All methods are safe for concurrent use. Appends are serialized; reads go
// through Iterators, any number of them, concurrently with appends.
type Log struct {
	cfg        Config
	fs         FS
	dir        string
	log        *slog.Logger
	lock       io.Closer
	maxPayload int
	repair     *Repair

	closed atomic.Bool

	// segMu guards segs. A writer holds mu too when it changes segs, so a
	// holder of mu may read segs without segMu.
	segMu sync.RWMutex
	segs  []*segment // ascending by first LSN; the last one is active

	// Lock order: mu before segMu and before any segment's mu.
	mu           sync.Mutex
	active       *segment
	file         *sharedFile // write handle of the active segment
	next         LSN         // LSN of the next append
	buf          []byte      // encode buffer, reused across appends
	nextIndexOff int64       // offset at which the next index entry is due
	sealedBytes  int64       // bytes of all sealed segments in segs
	failed       error       // sticky: set by a failed write or sync
	synced       LSN         // every record up to synced is durable
	unsynced     int64       // bytes appended since the last sync began
	syncCond     sync.Cond   // on mu; broadcast when synced or failed changes
	tailWait     chan struct{}

	syncReq     chan struct{}
	quit        chan struct{}
	flusherDone chan struct{}
}

// sharedFile is a file handle shared by the writer and the flusher; the
// last release closes it.
type sharedFile struct {
	f    File
	refs atomic.Int32
}

func newSharedFile(f File) *sharedFile {
	s := &sharedFile{f: f}
	s.refs.Store(1)
	return s
}

func (s *sharedFile) acquire() { s.refs.Add(1) }

func (s *sharedFile) release() error {
	if s.refs.Add(-1) == 0 {
		return s.f.Close()
	}
	return nil
}

// Repair describes a torn tail that Open cut off the last segment.
type Repair struct {
	// Segment is the path of the repaired segment.
	Segment string
	// Offset is where the torn record started; the segment now ends there.
	Offset int64
	// DroppedBytes is how many bytes followed Offset in the file.
	DroppedBytes int64
	// LastLSN is the last LSN left in the log.
	LastLSN LSN
}

// Stats describes the log's extent.
type Stats struct {
	// First is the first retained LSN; Last the last appended one. An
	// empty log has Last == First-1.
	First, Last LSN
	// Durable is the last LSN that an fsync covers.
	Durable LSN
	// Bytes is the size of all segments' data.
	Bytes int64
	// Segments is the number of segment files, the active one included.
	Segments int
}

// SegmentInfo describes one segment file.
type SegmentInfo struct {
	Path        string
	First, Last LSN
	Bytes       int64
	// Sealed reports whether the segment is complete; SealedAt is when it
	// was sealed (zero for the active segment).
	Sealed   bool
	SealedAt time.Time
}

// Open opens the log in dir, creating it if needed, and recovers it: a torn
// record at the tail of the last segment (a crash mid-write) is cut off and
// reported by Repaired; any other damage fails Open with ErrCorrupt.
func Open(dir string, cfg Config) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FS == nil {
		cfg.FS = OSFS{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		cfg:         cfg,
		fs:          cfg.FS,
		dir:         dir,
		log:         logger.With("wal", dir),
		maxPayload:  int(cfg.MaxPayloadBytes),
		syncReq:     make(chan struct{}, 1),
		quit:        make(chan struct{}),
		flusherDone: make(chan struct{}),
	}
	l.syncCond.L = &l.mu
	if err := l.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	lock, err := l.fs.Lock(join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	l.lock = lock
	if err := l.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	go l.flusher()
	return l, nil
}

// Repaired returns the torn tail that Open cut off, if there was one.
func (l *Log) Repaired() (Repair, bool) {
	if l.repair == nil {
		return Repair{}, false
	}
	return *l.repair, true
}

// Dir returns the log's directory.
func (l *Log) Dir() string { return l.dir }

// First returns the first retained LSN.
func (l *Log) First() LSN {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	return l.segs[0].first
}

// Last returns the last appended LSN (First()-1 when the log is empty).
func (l *Log) Last() LSN {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	return l.segs[len(l.segs)-1].lastLSN()
}

// Durable returns the last LSN that an fsync covers.
func (l *Log) Durable() LSN {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.synced
}

// Stats returns the log's extent.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{
		First:    l.segs[0].first,
		Last:     l.active.lastLSN(),
		Durable:  l.synced,
		Bytes:    l.sealedBytes + l.active.end.Load(),
		Segments: len(l.segs),
	}
}

// Segments appends a description of every segment to dst, oldest first.
func (l *Log) Segments(dst []SegmentInfo) []SegmentInfo {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	for _, s := range l.segs {
		s.mu.Lock()
		sealedAt := s.sealedAt
		s.mu.Unlock()
		dst = append(dst, SegmentInfo{
			Path:     s.path,
			First:    s.first,
			Last:     s.lastLSN(),
			Bytes:    s.end.Load(),
			Sealed:   s.sealed.Load(),
			SealedAt: sealedAt,
		})
	}
	return dst
}

// Append appends one record. See AppendBatch.
func (l *Log) Append(r *Record) error {
	batch := [1]Record{*r}
	err := l.AppendBatch(batch[:])
	r.LSN = batch[0].LSN
	return err
}

// AppendBatch appends records with one write call, in one segment.
//
// Each record's LSN must be the next LSN of the log, or zero: a zero LSN is
// replaced by the next one, in recs itself. A batch with a record out of
// order or too large is rejected whole with ErrOutOfOrder or ErrTooLarge
// and nothing is written. Readers see the batch only once it is written
// whole. With the SyncEveryBatch policy AppendBatch returns after an fsync
// covers the batch; concurrent callers share fsyncs.
//
// A failed write or fsync makes the log refuse further appends (ErrFailed):
// the records of a batch whose call returned an error must be treated as
// not durable, even if a later Open finds them.
func (l *Log) AppendBatch(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	size := 0
	for i := range recs {
		want := l.next + LSN(i)
		if lsn := recs[i].LSN; lsn != 0 && lsn != want {
			return fmt.Errorf("%w: record %d of batch has LSN %d, want %d", ErrOutOfOrder, i, lsn, want)
		}
		if n := len(recs[i].Payload); n > l.maxPayload {
			return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, l.maxPayload)
		}
		size += FrameSize(len(recs[i].Payload))
	}
	seg := l.active
	if seg.lastLSN() >= seg.first && seg.end.Load()+int64(size) > l.cfg.SegmentBytes {
		if err := l.rollLocked(); err != nil {
			return err
		}
		seg = l.active
	}
	end := seg.end.Load()
	buf := l.buf[:0]
	for i := range recs {
		recs[i].LSN = l.next + LSN(i)
		buf = AppendRecord(buf, &recs[i])
	}
	if _, err := l.file.f.WriteAt(buf, end); err != nil {
		return l.failLocked(fmt.Errorf("write %s at offset %d: %w", seg.path, end, err))
	}
	if cap(buf) <= maxRetainedBuffer {
		l.buf = buf
	} else {
		l.buf = nil
	}
	l.indexLocked(seg, recs, end)
	last := recs[len(recs)-1].LSN
	seg.publish(end+int64(size), last)
	l.next = last + 1
	l.unsynced += int64(size)
	if l.tailWait != nil {
		close(l.tailWait)
		l.tailWait = nil
	}
	switch l.cfg.Sync {
	case SyncEveryBatch:
		return l.waitSyncedLocked(last)
	case SyncPeriodic:
		if l.unsynced >= l.cfg.SyncBytes {
			l.requestSync()
		}
	}
	return nil
}

// AppendFrames appends records given as their frames, back to back in
// the format of AppendRecord, as they are: a log section received from a
// peer is written without being decoded and encoded again. The caller
// must have verified every frame's checksums (DecodeRecord does);
// AppendFrames checks the framing only: whole frames, each frame's length
// against its trailer and the payload limit, and LSNs that run on from the
// log's next one. It returns the LSN of the last frame (Last, for no
// frame).
//
// As with AppendBatch, the frames are written with one write call, in one
// segment, and a batch that fails a check is rejected whole (ErrCorrupt,
// ErrOutOfOrder, ErrTooLarge) with nothing written; the sync policy
// applies the same way. frames is not retained.
func (l *Log) AppendFrames(frames []byte) (LSN, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return 0, err
	}
	if len(frames) == 0 {
		return l.next - 1, nil
	}
	want := l.next
	for off := 0; off < len(frames); want++ {
		b := frames[off:]
		if len(b) < HeaderSize {
			return 0, fmt.Errorf("%w: %d bytes after the last whole frame", ErrCorrupt, len(b))
		}
		n := int(binary.LittleEndian.Uint32(b[offLength:]))
		if n > l.maxPayload {
			return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, l.maxPayload)
		}
		size := FrameSize(n)
		if len(b) < size {
			return 0, fmt.Errorf("%w: frame of LSN %d cut short", ErrCorrupt, want)
		}
		if t := int(binary.LittleEndian.Uint32(b[HeaderSize+n:])); t != n {
			return 0, fmt.Errorf("%w: trailer length %d, header length %d", ErrCorrupt, t, n)
		}
		if lsn := LSN(binary.LittleEndian.Uint64(b[offLSN:])); lsn != want {
			return 0, fmt.Errorf("%w: frame has LSN %d, want %d", ErrOutOfOrder, lsn, want)
		}
		off += size
	}
	last := want - 1
	seg := l.active
	if seg.lastLSN() >= seg.first && seg.end.Load()+int64(len(frames)) > l.cfg.SegmentBytes {
		if err := l.rollLocked(); err != nil {
			return 0, err
		}
		seg = l.active
	}
	end := seg.end.Load()
	if _, err := l.file.f.WriteAt(frames, end); err != nil {
		return 0, l.failLocked(fmt.Errorf("write %s at offset %d: %w", seg.path, end, err))
	}
	// The sparse index, as indexLocked keeps it.
	lsn := l.next
	for off := 0; off < len(frames); lsn++ {
		at := end + int64(off)
		if at >= l.nextIndexOff {
			seg.mu.Lock()
			seg.index = append(seg.index, indexEntry{lsn: lsn, off: at})
			seg.mu.Unlock()
			l.nextIndexOff = at + l.cfg.IndexIntervalBytes
		}
		off += FrameSize(int(binary.LittleEndian.Uint32(frames[off+offLength:])))
	}
	seg.publish(end+int64(len(frames)), last)
	l.next = last + 1
	l.unsynced += int64(len(frames))
	if l.tailWait != nil {
		close(l.tailWait)
		l.tailWait = nil
	}
	switch l.cfg.Sync {
	case SyncEveryBatch:
		return last, l.waitSyncedLocked(last)
	case SyncPeriodic:
		if l.unsynced >= l.cfg.SyncBytes {
			l.requestSync()
		}
	}
	return last, nil
}

// maxRetainedBuffer bounds the encode buffer kept between appends.
const maxRetainedBuffer = 8 << 20

// indexLocked adds the sparse index entries due for recs, written at off.
func (l *Log) indexLocked(seg *segment, recs []Record, off int64) {
	for i := range recs {
		if off >= l.nextIndexOff {
			seg.mu.Lock()
			seg.index = append(seg.index, indexEntry{lsn: recs[i].LSN, off: off})
			seg.mu.Unlock()
			l.nextIndexOff = off + l.cfg.IndexIntervalBytes
		}
		off += int64(FrameSize(len(recs[i].Payload)))
	}
}

func (l *Log) writableLocked() error {
	if l.closed.Load() {
		return ErrClosed
	}
	return l.failed
}

// failLocked makes the log refuse further writes and wakes sync waiters.
func (l *Log) failLocked(err error) error {
	if l.failed == nil {
		l.failed = fmt.Errorf("%w: %w", ErrFailed, err)
		l.log.Error("log failed; reopen to recover", "err", err)
	}
	l.wakeSyncWaitersLocked()
	return l.failed
}

// Sync makes every record appended so far durable. Concurrent calls, and
// appends waiting under SyncEveryBatch, share one fsync.
func (l *Log) Sync() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	return l.waitSyncedLocked(l.next - 1)
}

// waitSyncedLocked waits, releasing mu meanwhile, until target is durable.
func (l *Log) waitSyncedLocked(target LSN) error {
	for l.synced < target {
		if l.failed != nil {
			return l.failed
		}
		if l.closed.Load() && !l.flushing() {
			return ErrClosed
		}
		l.requestSync()
		l.syncCond.Wait()
	}
	return nil
}

// flushing reports whether the flusher still runs.
func (l *Log) flushing() bool {
	select {
	case <-l.flusherDone:
		return false
	default:
		return true
	}
}

func (l *Log) requestSync() {
	select {
	case l.syncReq <- struct{}{}:
	default:
	}
}

func (l *Log) wakeSyncWaitersLocked() { l.syncCond.Broadcast() }

// flusher is the one goroutine that fsyncs the active segment on request
// (group commit) and, with SyncPeriodic, on a timer.
func (l *Log) flusher() {
	defer close(l.flusherDone)
	var tick <-chan time.Time
	if l.cfg.Sync == SyncPeriodic {
		t := time.NewTicker(l.cfg.SyncInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-l.quit:
			return
		case <-l.syncReq:
		case <-tick:
		}
		l.syncOnce()
	}
}

// syncOnce fsyncs everything written so far. Appends go on during the
// fsync; the next round covers them.
func (l *Log) syncOnce() {
	l.mu.Lock()
	target := l.next - 1
	if l.failed != nil || target <= l.synced {
		l.wakeSyncWaitersLocked()
		l.mu.Unlock()
		return
	}
	f := l.file
	f.acquire()
	l.unsynced = 0
	l.mu.Unlock()

	err := f.f.Sync()
	f.release()

	l.mu.Lock()
	if err != nil {
		l.failLocked(fmt.Errorf("sync: %w", err))
	} else if target > l.synced {
		l.synced = target
	}
	l.wakeSyncWaitersLocked()
	l.mu.Unlock()
}

// rollLocked seals the active segment and starts a new one at l.next.
func (l *Log) rollLocked() error {
	old, f := l.active, l.file
	end := old.end.Load()
	if err := f.f.Sync(); err != nil {
		return l.failLocked(fmt.Errorf("sync %s: %w", old.path, err))
	}
	if l.cfg.Preallocate {
		if err := f.f.Truncate(end); err != nil {
			return l.failLocked(fmt.Errorf("trim %s: %w", old.path, err))
		}
		if err := f.f.Sync(); err != nil {
			return l.failLocked(fmt.Errorf("sync %s: %w", old.path, err))
		}
	}
	if last := old.lastLSN(); last > l.synced {
		l.synced = last
		l.wakeSyncWaitersLocked()
	}
	nf, seg, err := l.createSegment(l.next, 0)
	if err != nil {
		// The old segment is intact and stays active; the next append
		// tries again.
		return err
	}
	old.mu.Lock()
	old.sealedAt = time.Now()
	old.mu.Unlock()
	l.segMu.Lock()
	l.segs = append(l.segs, seg)
	l.segMu.Unlock()
	old.sealed.Store(true)
	l.active, l.file = seg, nf
	l.nextIndexOff = segmentHeaderSize
	l.sealedBytes += end
	if err := f.release(); err != nil {
		l.log.Warn("closing sealed segment", "segment", old.path, "err", err)
	}
	l.log.Debug("segment sealed", "segment", old.path, "first", old.first, "last", old.lastLSN(), "bytes", end)
	return nil
}

// createSegment makes a new segment file for first LSN durable: written
// and preallocated under a temporary name, then renamed into place.
func (l *Log) createSegment(first LSN, flags uint32) (*sharedFile, *segment, error) {
	seg := newSegment(l.dir, first)
	seg.index = make([]indexEntry, 0, l.cfg.SegmentBytes/l.cfg.IndexIntervalBytes+1)
	seg.indexed = true
	tmp := seg.path + tempSuffix
	f, err := l.fs.Create(tmp)
	if err != nil {
		return nil, nil, fmt.Errorf("wal: create %s: %w", tmp, err)
	}
	var hdr [segmentHeaderSize]byte
	segmentHeader{flags: flags, first: first}.encode(hdr[:])
	err = func() error {
		if l.cfg.Preallocate {
			if err := f.Preallocate(l.cfg.SegmentBytes); err != nil {
				return err
			}
		}
		if _, err := f.WriteAt(hdr[:], 0); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := l.fs.Rename(tmp, seg.path); err != nil {
			return err
		}
		return l.fs.SyncDir(l.dir)
	}()
	if err != nil {
		f.Close()
		l.fs.Remove(tmp)
		return nil, nil, fmt.Errorf("wal: create segment %s: %w", seg.path, err)
	}
	return newSharedFile(f), seg, nil
}

// TruncateFront drops whole segments whose records are all below lsn and
// returns how many it dropped. The active segment is never dropped, so
// First may stay below lsn. Iterators inside a dropped segment finish it.
func (l *Log) TruncateFront(lsn LSN) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return 0, ErrClosed
	}
	n := 0
	for n+1 < len(l.segs) && l.segs[n+1].first <= lsn {
		n++
	}
	if n == 0 {
		return 0, nil
	}
	dropped := l.segs[:n:n]
	l.segMu.Lock()
	l.segs = append([]*segment(nil), l.segs[n:]...)
	l.segMu.Unlock()
	for _, s := range dropped {
		s.obsolete.Store(true)
		l.sealedBytes -= s.end.Load()
	}
	// Remove oldest first, each made durable before the next, so that a
	// crash leaves a contiguous log.
	for _, s := range dropped {
		if err := l.fs.Remove(s.path); err != nil && !isNotExist(err) {
			return n, fmt.Errorf("wal: remove %s: %w", s.path, err)
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return n, fmt.Errorf("wal: sync %s: %w", l.dir, err)
		}
	}
	l.log.Info("segments dropped", "count", n, "first", l.segs[0].first)
	return n, nil
}

// Reset discards every record and makes next the LSN of the next append,
// as when a replica restores a snapshot taken at next-1. It is durable
// when it returns: a crash never brings the old records back. Iterators
// get ErrTruncated once they reach the end of what they were reading.
func (l *Log) Reset(next LSN) error {
	if next == 0 {
		return fmt.Errorf("wal: reset to LSN 0: LSNs start at 1")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	nf, seg, err := l.createSegment(next, flagReset)
	if err != nil {
		return err
	}
	old := l.segs
	l.segMu.Lock()
	l.segs = []*segment{seg}
	l.segMu.Unlock()
	for _, s := range old {
		s.obsolete.Store(true)
	}
	if err := l.file.release(); err != nil {
		l.log.Warn("closing reset segment", "err", err)
	}
	l.active, l.file, l.next, l.synced = seg, nf, next, next-1
	l.sealedBytes, l.unsynced, l.nextIndexOff = 0, 0, segmentHeaderSize
	if l.tailWait != nil {
		close(l.tailWait)
		l.tailWait = nil
	}
	l.wakeSyncWaitersLocked()
	// The new segment's reset flag already makes the old ones obsolete at
	// the next Open; removing them is tidying.
	var errs []error
	for _, s := range old {
		if s.path == seg.path {
			continue
		}
		if err := l.fs.Remove(s.path); err != nil && !isNotExist(err) {
			errs = append(errs, err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	l.log.Info("log reset", "next", next, "dropped_segments", len(old))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wal: reset: removing old segments: %w", err)
	}
	return nil
}

// TruncateBack durably drops every record after lsn, so that the next
// append is lsn+1. lsn may be First()-1 (drop everything) and at most
// Last() (nothing to do). It is meant for recovery, before readers start:
// an iterator racing with it may return records it drops before failing
// with ErrTruncated. A failure part way stops the log (ErrFailed); what is
// on disk is then a prefix of the log, which the next Open recovers.
func (l *Log) TruncateBack(lsn LSN) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.writableLocked(); err != nil {
		return err
	}
	if first := l.segs[0].first; lsn+1 < first {
		return fmt.Errorf("%w: cannot truncate back to LSN %d, below the first retained LSN %d", ErrTruncated, lsn, first)
	}
	if lsn >= l.active.lastLSN() {
		return nil
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > lsn }) - 1
	if i < 0 {
		i = 0
	}
	target := l.segs[i]
	it := &Iterator{l: l, r: segReader{buf: make([]byte, l.cfg.ReadBufferBytes)}}
	defer it.Close()
	if err := it.enter(target); err != nil {
		return err
	}
	cut, err := it.locate(target, lsn+1)
	if err != nil {
		return err
	}
	it.Close()

	dropped := append([]*segment(nil), l.segs[i:]...)
	kept := append([]*segment(nil), l.segs[:i]...)
	active := newSegment(l.dir, target.first)
	l.segMu.Lock()
	l.segs = append(kept, active)
	l.segMu.Unlock()
	for _, s := range dropped {
		s.obsolete.Store(true)
	}
	l.sealedBytes = 0
	for _, s := range kept {
		l.sealedBytes += s.end.Load()
	}
	if err := l.file.release(); err != nil {
		l.log.Warn("closing segment", "err", err)
	}
	l.file = nil
	// Newest first, each removal durable before the next: a crash leaves
	// a prefix of the log.
	for j := len(dropped) - 1; j > 0; j-- {
		if err := l.fs.Remove(dropped[j].path); err != nil && !isNotExist(err) {
			return l.failLocked(fmt.Errorf("remove %s: %w", dropped[j].path, err))
		}
		if err := l.fs.SyncDir(l.dir); err != nil {
			return l.failLocked(fmt.Errorf("sync %s: %w", l.dir, err))
		}
	}
	f, err := l.fs.OpenReadWrite(active.path)
	if err != nil {
		return l.failLocked(fmt.Errorf("open %s: %w", active.path, err))
	}
	sf := newSharedFile(f)
	err = f.Truncate(cut)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = l.scanActive(&segReader{buf: make([]byte, recoveryBufferBytes)}, active, f, cut)
	}
	if err != nil {
		sf.release()
		return l.failLocked(fmt.Errorf("truncate %s at offset %d: %w", active.path, cut, err))
	}
	l.active, l.file, l.next = active, sf, lsn+1
	l.synced = min(l.synced, lsn)
	l.unsynced = 0
	l.log.Info("log truncated back", "last", lsn, "dropped_segments", len(dropped)-1)
	return nil
}

// Wait blocks until the log's last LSN is at least lsn, ctx ends, or the
// log closes (ErrClosed).
func (l *Log) Wait(ctx context.Context, lsn LSN) error {
	l.mu.Lock()
	for {
		if l.active.lastLSN() >= lsn {
			l.mu.Unlock()
			return nil
		}
		if l.closed.Load() {
			l.mu.Unlock()
			return ErrClosed
		}
		if l.tailWait == nil {
			l.tailWait = make(chan struct{})
		}
		ch := l.tailWait
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		l.mu.Lock()
	}
}

// Close syncs what was appended, trims the active segment's preallocated
// space and releases the directory. It is idempotent. Iterators fail with
// ErrClosed afterwards.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed.Swap(true) {
		l.mu.Unlock()
		return nil
	}
	l.mu.Unlock()
	close(l.quit)
	<-l.flusherDone

	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if l.failed == nil {
		f := l.file.f
		if err := f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("sync: %w", err))
		} else {
			l.synced = l.next - 1
			if l.cfg.Preallocate {
				if err := f.Truncate(l.active.end.Load()); err != nil {
					errs = append(errs, fmt.Errorf("trim: %w", err))
				} else if err := f.Sync(); err != nil {
					errs = append(errs, fmt.Errorf("sync: %w", err))
				}
			}
		}
	}
	l.wakeSyncWaitersLocked()
	if l.tailWait != nil {
		close(l.tailWait)
		l.tailWait = nil
	}
	if l.file != nil { // nil after a failed TruncateBack
		if err := l.file.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := l.lock.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("wal: close %s: %w", l.dir, err)
	}
	return nil
}

// segmentFor returns the segment holding lsn, or the active segment when
// lsn is the next LSN to be appended.
func (l *Log) segmentFor(lsn LSN) (*segment, error) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	if lsn < l.segs[0].first {
		return nil, fmt.Errorf("%w: LSN %d is below the first retained LSN %d", ErrTruncated, lsn, l.segs[0].first)
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first > lsn }) - 1
	s := l.segs[i]
	if last := s.lastLSN(); lsn > last+1 {
		return nil, fmt.Errorf("%w: LSN %d is beyond the last LSN %d", ErrNotFound, lsn, last)
	}
	return s, nil
}

// successor returns the segment that starts at lsn, which follows a
// sealed segment. It fails with ErrTruncated if the log no longer has it
// (retention or Reset overtook the reader).
func (l *Log) successor(lsn LSN) (*segment, error) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first >= lsn })
	if i == len(l.segs) || l.segs[i].first != lsn {
		return nil, fmt.Errorf("%w: no segment starts at LSN %d", ErrTruncated, lsn)
	}
	return l.segs[i], nil
}

// predecessor returns the segment before s, io.EOF when s is the first
// retained segment, or ErrTruncated when s has left the log.
func (l *Log) predecessor(s *segment) (*segment, error) {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].first >= s.first })
	if i == len(l.segs) || l.segs[i] != s {
		return nil, fmt.Errorf("%w: segment %s has been dropped", ErrTruncated, s.path)
	}
	if i == 0 {
		return nil, io.EOF
	}
	return l.segs[i-1], nil
}
