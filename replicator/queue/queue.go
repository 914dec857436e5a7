// Package queue is the built-in queue plugin: a replicated FIFO of items
// with leases, acknowledgements and a dead-letter list, stored in pebble.
// Its ops, results and queries are in package ops/queue (imported here as
// qops), which documents them byte by byte; the typed client is
// transport/queueclient.
//
// # Time
//
// Leases run on the queue's clock: the latest replicator.Op.Time it has
// seen, the proposing leader's wall clock, replicated with each op. Every
// replica applies the same ops with the same times, so a lease expires at
// the same op everywhere, whatever each replica's own clock says. The
// clock never goes back: a new leader whose clock is behind its
// predecessor's neither un-expires a lease nor shortens one; its ops take
// the clock as it is until its own time passes it. (An op without a time,
// from a node older than the time stamp, leaves the clock as it is.)
//
// Every op first expires the leases whose deadline is at or before the
// clock, in deadline order, then id order: each such item goes back to the
// ready list at its place (items are handed out in enqueue order), or, if
// it has been delivered MaxDeliveries times, to the dead-letter list,
// where it stays (peek shows it). A query sees the state as of the last
// op: a lease that has expired since is counted as leased until then.
//
// # Storage
//
// Each Apply call is one pebble batch holding its ops' effects and the
// LSN of its last op, committed without an fsync: after a process crash
// pebble has every batch it was given, and after a machine crash a prefix
// of them, each whole, with its LSN; Open returns that LSN and the
// replicator replays the rest, with their times (the operation log keeps
// them). Sync fsyncs pebble's log. Keys:
//
//	"m"                     meta: version 1 (1), zero (7), applied LSN (8),
//	                        clock (8, Unix ns), next item id (8), ready (8),
//	                        leased (8) and dead-letter (8) counts
//	"i" id                  an item: state (1: 0 ready, 1 leased, 2 dead),
//	                        zero (3), deliveries (4), lease deadline (8, Unix
//	                        ns, 0 unless leased), payload
//	"r" id                  the ready list, in id (enqueue) order; empty value
//	"l" deadline id         the leased items, by deadline; empty value
//	"d" id                  the dead-letter list; empty value
//
// ids and deadlines in keys are big-endian, so keys sort by them; ids
// start at 1. A snapshot is every key and value at one LSN: magic
// "lsqueue1", then records (uvarint key length, key, uvarint value
// length, value), then a zero key length. Restore deletes every key and
// sets "x", the restore mark, in one synced batch, writes the snapshot's
// records, then its meta record and deletes the mark in a last synced
// batch: Open finds the mark only after a restore cut short, and then
// discards the partial state and starts empty (LSN 0).
//
// # Options
//
// max_deliveries: how many times an item is handed out before, its last
// lease expired, it is dead-lettered (default 5, 1 to 1000000).
package queue

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"

	"github.com/lockstitch/lockstitch"
	qops "github.com/lockstitch/lockstitch/ops/queue"
	"github.com/lockstitch/lockstitch/replicator"
)

// PluginName is the name under which nodes offer the queue plugin.
const PluginName = "queue"

// Options.
const (
	// OptionMaxDeliveries names the max_deliveries option.
	OptionMaxDeliveries = "max_deliveries"
	// DefaultMaxDeliveries is max_deliveries when not given.
	DefaultMaxDeliveries = 5
	maxMaxDeliveries     = 1_000_000
)

// New is the queue plugin's factory (a replicator.PluginFactory). It
// checks the options and opens nothing.
func New(pc replicator.PluginContext) (replicator.StateMachine, error) {
	q := &Queue{dir: pc.Dir, log: pc.Logger, maxDeliveries: DefaultMaxDeliveries}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	for k, v := range pc.Options {
		switch k {
		case OptionMaxDeliveries:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > maxMaxDeliveries {
				return nil, fmt.Errorf("%w: queue option %s=%q: want an integer from 1 to %d", lockstitch.ErrInvalidArgument, k, v, maxMaxDeliveries)
			}
			q.maxDeliveries = uint32(n)
		default:
			return nil, fmt.Errorf("%w: queue has no option %q (it has %s)", lockstitch.ErrInvalidArgument, k, OptionMaxDeliveries)
		}
	}
	return q, nil
}

