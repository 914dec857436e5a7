package server

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch"
)

// Peer health. A node pings every other node of its peer list every
// PeerProbeInterval and exports what it saw: lockstitch_peer_up (1 if
// the last ping was answered) and lockstitch_peer_last_contact_seconds
// (the age of the last answer), by peer, so that a dashboard sees a dead
// or cut-off node from every other one, and how long ago it was last
// heard of.
//
// The probes also keep quiet partitions correct (replicator's
// Config.Quiesce): after each round, the replicas whose leader is on a
// peer that did not answer, and the leaders that no longer reach a quorum,
// are woken (Replicator.WakeQuiesced), so that they elect a leader or
// step down as a busy partition would. A leader killed while its
// partitions are quiet is thus replaced within one probe interval, plus
// the ping's timeout when the peer hangs rather than refuses, plus an
// election.

// peerHealth is the latest probe of each peer.
type peerHealth struct {
	mu   sync.Mutex
	up   map[lockstitch.NodeID]bool
	last map[lockstitch.NodeID]time.Time // last answer; absent: never
}

func newPeerHealth() *peerHealth {
	return &peerHealth{up: map[lockstitch.NodeID]bool{}, last: map[lockstitch.NodeID]time.Time{}}
}

// record notes a probe of peer at now.
func (h *peerHealth) record(peer lockstitch.NodeID, ok bool, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.up[peer] = ok
	if ok {
		h.last[peer] = now
	}
}

var (
	descPeerUp          = prometheus.NewDesc("lockstitch_peer_up", "1 if the peer answered this node's last ping (every PeerProbeInterval), else 0.", []string{"peer"}, nil)
	descPeerLastContact = prometheus.NewDesc("lockstitch_peer_last_contact_seconds", "Seconds since the peer last answered this node's ping; absent until it has.", []string{"peer"}, nil)
)

// peerCollector exports peerHealth at scrape time.
type peerCollector struct {
	h   *peerHealth
	now func() time.Time
}

func (c peerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPeerUp
	ch <- descPeerLastContact
}

func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	now := c.now()
	for id, up := range c.h.up {
		v := 0.0
		if up {
			v = 1
		}
		label := strconv.FormatUint(uint64(id), 10)
		ch <- prometheus.MustNewConstMetric(descPeerUp, prometheus.GaugeValue, v, label)
		if t, ok := c.h.last[id]; ok {
			ch <- prometheus.MustNewConstMetric(descPeerLastContact, prometheus.GaugeValue, now.Sub(t).Seconds(), label)
		}
	}
}

// probePeers pings every other peer each interval until quit closes.
func (n *Node) probePeers(interval time.Duration, quit <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		var downMu sync.Mutex
		down := map[string]bool{} // Raft addresses of the peers that did not answer
		for _, p := range n.cfg.peers() {
			if p.ID == n.cfg.ID {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), min(interval, time.Second))
				defer cancel()
				ok := false
				if cl, err := n.dialPeer(ctx, p); err == nil {
					ok = cl.Ping(ctx, p.ClientAddr) == nil
					cl.Close()
				}
				n.peers.record(p.ID, ok, time.Now())
				if !ok {
					downMu.Lock()
					down[p.RaftAddr] = true
					downMu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(down) > 0 {
			n.r.WakeQuiesced(func(addr string) bool { return down[addr] })
		}
		select {
		case <-quit:
			return
		case <-t.C:
		}
	}
}
