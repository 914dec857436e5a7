// Package kvclient is a typed Go client of the built-in kv plugin
// (package replicator/kv) on top of a transport.Client: writes are
// appended, so they are applied once even when the client retries them
// through a leader change; reads are queries, at the consistency the
// caller chooses. It links neither the replicator nor pebble.
//
//	kc := kvclient.New(cl, 2) // partition 2 runs the kv plugin
//	w, err := kc.Put(ctx, []byte("k"), []byte("v"))
//	item, lsn, err := kc.Get(ctx, []byte("k"), kvclient.Linearizable) // lsn: the state it reflects
//	w, err = kc.CAS(ctx, []byte("k"), []byte("v2"), item.Version)
//
// Every answer carries the LSN it reflects; a write's LSN is also the
// version it gave its key.
package kvclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/lockstitch/lockstitch"
	kvops "github.com/lockstitch/lockstitch/ops/kv"
	"github.com/lockstitch/lockstitch/transport"
)

// Errors. A failed cas is also a *ConflictError.
var (
	// ErrNotFound: a get of an absent key.
	ErrNotFound = errors.New("kvclient: key not found")
	// ErrConflict: a cas (or a batch with a cas) whose expected version
	// was not the key's; nothing was written.
	ErrConflict = errors.New("kvclient: version mismatch")
	// ErrBadRequest: the plugin refused the request as malformed (its
	// message follows); nothing was written.
	ErrBadRequest = errors.New("kvclient: bad request")
)

// ConflictError is a cas whose key had another version.
type ConflictError struct {
	Key []byte
	// Current is the key's version when the cas was applied (0: absent).
	Current uint64
	// LSN is the cas's own LSN.
	LSN lockstitch.LSN
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("kvclient: cas on %q: the key's version is %d", e.Key, e.Current)
}

// Is makes a ConflictError match ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// ReadOptions choose a read's consistency (see transport.QueryOptions).
type ReadOptions = transport.QueryOptions

// Read options at each level.
var (
	// Linearizable reads see every write that completed before they
	// started (a read index through the leader).
	Linearizable = ReadOptions{Consistency: lockstitch.Linearizable}
	// LeaderLocal reads are answered by the leader from its state, with
	// no round trip: linearizable unless a newer leader exists.
	LeaderLocal = ReadOptions{Consistency: lockstitch.LeaderLocal}
)

// Client reads and writes one kv partition. It is safe for concurrent
// use; it holds no connection of its own.
type Client struct {
	cl *transport.Client
	p  lockstitch.PartitionID
}

// New returns a Client of partition p through cl.
func New(cl *transport.Client, p lockstitch.PartitionID) *Client {
	return &Client{cl: cl, p: p}
}

// Partition returns the partition the Client uses.
func (c *Client) Partition() lockstitch.PartitionID { return c.p }

// Write is the outcome of a write that took effect.
type Write struct {
	// LSN is the write's LSN.
	LSN lockstitch.LSN
	// Version is the key's new version (the LSN) after a put or cas; for
	// a delete, the LSN that deleted it.
	Version uint64
	// Found is false for a delete of an absent key (nothing to delete).
	Found bool
}

// Item is a key read by Get or Scan.
type Item struct {
	Key     []byte
	Value   []byte
	Version uint64
}

// Put sets key to value.
func (c *Client) Put(ctx context.Context, key, value []byte) (Write, error) {
	return c.write(ctx, key, kvops.AppendPut(nil, key, value))
}

// Delete deletes key; Write.Found says whether it existed.
func (c *Client) Delete(ctx context.Context, key []byte) (Write, error) {
	return c.write(ctx, key, kvops.AppendDelete(nil, key))
}

// CAS sets key to value if its version is version (0: if it is absent).
// A mismatch fails with a *ConflictError (errors.Is(err, ErrConflict)).
func (c *Client) CAS(ctx context.Context, key, value []byte, version uint64) (Write, error) {
	return c.write(ctx, key, kvops.AppendCAS(nil, key, value, version))
}

// CASDelete deletes key if its version is version.
func (c *Client) CASDelete(ctx context.Context, key []byte, version uint64) (Write, error) {
	return c.write(ctx, key, kvops.AppendCASDelete(nil, key, version))
}

func (c *Client) append(ctx context.Context, req []byte, res *kvops.Result) (transport.AppendResult, error) {
	ar, err := c.cl.Append(ctx, c.p, req)
	if err != nil {
		return ar, err
	}
	if ar.Duplicate {
		// A retry answered as a duplicate: the write was applied at
		// ar.LSN, by an earlier attempt; what it did (whether a put
		// was refused, a delete found its key or a cas matched) is not
		// known.
		return ar, fmt.Errorf("kvclient: partition %d: write at LSN %d: %w", c.p, ar.LSN, transport.ErrResultLost)
	}
	if err := kvops.DecodeResult(ar.Result, res); err != nil {
		return ar, fmt.Errorf("kvclient: partition %d: the answer is not a kv result (is it a kv partition?): %w", c.p, err)
	}
	if res.Status == kvops.StatusBadRequest {
		return ar, fmt.Errorf("%w: %s", ErrBadRequest, res.Value)
	}
	return ar, nil
}

