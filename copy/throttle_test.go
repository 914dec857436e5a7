package copy

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// fakeClock is a clock that sleeping advances.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.t = c.t.Add(d)
	return nil
}

func fakeThrottle(bytesPerSecond int64) (*Throttle, *fakeClock) {
	t := NewThrottle(bytesPerSecond)
	c := &fakeClock{t: time.Unix(1_000_000, 0)}
	t.now, t.sleep = c.now, c.sleep
	return t, c
}

// TestThrottleRate writes through a throttle on a fake clock and checks
// the time the writes take: the bytes beyond the first burst at the rate.
func TestThrottleRate(t *testing.T) {
	const rate = 1 << 20 // 1 MiB/s; the burst is 104857 bytes
	cases := []struct {
		name  string
		bytes int
		piece int
	}{
		{"within the burst", 100_000, 10_000},
		{"10 MiB in chunks", 10 << 20, MaxChunkBytes + ChunkHeaderSize},
		{"10 MiB in one write", 10 << 20, 10 << 20},
	}
	for _, c := range cases {
		th, clock := fakeThrottle(rate)
		start := clock.t
		var buf bytes.Buffer
		w := th.Writer(context.Background(), &buf)
		data := make([]byte, c.piece)
		for left := c.bytes; left > 0; left -= c.piece {
			n := min(left, c.piece)
			if m, err := w.Write(data[:n]); err != nil || m != n {
				t.Fatalf("%s: wrote %d of %d: %v", c.name, m, n, err)
			}
		}
		if buf.Len() != c.bytes || th.Passed() != int64(c.bytes) {
			t.Fatalf("%s: %d bytes arrived, %d counted, want %d", c.name, buf.Len(), th.Passed(), c.bytes)
		}
		took := clock.t.Sub(start)
		want := time.Duration(float64(max(c.bytes-th.burst, 0)) / rate * float64(time.Second))
		if d := took - want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("%s: took %v of fake time, want %v", c.name, took, want)
		}
	}
}

// TestThrottleShared checks that copies sharing a throttle share its rate.
func TestThrottleShared(t *testing.T) {
	th, clock := fakeThrottle(1 << 20)
	start := clock.t
	a := th.Writer(context.Background(), new(bytes.Buffer))
	b := th.Writer(context.Background(), new(bytes.Buffer))
	chunk := make([]byte, 64<<10)
	for i := 0; i < 80; i++ { // 5 MiB each, 10 MiB in all
		a.Write(chunk)
		b.Write(chunk)
	}
	want := time.Duration(float64(10<<20-th.burst) / (1 << 20) * float64(time.Second))
	if took := clock.t.Sub(start); took < want-time.Millisecond || took > want+time.Millisecond {
		t.Fatalf("two writers took %v, want %v: the rate is not shared", took, want)
	}
}

// TestThrottleCanceled checks that a write waiting for the throttle ends
// with its context, and that a nil throttle does not limit.
func TestThrottleCanceled(t *testing.T) {
	th := NewThrottle(1024) // a slow rate on the real clock
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := th.Writer(ctx, new(bytes.Buffer))
	if _, err := w.Write(make([]byte, 1<<20)); !errors.Is(err, context.Canceled) {
		t.Fatalf("a canceled write: %v", err)
	}
	var none *Throttle
	var buf bytes.Buffer
	if w := none.Writer(context.Background(), &buf); w != &buf {
		t.Fatal("a nil throttle wrapped the writer")
	}
	if NewThrottle(0) != nil {
		t.Fatal("a zero rate made a throttle")
	}
}
