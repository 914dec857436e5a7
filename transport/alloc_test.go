//go:build !race

package transport

import (
	"context"
	"testing"

	"github.com/lockstitch/lockstitch/wal"
)

// The race detector allocates; these run without it.

// TestCodecAllocs asserts that encoding and decoding frames allocate
// nothing.
func TestCodecAllocs(t *testing.T) {
	payload := make([]byte, 1024)
	req := AppendRequest{Partition: 1, Producer: 2, Sequence: 3, CRC: wal.Checksum(payload), Payload: payload}
	res := AppendResult{LSN: 5, Epoch: 6}
	buf := make([]byte, 0, 4096)
	records := testRecords(1, 4)
	var h Header
	var r AppendRequest
	var ar AppendResult
	cases := map[string]func(){
		"header": func() {
			b := AppendHeader(buf[:0], Header{Version: 1, Type: TypeAppend, Length: 10, ID: 7})
			DecodeHeader(b, &h)
		},
		"append": func() {
			b := appendAppend(buf[:0], 7, &req)
			DecodeHeader(b, &h)
			decodeAppend(b[HeaderSize:], &r)
		},
		"append result": func() {
			b := appendAppendResult(buf[:0], 7, &res)
			decodeAppendResult(b[HeaderSize:], &ar)
		},
		"data": func() {
			b := appendData(buf[:0], 7, 4, records)
			_, recs, _ := decodeRecords(TypeData, b[HeaderSize:])
			countRecords(recs)
		},
		"records": func() {
			rs := Records{buf: records, next: 1, maxPayload: 1 << 20}
			var rec wal.Record
			for rs.Next(&rec) == nil {
			}
		},
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
}

// TestRoundTripAllocs asserts that, in steady state, an append round trip
// through the real client and server over loopback allocates nothing,
// synchronous or pipelined with futures, with plugin results taken by
// WaitResult into a reused buffer; nor does a subscription streaming
// records. (A Read allocates on the server: a goroutine and a cancellable
// context per request.)
func TestRoundTripAllocs(t *testing.T) {
	_, addr := startServer(t, nopHandler{}, testServerConfig())
	cl := dialTest(t, testClientConfig(), addr)
	ctx := context.Background()
	payload := make([]byte, 1024)
	warm := func(f func()) {
		for range 2000 {
			f()
		}
	}
	sync := func() {
		if _, err := cl.Append(ctx, 1, payload); err != nil {
			t.Fatal(err)
		}
	}
	futures := make([]AppendFuture, 64)
	pipelined := func() {
		for i := range futures {
			futures[i] = cl.AppendAsync(ctx, 1, payload)
		}
		for _, f := range futures {
			if _, err := f.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, resultAddr := startServer(t, resultHandler{}, testServerConfig())
	resultCl := dialTest(t, testClientConfig(), resultAddr)
	result := make([]byte, 0, len(payload))
	withResult := func() {
		for i := range futures {
			futures[i] = resultCl.AppendAsync(ctx, 1, payload)
		}
		for _, f := range futures {
			res, err := f.WaitResult(ctx, result[:0])
			if err != nil || len(res.Result) != len(payload) {
				t.Fatalf("result of %d bytes, %v", len(res.Result), err)
			}
		}
	}
	_, streamAddr := startServer(t, streamHandler{}, testServerConfig())
	streamCl := dialTest(t, testClientConfig(), streamAddr)
	sub, err := streamCl.Subscribe(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	follow := func() {
		for range 1000 {
			if err := sub.Next(ctx, &rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, f := range map[string]func(){
		"append":                        sync,
		"append async x64":              pipelined,
		"append async x64 with results": withResult,
		"subscription x1000":            follow,
	} {
		warm(f)
		if n := testing.AllocsPerRun(500, f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, n)
		}
	}
}
