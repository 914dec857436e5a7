package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func TestRequestRoundTrip(t *testing.T) {
	var req Request
	check := func(b []byte) {
		t.Helper()
		if err := DecodeRequest(b, &req); err != nil {
			t.Fatalf("DecodeRequest(%x): %v", b, err)
		}
	}
	check(AppendPut(nil, []byte("k"), []byte("v")))
	if req.Op != OpPut || string(req.Key) != "k" || string(req.Value) != "v" {
		t.Fatalf("put: %+v", req)
	}
	check(AppendGet(nil, []byte("key")))
	if req.Op != OpGet || string(req.Key) != "key" {
		t.Fatalf("get: %+v", req)
	}
	check(AppendDelete(nil, []byte("d")))
	if req.Op != OpDelete || string(req.Key) != "d" {
		t.Fatalf("delete: %+v", req)
	}
	check(AppendCAS(nil, []byte("c"), []byte("new"), 42))
	if req.Op != OpCAS || string(req.Key) != "c" || string(req.Value) != "new" || req.Version != 42 || req.Delete {
		t.Fatalf("cas: %+v", req)
	}
	check(AppendCASDelete(nil, []byte("c"), 7))
	if req.Op != OpCAS || !req.Delete || req.Version != 7 || len(req.Value) != 0 {
		t.Fatalf("cas delete: %+v", req)
	}
	check(AppendScan(nil, []byte("p/"), []byte("p/b"), 0))
	if req.Op != OpScan || string(req.Prefix) != "p/" || string(req.Start) != "p/b" || req.Limit != DefaultScanLimit {
		t.Fatalf("scan: %+v", req)
	}
	check(AppendScan(nil, nil, nil, MaxScanLimit+5))
	if req.Limit != MaxScanLimit {
		t.Fatalf("scan limit %d, want it capped at %d", req.Limit, MaxScanLimit)
	}
	ops := []BatchOp{
		{Op: OpPut, Key: []byte("a"), Value: []byte("1")},
		{Op: OpDelete, Key: []byte("b")},
		{Op: OpCAS, Key: []byte("c"), Value: []byte("3"), Version: 9},
		{Op: OpCAS, Key: []byte("d"), Version: 10, Delete: true},
	}
	check(AppendBatch(nil, ops))
	if req.Op != OpBatch || req.Count != len(ops) {
		t.Fatalf("batch: %+v", req)
	}
	rest := req.Ops
	for i, want := range ops {
		var op Request
		var err error
		if rest, err = NextBatchOp(rest, &op); err != nil {
			t.Fatalf("batch op %d: %v", i, err)
		}
		if op.Op != want.Op || !bytes.Equal(op.Key, want.Key) || !bytes.Equal(op.Value, want.Value) || op.Version != want.Version || op.Delete != want.Delete {
			t.Fatalf("batch op %d: %+v, want %+v", i, op, want)
		}
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes after the batch's ops", len(rest))
	}
}

