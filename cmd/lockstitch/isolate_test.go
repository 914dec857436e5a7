package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
)

// The isolation tests cut one serve process off from its peers with
// nftables rules in its own network namespace, while clients (in the
// test's namespace) still reach every node: the fault a paused or killed
// process does not show, a node that is alive, answers its clients, and
// has lost its partition's quorum. They need root, iproute2 and nft, and
// run only with LOCKSTITCH_NETNS=1 (scripts/isolate).
//
// The network: a namespace per node and one holding a bridge (the
// switch), each node joined to it by a veth pair, and one veth pair from
// the test's namespace to the switch, so that nothing crosses the host's
// own forwarding rules. Every name and the subnet carry the test
// process's id; everything is deleted when the test ends.

// netnsCluster is n serve processes, one per network namespace.
type netnsCluster struct {
	t      *testing.T
	prefix string // names of namespaces and links
	subnet string // "10.77.X."
	dir    string
	peers  string // the --peers flag
	nodes  []*serveProcess
}

// ip runs ip(8) (or, with "nft" first, nft(8)) and fails the test on an
// error.
func (c *netnsCluster) run(name string, args ...string) {
	c.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (c *netnsCluster) ns(i int) string { return fmt.Sprintf("%sn%d", c.prefix, i) }

// nodeIP is node i's address; the test process's side of its link, in
// the host's namespace, is .254.
func (c *netnsCluster) nodeIP(i int) string { return c.subnet + strconv.Itoa(i) }

func (c *netnsCluster) clientAddr(i int) string { return c.nodeIP(i) + ":7000" }

func startNetnsCluster(t *testing.T, n int) *netnsCluster {
	t.Helper()
	pid := os.Getpid()
	prefix := os.Getenv("LOCKSTITCH_NETNS_PREFIX") // scripts/isolate's, to clean up after a crash
	if prefix == "" {
		prefix = fmt.Sprintf("lk%d", pid%100000)
	}
	c := &netnsCluster{t: t, prefix: prefix, subnet: fmt.Sprintf("10.77.%d.", pid%250), dir: t.TempDir()}
	if out, err := exec.Command("ip", "-o", "addr", "show", "to", c.subnet+"0/24").CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("the subnet %s0/24 is in use here (%v): %s", c.subnet, err, out)
	}
	sw := c.prefix + "sw"
	host := c.prefix + "h"
	t.Cleanup(func() {
		for _, p := range c.nodes {
			if p != nil {
				p.kill()
			}
		}
		exec.Command("ip", "link", "del", host).Run()
		for i := 1; i <= n; i++ {
			exec.Command("ip", "netns", "del", c.ns(i)).Run()
		}
		exec.Command("ip", "netns", "del", sw).Run()
	})
	c.run("ip", "netns", "add", sw)
	c.run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	c.run("ip", "-n", sw, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		ns := c.ns(i)
		c.run("ip", "netns", "add", ns)
		c.run("ip", "-n", sw, "link", "add", fmt.Sprint("v", i), "type", "veth", "peer", "name", "eth0", "netns", ns)
		c.run("ip", "-n", sw, "link", "set", fmt.Sprint("v", i), "master", "br0", "up")
		c.run("ip", "-n", ns, "addr", "add", c.nodeIP(i)+"/24", "dev", "eth0")
		c.run("ip", "-n", ns, "link", "set", "eth0", "up")
		c.run("ip", "-n", ns, "link", "set", "lo", "up")
	}
	c.run("ip", "link", "add", host, "type", "veth", "peer", "name", "vh", "netns", sw)
	c.run("ip", "-n", sw, "link", "set", "vh", "master", "br0", "up")
	c.run("ip", "addr", "add", c.subnet+"254/24", "dev", host)
	c.run("ip", "link", "set", host, "up")

	var peers []string
	for i := 1; i <= n; i++ {
		peers = append(peers, fmt.Sprintf("%d=%s:7010/%s", i, c.nodeIP(i), c.clientAddr(i)))
	}
	c.peers = strings.Join(peers, ",")
	c.nodes = make([]*serveProcess, n)
	for i := 1; i <= n; i++ {
		c.start(i)
	}
	return c
}

// dataDir returns node i's data directory.
func (c *netnsCluster) dataDir(i int) string { return fmt.Sprintf("%s/node%d", c.dir, i) }

// start starts node i's serve process in its namespace (again, after a
// kill: the cleanup kills the last one).
func (c *netnsCluster) start(i int) {
	c.t.Helper()
	args := []string{"netns", "exec", c.ns(i), os.Args[0], "serve",
		"--id", fmt.Sprint(i), "--data-dir", c.dataDir(i),
		"--raft-addr", c.nodeIP(i) + ":7010", "--client-addr", c.clientAddr(i), "--admin-addr", "127.0.0.1:7020",
		"--peers", c.peers, "--rtt", "5ms", "--log-level", "info", "--insecure"}
	p := &serveProcess{args: args, log: new(syncBuffer)}
	// ip netns exec execs the command: the process is the server.
	p.cmd = exec.Command("ip", args...)
	p.cmd.Env = append(os.Environ(), "LOCKSTITCH_TEST_MAIN=1")
	p.cmd.Stderr = p.log
	// If the test process dies (a -timeout panic), so do its servers.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i-1] = p
}

