package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/metrics"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/tlsconf"
)

// Peer is one node of the cluster.
type Peer struct {
	ID lockstitch.NodeID
	// RaftAddr is where the node's Raft traffic goes; ClientAddr where its
	// clients (and the other nodes' administration) reach it.
	RaftAddr, ClientAddr string
}

// Config configures a Node. Replicator and Transport hold the tunables of
// those packages; Start fills in their addresses, logger and metrics.
// DefaultConfig gives the defaults; Validate checks a Config without
// changing it.
type Config struct {
	// ID names this node among Peers.
	ID lockstitch.NodeID
	// DataDir holds the node's data.
	DataDir string
	// RaftAddr is this node's Raft address, as the other nodes reach it.
	// Dragonboat binds it itself, or RaftListen when that is set (peers
	// reach the node through a proxy, a NAT or a published port).
	RaftAddr, RaftListen string
	// ClientAddr is the client address advertised to clients and peers;
	// ClientListen the TCP address the server binds (default ClientAddr).
	ClientAddr, ClientListen string
	// ClientListener, when set, is a listener the caller has bound: the
	// node serves clients on it instead of binding ClientListen, and
	// ClientAddr defaults to its address. The node closes it.
	ClientListener net.Listener
	// UnixSocket, when set, is a path where the server also listens.
	// The socket file has mode UnixSocketMode (DefaultConfig: 0660) and,
	// when UnixSocketGroup is set (a group name or id), that group, from
	// the moment it appears at the path. A socket left by a node that
	// crashed is removed at start when nothing listens on it.
	UnixSocket      string
	UnixSocketMode  os.FileMode
	UnixSocketGroup string
	// AdminAddr, when set, serves /metrics, /debug/pprof/, /healthz and
	// /readyz over HTTP. AdminListener, when set, is a listener the
	// caller has bound for it instead; the node closes it.
	AdminAddr     string
	AdminListener net.Listener
	// TLS secures the client port's TCP listeners (the Unix socket stays
	// plain: its permissions guard it); see tlsconf.ServerConfig, whose
	// files are reloaded when they change. Its certificate is also the
	// node's client certificate when it calls its peers. The zero value
	// (DefaultConfig's) is plain TCP.
	TLS tlsconf.ServerConfig
	// PeerCAFile is a PEM file of the CAs the other nodes' certificates
	// chain to: with TLS, this node verifies the peers it calls (cluster
	// administration) against it; empty means the system's roots. It is
	// read at Start.
	PeerCAFile string
	// AdminTLS serves the admin listener over TLS, with TLS's
	// certificate; it asks for no client certificate.
	AdminTLS bool
	// AdminTokenFile, when set, is a file holding the token that requests
	// to /debug/pprof/ must carry (Authorization: Bearer TOKEN): the
	// token itself, or its SHA-256 as "sha256:" and 64 hex digits (see
	// security.go). It is read at Start. /metrics, /healthz and /readyz
	// stay open.
	AdminTokenFile string
	// AuthFile, when set, turns on authentication and authorization on
	// the client port (TCP and Unix socket): a TOML file of principals,
	// their credentials and permissions (see auth.go). It is read at
	// Start; a bad file fails the start.
	AuthFile string
	// PeerTokenFile holds the token this node presents to its peers
	// (their client ports serve cluster administration): its first line.
	// With an AuthFile and peers it is required, and its token must be a
	// principal's with read and admin on every partition ("*").
	PeerTokenFile string
	// Peers lists every node of the cluster, this one included; empty
	// means a cluster of this node alone.
	Peers []Peer
	// AdminTimeout bounds an admin request this node serves (less when
	// the caller's own deadline, carried in the request, is shorter), and
	// the steps of a partition create that run on once begun.
	AdminTimeout time.Duration
	// Repair says whether and when the node rebuilds its quarantined
	// replicas from their peers by itself (see repair.go); without it,
	// they wait for an AdminRepairReplica (lockstitch partition repair).
	Repair RepairPolicy
	// PeerProbeInterval is how often the node pings each peer, for
	// lockstitch_peer_up and lockstitch_peer_last_contact_seconds (see
	// peers.go), and to wake the quiet partitions (Replicator.Quiesce)
	// that a peer found down leaves without a leader or a quorum; 0
	// turns the probes off, which quiet partitions do not allow.
	PeerProbeInterval time.Duration

	Replicator replicator.Config
	Transport  transport.ServerConfig
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with the defaults of every part and the
// built-in plugins (Plugins); the caller sets ID, DataDir and the
// addresses.
//
// Unlike replicator.DefaultConfig, it lets idle partitions go quiet
// (Replicator.Quiesce): the node's peer probes, every second, wake them
// when a peer they depend on is down (see peers.go).
func DefaultConfig() Config {
	rc := replicator.DefaultConfig()
	rc.Plugins = Plugins()
	rc.Quiesce = true
	return Config{Replicator: rc, Transport: transport.DefaultServerConfig(), TLS: tlsconf.DefaultServerConfig(), UnixSocketMode: 0o660, AdminTimeout: time.Minute, Repair: DefaultRepairPolicy(), PeerProbeInterval: time.Second}
}

// Validate reports what is wrong with c; it does not change c.
func (c Config) Validate() error {
	var errs []error
	if c.ID == 0 {
		errs = append(errs, errors.New("node id must be set and not 0"))
	}
	if c.UnixSocket != "" && (c.UnixSocketMode&^0o777 != 0 || c.UnixSocketMode&0o600 != 0o600) {
		errs = append(errs, fmt.Errorf("unix socket mode %#o: permission bits only, and the owner (the node) needs read and write", c.UnixSocketMode))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data directory must be set"))
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		errs = append(errs, fmt.Errorf("raft address %q: %v", c.RaftAddr, err))
	}
	if c.ClientListener == nil || c.ClientAddr != "" {
		if _, _, err := net.SplitHostPort(c.ClientAddr); err != nil {
			errs = append(errs, fmt.Errorf("client address %q: %v", c.ClientAddr, err))
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
	seen := map[lockstitch.NodeID]bool{}
	self := false
	for _, p := range c.Peers {
		if p.ID == 0 || seen[p.ID] {
			errs = append(errs, fmt.Errorf("peer id %d is 0 or listed twice", p.ID))
		}
		seen[p.ID] = true
		if p.ID == c.ID {
			self = true
			if p.RaftAddr != c.RaftAddr || p.ClientAddr != c.clientAddr() {
				errs = append(errs, fmt.Errorf("peer %d (this node) has addresses %s and %s, but the node is configured with %s and %s",
					p.ID, p.RaftAddr, p.ClientAddr, c.RaftAddr, c.clientAddr()))
			}
		}
	}
	if len(c.Peers) > 0 && !self {
		errs = append(errs, fmt.Errorf("peers do not include this node (%d)", c.ID))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !c.TLS.Enabled() && (c.PeerCAFile != "" || c.AdminTLS) {
		errs = append(errs, errors.New("a peer CA file or TLS on the admin listener needs TLS: set the certificate and key files"))
	}
	if c.AuthFile != "" && len(c.Peers) > 1 && c.PeerTokenFile == "" {
		errs = append(errs, errors.New("an auth file on a node with peers needs a peer token file: the nodes call each other's client ports"))
	}
	if c.AdminTimeout <= 0 {
		errs = append(errs, fmt.Errorf("admin timeout %v must be positive", c.AdminTimeout))
	}
	if c.PeerProbeInterval < 0 {
		errs = append(errs, fmt.Errorf("peer probe interval %v is negative", c.PeerProbeInterval))
	}
	if c.Replicator.Quiesce && c.PeerProbeInterval == 0 && len(c.Peers) > 1 {
		errs = append(errs, errors.New("quiet partitions (quiesce) need the peer probes that wake them: peer probe interval must not be 0"))
	}
	if err := c.Repair.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.replicatorConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Transport.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("server: invalid config: %w", err)
	}
	return nil
}

// replicatorConfig is the replicator's configuration, with the node's
// directory and addresses.
func (c Config) replicatorConfig() replicator.Config {
	rc := c.Replicator
	rc.DataDir, rc.RaftAddress, rc.RaftListenAddress, rc.ClientAddress = c.DataDir, c.RaftAddr, c.RaftListen, c.clientAddr()
	return rc
}

// clientAddr is the advertised client address: ClientAddr, or the
// address of ClientListener.
func (c Config) clientAddr() string {
	if c.ClientAddr == "" && c.ClientListener != nil {
		return c.ClientListener.Addr().String()
	}
	return c.ClientAddr
}

// peers returns the cluster's nodes: Peers, or this node alone.
func (c Config) peers() []Peer {
	if len(c.Peers) == 0 {
		return []Peer{{ID: c.ID, RaftAddr: c.RaftAddr, ClientAddr: c.clientAddr()}}
	}
	ps := append([]Peer(nil), c.Peers...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].ID < ps[j].ID })
	return ps
}

// Node is one running Lockstitch node: a Replicator, the transport server
// that clients and the other nodes reach, the admin HTTP listener, and
// the cluster administration (see admin.go). It is safe for concurrent
// use.
type Node struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	r        *replicator.Replicator
	srv      *transport.Server
	httpSrv  *http.Server
	listen   []net.Listener
	adminL   net.Listener
	serveErr chan error
	// quit closes when the node closes; repairing is closed when the
	// automatic repair has stopped.
	quit      chan struct{}
	repairing chan struct{}
	peers     *peerHealth
	probing   chan struct{} // closed when the peer probes have stopped
	// peerClients are the clients of the other nodes for admin requests
	// (peerClient), nil once the node closes.
	// peerTLS is the TLS of those clients, nil without TLS.
	peerTLS *tls.Config
	// peerToken is the token those clients present, nil for none.
	peerToken   []byte
	peerMu      sync.Mutex
	peerClients map[lockstitch.NodeID]*transport.Client

	closeOnce sync.Once
	closeErr  error
}