var _ replicator.StateMachine = (*Queue)(nil)

// Queue is the plugin. The replicator calls it as replicator.StateMachine
// says; its methods are not for other callers.
type Queue struct {
	dir           string
	log           *slog.Logger
	maxDeliveries uint32

	// mu guards db, meta and snaps against Query, Sync and snapshots
	// (which the replicator may call from other goroutines than Apply's).
	// Lock order: mu, then a snapshot's mu.
	mu   sync.RWMutex
	db   *pebble.DB
	meta meta

	// readyLow and leaseLow are lower bounds, kept in memory, of the ids
	// in the ready list and the deadlines in the leased list: the scans
	// of Dequeue and of lease expiry start there, past the deletion
	// tombstones of the items handed out and the leases ended (which
	// pebble keeps until it compacts them, and which a scan from the
	// start of the list would step over, one by one, at every op).
	// Invariants: no ready item has an id below readyLow, no leased one a
	// deadline below leaseLow. Both are 0 after Open and Restore.
	readyLow uint64
	leaseLow int64

	// snaps are the snapshots not released, which Close ends.
	snaps map[*snapshot]struct{}

	// res holds the results of the last Apply.
	res    []byte
	resEnd []int
	// key is scratch for building keys.
	key []byte
}

// meta is the queue's state beside its items.
type meta struct {
	lsn                 lockstitch.LSN
	clock               int64 // Unix ns, 0: none yet
	nextID              uint64
	ready, leased, dead uint64
}

const (
	metaVersion = 1
	metaSize    = 56
)

var metaKey = []byte("m")

// Key prefixes.
const (
	prefixItem   = 'i'
	prefixReady  = 'r'
	prefixLeased = 'l'
	prefixDead   = 'd'
)

// Item states.
const (
	stateReady  = 0
	stateLeased = 1
	stateDead   = 2
)

const itemHeader = 16

func (m *meta) appendTo(b []byte) []byte {
	b = append(b, metaVersion, 0, 0, 0, 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(m.lsn))
	b = binary.LittleEndian.AppendUint64(b, uint64(m.clock))
	b = binary.LittleEndian.AppendUint64(b, m.nextID)
	b = binary.LittleEndian.AppendUint64(b, m.ready)
	b = binary.LittleEndian.AppendUint64(b, m.leased)
	return binary.LittleEndian.AppendUint64(b, m.dead)
}

func decodeMeta(b []byte) (meta, error) {
	if len(b) != metaSize || b[0] != metaVersion {
		return meta{}, fmt.Errorf("queue: corrupt meta record (%d bytes)", len(b))
	}
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[8+8*i:]) }
	return meta{lsn: lockstitch.LSN(u(0)), clock: int64(u(1)), nextID: u(2), ready: u(3), leased: u(4), dead: u(5)}, nil
}

// pebbleLogger sends pebble's messages to the plugin's logger.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...interface{}) {
	l.log.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("pebble: " + msg)
	panic("queue: pebble: " + msg)
}

func (q *Queue) dbDir() string { return filepath.Join(q.dir, "pebble") }

func (q *Queue) openDB() error {
	db, err := pebble.Open(q.dbDir(), &pebble.Options{Logger: pebbleLogger{q.log}})
	if err != nil {
		return fmt.Errorf("queue: open pebble: %w", err)
	}
	m := meta{nextID: 1}
	v, closer, err := db.Get(metaKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		db.Close()
		return fmt.Errorf("queue: read meta: %w", err)
	default:
		m, err = decodeMeta(v)
		closer.Close()
		if err != nil {
			db.Close()
			return err
		}
	}
	q.db, q.meta = db, m
	q.readyLow, q.leaseLow = 0, 0
	return nil
}

// Open opens the queue's pebble store and returns the LSN of the last
// batch it holds.
func (q *Queue) Open(ctx context.Context) (lockstitch.LSN, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.openDB(); err != nil {
		return 0, err
	}
	switch _, closer, err := q.db.Get(restoringKey); {
	case errors.Is(err, pebble.ErrNotFound):
	case err != nil:
		return 0, fmt.Errorf("queue: read the restore mark: %w", err)
	default:
		// A restore was cut short: what it wrote is part of a state. The
		// queue starts empty; the replicator replays or copies the rest.
		closer.Close()
		q.log.Warn("queue: discarding an interrupted restore")
		if err := q.clear(false); err != nil {
			return 0, fmt.Errorf("queue: discard an interrupted restore: %w", err)
		}
	}
	return q.meta.lsn, nil
}

