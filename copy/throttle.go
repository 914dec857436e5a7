package copy

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Throttle bounds the rate at which a node sends copies, in bytes per
// second, across all the copies it sends at once, so that a large copy
// leaves the disk and the network to live replication. It is the token
// bucket of golang.org/x/time/rate, the standard one for Go, fed from an
// injectable clock so that its decisions can be tested without waiting.
// A nil *Throttle does not limit. It is safe for concurrent use.
type Throttle struct {
	lim    *rate.Limiter
	burst  int
	passed atomic.Int64 // bytes let through
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
}

// NewThrottle returns a Throttle of bytesPerSecond, or nil (no limit) for
// 0. Bursts are at most a tenth of a second's worth of bytes, and at
// least one chunk.
func NewThrottle(bytesPerSecond int64) *Throttle {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := int(max(bytesPerSecond/10, MaxChunkBytes+ChunkHeaderSize))
	return &Throttle{
		lim:   rate.NewLimiter(rate.Limit(bytesPerSecond), burst),
		burst: burst,
		now:   time.Now,
		sleep: sleepCtx,
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Writer returns w, throttled: each Write waits until the Throttle lets
// its bytes go, or fails with ctx's error. A nil Throttle returns w.
func (t *Throttle) Writer(ctx context.Context, w io.Writer) io.Writer {
	if t == nil {
		return w
	}
	return &throttledWriter{t: t, ctx: ctx, w: w}
}

type throttledWriter struct {
	t   *Throttle
	ctx context.Context
	w   io.Writer
}

func (tw *throttledWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), tw.t.burst)
		if err := tw.t.wait(tw.ctx, n); err != nil {
			return written, err
		}
		m, err := tw.w.Write(p[:n])
		written += m
		tw.t.passed.Add(int64(m))
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// Passed returns how many bytes the Throttle has let through (0 for a nil
// Throttle).
func (t *Throttle) Passed() int64 {
	if t == nil {
		return 0
	}
	return t.passed.Load()
}

// wait takes n bytes' worth of tokens (n <= burst), sleeping until they
// are due.
func (t *Throttle) wait(ctx context.Context, n int) error {
	now := t.now()
	r := t.lim.ReserveN(now, n)
	if d := r.DelayFrom(now); d > 0 {
		if err := t.sleep(ctx, d); err != nil {
			r.CancelAt(t.now())
			return err
		}
	}
	return nil
}