// Start opens the node's replicator (its partitions come back by
// themselves) and starts serving clients, peers and the admin listener.
// A program that links Lockstitch runs a node in its own process with
// Start, and stops it with Shutdown or Close.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		closeListeners(cfg)
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: logger.With("node", uint64(cfg.ID)), reg: metrics.NewRegistry(), serveErr: make(chan error, 4), quit: make(chan struct{}), peers: newPeerHealth(),
		peerClients: map[lockstitch.NodeID]*transport.Client{}}
	n.cfg.ClientAddr = cfg.clientAddr()
	if n.cfg.ClientListen == "" {
		n.cfg.ClientListen = n.cfg.ClientAddr
	}
	sec, err := openSecurity(cfg, n.log)
	if err != nil {
		closeListeners(cfg)
		return nil, err
	}
	n.peerTLS, n.peerToken = sec.peerTLS, sec.peerToken
	rc := cfg.replicatorConfig()
	rc.Logger, rc.Registerer = n.log, n.reg
	r, err := replicator.Open(rc)
	if err != nil {
		closeListeners(cfg)
		return nil, err
	}
	n.r = r
	tc := cfg.Transport
	tc.NodeID, tc.Logger, tc.Metrics = uint64(cfg.ID), n.log, transport.NewPrometheusMetrics(n.reg)
	if sec.tls != nil {
		tc.TLS = sec.tls.TLSConfig()
	}
	if sec.auth != nil {
		tc.Authenticator = sec.auth
	}
	n.srv, err = transport.NewServer(&handler{n: n}, tc)
	if err != nil {
		closeListeners(cfg)
		r.Close()
		return nil, err
	}
	n.adminL = cfg.AdminListener // Close closes it from here on
	if cfg.ClientListener != nil {
		n.listen = append(n.listen, cfg.ClientListener)
	} else if err := n.listenOn(n.cfg.ClientListen); err != nil {
		n.Close()
		return nil, err
	}
	if cfg.UnixSocket != "" {
		if err := n.removeStaleSocket(cfg.UnixSocket); err != nil {
			n.Close()
			return nil, err
		}
		gid, err := lookupGroup(cfg.UnixSocketGroup)
		if err == nil {
			var l net.Listener
			if l, err = listenUnix(cfg.UnixSocket, cfg.UnixSocketMode, gid); err == nil {
				n.listen = append(n.listen, l)
			}
		}
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("server: unix socket %s: %w", cfg.UnixSocket, err)
		}
	}
	for _, l := range n.listen {
		go func() {
			if err := n.srv.Serve(l); err != nil && !errors.Is(err, lockstitch.ErrClosed) && !errors.Is(err, net.ErrClosed) {
				n.serveErr <- fmt.Errorf("server: serving %s: %w", l.Addr(), err)
			}
		}()
	}
	if n.adminL == nil && cfg.AdminAddr != "" {
		if n.adminL, err = net.Listen("tcp", cfg.AdminAddr); err != nil {
			n.Close()
			return nil, fmt.Errorf("server: admin listener on %s: %w", cfg.AdminAddr, err)
		}
	}
	if n.adminL != nil {
		var h http.Handler = metrics.AdminHandler(n.reg, n.Ready, n.Notes)
		if sec.adminToken != nil {
			h = requireToken(h, "/debug/pprof/", sec.adminToken)
		} else if tcp, ok := n.adminL.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
			n.log.Warn("the admin port is not on loopback and has no token: /debug/pprof/ (profiles, goroutine stacks, the command line) is open to whoever reaches it; set an admin token file", "admin", tcp.String())
		}
		if cfg.AdminTLS {
			n.adminL = tls.NewListener(n.adminL, sec.adminTLS())
		}
		n.httpSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := n.httpSrv.Serve(n.adminL); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.serveErr <- fmt.Errorf("server: admin listener: %w", err)
			}
		}()
	}
	n.reg.MustRegister(peerCollector{h: n.peers, now: time.Now}, diskCollector{dir: cfg.DataDir})
	if cfg.PeerProbeInterval > 0 && len(cfg.Peers) > 1 {
		n.probing = make(chan struct{})
		go func() {
			defer close(n.probing)
			n.probePeers(cfg.PeerProbeInterval, n.quit)
		}()
	}
	quarantined := r.Quarantined()
	n.log.Info("node serving", "client", n.ClientAddr(), "tls", cfg.TLS.Enabled(), "raft_tls", cfg.Replicator.RaftTLS.Enabled(), "raft_addr", cfg.RaftAddr, "unix", cfg.UnixSocket, "admin", n.AdminAddr(), "partitions", len(r.Partitions()), "quarantined", len(quarantined))
	if len(quarantined) > 0 && cfg.Repair.Auto {
		n.repairing = make(chan struct{})
		go func() {
			defer close(n.repairing)
			n.repairLoop(n.quit)
		}()
	}
	return n, nil
}

