package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/lockstitch/lockstitch"
	catchup "github.com/lockstitch/lockstitch/copy"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// handler is the adapter between the wire and the library: the
// transport.Handler that serves a node's partitions to clients, built on
// replicator's public API alone. Errors need no mapping here: the library
// and the wire share package lockstitch's sentinels, and the transport
// maps each to its code (transport.Code).
type handler struct {
	n *Node
}

var _ transport.Handler = (*handler)(nil)

// appendDone carries a transport completion through the replicator's
// Completion interface; pooled, so that an append allocates nothing here.
type appendDone struct{ done transport.AppendCompletion }

var appendDones = sync.Pool{New: func() any { return new(appendDone) }}

// Complete implements replicator.Completion.
func (a *appendDone) Complete(r replicator.AppendResult, err error) {
	done := a.done
	a.done = transport.AppendCompletion{}
	appendDones.Put(a)
	if err != nil {
		done.Fail(err)
		return
	}
	done.Complete(transport.AppendResult{LSN: r.LSN, Epoch: uint64(r.Epoch), Result: r.Result, Duplicate: r.Duplicate})
}

// Append implements transport.Handler. A duplicate is answered with the
// original op's LSN and epoch and no plugin result.
func (h *handler) Append(req *transport.AppendRequest, done transport.AppendCompletion) {
	p, err := h.n.r.Partition(req.Partition)
	if err != nil {
		done.Fail(err)
		return
	}
	a := appendDones.Get().(*appendDone)
	a.done = done
	op := replicator.AppendOp{Payload: req.Payload, CRC: req.CRC, Producer: lockstitch.ProducerID(req.Producer), Seq: req.Sequence}
	if err := p.AppendTo(op, a); err != nil {
		a.done = transport.AppendCompletion{}
		appendDones.Put(a)
		done.Fail(err)
	}
}

// groupScratch holds AppendGroup's slices, pooled: the handler serves
// every connection's reader at once.
type groupScratch struct {
	ops []replicator.AppendOp
	cs  []replicator.Completion
}

var groupScratches = sync.Pool{New: func() any { return new(groupScratch) }}

var _ transport.GroupAppender = (*handler)(nil)

// AppendGroup implements transport.GroupAppender: the ops of several
// Append requests of one partition go to its batcher with one hand-off
// (one lock of its queue, one reading of the clock) and are answered one
// by one as Append's are. When the batcher refuses the group because of
// one op (too large), each op is queued on its own, so that only that one
// fails.
func (h *handler) AppendGroup(reqs []transport.AppendRequest, done []transport.AppendCompletion) {
	if len(reqs) == 1 {
		h.Append(&reqs[0], done[0])
		return
	}
	p, err := h.n.r.Partition(reqs[0].Partition)
	if err != nil {
		for _, d := range done {
			d.Fail(err)
		}
		return
	}
	g := groupScratches.Get().(*groupScratch)
	for i := range reqs {
		req := &reqs[i]
		a := appendDones.Get().(*appendDone)
		a.done = done[i]
		g.ops = append(g.ops, replicator.AppendOp{Payload: req.Payload, CRC: req.CRC, Producer: lockstitch.ProducerID(req.Producer), Seq: req.Sequence})
		g.cs = append(g.cs, a)
	}
	err = p.AppendBatchTo(g.ops, g.cs)
	if err != nil {
		for _, c := range g.cs {
			a := c.(*appendDone)
			a.done = transport.AppendCompletion{}
			appendDones.Put(a)
		}
	}
	clear(g.ops)
	clear(g.cs)
	g.ops, g.cs = g.ops[:0], g.cs[:0]
	groupScratches.Put(g)
	switch {
	case err == nil:
	case errors.Is(err, lockstitch.ErrTooLarge):
		for i := range reqs {
			h.Append(&reqs[i], done[i])
		}
	default:
		for _, d := range done {
			d.Fail(err)
		}
	}
}

