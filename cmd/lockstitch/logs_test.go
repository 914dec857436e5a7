package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// TestPeerDownLogs kills one of three serve processes and checks the
// leader's log from the kill until it has tried to reconnect to the dead
// peer 8 times (about 10 s of dragonboat's backoff, counted from its
// debug lines, not timed): at most one ERROR line, the peer reported down
// once at WARN, and every line labelled node= rather than raft=. Then the
// peer comes back (one WARN says so) and every node stops cleanly, with
// no ERROR line and "node stopped" once.
func TestPeerDownLogs(t *testing.T) {
	c, ctx, cl := serveTest(t, 3, 2*time.Minute, "--log-level", "debug")
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Nodes: []lockstitch.NodeID{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	appendRange(ctx, t, cl, 1, bulkPayload, 0, 10)
	st, err := cl.PartitionStatus(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	leader := int(st.Leader) // replica i is on node i
	victim := leader%3 + 1
	log := c.nodes[leader-1].log
	before := len(log.String())
	c.nodes[victim-1].kill()
	// Appends keep the partition busy while the peer is down, so that
	// the leader has messages for it and keeps reconnecting (an idle
	// partition may go quiet and stop sending).
	busy, stopBusy := context.WithCancel(ctx)
	busyDone := make(chan struct{})
	go func() {
		defer close(busyDone)
		for busy.Err() == nil {
			cl.Append(busy, 1, []byte("busy"))
			select {
			case <-busy.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { stopBusy(); <-busyDone }()

	peer := regexp.QuoteMeta(c.addr(10, victim))
	attempts := regexp.MustCompile(`msg="raft peer still unreachable" .*peer=` + peer + ` attempts=(\d+)`)
	var after string
	for after == "" || !reachedAttempts(attempts, after, 8) {
		if ctx.Err() != nil {
			t.Fatalf("node %d did not retry its dead peer 8 times: %v\n%s", leader, context.Cause(ctx), after)
		}
		time.Sleep(100 * time.Millisecond)
		after = log.String()[before:]
	}
	stopBusy()
	<-busyDone
	var errs, downs []string
	for _, l := range strings.Split(after, "\n") {
		if strings.Contains(l, "level=ERROR") {
			errs = append(errs, l)
		}
		if strings.Contains(l, `msg="raft peer unreachable; retrying"`) && strings.Contains(l, "peer="+c.addr(10, victim)) {
			downs = append(downs, l)
		}
	}
	if len(errs) > 1 {
		t.Errorf("node %d logged %d ERROR lines while its peer was down, want at most 1:\n%s", leader, len(errs), strings.Join(errs, "\n"))
	}
	if len(downs) != 1 || !strings.Contains(downs[0], "level=WARN") {
		t.Errorf("node %d reported its peer down %d times, want once at WARN:\n%s", leader, len(downs), strings.Join(downs, "\n"))
	}
	for _, l := range strings.Split(log.String(), "\n") {
		if strings.HasPrefix(l, "time=") && (strings.Contains(l, " raft=") || !strings.Contains(l, " node=")) {
			t.Errorf("line not labelled node=: %s", l)
		}
	}

	// The peer back: one WARN says so.
	c.nodes[victim-1] = startServe(t, c.args(victim))
	for !strings.Contains(log.String()[before:], `msg="raft peer reachable again"`) {
		if ctx.Err() != nil {
			t.Fatalf("node %d did not log its peer back: %v", leader, context.Cause(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A clean stop of every node (peers resetting each other's
	// connections as they go) logs no ERROR line.
	marks := make([]int, len(c.nodes))
	for i, n := range c.nodes {
		marks[i] = len(n.log.String())
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, n := range c.nodes {
		if err := n.cmd.Wait(); err != nil {
			t.Errorf("node %d: %v", i+1, err)
		}
		for _, l := range strings.Split(n.log.String()[marks[i]:], "\n") {
			if strings.Contains(l, "level=ERROR") {
				t.Errorf("node %d logged an ERROR line while stopping: %s", i+1, l)
			}
		}
		if got := strings.Count(n.log.String()[marks[i]:], `msg="node stopped"`); got != 1 {
			t.Errorf("node %d logged \"node stopped\" %d times, want 1", i+1, got)
		}
	}
}

// reachedAttempts reports whether log has a line of re with an attempt
// count of at least n.
func reachedAttempts(re *regexp.Regexp, log string, n int) bool {
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		if a, _ := strconv.Atoi(m[1]); a >= n {
			return true
		}
	}
	return false
}
