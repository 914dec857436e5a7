package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch/metrics"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
)

// Peer is one node of the cluster.
type Peer struct {
	ID uint64
	// RaftAddr is where the node's Raft traffic goes; ClientAddr where its
	// clients (and the other nodes' administration) reach it.
	RaftAddr, ClientAddr string
}

// Config configures a Node. Replicator and Transport hold the tunables of
// those packages; Start fills in the addresses.
type Config struct {
	// ID names this node among Peers.
	ID uint64
	// DataDir holds the node's data.
	DataDir string
	// RaftAddr is this node's Raft address, as the other nodes reach it.
	RaftAddr string
	// ClientAddr is the client address advertised to clients and peers;
	// ClientListen the TCP address the server binds (default ClientAddr).
	ClientAddr, ClientListen string
	// UnixSocket, when set, is a path where the server also listens.
	UnixSocket string
	// AdminAddr, when set, serves /metrics, /debug/pprof/, /healthz and
	// /readyz over HTTP.
	AdminAddr string
	// Peers lists every node of the cluster, this one included.
	Peers []Peer

	Replicator replicator.Config
	Transport  transport.ServerConfig
	Logger     *slog.Logger
}

// Validate reports what is wrong with c; it does not change c.
func (c Config) Validate() error {
	var errs []error
	if c.ID == 0 {
		errs = append(errs, errors.New("node id must be set and not 0"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data directory must be set"))
	}
	for _, a := range []struct{ name, v string }{{"raft address", c.RaftAddr}, {"client address", c.ClientAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %v", a.name, a.v, err))
		}
	}
	if c.ClientListen != "" {
		if _, _, err := net.SplitHostPort(c.ClientListen); err != nil {
			errs = append(errs, fmt.Errorf("client listen address %q: %v", c.ClientListen, err))
		}
	}
	if c.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdminAddr); err != nil {
			errs = append(errs, fmt.Errorf("admin address %q: %v", c.AdminAddr, err))
		}
	}
	seen := map[uint64]bool{}
	self := false
	for _, p := range c.Peers {
		if p.ID == 0 || seen[p.ID] {
			errs = append(errs, fmt.Errorf("peer id %d is 0 or listed twice", p.ID))
		}
		seen[p.ID] = true
		if p.ID == c.ID {
			self = true
			if p.RaftAddr != c.RaftAddr || p.ClientAddr != c.ClientAddr {
				errs = append(errs, fmt.Errorf("peer %d (this node) has addresses %s and %s, but the node is configured with %s and %s",
					p.ID, p.RaftAddr, p.ClientAddr, c.RaftAddr, c.ClientAddr))
			}
		}
	}
	if len(c.Peers) > 0 && !self {
		errs = append(errs, fmt.Errorf("peers do not include this node (%d)", c.ID))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("node: invalid config: %w", err)
	}
	return nil
}

// peers returns the cluster's nodes: Peers, or this node alone.
func (c Config) peers() []Peer {
	if len(c.Peers) == 0 {
		return []Peer{{ID: c.ID, RaftAddr: c.RaftAddr, ClientAddr: c.ClientAddr}}
	}
	ps := append([]Peer(nil), c.Peers...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	return ps
}

// Node is a running server.
type Node struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	r        *replicator.Replicator
	srv      *transport.Server
	admin    *http.Server
	listen   []net.Listener
	serveErr chan error

	closeOnce sync.Once
	closeErr  error
}

// Start opens the node's replicator (its partitions come back by
// themselves) and starts serving.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: logger.With("node", cfg.ID), reg: metrics.NewRegistry(), serveErr: make(chan error, 4)}
	if cfg.ClientListen == "" {
		n.cfg.ClientListen = cfg.ClientAddr
	}
	rc := cfg.Replicator
	rc.DataDir, rc.RaftAddress, rc.ClientAddress = cfg.DataDir, cfg.RaftAddr, cfg.ClientAddr
	rc.Logger, rc.Registerer = logger, n.reg
	r, err := replicator.Open(rc)
	if err != nil {
		return nil, err
	}
	n.r = r
	tc := cfg.Transport
	tc.NodeID, tc.Logger, tc.Metrics = cfg.ID, logger, transport.NewPrometheusMetrics(n.reg)
	n.srv, err = transport.NewServer(replicator.NewHandler(r, cfg.ID, n.serveAdmin), tc)
	if err != nil {
		r.Close()
		return nil, err
	}
	addrs := []string{n.cfg.ClientListen}
	if cfg.UnixSocket != "" {
		addrs = append(addrs, "unix:"+cfg.UnixSocket)
	}
	for _, a := range addrs {
		l, err := transport.Listen(a)
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("node: listen on %s: %w", a, err)
		}
		n.listen = append(n.listen, l)
		go func() {
			if err := n.srv.Serve(l); err != nil && !errors.Is(err, transport.ErrClosed) && !errors.Is(err, net.ErrClosed) {
				n.serveErr <- fmt.Errorf("node: serving %s: %w", l.Addr(), err)
			}
		}()
	}
	if cfg.AdminAddr != "" {
		l, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("node: admin listener on %s: %w", cfg.AdminAddr, err)
		}
		n.admin = &http.Server{Handler: metrics.AdminHandler(n.reg, n.Ready), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := n.admin.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.serveErr <- fmt.Errorf("node: admin listener: %w", err)
			}
		}()
	}
	n.log.Info("node serving", "client", n.cfg.ClientListen, "raft", cfg.RaftAddr, "unix", cfg.UnixSocket, "admin", cfg.AdminAddr, "partitions", len(r.Partitions()))
	return n, nil
}

// Replicator returns the node's replicator.
func (n *Node) Replicator() *replicator.Replicator { return n.r }

// Registry returns the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Errors reports listeners that failed while serving.
func (n *Node) Errors() <-chan error { return n.serveErr }

// Ready returns nil when every partition this node hosts is open and
// knows its leader: what /readyz reports. It looks at local state only.
func (n *Node) Ready() error {
	var waiting []string
	for _, id := range n.r.Partitions() {
		if p, err := n.r.Partition(id); err == nil && !p.Ready() {
			waiting = append(waiting, fmt.Sprint(id))
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("partitions without a leader or still opening: %s", strings.Join(waiting, ", "))
	}
	return nil
}

// Shutdown stops the node gracefully: it stops accepting connections,
// lets requests in flight finish until ctx ends, then closes the
// replicator, which makes every partition's applied state durable.
func (n *Node) Shutdown(ctx context.Context) error {
	n.log.Info("node shutting down")
	err := n.srv.Shutdown(ctx)
	if err != nil {
		n.log.Warn("requests still in flight at the shutdown deadline", "err", err)
	}
	return n.Close()
}

// Close stops the node at once. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		n.srv.Close()
		for _, l := range n.listen {
			l.Close()
		}
		if n.admin != nil {
			n.admin.Close()
		}
		if err := n.r.Close(); err != nil {
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.closeErr
}
