// Package kv is the built-in kv plugin: a replicated dictionary stored in
// pebble. Its requests and results are those of package ops/kv; a client
// appends writes (put, delete, compare-and-set, batch) and sends reads
// (get, scan) as queries, at any of the replicator's consistency levels.
//
// # State
//
// The plugin keeps one pebble database in its directory, under the name
// that the file CURRENT holds (db-1, db-2, ...; a restore builds the next
// one beside it and then switches CURRENT). Its keys:
//
//	"d" + key   8 version (little-endian), then the value
//	"m"         8 applied LSN, 8 its epoch (little-endian)
//
// A key's version is the LSN of the write that last changed it. Each Apply
// call writes its ops' effects and the "m" key in one pebble batch,
// without an fsync; Sync makes every batch durable with one WAL fsync.
// So the LSN that Open reads is exactly the last op whose effects are
// durable, and the replicator replays the ops after it.
//
// # Snapshots
//
// A snapshot (PrepareSnapshot, Restore) is every key at one LSN in the
// snapshot format of package ops/kv (kvops.SnapshotWriter writes it,
// kvops.ReadSnapshot reads it), the format a consumer outside the process
// restores from too. Restore checks every checksum, the count and the
// LSN, and builds the new database before it replaces the old one, so a
// corrupt or truncated snapshot changes nothing.
package kv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/lockstitch/lockstitch"
	kvops "github.com/lockstitch/lockstitch/ops/kv"
	"github.com/lockstitch/lockstitch/replicator"
)

// Name is the plugin's name in replicator.Config.Plugins.
const Name = "kv"

// MaxScanBytes bounds a scan's answer: a scan stops after the item that
// crosses it (and says More).
const MaxScanBytes = 1 << 20

// ErrCorrupt is returned, wrapped, for a database or snapshot whose bytes
// are not what the plugin wrote.
var ErrCorrupt = kvops.ErrCorrupt

// New is the plugin's factory. It takes no options.
func New(pc replicator.PluginContext) (replicator.StateMachine, error) {
	for k := range pc.Options {
		return nil, fmt.Errorf("kv plugin: unknown option %q (it takes none)", k)
	}
	log := pc.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Plugin{dir: pc.Dir, log: log, fs: vfs.Default}, nil
}

var _ replicator.StateMachine = (*Plugin)(nil)

// Plugin is the kv state machine of one replica. The replicator calls it
// as replicator.StateMachine says.
type Plugin struct {
	dir string
	log *slog.Logger
	fs  vfs.FS // every file goes through it: tests simulate crashes

	db     *handle
	gen    int // the number of the database directory in use
	lsn    atomic.Uint64
	epoch  lockstitch.Epoch
	synced lockstitch.LSN // the last LSN Sync made durable

	// Apply's scratch, reused.
	res     []byte
	ends    []int
	key     []byte
	val     []byte
	overlay []overlayEntry
	status  []kvops.OpResult
}

// handle is a pebble database shared by the plugin and the snapshots
// taken from it: the last to let go closes it and, if it is no longer
// the current one, removes its directory.
type handle struct {
	db   *pebble.DB
	fs   vfs.FS
	dir  string
	mu   sync.Mutex
	refs int
	old  bool // replaced by a restore: remove dir on the last release
}

func (h *handle) acquire() {
	h.mu.Lock()
	h.refs++
	h.mu.Unlock()
}

func (h *handle) release() error {
	h.mu.Lock()
	h.refs--
	last, old := h.refs == 0, h.old
	h.mu.Unlock()
	if !last {
		return nil
	}
	err := h.db.Close()
	if old {
		err = errors.Join(err, h.fs.RemoveAll(h.dir))
	}
	return err
}

var (
	metaKey    = []byte("m")
	dataPrefix = byte('d')
	dataLower  = []byte("d")
	dataUpper  = []byte("e")
)

const currentFile = "CURRENT"

func dbDir(gen int) string { return "db-" + strconv.Itoa(gen) }

type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.log.Error("pebble: " + fmt.Sprintf(format, args...))
	panic(fmt.Sprintf("kv plugin: pebble: "+format, args...))
}

