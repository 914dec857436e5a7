// Package queue is the format of the queue plugin's ops, results and
// queries: what a client appends to a queue partition, what each op's
// result holds, and the read-only requests and their answers. The plugin
// is in replicator/queue, the typed client in transport/queueclient; this
// package is the leaf both share (it imports only the standard library
// and the root package).
//
// The queue is a replicated FIFO of items with leases. Enqueue adds an
// item at the tail; Dequeue leases the first ready item for a duration
// and returns it with its delivery number (how many times it has been
// handed out, 1 the first time); Ack, with that delivery number, removes
// it; Extend, with it, moves its deadline. An item whose lease expires
// goes back to the ready list at its place (items come out in enqueue
// order), or, after MaxDeliveries deliveries, to the dead-letter list.
// Time is the proposing leader's (replicator.Op.Time), kept monotonic by
// the plugin: a lease expires at the same op on every replica.
//
// Every format here is part of the replicated log and the wire: never
// change one; add a kind or a version instead. Integers are little-endian;
// times are Unix nanoseconds (int64), durations nanoseconds (int64).
//
// # Ops
//
// An op (the payload of an append to a queue partition):
//
//	offset  size  field
//	0       1     version = 1
//	1       1     kind: 1 enqueue, 2 dequeue, 3 ack, 4 extend
//	2       ...   by kind:
//	              enqueue: the item's payload, the rest of the op (may be empty)
//	              dequeue: 8 lease duration (> 0)
//	              ack:     8 item id, 4 delivery number
//	              extend:  8 item id, 4 delivery number, 8 lease duration (> 0)
//
// # Results
//
// The result of an op (AppendResult.Result):
//
//	offset  size  field
//	0       1     version = 1
//	1       1     kind of the op (0 if the op could not be decoded)
//	2       1     status: 0 ok, 1 empty (dequeue: no item ready),
//	              2 lost (ack, extend: the item is not leased under that
//	              delivery number: acknowledged, expired or redelivered),
//	              3 invalid (the op was malformed or out of range)
//	3       1     zero
//	4       ...   for status ok, by kind:
//	              enqueue: 8 item id
//	              dequeue: 8 item id, 4 delivery number, 8 lease deadline,
//	                       the item's payload (the rest)
//	              ack:     nothing
//	              extend:  8 new lease deadline
//
// # Queries
//
// A query (Partition.Query's request):
//
//	offset  size  field
//	0       1     version = 1
//	1       1     kind: 1 length, 2 peek
//	2       1     list (peek): 0 ready, 1 leased, 2 dead-letter
//	3       1     zero
//	4       4     limit (peek): at most this many items
//
// The answer to a length query:
//
//	0       1     version = 1
//	1       1     kind = 1
//	2       6     zero
//	8       8     ready items
//	16      8     leased items
//	24      8     dead-lettered items
//	32      8     the queue's clock: the latest op time it has seen
//
// The answer to a peek, the first items of a list in its order (ready:
// enqueue order; leased: by deadline, then id; dead-letter: by id):
//
//	0       1     version = 1
//	1       1     kind = 2
//	2       2     zero
//	4       4     item count
//	8       ...   items, back to back: 8 id, 4 delivery number (deliveries
//	              so far), 8 lease deadline (0 unless leased), 4 payload
//	              length N, N payload
//
// A query sees the state as of the last op applied: a lease that has
// expired since is still counted as leased until the next op.
package queue

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Version is the version of every format in this package.
const Version = 1

// Kind is an op's kind.
type Kind byte

// Op kinds.
const (
	KindEnqueue Kind = 1
	KindDequeue Kind = 2
	KindAck     Kind = 3
	KindExtend  Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindEnqueue:
		return "enqueue"
	case KindDequeue:
		return "dequeue"
	case KindAck:
		return "ack"
	case KindExtend:
		return "extend"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Status is an op's outcome.
type Status byte

// Op statuses.
const (
	// StatusOK: the op took effect.
	StatusOK Status = 0
	// StatusEmpty: a dequeue found no ready item.
	StatusEmpty Status = 1
	// StatusLost: an ack or extend named an item that is not leased under
	// that delivery number (acknowledged, expired, redelivered or never
	// delivered).
	StatusLost Status = 2
	// StatusInvalid: the op was malformed or out of range; it changed
	// nothing.
	StatusInvalid Status = 3
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusEmpty:
		return "empty"
	case StatusLost:
		return "lost"
	case StatusInvalid:
		return "invalid"
	}
	return fmt.Sprintf("status(%d)", byte(s))
}

// MaxLease bounds a lease duration.
const MaxLease = 7 * 24 * time.Hour

