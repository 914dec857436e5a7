// Package kv holds the formats of the built-in kv plugin's requests and
// results: the bytes a client appends (writes) or sends as a query
// (reads), and the bytes the plugin answers with. It imports nothing but
// the standard library and package lockstitch, so that a client program
// can speak kv without linking the plugin (pebble) or the replicator
// (dragonboat). Part of the replicated log format: never change an
// existing layout; add an op, a status or a version instead.
//
// Integers are little-endian; "uvarint" is encoding/binary's unsigned
// varint. Keys are 1 to MaxKeyBytes bytes; values may be empty.
//
// # Requests
//
// Every request is a version byte and one op:
//
//	offset  size  field
//	0       1     version = 1
//	1       1     op: 1 put, 2 get, 3 delete, 4 cas, 5 scan, 6 batch
//	2       ...   the op's body
//
// The bodies:
//
//	put     uvarint key length K, K key, uvarint value length V, V value
//	get     uvarint key length K, K key
//	delete  uvarint key length K, K key
//	cas     8 expected version (0: the key must be absent),
//	        1 mode (0: set the value, 1: delete the key),
//	        uvarint key length K, K key,
//	        uvarint value length V, V value (V is 0 for a delete)
//	scan    uvarint limit (0: DefaultScanLimit; at most MaxScanLimit),
//	        uvarint prefix length P, P prefix,
//	        uvarint start length S, S start
//	        (the keys that begin with prefix and are >= start, in order)
//	batch   uvarint op count N (1 to MaxBatchOps), then N ops, each an
//	        op byte (put, delete or cas) and its body as above
//
// Put, delete, cas and batch are writes: they are appended to the
// partition's stream and applied by every replica. Get and scan are reads:
// they are sent as queries. A batch is atomic: either every op in it takes
// effect, or (a cas in it does not match) none does.
//
// # Results
//
// Every result begins with a 20-byte header:
//
//	offset  size  field
//	0       1     version = 1
//	1       1     op: the op of the request it answers
//	2       1     status: 0 ok, 1 not found, 2 version mismatch,
//	              3 bad request, 4 aborted (a batch op not applied)
//	3       1     flags: bit 0 (scan) more keys follow the last one
//	4       8     LSN: a write's own LSN; for a read, the last LSN
//	              applied in the state that answered
//	12      8     version (see below)
//	20      ...   the op's body
//
// A key's version is the LSN of the write that last changed it. The
// header's version is, for
//
//	put, cas ok      the key's new version (the write's LSN)
//	delete ok        the write's LSN (the key no longer exists)
//	cas mismatch     the key's current version (0: absent)
//	get ok           the key's version
//	batch ok         the batch's LSN
//	anything else    0
//
// The bodies:
//
//	get ok        the value (the rest of the result)
//	scan ok       uvarint item count N, then N items, each
//	              uvarint key length K, K key, 8 version,
//	              uvarint value length V, V value
//	batch         uvarint op count N, then per op: 1 status, 8 version
//	              (as a lone op's header would say; an op after a
//	              mismatch, or before it, is aborted, with version 0)
//	bad request   a message (UTF-8)
//	otherwise     empty
//
// A scan returns at most its limit of items, and the plugin may stop it
// sooner (after about 1 MiB); flag bit 0 then says that more keys follow:
// scan again from the last key plus a zero byte.
//
// A write the plugin rejects (a cas mismatch, a malformed request) is
// still committed: it changes nothing, and its result says why.
package kv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/lockstitch/lockstitch"
)

// Version is the version of the request and result formats.
const Version = 1

// Limits.
const (
	// MaxKeyBytes is the largest key.
	MaxKeyBytes = 4096
	// DefaultScanLimit is the item count of a scan that sets no limit.
	DefaultScanLimit = 1000
	// MaxScanLimit is the largest scan limit; a larger one is lowered.
	MaxScanLimit = 10000
	// MaxBatchOps is the most ops in one batch.
	MaxBatchOps = 4096
	// ResultHeaderBytes is the size of a result's fixed header.
	ResultHeaderBytes = 20
)

// Op is a request's operation.
type Op uint8

// The ops.
const (
	OpPut    Op = 1
	OpGet    Op = 2
	OpDelete Op = 3
	OpCAS    Op = 4
	OpScan   Op = 5
	OpBatch  Op = 6
)