// batchDone gathers the outcomes of a batch's ops and completes the
// transport's batch once all are in.
type batchDone struct {
	mu      sync.Mutex
	done    transport.BatchCompletion
	results []transport.AppendResult
	left    int
	err     error
}

type batchOpDone struct {
	b *batchDone
	i int
}

// Complete implements replicator.Completion.
func (o *batchOpDone) Complete(r replicator.AppendResult, err error) {
	b := o.b
	b.mu.Lock()
	if err != nil && b.err == nil {
		b.err = err
	}
	b.results[o.i] = transport.AppendResult{LSN: r.LSN, Epoch: uint64(r.Epoch), Result: r.Result}
	b.left--
	last := b.left == 0
	b.mu.Unlock()
	if !last {
		return
	}
	if b.err != nil {
		b.done.Fail(b.err)
		return
	}
	b.done.Complete(b.results)
}

// AppendBatch implements transport.Handler: the ops are queued together
// and answered together; if any fails the batch fails (ops that did
// commit stay committed, and a retry with the same sequences finds them).
func (h *handler) AppendBatch(req *transport.AppendBatchRequest, done transport.BatchCompletion) {
	p, err := h.n.r.Partition(req.Partition)
	if err != nil {
		done.Fail(err)
		return
	}
	n := req.Len()
	b := &batchDone{done: done, results: make([]transport.AppendResult, n), left: n}
	ops := make([]replicator.AppendOp, 0, n)
	cs := make([]replicator.Completion, 0, n)
	dones := make([]batchOpDone, n)
	it := req.Ops()
	var op transport.BatchOp
	for i := 0; it.Next(&op); i++ {
		seq := uint64(0)
		if req.Producer != 0 {
			seq = req.Sequence + uint64(i)
		}
		ops = append(ops, replicator.AppendOp{Payload: op.Payload, CRC: op.CRC, Producer: lockstitch.ProducerID(req.Producer), Seq: seq})
		dones[i] = batchOpDone{b: b, i: i}
		cs = append(cs, &dones[i])
	}
	if err := p.AppendBatchTo(ops, cs); err != nil {
		done.Fail(err)
	}
}

// walRecord lends r's fields to the wire's record type, without copying
// the payload.
func walRecord(dst *wal.Record, r *replicator.Record) {
	*dst = wal.Record{LSN: r.LSN, Epoch: uint64(r.Epoch), CRC: r.CRC, Payload: r.Payload}
}

// Read implements transport.Handler from this replica's log.
func (h *handler) Read(ctx context.Context, req *transport.ReadRequest, res *transport.ReadResult) error {
	p, err := h.n.r.Partition(req.Partition)
	if err != nil {
		return err
	}
	if req.Reverse {
		return readBackward(ctx, p, req, res)
	}
	// Subscribing first fails while the replica opens, when Applied
	// would say 0.
	sub, err := p.Subscribe(req.From)
	if err != nil {
		return err
	}
	defer sub.Close()
	applied := p.Applied()
	res.Committed = applied
	if req.From > applied {
		return nil
	}
	var rec replicator.Record
	var wr wal.Record
	for ctx.Err() == nil {
		ok, err := sub.TryNext(&rec)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		walRecord(&wr, &rec)
		if !res.Add(&wr) {
			return nil
		}
	}
	return ctx.Err()
}

// readBackward serves a reverse Read: from req.From (0 or beyond the
// applied LSN: the last applied op) down.
func readBackward(ctx context.Context, p *replicator.Partition, req *transport.ReadRequest, res *transport.ReadResult) error {
	b, err := p.ReadBackward(req.From)
	if err != nil {
		return err
	}
	defer b.Close()
	res.Committed = p.Applied()
	var rec replicator.Record
	var wr wal.Record
	for ctx.Err() == nil {
		ok, err := b.Next(&rec)
		if err != nil || !ok {
			return err
		}
		walRecord(&wr, &rec)
		if !res.Add(&wr) {
			return nil
		}
	}
	return ctx.Err()
}

