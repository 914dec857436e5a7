//go:build !race

package kv

import "testing"

func TestDecodeAllocs(t *testing.T) {
	put := AppendPut(nil, []byte("key"), []byte("value"))
	batch := AppendBatch(nil, []BatchOp{{Op: OpPut, Key: []byte("a")}, {Op: OpCAS, Key: []byte("b"), Version: 2}})
	res := append(AppendResultHeader(nil, OpGet, StatusOK, false, 1, 1), "value"...)
	buf := make([]byte, 0, 64)
	var req Request
	var r Result
	if n := testing.AllocsPerRun(100, func() {
		buf = AppendPut(buf[:0], []byte("key"), []byte("value"))
		if DecodeRequest(put, &req) != nil || DecodeRequest(batch, &req) != nil || DecodeResult(res, &r) != nil {
			t.Fatal("decode failed")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per encode and decode, want 0", n)
	}
}