func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpGet:
		return "get"
	case OpDelete:
		return "delete"
	case OpCAS:
		return "cas"
	case OpScan:
		return "scan"
	case OpBatch:
		return "batch"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// IsWrite reports whether o is appended (true) or queried (false).
func (o Op) IsWrite() bool { return o == OpPut || o == OpDelete || o == OpCAS || o == OpBatch }

// Status is a result's outcome.
type Status uint8

// The statuses.
const (
	StatusOK         Status = 0
	StatusNotFound   Status = 1
	StatusMismatch   Status = 2
	StatusBadRequest Status = 3
	StatusAborted    Status = 4
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNotFound:
		return "not found"
	case StatusMismatch:
		return "version mismatch"
	case StatusBadRequest:
		return "bad request"
	case StatusAborted:
		return "aborted"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ErrMalformed is returned, wrapped, for bytes that are not a valid
// request or result.
var ErrMalformed = errors.New("kv: malformed")

// Request is a decoded request. Its slices alias the decoded bytes.
type Request struct {
	Op Op
	// Key is the key of put, get, delete and cas.
	Key []byte
	// Value is the value of put and cas.
	Value []byte
	// Version is cas's expected version (0: absent).
	Version uint64
	// Delete is set for a cas that deletes the key.
	Delete bool
	// Prefix, Start and Limit are a scan's (Limit already defaulted and
	// capped).
	Prefix, Start []byte
	Limit         int
	// Count is a batch's op count, and Ops its ops (read them with
	// NextBatchOp).
	Count int
	Ops   []byte
}

// BatchOp is one op of a batch, for AppendBatch.
type BatchOp struct {
	Op      Op // OpPut, OpDelete or OpCAS
	Key     []byte
	Value   []byte
	Version uint64 // OpCAS: the expected version
	Delete  bool   // OpCAS: delete instead of set
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendPut appends a put request.
func AppendPut(dst, key, value []byte) []byte {
	dst = append(dst, Version, byte(OpPut))
	return appendBytes(appendBytes(dst, key), value)
}

// AppendGet appends a get request.
func AppendGet(dst, key []byte) []byte {
	return appendBytes(append(dst, Version, byte(OpGet)), key)
}

// AppendDelete appends a delete request.
func AppendDelete(dst, key []byte) []byte {
	return appendBytes(append(dst, Version, byte(OpDelete)), key)
}

// AppendCAS appends a compare-and-set request: set key to value if its
// version is version (0: if it is absent).
func AppendCAS(dst, key, value []byte, version uint64) []byte {
	return appendCASBody(append(dst, Version, byte(OpCAS)), key, value, version, false)
}

// AppendCASDelete appends a compare-and-delete request: delete key if its
// version is version.
func AppendCASDelete(dst, key []byte, version uint64) []byte {
	return appendCASBody(append(dst, Version, byte(OpCAS)), key, nil, version, true)
}

func appendCASBody(dst, key, value []byte, version uint64, del bool) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, version)
	mode := byte(0)
	if del {
		mode, value = 1, nil
	}
	dst = append(dst, mode)
	return appendBytes(appendBytes(dst, key), value)
}

// AppendScan appends a scan request: up to limit keys (0: the default)
// that begin with prefix and are >= start, in key order.
func AppendScan(dst, prefix, start []byte, limit int) []byte {
	dst = append(dst, Version, byte(OpScan))
	dst = binary.AppendUvarint(dst, uint64(max(limit, 0)))
	return appendBytes(appendBytes(dst, prefix), start)
}

// AppendBatch appends a batch request of ops.
func AppendBatch(dst []byte, ops []BatchOp) []byte {
	dst = append(dst, Version, byte(OpBatch))
	dst = binary.AppendUvarint(dst, uint64(len(ops)))
	for _, o := range ops {
		dst = append(dst, byte(o.Op))
		switch o.Op {
		case OpCAS:
			dst = appendCASBody(dst, o.Key, o.Value, o.Version, o.Delete)
		case OpPut:
			dst = appendBytes(appendBytes(dst, o.Key), o.Value)
		default:
			dst = appendBytes(dst, o.Key)
		}
	}
	return dst
}

