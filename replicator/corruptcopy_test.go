package replicator_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
)

// flipProxy forwards TCP connections to target. It flips one bit, once,
// in the first of dragonboat's snapshot connections (their first frame's
// method is snapshotType, 200) that carries more than at bytes towards
// target, at that offset, and then forwards faithfully again.
type flipProxy struct {
	ln        net.Listener
	target    string
	at        int64
	flips     atomic.Int32
	snapConns atomic.Int32
	wg        sync.WaitGroup
	mu        sync.Mutex
	conns     []net.Conn
	closed    bool
}

func newFlipProxy(t *testing.T, listen, target string, at int64) *flipProxy {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	p := &flipProxy{ln: ln, target: target, at: at}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *flipProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *flipProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *flipProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			in.Close()
			out.Close()
			return
		}
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.forward(out, in)
			out.Close()
		}()
		go func() {
			defer p.wg.Done()
			io.Copy(in, out)
			in.Close()
		}()
	}
}

// forward copies a connection's bytes towards the target, flipping a bit
// on the way in the first snapshot connection long enough.
func (p *flipProxy) forward(dst, src net.Conn) {
	// The magic number (2 bytes) and the first header's method (2).
	head := make([]byte, 4)
	if _, err := io.ReadFull(src, head); err != nil {
		return
	}
	if _, err := dst.Write(head); err != nil {
		return
	}
	snapshot := binary.BigEndian.Uint16(head[2:]) == 200
	if snapshot {
		p.snapConns.Add(1)
	}
	buf := make([]byte, 32<<10)
	n := int64(len(head))
	for {
		k, err := src.Read(buf)
		if k > 0 {
			if snapshot && n <= p.at && p.at < n+int64(k) && p.flips.CompareAndSwap(0, 1) {
				buf[p.at-n] ^= 0x10
			}
			n += int64(k)
			if _, err := dst.Write(buf[:k]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestCorruptCopyRefetched flips a bit in the copy a follower receives, on
// the wire between the leader and the follower: the follower refuses it
// (dragonboat checks every message's checksum, and Lockstitch's chunks
// have theirs), the leader sends the copy again, and the follower ends
// holding the same records as the leader, with its node up throughout.
func TestCorruptCopyRefetched(t *testing.T) {
	t.Parallel()
	c, l, f := behindCompaction(t, func(c *cluster) {
		// Ops of 2 KB: a copy of about 400 KB, where the proxy flips a
		// bit at 100 KiB.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for i := range 190 {
			payload := append(opPayload(1, i), bytes.Repeat([]byte{'c'}, 2000)...)
			if _, err := c.appendRetry(ctx, 1, replicator.AppendOp{Payload: payload}); err != nil {
				t.Fatal(err)
			}
		}
	})
	// The follower restarts behind the proxy: its peers dial its Raft
	// address, its identity, where the proxy now listens, and the proxy
	// forwards to where the follower listens.
	listen := testutil.FreeAddr(t)
	c.nodes[f].cfg.RaftListenAddress = listen
	proxy := newFlipProxy(t, c.nodes[f].cfg.RaftAddress, listen, 100<<10)
	c.start(f)
	p := c.partition(f, 1)
	waitApplied(t, p, 200)
	if proxy.flips.Load() != 1 {
		t.Fatalf("the proxy flipped %d bits (%d snapshot connections): the copy was not corrupted", proxy.flips.Load(), proxy.snapConns.Load())
	}
	if n := proxy.snapConns.Load(); n < 2 {
		t.Fatalf("%d snapshot connections: the corrupted copy was not sent again", n)
	}
	if n := c.copiesReceived(f); n < 1 {
		t.Fatalf("the follower restored %v copies", n)
	}
	holdsLeaders(t, c, f, l, 200)
	t.Logf("%d snapshot connections to the follower, %v copies restored", proxy.snapConns.Load(), c.copiesReceived(f))
}