// Apply applies ops in one pebble batch with the LSN of the last one.
func (q *Queue) Apply(ops []replicator.Op, results [][]byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.db.NewIndexedBatch()
	defer b.Close()
	m := q.meta
	q.res, q.resEnd = q.res[:0], q.resEnd[:0]
	for i := range ops {
		op := &ops[i]
		if t := qops.UnixNanos(op.Time); t > m.clock {
			m.clock = t
		}
		var err error
		q.res, err = q.apply(b, &m, op.Payload, q.res)
		if err != nil {
			return fmt.Errorf("queue: LSN %d: %w", op.LSN, err)
		}
		m.lsn = op.LSN
		q.resEnd = append(q.resEnd, len(q.res))
	}
	if err := b.Set(metaKey, m.appendTo(nil), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("queue: commit: %w", err)
	}
	q.meta = m
	start := 0
	for i, end := range q.resEnd {
		results[i] = q.res[start:end:end]
		start = end
	}
	return nil
}

// apply applies one op to b and m and appends its result to res. Its
// errors are storage errors; a bad op is a result.
func (q *Queue) apply(b *pebble.Batch, m *meta, payload []byte, res []byte) ([]byte, error) {
	var op qops.Op
	if err := qops.DecodeOp(payload, &op); err != nil {
		kind := op.Kind
		if kind < qops.KindEnqueue || kind > qops.KindExtend {
			kind = 0
		}
		return qops.AppendResult(res, &qops.Result{Kind: kind, Status: qops.StatusInvalid}), nil
	}
	if err := q.expire(b, m); err != nil {
		return res, err
	}
	r := qops.Result{Kind: op.Kind}
	var err error
	switch op.Kind {
	case qops.KindEnqueue:
		r.ID = m.nextID
		m.nextID++
		err = q.putItem(b, r.ID, stateReady, 0, 0, op.Payload)
		if err == nil {
			err = b.Set(q.listKey(prefixReady, 0, r.ID), nil, nil)
			m.ready++
		}
	case qops.KindDequeue:
		err = q.dequeue(b, m, op.Lease, &r)
	case qops.KindAck, qops.KindExtend:
		err = q.settle(b, m, &op, &r)
	}
	if err != nil {
		return res, err
	}
	return qops.AppendResult(res, &r), nil
}

// expire ends the leases due at m.clock: those with a deadline from
// leaseLow to m.clock. A new deadline is always after the clock, so none
// is left at or below it afterwards: leaseLow moves past it.
func (q *Queue) expire(b *pebble.Batch, m *meta) error {
	if q.leaseLow > m.clock {
		return nil
	}
	lower := binary.BigEndian.AppendUint64([]byte{prefixLeased}, uint64(max(q.leaseLow, 0)))
	upper := binary.BigEndian.AppendUint64([]byte{prefixLeased}, uint64(m.clock)+1)
	it := b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 17 {
			return fmt.Errorf("corrupt lease key %x", k)
		}
		id := binary.BigEndian.Uint64(k[9:])
		it2, err := q.item(b, id)
		if err != nil {
			return err
		}
		if err := b.Delete(k, nil); err != nil {
			return err
		}
		m.leased--
		if it2.deliveries >= q.maxDeliveries {
			err = q.putItem(b, id, stateDead, it2.deliveries, 0, it2.payload)
			if err == nil {
				err = b.Set(q.listKey(prefixDead, 0, id), nil, nil)
			}
			m.dead++
		} else {
			err = q.putItem(b, id, stateReady, it2.deliveries, 0, it2.payload)
			if err == nil {
				err = b.Set(q.listKey(prefixReady, 0, id), nil, nil)
			}
			m.ready++
			q.readyLow = min(q.readyLow, id)
		}
		if err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	q.leaseLow = m.clock + 1
	return nil
}