// reader decodes without allocating; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("%s: bad uvarint", what) // a length, for bytes
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string, maxLen int) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n > uint64(maxLen) || n > uint64(len(r.b)) {
		r.fail("%s length %d (%d bytes left, at most %d)", what, n, len(r.b), maxLen)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) fixed(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail("%s: %d bytes, need %d", what, len(r.b), n)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) key() []byte {
	k := r.bytes("key", MaxKeyBytes)
	if r.err == nil && len(k) == 0 {
		r.fail("empty key")
	}
	return k
}

// DecodeRequest decodes b into req. req's slices alias b.
func DecodeRequest(b []byte, req *Request) error {
	*req = Request{}
	if len(b) < 2 {
		return fmt.Errorf("%w: request of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return fmt.Errorf("%w: request version %d, want %d", ErrMalformed, b[0], Version)
	}
	req.Op = Op(b[1])
	r := reader{b: b[2:]}
	switch req.Op {
	case OpPut, OpDelete, OpCAS:
		decodeWrite(&r, req)
	case OpGet:
		req.Key = r.key()
	case OpScan:
		limit := r.uvarint("limit")
		req.Prefix = r.bytes("prefix", MaxKeyBytes)
		req.Start = r.bytes("start", MaxKeyBytes)
		switch {
		case limit == 0:
			req.Limit = DefaultScanLimit
		case limit > MaxScanLimit:
			req.Limit = MaxScanLimit
		default:
			req.Limit = int(limit)
		}
	case OpBatch:
		n := r.uvarint("op count")
		if r.err == nil && (n == 0 || n > MaxBatchOps) {
			r.fail("batch of %d ops (1 to %d)", n, MaxBatchOps)
		}
		req.Count, req.Ops = int(n), r.b
		// Check every op now, so that applying a batch never meets a
		// malformed op halfway.
		var op Request
		for i := 0; i < req.Count && r.err == nil; i++ {
			r.b, r.err = NextBatchOp(r.b, &op)
		}
		if r.err == nil {
			req.Ops = req.Ops[:len(req.Ops)-len(r.b)]
		}
	default:
		return fmt.Errorf("%w: unknown op %d", ErrMalformed, b[1])
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes after %s", len(r.b), req.Op)
	}
	if r.err != nil {
		*req = Request{}
	}
	return r.err
}

func decodeWrite(r *reader, req *Request) {
	switch req.Op {
	case OpCAS:
		if v := r.fixed("cas version", 8); v != nil {
			req.Version = binary.LittleEndian.Uint64(v)
		}
		switch mode := r.fixed("cas mode", 1); {
		case r.err != nil:
		case mode[0] > 1:
			r.fail("cas mode %d", mode[0])
		default:
			req.Delete = mode[0] == 1
		}
		req.Key = r.key()
		req.Value = r.bytes("value", len(r.b))
		if req.Delete && len(req.Value) != 0 {
			r.fail("cas delete with a value")
		}
	case OpPut:
		req.Key = r.key()
		req.Value = r.bytes("value", len(r.b))
	case OpDelete:
		req.Key = r.key()
	}
}

// NextBatchOp decodes the first op of b, a batch's Ops, into op and
// returns the rest of b.
func NextBatchOp(b []byte, op *Request) ([]byte, error) {
	*op = Request{}
	if len(b) == 0 {
		return b, fmt.Errorf("%w: batch ends early", ErrMalformed)
	}
	op.Op = Op(b[0])
	if op.Op != OpPut && op.Op != OpDelete && op.Op != OpCAS {
		return b, fmt.Errorf("%w: %s in a batch", ErrMalformed, op.Op)
	}
	r := reader{b: b[1:]}
	decodeWrite(&r, op)
	if r.err != nil {
		*op = Request{}
		return b, r.err
	}
	return r.b, nil
}

// Result is a decoded result. Its slices alias the decoded bytes.
type Result struct {
	Op      Op
	Status  Status
	More    bool // scan: more keys follow the last item
	LSN     lockstitch.LSN
	Version uint64
	// Value is a get's value, or a bad request's message.
	Value []byte
	// Count and Items are a scan's items (read them with NextItem) or a
	// batch's op results (read them with NextOpResult).
	Count int
	Items []byte
}

// Item is one key of a scan.
type Item struct {
	Key     []byte
	Version uint64
	Value   []byte
}

// OpResult is the result of one op of a batch.
type OpResult struct {
	Status  Status
	Version uint64
}

const flagMore = 1

// AppendResultHeader appends a result's header; append the body after it.
func AppendResultHeader(dst []byte, op Op, status Status, more bool, lsn lockstitch.LSN, version uint64) []byte {
	flags := byte(0)
	if more {
		flags = flagMore
	}
	dst = append(dst, Version, byte(op), byte(status), flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(lsn))
	return binary.LittleEndian.AppendUint64(dst, version)
}

// AppendItem appends one scan item; a scan result's body is the item
// count (binary.AppendUvarint) and the items.
func AppendItem(dst, key []byte, version uint64, value []byte) []byte {
	dst = appendBytes(dst, key)
	dst = binary.LittleEndian.AppendUint64(dst, version)
	return appendBytes(dst, value)
}

// AppendOpResult appends one batch op's result; a batch result's body is
// the op count (binary.AppendUvarint) and the op results.
func AppendOpResult(dst []byte, status Status, version uint64) []byte {
	return binary.LittleEndian.AppendUint64(append(dst, byte(status)), version)
}

// DecodeResult decodes b into res. res's slices alias b.
func DecodeResult(b []byte, res *Result) error {
	*res = Result{}
	if len(b) < ResultHeaderBytes {
		return fmt.Errorf("%w: result of %d bytes", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return fmt.Errorf("%w: result version %d, want %d", ErrMalformed, b[0], Version)
	}
	if b[2] > byte(StatusAborted) || b[3]&^flagMore != 0 {
		return fmt.Errorf("%w: result status %d, flags %#x", ErrMalformed, b[2], b[3])
	}
	res.Op, res.Status, res.More = Op(b[1]), Status(b[2]), b[3]&flagMore != 0
	res.LSN = lockstitch.LSN(binary.LittleEndian.Uint64(b[4:]))
	res.Version = binary.LittleEndian.Uint64(b[12:])
	body := b[ResultHeaderBytes:]
	r := reader{b: body}
	switch {
	case res.Status == StatusBadRequest:
		res.Value, r.b = body, nil
	case res.Op == OpGet:
		if res.Status == StatusOK {
			res.Value, r.b = body, nil
		}
	case res.Op == OpScan && res.Status == StatusOK, res.Op == OpBatch:
		n := r.uvarint("count")
		if r.err == nil && n > uint64(len(r.b)) {
			r.fail("count %d in %d bytes", n, len(r.b))
		}
		res.Count, res.Items = int(n), r.b
		var it Item
		for i := 0; i < res.Count && r.err == nil; i++ {
			if res.Op == OpScan {
				r.b, r.err = NextItem(r.b, &it)
			} else {
				_, r.b, r.err = NextOpResult(r.b)
			}
		}
	case res.Op == 0 || res.Op > OpBatch:
		r.fail("unknown op %d", b[1])
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes after a %s result", len(r.b), res.Op)
	}
	if r.err != nil {
		*res = Result{}
	}
	return r.err
}

// NextItem decodes the first scan item of b, a scan result's Items, into
// it and returns the rest of b.
func NextItem(b []byte, it *Item) ([]byte, error) {
	r := reader{b: b}
	it.Key = r.key()
	v := r.fixed("version", 8)
	it.Value = r.bytes("value", len(r.b))
	if r.err != nil {
		*it = Item{}
		return b, r.err
	}
	it.Version = binary.LittleEndian.Uint64(v)
	return r.b, nil
}

// NextOpResult decodes the first op result of b, a batch result's Items,
// and returns it and the rest of b.
func NextOpResult(b []byte) (OpResult, []byte, error) {
	if len(b) < 9 {
		return OpResult{}, b, fmt.Errorf("%w: batch op result of %d bytes", ErrMalformed, len(b))
	}
	if b[0] > byte(StatusAborted) {
		return OpResult{}, b, fmt.Errorf("%w: batch op status %d", ErrMalformed, b[0])
	}
	return OpResult{Status: Status(b[0]), Version: binary.LittleEndian.Uint64(b[1:])}, b[9:], nil
}
