package replicator

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/lockstitch/lockstitch"
)

// Quiet partitions (Config.Quiesce). A partition with no activity for ten
// election timeouts enters dragonboat's quiesce: its leader stops sending
// heartbeats and tells its followers, which stop counting the election
// timeout. Any message other than a heartbeat wakes a replica: a write
// (the leader's Replicate), a read index, a config change, a vote.
//
// What quiesce alone gets wrong (dragonboat quiesce.go, node.go tick, raft.go
// quiescedTick): a quiesced follower never times out, so when the node of
// its leader dies, nothing ever elects a new one; and a quiesced leader
// never checks its quorum, so a leader cut off from its followers keeps
// its role. WakeQuiesced is the remedy: whoever learns that nodes are down
// (server's peer probes) calls it, and it wakes, with a read index, the
// local replicas that must act: followers whose leader is on a node that
// is down (their election clock ran on while quiesced, so they campaign
// at the next tick), and leaders that no longer reach a quorum of their
// voters (they step down at the next quorum check). Replicas whose leader
// is up are left quiet, so that the death of a follower's node does not
// make every partition it is in exchange messages.

// quiesced is the set of replicas, in this process, that dragonboat
// reported as quiesced: it says so only in its log ("%s entered
// quiesce", "%s exited from quiesce, ..."), which dbLog passes to
// noteQuiesce. dragonboat's replica name keeps the last five decimal
// digits of the shard and replica ids (logutil.DescribeNode), so the key
// is the ids modulo 100000: two partitions whose ids agree in their last
// five digits share an entry (it is only reported, never acted upon).
var quiesced sync.Map // quiesceKey -> struct{}

type quiesceKey struct{ shard, replica uint64 }

const describeMod = 100000

// Dragonboat's log formats of quiesce changes (quiesce.go), matched by
// format, not by text.
const (
	fmtEnteredQuiesce = "%s entered quiesce"
	fmtExitedQuiesce  = "%s exited from quiesce, msg type %s, current tick %d"
)

// noteQuiesce records a quiesce change from dragonboat's log, if the line
// is one.
func noteQuiesce(format string, args []any) {
	var entered bool
	switch format {
	case fmtEnteredQuiesce:
		entered = true
	case fmtExitedQuiesce:
	default:
		return
	}
	name, ok := "", len(args) > 0
	if ok {
		name, ok = args[0].(string)
	}
	var k quiesceKey
	if _, err := fmt.Sscanf(name, "[%d:%d]", &k.shard, &k.replica); !ok || err != nil {
		return
	}
	if entered {
		quiesced.Store(k, struct{}{})
	} else {
		quiesced.Delete(k)
	}
}

// isQuiesced reports whether dragonboat last said this replica quiesced.
func (p *partition) isQuiesced() bool {
	_, ok := quiesced.Load(quiesceKey{uint64(p.id) % describeMod, uint64(p.replica) % describeMod})
	return ok
}

// forgetQuiesced drops the replica's entry (it stopped or was deleted).
func (p *partition) forgetQuiesced() {
	quiesced.Delete(quiesceKey{uint64(p.id) % describeMod, uint64(p.replica) % describeMod})
}

// Quiesced returns how many of this node's replicas are quiesced.
func (r *Replicator) Quiesced() int {
	n := 0
	for _, p := range r.partitions() {
		if p.isQuiesced() {
			n++
		}
	}
	return n
}

