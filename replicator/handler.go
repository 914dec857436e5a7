package replicator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// AdminFunc serves the opaque administrative requests of the transport
// (see transport.Handler.Admin).
type AdminFunc func(ctx context.Context, req []byte) ([]byte, error)

// NewHandler returns the transport.Handler that serves this node's
// partitions to clients: a transport.Server built with it answers appends,
// reads, subscriptions, queries and status. nodeID names the node in
// status answers; admin serves administrative requests (nil refuses them).
func NewHandler(r *Replicator, nodeID uint64, admin AdminFunc) transport.Handler {
	return &handler{r: r, nodeID: nodeID, admin: admin}
}

type handler struct {
	r      *Replicator
	nodeID uint64
	admin  AdminFunc
}

// Admin implements transport.Handler.
func (h *handler) Admin(ctx context.Context, req []byte) ([]byte, error) {
	if h.admin == nil {
		return nil, fmt.Errorf("%w: this node serves no administrative requests", transport.ErrInvalidArgument)
	}
	res, err := h.admin(ctx, req)
	if err != nil {
		return nil, wireError(err)
	}
	return res, nil
}

var _ transport.Handler = (*handler)(nil)

func (h *handler) partition(id transport.PartitionID) (*Partition, error) {
	p, err := h.r.Partition(PartitionID(id))
	if err != nil {
		return nil, wireError(err)
	}
	return p, nil
}

// appendDone carries a transport completion through the replicator's
// Completion interface; pooled, so that an append allocates nothing here.
type appendDone struct{ done transport.AppendCompletion }

var appendDones = sync.Pool{New: func() any { return new(appendDone) }}

func (a *appendDone) Complete(r AppendResult, err error) {
	done := a.done
	a.done = transport.AppendCompletion{}
	appendDones.Put(a)
	if err != nil {
		done.Fail(wireError(err))
		return
	}
	done.Complete(transport.AppendResult{LSN: r.LSN, Epoch: uint64(r.Epoch), Result: r.Result})
}

// Append implements transport.Handler. A duplicate is answered with the
// original op's LSN and epoch and no plugin result.
func (h *handler) Append(req *transport.AppendRequest, done transport.AppendCompletion) {
	p, err := h.partition(req.Partition)
	if err != nil {
		done.Fail(err)
		return
	}
	a := appendDones.Get().(*appendDone)
	a.done = done
	op := AppendOp{Payload: req.Payload, CRC: req.CRC, Producer: ProducerID(req.Producer), Seq: req.Sequence}
	if err := p.AppendTo(op, a); err != nil {
		a.done = transport.AppendCompletion{}
		appendDones.Put(a)
		done.Fail(wireError(err))
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

func (o *batchOpDone) Complete(r AppendResult, err error) {
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
		b.done.Fail(wireError(b.err))
		return
	}
	b.done.Complete(b.results)
}

// AppendBatch implements transport.Handler: the ops are queued together
// and answered together; if any fails the batch fails (ops that did
// commit stay committed, and a retry with the same sequences finds them).
func (h *handler) AppendBatch(req *transport.AppendBatchRequest, done transport.BatchCompletion) {
	p, err := h.partition(req.Partition)
	if err != nil {
		done.Fail(err)
		return
	}
	n := req.Len()
	b := &batchDone{done: done, results: make([]transport.AppendResult, n), left: n}
	ops := make([]AppendOp, 0, n)
	cs := make([]Completion, 0, n)
	it := req.Ops()
	var op transport.BatchOp
	for i := 0; it.Next(&op); i++ {
		seq := uint64(0)
		if req.Producer != 0 {
			seq = req.Sequence + uint64(i)
		}
		ops = append(ops, AppendOp{Payload: op.Payload, CRC: op.CRC, Producer: ProducerID(req.Producer), Seq: seq})
		cs = append(cs, &batchOpDone{b: b, i: i})
	}
	if _, err := p.batcher.enqueue(context.Background(), ops, cs); err != nil {
		done.Fail(wireError(err))
	}
}

// Read implements transport.Handler from this replica's log.
func (h *handler) Read(ctx context.Context, req *transport.ReadRequest, res *transport.ReadResult) error {
	p, err := h.partition(req.Partition)
	if err != nil {
		return err
	}
	s, err := p.state()
	if err != nil {
		return wireError(err)
	}
	applied := LSN(s.applied.Load())
	res.Committed = applied
	if req.From > applied {
		return nil
	}
	it, err := s.wal.NewIterator(req.From)
	if err != nil {
		return logError(s.wal, err)
	}
	defer it.Close()
	var rec wal.Record
	for ctx.Err() == nil {
		err := it.Next(&rec)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return logError(s.wal, err)
		}
		if !res.Add(&rec) {
			return nil
		}
	}
	return ctx.Err()
}

// Subscribe implements transport.Handler: the retained records from the
// marker on, then each one as it commits.
func (h *handler) Subscribe(ctx context.Context, req *transport.SubscribeRequest, st *transport.Stream) error {
	p, err := h.partition(req.Partition)
	if err != nil {
		return err
	}
	s, err := p.state()
	if err != nil {
		return wireError(err)
	}
	from := req.Marker + 1
	if last := s.wal.Last(); from > last+1 {
		// The subscriber is ahead of this replica: wait for the log to
		// reach its marker.
		if err := s.wal.Wait(ctx, req.Marker); err != nil {
			return logError(s.wal, err)
		}
	}
	it, err := s.wal.NewIterator(from)
	if err != nil {
		return logError(s.wal, err)
	}
	defer it.Close()
	var rec wal.Record
	for {
		err := it.Next(&rec)
		if err == io.EOF {
			// Everything in the log is committed; the applied LSN may
			// trail the last record sent by an Update still running.
			st.SetCommitted(max(LSN(s.applied.Load()), it.Position()-1))
			if err := st.Flush(); err != nil {
				return err
			}
			if err := s.wal.Wait(ctx, it.Position()); err != nil {
				return logError(s.wal, err)
			}
			continue
		}
		if err != nil {
			return logError(s.wal, err)
		}
		if err := st.Send(&rec); err != nil {
			return err
		}
	}
}

