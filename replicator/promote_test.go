package replicator

import (
	"testing"
	"time"
)

// TestPromoteWait checks the bound on the caught-up read of a promotion:
// far below the proposal timeout, at least 250 ms, 25 ticks on a slow
// network.
func TestPromoteWait(t *testing.T) {
	for _, tc := range []struct {
		rtt, want time.Duration
	}{
		{time.Millisecond, 250 * time.Millisecond},
		{10 * time.Millisecond, 250 * time.Millisecond},
		{20 * time.Millisecond, 500 * time.Millisecond},
	} {
		c := DefaultConfig()
		c.RTT = tc.rtt
		if got := c.promoteWait(); got != tc.want {
			t.Errorf("RTT %v: promoteWait %v, want %v", tc.rtt, got, tc.want)
		}
		if got := c.promoteWait(); got >= c.ProposalTimeout {
			t.Errorf("RTT %v: promoteWait %v is not below the proposal timeout %v", tc.rtt, got, c.ProposalTimeout)
		}
	}
}