// isolate cuts node i off from the other nodes (not from clients).
func (c *netnsCluster) isolate(i int) {
	c.t.Helper()
	var others []int
	for j := 1; j <= len(c.nodes); j++ {
		if j != i {
			others = append(others, j)
		}
	}
	c.cutOff(i, others)
}

// cutOff cuts node i off from the nodes from (not from clients); heal
// undoes it.
func (c *netnsCluster) cutOff(i int, from []int) {
	c.t.Helper()
	var ips []string
	for _, j := range from {
		ips = append(ips, c.nodeIP(j))
	}
	set := strings.Join(ips, ", ")
	rules := fmt.Sprintf(`table inet lsiso {
  chain in { type filter hook input priority 0; policy accept; ip saddr { %s } drop; }
  chain out { type filter hook output priority 0; policy accept; ip daddr { %s } drop; }
}
`, set, set)
	cmd := exec.Command("ip", "netns", "exec", c.ns(i), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("isolate node %d: %v\n%s", i, err, out)
	}
}

// dropTo drops node i's packets to the nodes to, one way: what they send
// node i still arrives. heal undoes it.
func (c *netnsCluster) dropTo(i int, to []int) {
	c.t.Helper()
	var ips []string
	for _, j := range to {
		ips = append(ips, c.nodeIP(j))
	}
	rules := fmt.Sprintf(`table inet lsiso {
  chain out { type filter hook output priority 0; policy accept; ip daddr { %s } drop; }
}
`, strings.Join(ips, ", "))
	cmd := exec.Command("ip", "netns", "exec", c.ns(i), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("drop node %d's packets to %v: %v\n%s", i, to, err, out)
	}
}

// heal undoes isolate, cutOff and dropTo.
func (c *netnsCluster) heal(i int) {
	c.t.Helper()
	c.run("ip", "netns", "exec", c.ns(i), "nft", "delete", "table", "inet", "lsiso")
}

// dial connects to the nodes given, once each answers.
func (c *netnsCluster) dial(ctx context.Context, nodes ...int) *transport.Client {
	c.t.Helper()
	var addrs []string
	for _, i := range nodes {
		addrs = append(addrs, c.clientAddr(i))
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			cl, err := transport.Dial(ctx, transport.DefaultClientConfig(), c.clientAddr(i))
			if err == nil {
				cl.Close()
				break
			}
			if time.Now().After(deadline) {
				c.t.Fatalf("node %d does not answer: %v\n%s", i, err, c.nodes[i-1].log)
			}
		}
	}
	cl, err := transport.Dial(ctx, failoverClientConfig(), addrs...)
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// TestIsolationFailover isolates, each round, the leader of a partition
// under appends (one at a time, a client that reaches every node) and
// measures the time from the cut to the first append acknowledged by a
// new leader; then, each round, the follower serving a subscription, and
// the time from the cut to the subscriber's next op (its replica, alive
// and reachable, loses touch with its leader and ends the subscription;
// the client resumes on another node). LOCKSTITCH_FAILOVER_ROUNDS sets
// the rounds (default 5). The figures go in docs/benchmarks.md.
func TestIsolationFailover(t *testing.T) {
	if os.Getenv("LOCKSTITCH_NETNS") == "" {
		t.Skip("needs root, iproute2 and nft: scripts/isolate runs it with LOCKSTITCH_NETNS=1")
	}
	rounds := failoverRounds(t, 5)
	c := startNetnsCluster(t, 3)
	if os.Getenv("LOCKSTITCH_FAILOVER_LOG") != "" {
		defer func() {
			for i, p := range c.nodes {
				t.Logf("node %d's log:\n%s", i+1, p.log)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rounds)*time.Minute+2*time.Minute)
	defer cancel()
	cl := c.dial(ctx, 1, 2, 3)
	defer cl.Close()
	if _, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Nodes: []lockstitch.NodeID{1, 2, 3}}); err != nil {
		t.Fatal(err)
	}
	fc := failoverCluster{addr: c.clientAddr, fault: c.isolate, undo: c.heal}
	leader := fc.leaderFailover(t, ctx, cl, rounds, false)
	sub := fc.subscriberFailover(t, ctx, cl, rounds)
	logSpread(t, "leader cut off to the first append acknowledged by a new leader", leader)
	logSpread(t, "subscriber's follower cut off to its next op", sub)
}