// dequeue leases the first ready item, the first at or after readyLow.
func (q *Queue) dequeue(b *pebble.Batch, m *meta, lease time.Duration, r *qops.Result) error {
	lower := binary.BigEndian.AppendUint64([]byte{prefixReady}, q.readyLow)
	it := b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{prefixReady + 1}})
	if !it.First() {
		err := it.Error()
		it.Close()
		r.Status = qops.StatusEmpty
		return err
	}
	k := append([]byte(nil), it.Key()...)
	if err := it.Close(); err != nil {
		return err
	}
	if len(k) != 9 {
		return fmt.Errorf("corrupt ready key %x", k)
	}
	id := binary.BigEndian.Uint64(k[1:])
	item, err := q.item(b, id)
	if err != nil {
		return err
	}
	deadline := m.clock + int64(lease)
	if err := b.Delete(k, nil); err != nil {
		return err
	}
	if err := b.Set(q.listKey(prefixLeased, deadline, id), nil, nil); err != nil {
		return err
	}
	item.deliveries++
	if err := q.putItem(b, id, stateLeased, item.deliveries, deadline, item.payload); err != nil {
		return err
	}
	m.ready--
	m.leased++
	q.readyLow = id + 1
	r.ID, r.Delivery, r.Deadline, r.Payload = id, item.deliveries, qops.TimeOf(deadline), item.payload
	return nil
}

// settle acknowledges or extends a delivery.
func (q *Queue) settle(b *pebble.Batch, m *meta, op *qops.Op, r *qops.Result) error {
	item, err := q.item(b, op.ID)
	if errors.Is(err, pebble.ErrNotFound) || err == nil && (item.state != stateLeased || item.deliveries != op.Delivery) {
		r.Status = qops.StatusLost
		return nil
	}
	if err != nil {
		return err
	}
	if err := b.Delete(q.listKey(prefixLeased, item.deadline, op.ID), nil); err != nil {
		return err
	}
	if op.Kind == qops.KindAck {
		m.leased--
		return b.Delete(q.itemKey(op.ID), nil)
	}
	deadline := m.clock + int64(op.Lease)
	r.Deadline = qops.TimeOf(deadline)
	if err := b.Set(q.listKey(prefixLeased, deadline, op.ID), nil, nil); err != nil {
		return err
	}
	return q.putItem(b, op.ID, stateLeased, item.deliveries, deadline, item.payload)
}

type item struct {
	state      byte
	deliveries uint32
	deadline   int64
	payload    []byte // a copy
}

// reader is what items are read from: a batch or a snapshot of the db.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func (q *Queue) item(r reader, id uint64) (item, error) {
	v, closer, err := r.Get(q.itemKey(id))
	if err != nil {
		return item{}, err
	}
	defer closer.Close()
	return decodeItem(v)
}

func decodeItem(v []byte) (item, error) {
	if len(v) < itemHeader || v[0] > stateDead {
		return item{}, fmt.Errorf("corrupt item record (%d bytes)", len(v))
	}
	return item{
		state:      v[0],
		deliveries: binary.LittleEndian.Uint32(v[4:]),
		deadline:   int64(binary.LittleEndian.Uint64(v[8:])),
		payload:    append([]byte(nil), v[itemHeader:]...),
	}, nil
}

func (q *Queue) putItem(b *pebble.Batch, id uint64, state byte, deliveries uint32, deadline int64, payload []byte) error {
	v := make([]byte, itemHeader, itemHeader+len(payload))
	v[0] = state
	binary.LittleEndian.PutUint32(v[4:], deliveries)
	binary.LittleEndian.PutUint64(v[8:], uint64(deadline))
	return b.Set(q.itemKey(id), append(v, payload...), nil)
}

func (q *Queue) itemKey(id uint64) []byte {
	q.key = binary.BigEndian.AppendUint64(append(q.key[:0], prefixItem), id)
	return q.key
}

// listKey is the key of id in a list; deadline only for the leased list.
// It returns a new slice (pebble copies keys on Set, but list keys are
// built while an item key is in use).
func (q *Queue) listKey(prefix byte, deadline int64, id uint64) []byte {
	k := make([]byte, 0, 17)
	k = append(k, prefix)
	if prefix == prefixLeased {
		k = binary.BigEndian.AppendUint64(k, uint64(deadline))
	}
	return binary.BigEndian.AppendUint64(k, id)
}