// listenOn binds a client listener at addr ("host:port" or "unix:/path").
func (n *Node) listenOn(addr string) error {
	l, err := transport.Listen(addr)
	if err != nil {
		return fmt.Errorf("server: listen on %s: %w", addr, err)
	}
	n.listen = append(n.listen, l)
	return nil
}

// closeListeners closes the listeners a Config hands over, when Start
// fails before a Node owns them.
func closeListeners(cfg Config) {
	if cfg.ClientListener != nil {
		cfg.ClientListener.Close()
	}
	if cfg.AdminListener != nil {
		cfg.AdminListener.Close()
	}
}

// ID returns the node's id.
func (n *Node) ID() lockstitch.NodeID { return n.cfg.ID }

// ClientAddr returns the address clients reach the node at: the first
// client listener's.
func (n *Node) ClientAddr() string {
	if len(n.listen) > 0 {
		return n.listen[0].Addr().String()
	}
	return n.cfg.ClientAddr
}

// AdminAddr returns the address of the admin HTTP listener, or "".
func (n *Node) AdminAddr() string {
	if n.adminL == nil {
		return ""
	}
	return n.adminL.Addr().String()
}

// Replicator returns the node's replicator.
func (n *Node) Replicator() *replicator.Replicator { return n.r }

// Registry returns the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Errors reports listeners that failed while serving.
func (n *Node) Errors() <-chan error { return n.serveErr }