// Subscribe implements transport.Handler through Partition.Copy: the
// retained records from the marker on, or, when the marker's next record
// is no longer retained and the subscriber allows it, the plugin's
// snapshot (as Snapshot frames, one chunk each) and the records after it;
// then each record as it commits. A subscriber ahead of this replica but
// not of the commit point waits until the replica's log reaches its
// marker; one ahead of the commit point gets a *lockstitch.DivergedError.
func (h *handler) Subscribe(ctx context.Context, req *transport.SubscribeRequest, st *transport.Stream) error {
	p, err := h.n.r.Partition(req.Partition)
	if err != nil {
		return err
	}
	cp, err := p.Copy(ctx, req.Marker, replicator.CopyOptions{Snapshot: req.Snapshot})
	if err != nil {
		return err
	}
	defer cp.Close()
	if cp.Plan.Kind == catchup.SnapshotThenDelta {
		w := &snapshotFrames{st: st, lsn: cp.Plan.SnapshotLSN, epoch: uint64(cp.SnapshotEpoch)}
		if err := cp.WriteSnapshot(ctx, w); err != nil {
			return err
		}
		if len(w.buf) != 0 {
			return fmt.Errorf("partition %d: the snapshot at LSN %d ends inside a chunk", req.Partition, cp.Plan.SnapshotLSN)
		}
	}
	sub := cp.Subscription()
	var rec replicator.Record
	var wr wal.Record
	for {
		ok, err := sub.TryNext(&rec)
		if err != nil {
			return err
		}
		if ok {
			walRecord(&wr, &rec)
			if err := st.Send(&wr); err != nil {
				return err
			}
			continue
		}
		// Everything in the log is committed; the applied LSN may trail
		// the last record sent while an apply is running.
		st.SetCommitted(max(p.Applied(), sub.Position()-1))
		if err := st.Flush(); err != nil {
			return err
		}
		// A replica cut off from its leader ends the subscription: the
		// client follows from another one.
		if err := sub.WaitInTouch(ctx); err != nil {
			return err
		}
	}
}

// A Snapshot frame carries one chunk of package copy's stream: their
// limits must agree (this fails to compile otherwise).
const _ = uint(catchup.MaxChunkBytes-transport.MaxSnapshotChunk) + uint(transport.MaxSnapshotChunk-catchup.MaxChunkBytes)

// snapshotFrames cuts the chunked stream that Copy.WriteSnapshot writes
// back into its chunks (whatever pieces the writes come in) and sends
// each as one Snapshot frame.
type snapshotFrames struct {
	st    *transport.Stream
	lsn   lockstitch.LSN
	epoch uint64
	buf   []byte // the start of a chunk not yet whole
}

// Write implements io.Writer.
func (w *snapshotFrames) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) >= catchup.ChunkHeaderSize {
		size := catchup.ChunkHeaderSize + int(binary.LittleEndian.Uint32(w.buf))
		if size > catchup.ChunkHeaderSize+catchup.MaxChunkBytes {
			return 0, fmt.Errorf("%w: snapshot chunk of %d bytes", catchup.ErrCorrupt, size)
		}
		if len(w.buf) < size {
			break
		}
		if err := w.st.SendSnapshot(w.lsn, w.epoch, w.buf[:size]); err != nil {
			return 0, err
		}
		w.buf = w.buf[:copy(w.buf, w.buf[size:])]
	}
	return len(p), nil
}

// Query implements transport.Handler.
func (h *handler) Query(ctx context.Context, req *transport.QueryRequest, res *transport.QueryResult) error {
	p, err := h.n.r.Partition(req.Partition)
	if err != nil {
		return err
	}
	r, err := p.Query(ctx, req.Request, replicator.QueryOptions{Consistency: req.Consistency, MaxStaleness: req.MaxStaleness})
	if err != nil {
		return err
	}
	res.Result = append(res.Result, r.Result...)
	res.LSN = r.LSN
	res.Committed = max(r.LSN, p.Committed())
	return nil
}