// ErrMalformed reports bytes that are not a valid op, result, query or
// answer. It wraps lockstitch.ErrInvalidArgument.
var ErrMalformed = fmt.Errorf("%w: malformed queue message", lockstitch.ErrInvalidArgument)

// Op is a decoded op. Which fields count depends on Kind.
type Op struct {
	Kind Kind
	// ID and Delivery name a delivery of an item (ack, extend).
	ID       uint64
	Delivery uint32
	// Lease is the lease duration (dequeue, extend), in (0, MaxLease].
	Lease time.Duration
	// Payload is the item (enqueue); a decoded one aliases the input.
	Payload []byte
}

const (
	opHeader     = 2
	resultHeader = 4
)

// AppendEnqueue appends an enqueue op for payload to dst.
func AppendEnqueue(dst, payload []byte) []byte {
	dst = append(dst, Version, byte(KindEnqueue))
	return append(dst, payload...)
}

// AppendDequeue appends a dequeue op with a lease to dst.
func AppendDequeue(dst []byte, lease time.Duration) []byte {
	dst = append(dst, Version, byte(KindDequeue))
	return binary.LittleEndian.AppendUint64(dst, uint64(lease))
}

// AppendAck appends an ack of delivery of item id to dst.
func AppendAck(dst []byte, id uint64, delivery uint32) []byte {
	dst = append(dst, Version, byte(KindAck))
	dst = binary.LittleEndian.AppendUint64(dst, id)
	return binary.LittleEndian.AppendUint32(dst, delivery)
}

// AppendExtend appends an extend op to dst: delivery of item id gets a
// new deadline, lease after the op's time.
func AppendExtend(dst []byte, id uint64, delivery uint32, lease time.Duration) []byte {
	dst = append(dst, Version, byte(KindExtend))
	dst = binary.LittleEndian.AppendUint64(dst, id)
	dst = binary.LittleEndian.AppendUint32(dst, delivery)
	return binary.LittleEndian.AppendUint64(dst, uint64(lease))
}

// DecodeOp decodes b into op. op.Payload aliases b. A decoded op's fields
// are in range (a lease in (0, MaxLease]); anything else is ErrMalformed.
// On error, op.Kind is the kind byte if b had one (so a result can name
// it), else 0.
func DecodeOp(b []byte, op *Op) error {
	*op = Op{}
	if len(b) < opHeader || b[0] != Version {
		return fmt.Errorf("%w: op header", ErrMalformed)
	}
	op.Kind = Kind(b[1])
	body := b[opHeader:]
	want := 0
	switch op.Kind {
	case KindEnqueue:
		op.Payload = body
		return nil
	case KindDequeue:
		want = 8
	case KindAck:
		want = 12
	case KindExtend:
		want = 20
	default:
		return fmt.Errorf("%w: op kind %d", ErrMalformed, b[1])
	}
	if len(body) != want {
		return fmt.Errorf("%w: %s op of %d bytes, want %d", ErrMalformed, op.Kind, len(body), want)
	}
	if op.Kind == KindDequeue {
		op.Lease = time.Duration(binary.LittleEndian.Uint64(body))
	} else {
		op.ID = binary.LittleEndian.Uint64(body)
		op.Delivery = binary.LittleEndian.Uint32(body[8:])
		if op.Kind == KindExtend {
			op.Lease = time.Duration(binary.LittleEndian.Uint64(body[12:]))
		}
	}
	if op.Kind != KindAck && (op.Lease <= 0 || op.Lease > MaxLease) {
		return fmt.Errorf("%w: lease %v out of (0, %v]", ErrMalformed, op.Lease, MaxLease)
	}
	return nil
}

// Result is a decoded op result. Which fields count depends on Kind and
// Status (see the package doc).
type Result struct {
	Kind   Kind
	Status Status
	// ID is the item enqueued or dequeued.
	ID uint64
	// Delivery is a dequeued item's delivery number (1 the first time).
	Delivery uint32
	// Deadline is when the lease of a dequeue or extend expires, in the
	// queue's clock (the leaders' times).
	Deadline time.Time
	// Payload is the dequeued item; a decoded one aliases the input.
	Payload []byte
}

// AppendResult encodes r, as the plugin returns it, to dst.
func AppendResult(dst []byte, r *Result) []byte {
	dst = append(dst, Version, byte(r.Kind), byte(r.Status), 0)
	if r.Status != StatusOK {
		return dst
	}
	switch r.Kind {
	case KindEnqueue:
		dst = binary.LittleEndian.AppendUint64(dst, r.ID)
	case KindDequeue:
		dst = binary.LittleEndian.AppendUint64(dst, r.ID)
		dst = binary.LittleEndian.AppendUint32(dst, r.Delivery)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(UnixNanos(r.Deadline)))
		dst = append(dst, r.Payload...)
	case KindExtend:
		dst = binary.LittleEndian.AppendUint64(dst, uint64(UnixNanos(r.Deadline)))
	}
	return dst
}