// openDB opens (or creates) the database at dir; pebble syncs its files
// and dir, openDB the entry of dir in its parent.
func (p *Plugin) openDB(dir string) (*pebble.DB, error) {
	db, err := pebble.Open(dir, &pebble.Options{FS: p.fs, Logger: pebbleLogger{p.log}})
	if err != nil {
		return nil, err
	}
	if err := syncDir(p.fs, filepath.Dir(dir)); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Open opens (or creates) the database and returns its applied LSN. It
// finishes a restore that a crash interrupted after CURRENT was switched,
// and removes one interrupted before.
func (p *Plugin) Open(ctx context.Context) (lockstitch.LSN, error) {
	if err := p.fs.MkdirAll(p.dir, 0o755); err != nil {
		return 0, fmt.Errorf("kv plugin: %w", err)
	}
	gen := 1
	b, err := readFile(p.fs, filepath.Join(p.dir, currentFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := writeCurrent(p.fs, p.dir, gen); err != nil {
			return 0, err
		}
	case err != nil:
		return 0, fmt.Errorf("kv plugin: %w", err)
	default:
		s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "db-")
		if gen, err = strconv.Atoi(s); !ok || err != nil || gen < 1 {
			return 0, fmt.Errorf("%w: %s holds %q", ErrCorrupt, currentFile, b)
		}
	}
	// Any other db-N is an interrupted restore's or an old one.
	names, err := p.fs.List(p.dir)
	if err != nil {
		return 0, fmt.Errorf("kv plugin: %w", err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, "db-") && name != dbDir(gen) {
			if err := p.fs.RemoveAll(filepath.Join(p.dir, name)); err != nil {
				return 0, fmt.Errorf("kv plugin: %w", err)
			}
		}
	}
	dir := filepath.Join(p.dir, dbDir(gen))
	db, err := p.openDB(dir)
	if err != nil {
		return 0, fmt.Errorf("kv plugin: open %s: %w", dir, err)
	}
	lsn, epoch, err := readMeta(db)
	if err != nil {
		db.Close()
		return 0, fmt.Errorf("kv plugin: %s: %w", dir, err)
	}
	p.db, p.gen, p.epoch, p.synced = &handle{db: db, fs: p.fs, dir: dir, refs: 1}, gen, epoch, lsn
	p.lsn.Store(uint64(lsn))
	return lsn, nil
}

func readMeta(db *pebble.DB) (lockstitch.LSN, lockstitch.Epoch, error) {
	v, closer, err := db.Get(metaKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	defer closer.Close()
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("%w: applied position of %d bytes", ErrCorrupt, len(v))
	}
	return lockstitch.LSN(binary.LittleEndian.Uint64(v)), lockstitch.Epoch(binary.LittleEndian.Uint64(v[8:])), nil
}

func appendMeta(dst []byte, lsn lockstitch.LSN, epoch lockstitch.Epoch) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, uint64(lsn))
	return binary.LittleEndian.AppendUint64(dst, uint64(epoch))
}