// Ready returns nil when every partition this node runs a replica of is
// open and knows its leader: what /readyz reports. It looks at local
// state only. Quarantined replicas do not make the node unready: the
// node serves its other partitions, and Notes lists them.
func (n *Node) Ready() error {
	var waiting []string
	for _, id := range n.r.Partitions() {
		if p, err := n.r.Partition(id); err == nil && p.Quarantine() == nil && !p.Ready() {
			waiting = append(waiting, fmt.Sprint(id))
		}
	}
	if len(waiting) > 0 {
		return fmt.Errorf("partitions without a leader or still opening: %s", strings.Join(waiting, ", "))
	}
	return nil
}

// Notes describes what an operator should know of a node that may be
// ready: its quarantined replicas, with the reason. /readyz shows them.
func (n *Node) Notes() []string {
	var notes []string
	for _, q := range n.r.Quarantined() {
		notes = append(notes, q.Error())
	}
	return notes
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
		close(n.quit)
		if n.repairing != nil {
			<-n.repairing
		}
		if n.probing != nil {
			<-n.probing
		}
		n.closePeerClients()
		var errs []error
		if n.srv != nil {
			n.srv.Close()
		}
		for _, l := range n.listen {
			l.Close()
		}
		if n.httpSrv != nil {
			n.httpSrv.Close()
		} else if n.adminL != nil {
			n.adminL.Close()
		}
		if err := n.r.Close(); err != nil {
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("node stopped")
	})
	return n.closeErr
}