// Cursor implements transport.Handler with the partition's durable
// cursors.
func (h *handler) Cursor(ctx context.Context, req *transport.CursorRequest, res *transport.CursorResult) error {
	p, err := h.n.r.Partition(req.Partition)
	if err != nil {
		return err
	}
	switch req.Op {
	case transport.CursorAck:
		return p.AckCursor(ctx, req.Name, req.LSN)
	case transport.CursorReset:
		return p.ResetCursor(ctx, req.Name, req.LSN)
	case transport.CursorDelete:
		return p.DeleteCursor(ctx, req.Name)
	case transport.CursorList:
		cursors, err := p.Cursors()
		if err != nil {
			return err
		}
		for _, c := range cursors {
			res.Cursors = append(res.Cursors, transport.Cursor{Name: c.Name, LSN: c.LSN, Lapsed: c.Lapsed})
		}
		return nil
	}
	return fmt.Errorf("%w: unknown cursor op %v", lockstitch.ErrInvalidArgument, req.Op)
}

// Status implements transport.Handler.
func (h *handler) Status(ctx context.Context, req *transport.StatusRequest) (*transport.NodeStatus, error) {
	return h.n.status(ctx, req)
}

// Admin implements transport.Handler. The request gets AdminTimeout, or
// the caller's shorter deadline that it carries.
func (h *handler) Admin(ctx context.Context, req *transport.AdminRequest, res *transport.AdminResult) error {
	timeout := h.n.cfg.AdminTimeout
	if req.Timeout > 0 {
		timeout = min(timeout, req.Timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return h.n.admin(ctx, req, res)
}

// status describes this node's partitions, or one of them.
func (n *Node) status(ctx context.Context, req *transport.StatusRequest) (*transport.NodeStatus, error) {
	ns := &transport.NodeStatus{NodeID: uint64(n.cfg.ID)}
	ids := n.r.Partitions()
	if req.OnePartition {
		ids = []lockstitch.PartitionID{req.Partition}
	}
	for _, id := range ids {
		p, err := n.r.Partition(id)
		if err != nil {
			if req.OnePartition {
				return nil, err
			}
			continue
		}
		st, err := p.Status(ctx)
		if err != nil {
			if req.OnePartition {
				return nil, err
			}
			role := lockstitch.RoleUnknown
			if p.Quarantine() != nil {
				role = lockstitch.RoleQuarantined
			}
			ns.Partitions = append(ns.Partitions, transport.PartitionStatus{Partition: id, Role: role})
			continue
		}
		ns.Partitions = append(ns.Partitions, wireStatus(st))
	}
	if req.Producer != 0 {
		p, err := n.r.Partition(req.Partition)
		if err != nil {
			return nil, err
		}
		ps, err := p.Producer(req.Producer)
		if err != nil {
			return nil, err
		}
		ns.Producer = &transport.ProducerStatus{Producer: ps.Producer, Known: ps.Known, Forgotten: ps.Forgotten,
			Floor: ps.Floor, Last: ps.Last, LastLSN: ps.LastLSN, LastEpoch: uint64(ps.LastEpoch)}
	}
	return ns, nil
}

func wireStatus(st replicator.PartitionStatus) transport.PartitionStatus {
	ws := transport.PartitionStatus{
		Partition:  st.Partition,
		Role:       st.Role,
		Leader:     st.Leader,
		LeaderAddr: st.LeaderAddr,
		Epoch:      uint64(st.Epoch),
		Committed:  st.CommittedLSN,
		Applied:    st.AppliedLSN,
	}
	for _, r := range st.Replicas {
		ws.Replicas = append(ws.Replicas, transport.ReplicaStatus{
			Replica:   r.Replica,
			Addr:      r.ClientAddress,
			Kind:      r.Kind,
			Match:     r.AppliedLSN,
			Lag:       r.Lag,
			Reported:  r.Reported,
			ReportAge: r.ReportAge,
		})
	}
	return ws
}