// DecodeResult decodes b into r; r.Payload aliases b.
func DecodeResult(b []byte, r *Result) error {
	*r = Result{}
	if len(b) < resultHeader || b[0] != Version || b[3] != 0 {
		return fmt.Errorf("%w: result header", ErrMalformed)
	}
	r.Kind, r.Status = Kind(b[1]), Status(b[2])
	body := b[resultHeader:]
	if r.Status > StatusInvalid {
		return fmt.Errorf("%w: result status %d", ErrMalformed, b[2])
	}
	if r.Kind < KindEnqueue || r.Kind > KindExtend {
		// Only an op that could not be decoded has no kind.
		if r.Status != StatusInvalid || len(body) != 0 {
			return fmt.Errorf("%w: result kind %d", ErrMalformed, b[1])
		}
		return nil
	}
	if r.Status != StatusOK {
		if len(body) != 0 {
			return fmt.Errorf("%w: %s result with %d extra bytes", ErrMalformed, r.Status, len(body))
		}
		return nil
	}
	short := func(n int) error {
		if len(body) < n || (r.Kind != KindDequeue && len(body) != n) {
			return fmt.Errorf("%w: %s result of %d bytes, want %d", ErrMalformed, r.Kind, len(body), n)
		}
		return nil
	}
	switch r.Kind {
	case KindEnqueue:
		if err := short(8); err != nil {
			return err
		}
		r.ID = binary.LittleEndian.Uint64(body)
	case KindDequeue:
		if err := short(20); err != nil {
			return err
		}
		r.ID = binary.LittleEndian.Uint64(body)
		r.Delivery = binary.LittleEndian.Uint32(body[8:])
		r.Deadline = TimeOf(int64(binary.LittleEndian.Uint64(body[12:])))
		r.Payload = body[20:]
	case KindAck:
		if err := short(0); err != nil {
			return err
		}
	case KindExtend:
		if err := short(8); err != nil {
			return err
		}
		r.Deadline = TimeOf(int64(binary.LittleEndian.Uint64(body)))
	}
	return nil
}

// QueryKind is a query's kind.
type QueryKind byte

// Query kinds.
const (
	QueryLen  QueryKind = 1
	QueryPeek QueryKind = 2
)

// List names one of the queue's lists of items.
type List byte

// Lists.
const (
	ListReady  List = 0
	ListLeased List = 1
	ListDead   List = 2
)

func (l List) String() string {
	switch l {
	case ListReady:
		return "ready"
	case ListLeased:
		return "leased"
	case ListDead:
		return "dead"
	}
	return fmt.Sprintf("list(%d)", byte(l))
}

// ParseList parses a list's name (ready, leased, dead).
func ParseList(s string) (List, error) {
	for _, l := range []List{ListReady, ListLeased, ListDead} {
		if s == l.String() {
			return l, nil
		}
	}
	return 0, fmt.Errorf("%w: list %q is not ready, leased or dead", lockstitch.ErrInvalidArgument, s)
}

// MaxPeek bounds a peek's limit.
const MaxPeek = 1000

// Query is a decoded query.
type Query struct {
	Kind QueryKind
	// List and Limit are a peek's.
	List  List
	Limit uint32
}

const querySize = 8

// AppendLenQuery appends a length query to dst.
func AppendLenQuery(dst []byte) []byte {
	return append(dst, Version, byte(QueryLen), 0, 0, 0, 0, 0, 0)
}

// AppendPeekQuery appends a query for the first limit items of list.
func AppendPeekQuery(dst []byte, list List, limit uint32) []byte {
	dst = append(dst, Version, byte(QueryPeek), byte(list), 0)
	return binary.LittleEndian.AppendUint32(dst, limit)
}

// DecodeQuery decodes b into q; a peek's limit is in [1, MaxPeek].
func DecodeQuery(b []byte, q *Query) error {
	*q = Query{}
	if len(b) != querySize || b[0] != Version || b[3] != 0 {
		return fmt.Errorf("%w: query header", ErrMalformed)
	}
	q.Kind, q.List, q.Limit = QueryKind(b[1]), List(b[2]), binary.LittleEndian.Uint32(b[4:])
	switch q.Kind {
	case QueryLen:
		if q.List != 0 || q.Limit != 0 {
			return fmt.Errorf("%w: length query with a list or limit", ErrMalformed)
		}
	case QueryPeek:
		if q.List > ListDead || q.Limit < 1 || q.Limit > MaxPeek {
			return fmt.Errorf("%w: peek of list %d, limit %d (1 to %d)", ErrMalformed, q.List, q.Limit, MaxPeek)
		}
	default:
		return fmt.Errorf("%w: query kind %d", ErrMalformed, b[1])
	}
	return nil
}

