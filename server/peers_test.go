package server

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch/internal/testutil"
)

// peerGauges returns node's lockstitch_peer_up and
// lockstitch_peer_last_contact_seconds by peer label.
func peerGauges(t *testing.T, g prometheus.Gatherer) (up, age map[string]float64) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	up, age = map[string]float64{}, map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			peer := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "peer" {
					peer = l.GetValue()
				}
			}
			switch mf.GetName() {
			case "lockstitch_peer_up":
				up[peer] = m.GetGauge().GetValue()
			case "lockstitch_peer_last_contact_seconds":
				age[peer] = m.GetGauge().GetValue()
			}
		}
	}
	return up, age
}

// TestPeerProbes: a node reports the peer that answers as up, with a
// fresh last contact, and the peer that is down as down, never heard of.
func TestPeerProbes(t *testing.T) {
	t.Parallel()
	c := newClusterWith(t, 3, 2, func(cfg *Config) { cfg.PeerProbeInterval = 20 * time.Millisecond })
	reg := c.nodes[0].Registry()
	testutil.WaitFor(t, "node 1 to probe nodes 2 and 3", 10*time.Second, func() bool {
		up, _ := peerGauges(t, reg)
		_, ok2 := up["2"]
		_, ok3 := up["3"]
		return ok2 && ok3
	})
	testutil.WaitFor(t, "node 1 to see node 2 up", 10*time.Second, func() bool {
		up, _ := peerGauges(t, reg)
		return up["2"] == 1
	})
	up, age := peerGauges(t, reg)
	if up["3"] != 0 || up["1"] != 0 {
		t.Fatalf("peer_up: %v; want node 3 down and no series for node 1 itself", up)
	}
	if a, ok := age["2"]; !ok || a > 5 {
		t.Fatalf("last contact of node 2: %v (%v)", a, ok)
	}
	if _, ok := age["3"]; ok {
		t.Fatalf("node 3 was never heard of, but has a last contact: %v", age)
	}
	if _, ok := up["1"]; ok {
		t.Fatalf("node 1 reports itself: %v", up)
	}
}