func TestRequestMalformed(t *testing.T) {
	long := bytes.Repeat([]byte("k"), MaxKeyBytes+1)
	for name, b := range map[string][]byte{
		"empty":         nil,
		"version":       append([]byte{2}, AppendGet(nil, []byte("k"))[1:]...),
		"unknown op":    {Version, 99},
		"empty key":     AppendGet(nil, nil),
		"long key":      AppendPut(nil, long, nil),
		"truncated":     AppendPut(nil, []byte("key"), []byte("value"))[:8],
		"trailing":      append(AppendDelete(nil, []byte("k")), 0),
		"empty batch":   AppendBatch(nil, nil),
		"get in batch":  {Version, byte(OpBatch), 1, byte(OpGet), 1, 'k'},
		"cas mode":      {Version, byte(OpCAS), 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 'k', 0},
		"cas del value": {Version, byte(OpCAS), 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'k', 1, 'v'},
	} {
		var req Request
		if err := DecodeRequest(b, &req); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeRequest(%x) = %v, want ErrMalformed", name, b, err)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	var res Result
	b := append(AppendResultHeader(nil, OpGet, StatusOK, false, 12, 7), "value"...)
	if err := DecodeResult(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Op != OpGet || res.Status != StatusOK || res.LSN != 12 || res.Version != 7 || string(res.Value) != "value" {
		t.Fatalf("get: %+v", res)
	}

	b = AppendResultHeader(nil, OpScan, StatusOK, true, 30, 0)
	b = binary.AppendUvarint(b, 2)
	b = AppendItem(b, []byte("a"), 3, []byte("x"))
	b = AppendItem(b, []byte("b"), 4, nil)
	if err := DecodeResult(b, &res); err != nil {
		t.Fatal(err)
	}
	if !res.More || res.Count != 2 || res.LSN != 30 {
		t.Fatalf("scan: %+v", res)
	}
	var it Item
	rest, err := NextItem(res.Items, &it)
	if err != nil || string(it.Key) != "a" || it.Version != 3 || string(it.Value) != "x" {
		t.Fatalf("item 0: %+v, %v", it, err)
	}
	if rest, err = NextItem(rest, &it); err != nil || string(it.Key) != "b" || it.Version != 4 || len(it.Value) != 0 || len(rest) != 0 {
		t.Fatalf("item 1: %+v, %v, %d left", it, err, len(rest))
	}

	b = AppendResultHeader(nil, OpBatch, StatusMismatch, false, 40, 0)
	b = binary.AppendUvarint(b, 2)
	b = AppendOpResult(b, StatusAborted, 0)
	b = AppendOpResult(b, StatusMismatch, 33)
	if err := DecodeResult(b, &res); err != nil {
		t.Fatal(err)
	}
	o, rest, err := NextOpResult(res.Items)
	if err != nil || o.Status != StatusAborted {
		t.Fatalf("op 0: %+v, %v", o, err)
	}
	if o, _, err = NextOpResult(rest); err != nil || o.Status != StatusMismatch || o.Version != 33 {
		t.Fatalf("op 1: %+v, %v", o, err)
	}

	b = append(AppendResultHeader(nil, OpPut, StatusBadRequest, false, 5, 0), "why"...)
	if err := DecodeResult(b, &res); err != nil || string(res.Value) != "why" {
		t.Fatalf("bad request: %+v, %v", res, err)
	}
	for name, b := range map[string][]byte{
		"short":    b[:ResultHeaderBytes-1],
		"status":   AppendResultHeader(nil, OpPut, 9, false, 1, 1),
		"trailing": append(AppendResultHeader(nil, OpPut, StatusOK, false, 1, 1), 0),
		"count":    binary.AppendUvarint(AppendResultHeader(nil, OpScan, StatusOK, false, 1, 0), 5),
		"op":       AppendResultHeader(nil, 0, StatusOK, false, 1, 1),
	} {
		if err := DecodeResult(b, &res); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeResult = %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add(AppendPut(nil, []byte("k"), []byte("v")))
	f.Add(AppendCAS(nil, []byte("k"), []byte("v"), 3))
	f.Add(AppendScan(nil, []byte("p"), []byte("q"), 10))
	f.Add(AppendBatch(nil, []BatchOp{{Op: OpPut, Key: []byte("a")}, {Op: OpCAS, Key: []byte("b"), Delete: true}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req Request
		if err := DecodeRequest(b, &req); err != nil {
			return
		}
		// A request that decodes re-encodes to the same bytes, except a
		// scan's limit, which decoding defaults and caps.
		var again []byte
		switch req.Op {
		case OpPut:
			again = AppendPut(nil, req.Key, req.Value)
		case OpGet:
			again = AppendGet(nil, req.Key)
		case OpDelete:
			again = AppendDelete(nil, req.Key)
		case OpCAS:
			if req.Delete {
				again = AppendCASDelete(nil, req.Key, req.Version)
			} else {
				again = AppendCAS(nil, req.Key, req.Value, req.Version)
			}
		case OpScan:
			return
		case OpBatch:
			var ops []BatchOp
			rest := req.Ops
			for range req.Count {
				var op Request
				var err error
				if rest, err = NextBatchOp(rest, &op); err != nil {
					t.Fatalf("a decoded batch's op: %v", err)
				}
				ops = append(ops, BatchOp{Op: op.Op, Key: op.Key, Value: op.Value, Version: op.Version, Delete: op.Delete})
			}
			again = AppendBatch(nil, ops)
		}
		// A varint may be padded: compare what the bytes mean.
		var back Request
		if err := DecodeRequest(again, &back); err != nil {
			t.Fatalf("%x decodes to %+v, which encodes to %x, which does not decode: %v", b, req, again, err)
		}
		if back.Op != req.Op || !bytes.Equal(back.Key, req.Key) || !bytes.Equal(back.Value, req.Value) ||
			back.Version != req.Version || back.Delete != req.Delete || back.Count != req.Count ||
			(req.Op == OpBatch && len(back.Ops) > len(req.Ops)) {
			t.Fatalf("%x decodes to %+v, which encodes to %x, which decodes to %+v", b, req, again, back)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add(append(AppendResultHeader(nil, OpGet, StatusOK, false, 1, 1), 'v'))
	scan := binary.AppendUvarint(AppendResultHeader(nil, OpScan, StatusOK, true, 2, 0), 1)
	f.Add(AppendItem(scan, []byte("k"), 1, []byte("v")))
	batch := binary.AppendUvarint(AppendResultHeader(nil, OpBatch, StatusOK, false, 3, 3), 1)
	f.Add(AppendOpResult(batch, StatusOK, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		var res Result
		if err := DecodeResult(b, &res); err != nil {
			return
		}
		rest := res.Items
		for i := 0; i < res.Count; i++ {
			var err error
			switch res.Op {
			case OpScan:
				var it Item
				rest, err = NextItem(rest, &it)
			case OpBatch:
				_, rest, err = NextOpResult(rest)
			}
			if err != nil {
				t.Fatalf("item %d of a decoded result: %v", i, err)
			}
		}
	})
}