// Query answers a length or peek query (ops/queue).
func (q *Queue) Query(ctx context.Context, req []byte) ([]byte, error) {
	var qr qops.Query
	if err := qops.DecodeQuery(req, &qr); err != nil {
		return nil, err
	}
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.db == nil {
		return nil, lockstitch.ErrUnavailable
	}
	if qr.Kind == qops.QueryLen {
		return qops.AppendLengths(nil, &qops.Lengths{Ready: q.meta.ready, Leased: q.meta.leased, Dead: q.meta.dead, Clock: qops.TimeOf(q.meta.clock)}), nil
	}
	snap := q.db.NewSnapshot()
	defer snap.Close()
	// The ready and leased lists start at their bounds (see readyLow).
	var lower []byte
	switch qr.List {
	case qops.ListReady:
		lower = binary.BigEndian.AppendUint64([]byte{prefixReady}, q.readyLow)
	case qops.ListLeased:
		lower = binary.BigEndian.AppendUint64([]byte{prefixLeased}, uint64(max(q.leaseLow, 0)))
	default:
		lower = []byte{prefixDead}
	}
	it := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: []byte{lower[0] + 1}})
	defer it.Close()
	out := qops.AppendPeekHeader(nil)
	n := uint32(0)
	for it.First(); it.Valid() && n < qr.Limit; it.Next() {
		k := it.Key()
		if len(k) < 9 {
			return nil, fmt.Errorf("queue: corrupt list key %x", k)
		}
		id := binary.BigEndian.Uint64(k[len(k)-8:])
		v, closer, err := snap.Get(append([]byte{prefixItem}, k[len(k)-8:]...))
		if err != nil {
			return nil, fmt.Errorf("queue: item %d: %w", id, err)
		}
		item, err := decodeItem(v)
		closer.Close()
		if err != nil {
			return nil, fmt.Errorf("queue: item %d: %w", id, err)
		}
		out = qops.AppendItem(out, &qops.Item{ID: id, Deliveries: item.deliveries, Deadline: qops.TimeOf(item.deadline), Payload: item.payload})
		n++
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("queue: peek: %w", err)
	}
	return out, nil
}

// Sync fsyncs pebble's log, which holds every batch Apply committed.
func (q *Queue) Sync() (lockstitch.LSN, error) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if err := q.db.LogData(nil, pebble.Sync); err != nil {
		return 0, fmt.Errorf("queue: sync: %w", err)
	}
	return q.meta.lsn, nil
}

const snapshotMagic = "lsqueue1"

// PrepareSnapshot takes a pebble snapshot of the state.
func (q *Queue) PrepareSnapshot() (replicator.Snapshot, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.db == nil {
		return nil, lockstitch.ErrClosed
	}
	s := &snapshot{q: q, snap: q.db.NewSnapshot()}
	if q.snaps == nil {
		q.snaps = map[*snapshot]struct{}{}
	}
	q.snaps[s] = struct{}{}
	return s, nil
}

// snapshot is a pebble snapshot being written out. A Snapshot may
// outlive its plugin (a copy to a consumer still being sent when the
// replica closes): Close ends every live one first, and WriteTo then
// fails with lockstitch.ErrClosed instead of reading a closed store. So
// WriteTo reads under mu, a batch of records at a time, and writes each
// batch without it.
type snapshot struct {
	q  *Queue
	mu sync.Mutex
	// snap is nil once released or ended by Close.
	snap *pebble.Snapshot
}

// snapshotBatchBytes is how much WriteTo reads at a time.
const snapshotBatchBytes = 256 << 10

func (s *snapshot) WriteTo(ctx context.Context, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	var buf, from []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var done bool
		var err error
		buf, from, done, err = s.read(buf[:0], from)
		if err != nil {
			return err
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		if done {
			break
		}
	}
	if err := bw.WriteByte(0); err != nil {
		return err
	}
	return bw.Flush()
}