func (c *Client) write(ctx context.Context, key, req []byte) (Write, error) {
	var res kvops.Result
	ar, err := c.append(ctx, req, &res)
	if errors.Is(err, transport.ErrResultLost) {
		return Write{LSN: ar.LSN}, err
	}
	if err != nil {
		return Write{}, err
	}
	switch res.Status {
	case kvops.StatusMismatch:
		return Write{LSN: res.LSN}, &ConflictError{Key: bytes.Clone(key), Current: res.Version, LSN: res.LSN}
	case kvops.StatusNotFound:
		return Write{LSN: res.LSN}, nil
	}
	return Write{LSN: res.LSN, Version: res.Version, Found: true}, nil
}

func (c *Client) query(ctx context.Context, opts ReadOptions, req []byte, res *kvops.Result) error {
	qr, err := c.cl.Query(ctx, c.p, opts, req, nil)
	if err != nil {
		return err
	}
	if err := kvops.DecodeResult(qr.Result, res); err != nil {
		return fmt.Errorf("kvclient: partition %d: the answer is not a kv result (is it a kv partition?): %w", c.p, err)
	}
	if res.Status == kvops.StatusBadRequest {
		return fmt.Errorf("%w: %s", ErrBadRequest, res.Value)
	}
	return nil
}

// Get reads key. An absent key fails with ErrNotFound; the LSN says the
// state the answer reflects, in both cases.
func (c *Client) Get(ctx context.Context, key []byte, opts ReadOptions) (Item, lockstitch.LSN, error) {
	var res kvops.Result
	if err := c.query(ctx, opts, kvops.AppendGet(nil, key), &res); err != nil {
		return Item{}, 0, err
	}
	if res.Status == kvops.StatusNotFound {
		return Item{}, res.LSN, ErrNotFound
	}
	return Item{Key: bytes.Clone(key), Value: res.Value, Version: res.Version}, res.LSN, nil
}

// ScanRequest says which keys a Scan returns: those that begin with
// Prefix and are >= Start, in key order, at most Limit (0: the plugin's
// default, 1000; at most 10000) and about 1 MiB.
type ScanRequest struct {
	Prefix, Start []byte
	Limit         int
}

// ScanResult is a page of a scan.
type ScanResult struct {
	Items []Item
	// More says that keys follow the last item: scan again from Next.
	More bool
	// Next is the Start of the next page when More is set.
	Next []byte
	// LSN is the state the page reflects.
	LSN lockstitch.LSN
}

// Scan returns one page of keys. Successive pages may reflect different
// LSNs; a consistent view of more keys than a page needs a batch of
// reads at one LSN, which kv does not offer.
func (c *Client) Scan(ctx context.Context, sr ScanRequest, opts ReadOptions) (ScanResult, error) {
	var res kvops.Result
	if err := c.query(ctx, opts, kvops.AppendScan(nil, sr.Prefix, sr.Start, sr.Limit), &res); err != nil {
		return ScanResult{}, err
	}
	out := ScanResult{More: res.More, LSN: res.LSN, Items: make([]Item, 0, res.Count)}
	rest := res.Items
	for range res.Count {
		var it kvops.Item
		var err error
		if rest, err = kvops.NextItem(rest, &it); err != nil {
			return ScanResult{}, err
		}
		out.Items = append(out.Items, Item{Key: it.Key, Value: it.Value, Version: it.Version})
	}
	if out.More && len(out.Items) > 0 {
		out.Next = append(bytes.Clone(out.Items[len(out.Items)-1].Key), 0)
	}
	return out, nil
}

// BatchOp is one op of a batch: a put, a delete or a cas.
type BatchOp = kvops.BatchOp

// PutOp is a put in a batch.
func PutOp(key, value []byte) BatchOp { return BatchOp{Op: kvops.OpPut, Key: key, Value: value} }

// DeleteOp is a delete in a batch.
func DeleteOp(key []byte) BatchOp { return BatchOp{Op: kvops.OpDelete, Key: key} }

// CASOp is a cas in a batch.
func CASOp(key, value []byte, version uint64) BatchOp {
	return BatchOp{Op: kvops.OpCAS, Key: key, Value: value, Version: version}
}

// BatchOpResult is the outcome of one op of a batch.
type BatchOpResult struct {
	// Status is kvops.StatusOK, StatusNotFound (a delete of an absent
	// key), StatusMismatch (a cas that failed: Version is the key's) or
	// StatusAborted (not applied because another op's cas failed).
	Status  kvops.Status
	Version uint64
}

// Batch applies ops atomically: all of them, or none if a cas among them
// does not match (then it fails with ErrConflict, and the results say
// which cas failed).
func (c *Client) Batch(ctx context.Context, ops []BatchOp) (lockstitch.LSN, []BatchOpResult, error) {
	var res kvops.Result
	if _, err := c.append(ctx, kvops.AppendBatch(nil, ops), &res); err != nil {
		return 0, nil, err
	}
	out := make([]BatchOpResult, 0, res.Count)
	rest := res.Items
	for range res.Count {
		o, r, err := kvops.NextOpResult(rest)
		if err != nil {
			return 0, nil, err
		}
		rest = r
		out = append(out, BatchOpResult{Status: o.Status, Version: o.Version})
	}
	if res.Status == kvops.StatusMismatch {
		return res.LSN, out, fmt.Errorf("%w: batch at LSN %d not applied", ErrConflict, res.LSN)
	}
	return res.LSN, out, nil
}
