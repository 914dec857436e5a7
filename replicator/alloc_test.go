//go:build !race

package replicator

import (
	"testing"
	"time"
)

// TestGatherAllocs asserts that the batcher's policy allocates nothing:
// the batcher calls it for every append and completion, under its lock.
func TestGatherAllocs(t *testing.T) {
	g := gather{linger: 2 * time.Millisecond, gap: 300 * time.Microsecond, slots: 4}
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		g.released(now, 4)
		g.told(now)
		g.arrived(now, 1)
		_, until := g.next(now, gatherQueue{open: true})
		wait := until.Sub(now)
		_ = g.mustKick(now, wait)
		g.arm(now, wait)
		g.arrived(now, 3)
		g.next(now, gatherQueue{ready: true, open: true})
	}); n != 0 {
		t.Errorf("gather: %v allocs per append and completion", n)
	}
}