// Lengths is the answer to a length query.
type Lengths struct {
	Ready, Leased, Dead uint64
	// Clock is the latest op time the queue has seen (zero: none).
	Clock time.Time
}

const lengthsSize = 40

// AppendLengths encodes l to dst.
func AppendLengths(dst []byte, l *Lengths) []byte {
	dst = append(dst, Version, byte(QueryLen), 0, 0, 0, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, l.Ready)
	dst = binary.LittleEndian.AppendUint64(dst, l.Leased)
	dst = binary.LittleEndian.AppendUint64(dst, l.Dead)
	return binary.LittleEndian.AppendUint64(dst, uint64(UnixNanos(l.Clock)))
}

// DecodeLengths decodes the answer to a length query.
func DecodeLengths(b []byte, l *Lengths) error {
	if len(b) != lengthsSize || b[0] != Version || b[1] != byte(QueryLen) || binary.LittleEndian.Uint64(b)>>16 != 0 {
		return fmt.Errorf("%w: length answer", ErrMalformed)
	}
	*l = Lengths{
		Ready:  binary.LittleEndian.Uint64(b[8:]),
		Leased: binary.LittleEndian.Uint64(b[16:]),
		Dead:   binary.LittleEndian.Uint64(b[24:]),
		Clock:  TimeOf(int64(binary.LittleEndian.Uint64(b[32:]))),
	}
	return nil
}

// Item is an item as a peek shows it.
type Item struct {
	ID uint64
	// Deliveries is how many times it has been dequeued.
	Deliveries uint32
	// Deadline is when its lease expires, zero unless it is leased.
	Deadline time.Time
	// Payload aliases the answer it was decoded from.
	Payload []byte
}

const itemHeader = 24

// AppendPeekHeader starts the answer to a peek in dst; append the items
// with AppendItem.
func AppendPeekHeader(dst []byte) []byte {
	return append(dst, Version, byte(QueryPeek), 0, 0, 0, 0, 0, 0)
}

// AppendItem appends it to the peek answer that begins at dst[0] and
// bumps its count.
func AppendItem(dst []byte, it *Item) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, it.ID)
	dst = binary.LittleEndian.AppendUint32(dst, it.Deliveries)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(UnixNanos(it.Deadline)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(it.Payload)))
	dst = append(dst, it.Payload...)
	binary.LittleEndian.PutUint32(dst[4:], binary.LittleEndian.Uint32(dst[4:])+1)
	return dst
}

// DecodePeek decodes the answer to a peek; the items' payloads alias b.
func DecodePeek(b []byte) ([]Item, error) {
	if len(b) < 8 || b[0] != Version || b[1] != byte(QueryPeek) || b[2] != 0 || b[3] != 0 {
		return nil, fmt.Errorf("%w: peek answer header", ErrMalformed)
	}
	n := binary.LittleEndian.Uint32(b[4:])
	b = b[8:]
	if uint64(n)*itemHeader > uint64(len(b)) {
		return nil, fmt.Errorf("%w: peek answer of %d items in %d bytes", ErrMalformed, n, len(b))
	}
	items := make([]Item, n)
	for i := range items {
		if len(b) < itemHeader {
			return nil, fmt.Errorf("%w: peek item %d cut short", ErrMalformed, i)
		}
		size := binary.LittleEndian.Uint32(b[20:])
		if uint64(size) > uint64(len(b)-itemHeader) {
			return nil, fmt.Errorf("%w: peek item %d of %d bytes exceeds the answer", ErrMalformed, i, size)
		}
		items[i] = Item{
			ID:         binary.LittleEndian.Uint64(b),
			Deliveries: binary.LittleEndian.Uint32(b[8:]),
			Deadline:   TimeOf(int64(binary.LittleEndian.Uint64(b[12:]))),
			Payload:    b[itemHeader : itemHeader+size : itemHeader+size],
		}
		b = b[itemHeader+size:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last peek item", ErrMalformed, len(b))
	}
	return items, nil
}

// UnixNanos encodes t as these formats carry times: Unix nanoseconds, 0
// for the zero time.
func UnixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// TimeOf decodes UnixNanos: 0 is the zero time; others are in UTC.
func TimeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