// WakeQuiesced wakes the replicas that must act because the nodes for
// which down returns true (given their Raft addresses) are down: those
// whose leader is on such a node, and those that lead but whose voters on
// nodes still up are not a quorum. It does nothing unless Config.Quiesce
// is set, and returns the partitions it wakes, in the background.
//
// A node seen down may be up: a ping that timed out on a starved machine.
// So a follower is first woken through its leader (wakeFollower), which,
// if the leader answers, wakes the partition with no election; only if
// that fails within an election timeout is the follower woken alone (a
// read index), which makes it campaign at once (its election clock ran on
// while it was quiesced). A leader is woken with a read index: it checks
// its quorum at its next tick, and steps down only if its followers do not
// answer. Calling it again while the nodes are still down wakes again what
// has not moved on (a replica that went back to quiesce before it could
// elect a leader, say), but not what is still being woken.
func (r *Replicator) WakeQuiesced(down func(raftAddr string) bool) []lockstitch.PartitionID {
	if !r.cfg.Quiesce {
		return nil
	}
	info := r.nh.GetNodeHostInfo(nodeHostInfoNoLog)
	if info == nil {
		return nil
	}
	var woken []lockstitch.PartitionID
	for _, si := range info.ShardInfoList {
		if si.Pending || si.LeaderID == 0 {
			continue
		}
		leads := si.LeaderID == si.ReplicaID
		if leads {
			up := 0
			for _, addr := range si.Replicas {
				if addr == r.cfg.RaftAddress || !down(addr) {
					up++
				}
			}
			if up >= len(si.Replicas)/2+1 {
				continue
			}
		} else if addr, ok := si.Replicas[si.LeaderID]; !ok || !down(addr) {
			continue
		}
		p := r.lookup(si.ShardID)
		if p == nil || !p.waking.CompareAndSwap(false, true) {
			continue
		}
		woken = append(woken, p.id)
		r.background(func() {
			defer p.waking.Store(false)
			if !leads {
				ctx, cancel := r.lifetime()
				defer cancel()
				if p.wakeFollower(ctx) {
					return
				}
			}
			// The result is not waited for: the read index has done its
			// work once it is handled (dragonboat's handleReadIndex records
			// the activity that ends the quiesce). It fails, at its
			// timeout, when the leader is gone.
			if _, err := r.nh.ReadIndex(uint64(p.id), 2*r.cfg.RTT*time.Duration(r.cfg.ElectionRTT)); err != nil {
				p.log.Debug("wake quiesced replica", "err", err)
			}
		})
	}
	if len(woken) > 0 {
		r.log.Info("waking quiet partitions: nodes down", "partitions", len(woken))
		if r.metrics != nil {
			r.metrics.quiesceWakes.Add(float64(len(woken)))
		}
	}
	return woken
}

// wakeFollower wakes the quiet partition of this replica, a follower,
// through its leader, before the replica asks for a read index. A read
// index would wake the follower alone, at once (dragonboat's
// handleReadIndex), and its election clock, which ran on while it was
// quiesced, is past the timeout: it would campaign at its next tick, and
// the other follower, quiesced too, would vote for it, replacing a
// healthy leader. A proposal does not wake the follower (handleProposals
// records no activity): it wakes the leader, whose Replicate wakes the
// followers and resets their election clocks. The proposal is a progress
// report of what this replica applied, which is idempotent; it is waited
// for at most one election timeout, and its failure is not this call's
// concern (the read index that follows reports what matters). It reports
// whether the proposal committed: the leader answered.
func (p *partition) wakeFollower(ctx context.Context) bool {
	if !p.r.cfg.Quiesce || !p.isQuiesced() || p.isLeader() || p.leader.Load() == 0 || p.meta.Kind == lockstitch.Witness {
		return false
	}
	s, err := p.state()
	if err != nil {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, p.r.cfg.RTT*time.Duration(p.r.cfg.ElectionRTT))
	defer cancel()
	if _, err := p.r.nh.SyncPropose(wctx, p.session, appendProgressEntry(nil, p.replica, lockstitch.LSN(s.applied.Load()))); err != nil {
		p.log.Debug("waking the quiet partition through its leader", "err", err)
		return false
	}
	return true
}

// shardInfoCache holds dragonboat's local shard list for shardInfoTTL.
// Dragonboat lists every shard of the node at once (GetNodeHostInfo), so
// a status of every partition, asking each partition's list, would cost
// the square of the partitions.
type shardInfoCache struct {
	mu      sync.Mutex
	at      time.Time
	byShard map[uint64]map[uint64]string // shard -> voters' replica ids -> Raft addresses
}

const shardInfoTTL = 100 * time.Millisecond

// localReplicas returns this replica's local view of its partition's
// voters. For a quiet partition, whose membership cannot change without
// waking it, the view may be up to shardInfoTTL old; otherwise it is
// read afresh.
func (p *partition) localReplicas() map[uint64]string {
	c := &p.r.shards
	fresh := !p.isQuiesced()
	c.mu.Lock()
	defer c.mu.Unlock()
	if fresh || c.byShard == nil || time.Since(c.at) > shardInfoTTL {
		info := p.r.nh.GetNodeHostInfo(nodeHostInfoNoLog)
		if info == nil {
			return nil
		}
		c.byShard = make(map[uint64]map[uint64]string, len(info.ShardInfoList))
		for _, si := range info.ShardInfoList {
			c.byShard[si.ShardID] = si.Replicas
		}
		c.at = time.Now()
	}
	return c.byShard[uint64(p.id)]
}