// read appends the records from key from on (the first if nil) to buf,
// about snapshotBatchBytes of them, and returns the key to go on from, or
// done after the last.
func (s *snapshot) read(buf, from []byte) ([]byte, []byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap == nil {
		return buf, nil, false, fmt.Errorf("queue: snapshot: %w", lockstitch.ErrClosed)
	}
	it := s.snap.NewIter(nil)
	defer it.Close()
	valid := it.First()
	if from != nil {
		valid = it.SeekGE(from)
	}
	for ; valid; valid = it.Next() {
		if len(buf) >= snapshotBatchBytes {
			return buf, append([]byte(nil), it.Key()...), false, nil
		}
		buf = binary.AppendUvarint(buf, uint64(len(it.Key())))
		buf = append(buf, it.Key()...)
		buf = binary.AppendUvarint(buf, uint64(len(it.Value())))
		buf = append(buf, it.Value()...)
	}
	if err := it.Error(); err != nil {
		return buf, nil, false, fmt.Errorf("queue: snapshot: %w", err)
	}
	return buf, nil, true, nil
}

func (s *snapshot) Release() {
	s.q.mu.Lock()
	delete(s.q.snaps, s)
	s.q.mu.Unlock()
	s.end()
}

// end closes the pebble snapshot, once.
func (s *snapshot) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap != nil {
		s.snap.Close()
		s.snap = nil
	}
}

// maxSnapshotRecord bounds a key or value read from a snapshot.
const maxSnapshotRecord = 1 << 30

// restoringKey marks a restore in progress: Restore writes it with the
// deletion of the old state and removes it with the new meta record, both
// synced, so Open finds it only after a crash in between (see Open).
var restoringKey = []byte("x")

// Key bounds of every key the queue writes.
var (
	keysStart = []byte{0}
	keysEnd   = []byte{0xff}
)

// Restore replaces the store's state with a snapshot's: in the same
// store (a pebble snapshot being written out keeps its view), it deletes
// every key and marks the restore under way, writes the snapshot's
// records, then the meta record with lsn and the end of the mark.
func (q *Queue) Restore(r io.Reader, lsn lockstitch.LSN) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.restore(bufio.NewReaderSize(r, 64<<10), lsn); err != nil {
		return fmt.Errorf("queue: restore: %w", err)
	}
	return nil
}

func (q *Queue) restore(r *bufio.Reader, lsn lockstitch.LSN) error {
	var magic [len(snapshotMagic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil {
		return err
	}
	if string(magic[:]) != snapshotMagic {
		return fmt.Errorf("not a queue snapshot (magic %q)", magic[:])
	}
	if err := q.clear(true); err != nil {
		return err
	}
	read := func() ([]byte, error) {
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		if n > maxSnapshotRecord {
			return nil, fmt.Errorf("snapshot record of %d bytes", n)
		}
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return b, err
	}
	b := q.db.NewBatch()
	defer func() { b.Close() }()
	m := meta{nextID: 1} // a queue that never applied an op has no meta record
	for {
		k, err := read()
		if err != nil {
			return err
		}
		if len(k) == 0 {
			break
		}
		v, err := read()
		if err != nil {
			return err
		}
		switch {
		case bytes.Equal(k, metaKey):
			// Written last, when the state is whole.
			if m, err = decodeMeta(v); err != nil {
				return err
			}
			continue
		case bytes.Equal(k, restoringKey):
			return errors.New("snapshot holds a restore mark")
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
		if b.Len() >= 4<<20 {
			if err := b.Commit(pebble.NoSync); err != nil {
				return err
			}
			b.Close()
			b = q.db.NewBatch()
		}
	}
	if m.lsn != lsn && m.lsn != 0 {
		return fmt.Errorf("snapshot at LSN %d, expected %d", m.lsn, lsn)
	}
	m.lsn = lsn
	if err := b.Set(metaKey, m.appendTo(nil), nil); err != nil {
		return err
	}
	if err := b.Delete(restoringKey, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	q.meta = m
	q.readyLow, q.leaseLow = 0, 0
	return nil
}

// clear deletes every key, synced; with mark, it marks a restore under
// way (restoringKey) in the same batch.
func (q *Queue) clear(mark bool) error {
	b := q.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(keysStart, keysEnd, nil); err != nil {
		return err
	}
	if mark {
		if err := b.Set(restoringKey, nil, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	q.meta, q.readyLow, q.leaseLow = meta{nextID: 1}, 0, 0
	return nil
}

// Close closes the pebble store; it may be called more than once, and
// for a queue never opened.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.db == nil {
		return nil
	}
	for s := range q.snaps {
		s.end()
	}
	clear(q.snaps)
	err := q.db.Close()
	q.db = nil
	return err
}