// Query implements transport.Handler.
func (h *handler) Query(ctx context.Context, req *transport.QueryRequest, res *transport.QueryResult) error {
	p, err := h.partition(req.Partition)
	if err != nil {
		return err
	}
	opts := QueryOptions{Consistency: Linearizable}
	switch req.Consistency {
	case transport.LeaderLocal:
		opts.Consistency = LeaderLocal
	case transport.Bounded:
		opts = QueryOptions{Consistency: AnyReplica, MaxStaleness: req.MaxStaleness}
	}
	r, err := p.Query(ctx, req.Request, opts)
	if err != nil {
		return wireError(err)
	}
	res.Result = append(res.Result, r.Result...)
	res.LSN = r.LSN
	res.Committed = max(r.LSN, p.committed())
	return nil
}

// committed is the last LSN this replica knows to be committed.
func (p *partition) committed() LSN {
	s := p.sm.Load()
	if s == nil {
		return 0
	}
	c := LSN(s.applied.Load())
	if !p.isLeader() {
		s.progressMu.Lock()
		if r, ok := s.progress[ReplicaID(p.leader.Load())]; ok && r.applied > c {
			c = r.applied
		}
		s.progressMu.Unlock()
	}
	return c
}

// Status implements transport.Handler.
func (h *handler) Status(ctx context.Context, req *transport.StatusRequest) (*transport.NodeStatus, error) {
	ns := &transport.NodeStatus{NodeID: h.nodeID}
	ids := h.r.Partitions()
	if req.OnePartition {
		ids = []PartitionID{PartitionID(req.Partition)}
	}
	for _, id := range ids {
		p, err := h.r.Partition(id)
		if err != nil {
			if req.OnePartition {
				return nil, wireError(err)
			}
			continue
		}
		st, err := p.Status(ctx)
		if err != nil {
			if req.OnePartition {
				return nil, wireError(err)
			}
			ns.Partitions = append(ns.Partitions, transport.PartitionStatus{Partition: transport.PartitionID(id), Role: transport.RoleUnknown})
			continue
		}
		ns.Partitions = append(ns.Partitions, wireStatus(st))
	}
	return ns, nil
}

func wireStatus(st PartitionStatus) transport.PartitionStatus {
	ws := transport.PartitionStatus{
		Partition:  transport.PartitionID(st.Partition),
		Role:       wireRole(st.Role),
		Leader:     transport.ReplicaID(st.Leader),
		LeaderAddr: st.LeaderAddr,
		Epoch:      uint64(st.Epoch),
		Committed:  st.CommittedLSN,
		Applied:    st.AppliedLSN,
	}
	for _, r := range st.Replicas {
		m := transport.Voter
		switch r.Kind {
		case NonVoting:
			m = transport.NonVoting
		case Witness:
			m = transport.Witness
		}
		ws.Replicas = append(ws.Replicas, transport.ReplicaStatus{
			Replica:    transport.ReplicaID(r.Replica),
			Addr:       r.ClientAddress,
			Membership: m,
			Match:      r.AppliedLSN,
			Lag:        r.Lag,
		})
	}
	return ws
}

func wireRole(r Role) transport.Role {
	switch r {
	case RoleLeader:
		return transport.RoleLeader
	case RoleFollower:
		return transport.RoleFollower
	case RoleNonVoting:
		return transport.RoleNonVoting
	case RoleWitness:
		return transport.RoleWitness
	}
	return transport.RoleUnknown
}

// logError maps an error reading the log to the wire's.
func logError(l *wal.Log, err error) error {
	switch {
	case errors.Is(err, wal.ErrTruncated):
		return &transport.TruncatedError{First: l.First()}
	case errors.Is(err, wal.ErrClosed):
		return fmt.Errorf("%w: %v", transport.ErrUnavailable, err)
	}
	return err
}

// wireError maps a replicator error to one the transport sends with the
// matching code; the message keeps the details.
func wireError(err error) error {
	var nl *NotLeaderError
	var code error
	switch {
	case errors.As(err, &nl):
		return &transport.NotLeaderError{LeaderAddr: nl.LeaderAddr}
	case errors.Is(err, ErrBusy):
		code = transport.ErrBusy
	case errors.Is(err, ErrPartitionNotFound):
		code = transport.ErrPartitionNotFound
	case errors.Is(err, ErrTruncated):
		code = transport.ErrTruncated
	case errors.Is(err, ErrChecksum):
		code = transport.ErrChecksum
	case errors.Is(err, ErrTooLarge):
		code = transport.ErrTooLarge
	case errors.Is(err, ErrStaleSequence):
		code = transport.ErrStaleSequence
	case errors.Is(err, ErrAborted):
		// The outcome is unknown: a timeout, retryable with the same
		// producer sequence.
		code = transport.ErrTimeout
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrTooStale):
		code = transport.ErrUnavailable
	case errors.Is(err, ErrClosed):
		code = transport.ErrShuttingDown
	case errors.Is(err, ErrPluginNotFound), errors.Is(err, ErrPartitionExists):
		code = transport.ErrInvalidArgument
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		return err
	}
	return fmt.Errorf("%w: %v", code, err)
}
