package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/lockstitch/lockstitch/wal"
)

// benchSizes are the payload sizes of the round-trip benchmarks.
var benchSizes = []int{16, 1 << 10, 64 << 10}

// benchDepth is the pipelining depth of the throughput comparison: the
// number of requests kept in flight.
const benchDepth = 64

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func BenchmarkFrameEncode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			payload := make([]byte, size)
			req := AppendRequest{Partition: 1, Producer: 2, Sequence: 3, CRC: wal.Checksum(payload), Payload: payload}
			buf := make([]byte, 0, HeaderSize+appendFixed+size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				buf = appendAppend(buf[:0], 7, &req)
			}
		})
	}
}

func BenchmarkFrameDecode(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			payload := make([]byte, size)
			frame := appendAppend(nil, 7, &AppendRequest{Partition: 1, CRC: wal.Checksum(payload), Payload: payload})
			var h Header
			var r AppendRequest
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeHeader(frame, &h); err != nil {
					b.Fatal(err)
				}
				if err := decodeAppend(frame[HeaderSize:HeaderSize+h.Length], &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppend measures one synchronous append at a time through the
// real client and server over loopback: latency.
func BenchmarkAppend(b *testing.B) {
	_, addr := startServer(b, nopHandler{}, testServerConfig())
	cl := dialTest(b, testClientConfig(), addr)
	ctx := context.Background()
	for _, size := range benchSizes {
		b.Run(sizeName(size), func(b *testing.B) {
			payload := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := cl.Append(ctx, 1, payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPipelined compares, at each payload size, appends through the
// real client and server (a handler that completes at once) with a bare
// TCP echo of length-prefixed frames, both over loopback with
// benchDepth requests in flight.
//
// The echo sends every payload back; an append's answer is 16 bytes. The
// lockstitch-result variant has its handler return the payload as the
// plugin result, so that as many bytes cross the loopback as with the
// echo; its client takes each result with WaitResult into a reused buffer.
func BenchmarkPipelined(b *testing.B) {
	_, addr := startServer(b, nopHandler{}, testServerConfig())
	cl := dialTest(b, testClientConfig(), addr)
	_, resultAddr := startServer(b, resultHandler{}, testServerConfig())
	resultCl := dialTest(b, testClientConfig(), resultAddr)
	echoAddr := startEcho(b)
	for _, size := range benchSizes {
		payload := make([]byte, size)
		b.Run("lockstitch/"+sizeName(size), func(b *testing.B) { pipelineAppends(b, cl, payload, false) })
		b.Run("lockstitch-result/"+sizeName(size), func(b *testing.B) { pipelineAppends(b, resultCl, payload, true) })
		b.Run("echo/"+sizeName(size), func(b *testing.B) {
			nc, err := net.Dial("tcp", echoAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			driveEcho(b, nc, payload, b.N)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// pipelineAppends appends payload b.N times with benchDepth appends in
// flight, from one goroutine, checking each result when withResult.
func pipelineAppends(b *testing.B, cl *Client, payload []byte, withResult bool) {
	ctx := context.Background()
	var ring [benchDepth]AppendFuture
	result := make([]byte, 0, len(payload))
	wait := func(f AppendFuture) {
		res, err := f.WaitResult(ctx, result[:0])
		if err != nil {
			b.Fatal(err)
		}
		if withResult && len(res.Result) != len(payload) {
			b.Fatalf("result of %d bytes", len(res.Result))
		}
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for i := range b.N {
		slot := i % benchDepth
		if i >= benchDepth {
			wait(ring[slot])
		}
		ring[slot] = cl.AppendAsync(ctx, 1, payload)
	}
	for i := max(0, b.N-benchDepth); i < b.N; i++ {
		wait(ring[i%benchDepth])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// resultHandler completes appends at once with the payload as the plugin
// result.
type resultHandler struct{ nopHandler }

func (resultHandler) Append(req *AppendRequest, done AppendCompletion) {
	done.Complete(AppendResult{LSN: wal.LSN(req.Sequence), Epoch: 1, Result: req.Payload})
}

// driveEcho sends n frames of payload on nc and reads their echoes, with
// benchDepth frames in flight: the writer flushes only when the window is
// full, as our client's writer coalesces what is queued.
func driveEcho(b *testing.B, nc net.Conn, payload []byte, n int) {
	window := make(chan struct{}, benchDepth)
	done := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(nc, 256<<10)
		buf := make([]byte, 4+len(payload))
		for range n {
			if _, err := io.ReadFull(r, buf); err != nil {
				done <- err
				return
			}
			<-window
		}
		done <- nil
	}()
	w := bufio.NewWriterSize(nc, 256<<10)
	var prefix [4]byte
	binary.LittleEndian.PutUint32(prefix[:], uint32(len(payload)))
	for range n {
		select {
		case window <- struct{}{}:
		default:
			if err := w.Flush(); err != nil {
				b.Fatal(err)
			}
			window <- struct{}{}
		}
		w.Write(prefix[:])
		w.Write(payload)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// startEcho serves a bare echo of length-prefixed frames on 127.0.0.1:
// each frame read is written back, and written data is flushed whenever
// no more input is buffered.
func startEcho(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			go echo(nc)
		}
	}()
	b.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range conns {
			nc.Close()
		}
	})
	return l.Addr().String()
}

func echo(nc net.Conn) {
	defer nc.Close()
	r := bufio.NewReaderSize(nc, 256<<10)
	w := bufio.NewWriterSize(nc, 256<<10)
	var prefix [4]byte
	buf := make([]byte, 0, 64<<10)
	for {
		if _, err := io.ReadFull(r, prefix[:]); err != nil {
			return
		}
		n := int(binary.LittleEndian.Uint32(prefix[:]))
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		w.Write(prefix[:])
		w.Write(buf)
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return
			}
		}
	}
}

// BenchmarkRead measures a Read of 8 records of 100 bytes through the real
// client and server into a reused Records.
func BenchmarkRead(b *testing.B) {
	_, addr := startServer(b, nopHandler{}, testServerConfig())
	cl := dialTest(b, testClientConfig(), addr)
	ctx := context.Background()
	var recs Records
	var rec wal.Record
	b.ReportAllocs()
	for b.Loop() {
		if err := cl.Read(ctx, 1, 1, ReadOptions{MaxOps: 8}, &recs); err != nil {
			b.Fatal(err)
		}
		for recs.Next(&rec) == nil {
		}
	}
}

// BenchmarkSubscribe measures a subscription delivering 100-byte records
// as fast as the server can stream them: per record, through credit
// renewal, CRC checks and all.
func BenchmarkSubscribe(b *testing.B) {
	_, addr := startServer(b, streamHandler{}, testServerConfig())
	cl := dialTest(b, testClientConfig(), addr)
	ctx := context.Background()
	sub, err := cl.Subscribe(ctx, 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	var rec wal.Record
	b.SetBytes(100)
	b.ReportAllocs()
	for b.Loop() {
		if err := sub.Next(ctx, &rec); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// streamHandler streams 100-byte records without end.
type streamHandler struct{ nopHandler }

func (streamHandler) Subscribe(ctx context.Context, req *SubscribeRequest, s *Stream) error {
	rec := wal.Record{Epoch: 1, Payload: make([]byte, 100)}
	for {
		rec.LSN = s.Next()
		if err := s.Send(&rec); err != nil {
			return err
		}
	}
}