func readFile(fs vfs.FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// writeCurrent points CURRENT at db-gen, atomically and durably.
func writeCurrent(fs vfs.FS, dir string, gen int) error {
	tmp := filepath.Join(dir, currentFile+".tmp")
	f, err := fs.Create(tmp)
	if err != nil {
		return fmt.Errorf("kv plugin: %w", err)
	}
	_, err = f.Write([]byte(dbDir(gen) + "\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = fs.Rename(tmp, filepath.Join(dir, currentFile))
	}
	if err == nil {
		err = syncDir(fs, dir)
	}
	if err != nil {
		return fmt.Errorf("kv plugin: switching %s to %s: %w", currentFile, dbDir(gen), err)
	}
	return nil
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// overlayEntry is a key written by an earlier op of the batch being
// checked.
type overlayEntry struct {
	key     []byte
	version uint64 // 0: deleted
}

// Apply applies ops in one pebble batch, with the applied position, and
// does not sync it. Every op gets a result (ops/kv); a malformed or
// rejected op changes nothing.
func (p *Plugin) Apply(ops []replicator.Op, results [][]byte) error {
	b := p.db.db.NewIndexedBatch()
	defer b.Close()
	p.res, p.ends = p.res[:0], p.ends[:0]
	for _, op := range ops {
		var err error
		if p.res, err = p.apply(b, op, p.res); err != nil {
			return err
		}
		p.ends = append(p.ends, len(p.res))
	}
	last := ops[len(ops)-1]
	p.val = appendMeta(p.val[:0], last.LSN, last.Epoch)
	if err := b.Set(metaKey, p.val, nil); err != nil {
		return fmt.Errorf("kv plugin: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("kv plugin: commit at LSN %d: %w", last.LSN, err)
	}
	start := 0
	for i, end := range p.ends {
		results[i] = p.res[start:end:end]
		start = end
	}
	p.epoch = last.Epoch
	p.lsn.Store(uint64(last.LSN))
	return nil
}

func badRequest(dst, payload []byte, lsn lockstitch.LSN, msg string) []byte {
	op := kvops.Op(0)
	if len(payload) > 1 {
		op = kvops.Op(payload[1])
	}
	return append(kvops.AppendResultHeader(dst, op, kvops.StatusBadRequest, false, lsn, 0), msg...)
}

// apply applies one op to b and appends its result to dst. Its error is
// pebble's only.
func (p *Plugin) apply(b *pebble.Batch, op replicator.Op, dst []byte) ([]byte, error) {
	var req kvops.Request
	if err := kvops.DecodeRequest(op.Payload, &req); err != nil {
		return badRequest(dst, op.Payload, op.LSN, err.Error()), nil
	}
	if !req.Op.IsWrite() {
		return badRequest(dst, op.Payload, op.LSN, req.Op.String()+" is a read: send it as a query"), nil
	}
	if req.Op != kvops.OpBatch {
		p.overlay = p.overlay[:0]
		r, err := p.check(b, &req)
		if err != nil {
			return dst, err
		}
		if r.Status == kvops.StatusOK {
			if err := p.write(b, &req, op.LSN); err != nil {
				return dst, err
			}
			r.Version = uint64(op.LSN)
		}
		return kvops.AppendResultHeader(dst, req.Op, r.Status, false, op.LSN, r.Version), nil
	}

	// A batch: check every op against the state its predecessors leave,
	// then write them all, or none if one does not match.
	p.overlay, p.status = p.overlay[:0], p.status[:0]
	mismatch := false
	rest := req.Ops
	for range req.Count {
		var sub kvops.Request
		rest, _ = kvops.NextBatchOp(rest, &sub) // DecodeRequest checked them
		r, err := p.check(b, &sub)
		if err != nil {
			return dst, err
		}
		if r.Status == kvops.StatusMismatch {
			mismatch = true
		}
		p.status = append(p.status, r)
		if r.Status == kvops.StatusOK {
			v := uint64(op.LSN)
			if sub.Op == kvops.OpDelete || sub.Delete {
				v = 0
			}
			p.overlay = append(p.overlay, overlayEntry{key: sub.Key, version: v})
		}
	}
	status, version := kvops.StatusOK, uint64(op.LSN)
	if mismatch {
		status, version = kvops.StatusMismatch, 0
	} else {
		rest = req.Ops
		for range req.Count {
			var sub kvops.Request
			rest, _ = kvops.NextBatchOp(rest, &sub)
			if err := p.write(b, &sub, op.LSN); err != nil {
				return dst, err
			}
		}
	}
	dst = kvops.AppendResultHeader(dst, kvops.OpBatch, status, false, op.LSN, version)
	dst = binary.AppendUvarint(dst, uint64(req.Count))
	for _, r := range p.status {
		switch {
		case mismatch && r.Status != kvops.StatusMismatch:
			r = kvops.OpResult{Status: kvops.StatusAborted}
		case r.Status == kvops.StatusOK:
			r.Version = uint64(op.LSN)
		}
		dst = kvops.AppendOpResult(dst, r.Status, r.Version)
	}
	return dst, nil
}

// check says what a write op would do: StatusOK (it changes the key),
// StatusNotFound (a delete of an absent key: nothing to do) or
// StatusMismatch with the key's version.
func (p *Plugin) check(b *pebble.Batch, req *kvops.Request) (kvops.OpResult, error) {
	if req.Op == kvops.OpPut {
		return kvops.OpResult{Status: kvops.StatusOK}, nil
	}
	cur, err := p.version(b, req.Key)
	if err != nil {
		return kvops.OpResult{}, err
	}
	switch {
	case req.Op == kvops.OpDelete && cur == 0:
		return kvops.OpResult{Status: kvops.StatusNotFound}, nil
	case req.Op == kvops.OpCAS && cur != req.Version:
		return kvops.OpResult{Status: kvops.StatusMismatch, Version: cur}, nil
	}
	return kvops.OpResult{Status: kvops.StatusOK}, nil
}

// version returns key's version (0: absent) as the batch being checked
// and b leave it.
func (p *Plugin) version(b *pebble.Batch, key []byte) (uint64, error) {
	for i := len(p.overlay) - 1; i >= 0; i-- {
		if string(p.overlay[i].key) == string(key) {
			return p.overlay[i].version, nil
		}
	}
	p.key = append(append(p.key[:0], dataPrefix), key...)
	v, closer, err := b.Get(p.key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kv plugin: %w", err)
	}
	defer closer.Close()
	if len(v) < 8 {
		return 0, fmt.Errorf("%w: value of key %q has %d bytes", ErrCorrupt, key, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// write applies a checked put, delete or cas to b.
func (p *Plugin) write(b *pebble.Batch, req *kvops.Request, lsn lockstitch.LSN) error {
	p.key = append(append(p.key[:0], dataPrefix), req.Key...)
	var err error
	if req.Op == kvops.OpDelete || req.Delete {
		err = b.Delete(p.key, nil)
	} else {
		p.val = binary.LittleEndian.AppendUint64(p.val[:0], uint64(lsn))
		p.val = append(p.val, req.Value...)
		err = b.Set(p.key, p.val, nil)
	}
	if err != nil {
		return fmt.Errorf("kv plugin: %w", err)
	}
	return nil
}

// Query answers a get or a scan (ops/kv) from the state as of the last
// op applied; a malformed request or a write gets a bad-request result.
func (p *Plugin) Query(ctx context.Context, request []byte) ([]byte, error) {
	lsn := lockstitch.LSN(p.lsn.Load())
	var req kvops.Request
	if err := kvops.DecodeRequest(request, &req); err != nil {
		return badRequest(nil, request, lsn, err.Error()), nil
	}
	db := p.db.db
	switch req.Op {
	case kvops.OpGet:
		key := append([]byte{dataPrefix}, req.Key...)
		v, closer, err := db.Get(key)
		if errors.Is(err, pebble.ErrNotFound) {
			return kvops.AppendResultHeader(nil, kvops.OpGet, kvops.StatusNotFound, false, lsn, 0), nil
		}
		if err != nil {
			return nil, fmt.Errorf("kv plugin: get: %w", err)
		}
		defer closer.Close()
		if len(v) < 8 {
			return nil, fmt.Errorf("%w: value of key %q has %d bytes", ErrCorrupt, req.Key, len(v))
		}
		out := make([]byte, 0, kvops.ResultHeaderBytes+len(v)-8)
		out = kvops.AppendResultHeader(out, kvops.OpGet, kvops.StatusOK, false, lsn, binary.LittleEndian.Uint64(v))
		return append(out, v[8:]...), nil
	case kvops.OpScan:
		return scan(db, &req, lsn)
	}
	return badRequest(nil, request, lsn, req.Op.String()+" is a write: append it"), nil
}

// prefixEnd returns the first key after every key that begins with
// prefix, or nil if there is none.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func scan(db *pebble.DB, req *kvops.Request, lsn lockstitch.LSN) ([]byte, error) {
	lower := append([]byte{dataPrefix}, req.Prefix...)
	if string(req.Start) > string(req.Prefix) {
		lower = append([]byte{dataPrefix}, req.Start...)
	}
	upper := dataUpper
	if end := prefixEnd(req.Prefix); end != nil {
		upper = append([]byte{dataPrefix}, end...)
	}
	it := db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	defer it.Close()
	var items []byte
	n, more := 0, false
	for ok := it.First(); ok; ok = it.Next() {
		if n == req.Limit || len(items) >= MaxScanBytes {
			more = true
			break
		}
		v := it.Value()
		if len(v) < 8 {
			return nil, fmt.Errorf("%w: value of key %q has %d bytes", ErrCorrupt, it.Key()[1:], len(v))
		}
		items = kvops.AppendItem(items, it.Key()[1:], binary.LittleEndian.Uint64(v), v[8:])
		n++
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("kv plugin: scan: %w", err)
	}
	out := make([]byte, 0, kvops.ResultHeaderBytes+binary.MaxVarintLen64+len(items))
	out = kvops.AppendResultHeader(out, kvops.OpScan, kvops.StatusOK, more, lsn, 0)
	out = binary.AppendUvarint(out, uint64(n))
	return append(out, items...), nil
}

// Sync makes every applied batch durable with one fsync of pebble's WAL
// (none if nothing was applied since the last Sync).
func (p *Plugin) Sync() (lockstitch.LSN, error) {
	lsn := lockstitch.LSN(p.lsn.Load())
	if lsn == p.synced {
		return lsn, nil
	}
	if err := p.db.db.LogData(nil, pebble.Sync); err != nil {
		return 0, fmt.Errorf("kv plugin: sync: %w", err)
	}
	p.synced = lsn
	return lsn, nil
}

// Close releases the database (once the snapshots still being written
// are released too).
func (p *Plugin) Close() error {
	if p.db == nil {
		return nil
	}
	h := p.db
	p.db = nil
	if err := h.release(); err != nil {
		return fmt.Errorf("kv plugin: close: %w", err)
	}
	return nil
}
