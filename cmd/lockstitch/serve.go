package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/server"
	"github.com/lockstitch/lockstitch/transport"
)

// serveSettings is the configuration of lockstitch serve. Every field is a
// flag, an environment variable and a config file key (see settings.go);
// docs/operations.md lists them.
type serveSettings struct {
	ID              uint64 `name:"id" help:"this node's id, unique in the cluster"`
	DataDir         string `name:"data-dir" help:"directory for all the node's data"`
	RaftAddr        string `name:"raft-addr" help:"host:port of this node's Raft traffic, as peers reach it"`
	RaftListen      string `name:"raft-listen" help:"host:port the Raft port binds when peers reach it at another address (a proxy, a NAT, a published port; default: raft-addr)"`
	ClientAddr      string `name:"client-addr" help:"host:port clients and peers reach this node's client server at"`
	ClientListen    string `name:"client-listen" help:"host:port the client server binds (default: client-addr)"`
	UnixSocket      string `name:"unix-socket" help:"path of a Unix socket the client server also listens on (sidecars); a stale one (nothing listens) is removed at start"`
	UnixSocketMode  string `name:"unix-socket-mode" help:"permissions of the Unix socket file, in octal (the owner needs rw)"`
	UnixSocketGroup string `name:"unix-socket-group" help:"group of the Unix socket file, a name or an id (default: the node's)"`
	AdminAddr       string `name:"admin-addr" help:"host:port of the admin HTTP listener (/metrics, /debug/pprof/, /healthz, /readyz); empty for none"`
	Peers           string `name:"peers" help:"the cluster's nodes: id=raft-addr/client-addr,... (this node included); empty for a one-node cluster"`
	LogLevel        string `name:"log-level" help:"debug, info, warn or error"`
	LogFormat       string `name:"log-format" help:"text or json"`

	ShutdownTimeout time.Duration `name:"shutdown-timeout" help:"how long a graceful stop waits for requests in flight"`

	TLSCert              string `name:"tls-cert" help:"PEM certificate of this node (for server and client authentication): served on the client port, and on the admin port with --admin-tls, and presented to the peers this node calls; reloaded when the file changes"`
	TLSKey               string `name:"tls-key" help:"PEM private key of --tls-cert"`
	TLSCA                string `name:"tls-ca" help:"PEM CAs of the cluster: this node verifies the peers it calls against them, and, with --raft-tls, the Raft port's peers"`
	TLSClientCA          string `name:"tls-client-ca" help:"PEM CAs that client certificates must chain to (include --tls-ca's, for the peers' calls, when client certificates are required)"`
	TLSRequireClientCert bool   `name:"tls-require-client-cert" help:"refuse clients without a certificate of --tls-client-ca (mutual TLS)"`
	RaftTLS              bool   `name:"raft-tls" help:"mutual TLS on the Raft port with --tls-cert, --tls-key and --tls-ca (every node of the cluster alike; read at start)"`
	AdminTLS             bool   `name:"admin-tls" help:"serve the admin HTTP listener over TLS, with --tls-cert"`
	AdminTokenFile       string `name:"admin-token-file" help:"file holding the token, or sha256:HEX of it, that /debug/pprof/ requires (Authorization: Bearer TOKEN); /metrics, /healthz and /readyz stay open"`
	Insecure             bool   `name:"insecure" help:"allow the client or Raft port on a non-loopback address without TLS"`
	AuthFile             string `name:"auth-file" help:"TOML file of the principals that may use the client port, their tokens' SHA-256 or certificate names, and the partitions each may append to, read, administer (docs/security.md); empty: no authentication"`
	PeerTokenFile        string `name:"peer-token-file" help:"file whose first line is the token this node presents to its peers' client ports; needed with --auth-file on a cluster"`

	MutexProfileFraction int `name:"mutex-profile-fraction" help:"sample 1 in N mutex contention events for /debug/pprof/mutex (0: off)"`
	BlockProfileRate     int `name:"block-profile-rate" help:"sample blocking events lasting this many nanoseconds for /debug/pprof/block (0: off)"`

	RTT                 time.Duration `name:"rtt" help:"Raft tick: about the round trip time between nodes"`
	ElectionRTT         uint64        `name:"election-rtt" help:"election timeout, in ticks"`
	HeartbeatRTT        uint64        `name:"heartbeat-rtt" help:"heartbeat interval, in ticks"`
	Quiesce             bool          `name:"quiesce" help:"let partitions with no activity go quiet (no heartbeats); the peer probes wake them when a node they depend on is down"`
	SnapshotEntries     uint64        `name:"snapshot-entries" help:"Raft entries between snapshots (and log compactions)"`
	CompactionOverhead  uint64        `name:"compaction-overhead" help:"Raft entries kept behind a snapshot"`
	SnapshotBytes       int64         `name:"snapshot-bytes" help:"bytes of Raft entries between snapshots by size (0: by entry count only)"`
	LogDB               string        `name:"logdb" help:"Raft log store: pebble or tan (fixed at the first start)"`
	EngineWorkers       int           `name:"engine-workers" help:"size of dragonboat's worker pools; 0 for its defaults (fixed at the first start)"`
	DeploymentID        uint64        `name:"deployment-id" help:"separates clusters that could reach each other (fixed at the first start)"`
	MaxOpBytes          int           `name:"max-op-bytes" help:"largest op payload"`
	MaxBatchBytes       int           `name:"max-batch-bytes" help:"largest Raft entry the leader coalesces appends into"`
	MaxBatchOps         int           `name:"max-batch-ops" help:"most ops coalesced into one Raft entry"`
	BatchLinger         time.Duration `name:"batch-linger" help:"how long, after batches commit, a partial batch waits for their callers' next appends"`
	BatchGap            time.Duration `name:"batch-gap" help:"how long with no append ends that wait early"`
	MaxInflightBatches  int           `name:"max-inflight-batches" help:"full batches per partition proposed and not yet committed"`
	MaxPendingOps       int           `name:"max-pending-ops" help:"appends queued per partition before Append answers Busy"`
	MaxPendingBytes     int64         `name:"max-pending-bytes" help:"bytes queued per partition before Append answers Busy"`
	MaxNodePendingBytes int64         `name:"max-node-pending-bytes" help:"bytes queued across every partition of the node before Append answers Busy"`
	ProposalTimeout     time.Duration `name:"proposal-timeout" help:"how long a batch may take to commit"`
	SegmentBytes        int64         `name:"segment-bytes" help:"size of each partition's log segments"`
	RetainBytes         int64         `name:"retain-bytes" help:"log bytes kept per partition (0: no limit)"`
	RetainAge           time.Duration `name:"retain-age" help:"log age kept per partition (0: no limit)"`
	CursorRetainOps     int64         `name:"cursor-retain-ops" help:"how many ops behind a durable cursor may lag and still hold log retention; beyond it the cursor lapses"`
	CopyBytesPerSecond  int64         `name:"copy-bytes-per-second" help:"rate limit of the copies this node sends to replicas that fell behind, all together (0: no limit)"`
	CheckpointInterval  time.Duration `name:"checkpoint-interval" help:"how often a busy partition makes its state durable"`
	ProgressInterval    time.Duration `name:"progress-interval" help:"how often replicas report their progress (lag)"`
	AutoRepair          bool          `name:"auto-repair" help:"rebuild replicas quarantined at start (their state failed to open) from their peers without waiting for lockstitch partition repair"`
	RepairDelay         time.Duration `name:"repair-delay" help:"wait before the first automatic repair; doubled after each failure, up to 5 minutes"`
	PeerProbeInterval   time.Duration `name:"peer-probe-interval" help:"how often this node pings each peer, for lockstitch_peer_up and lockstitch_peer_last_contact_seconds (0: never)"`

	MaxFrameBytes    int           `name:"max-frame-bytes" help:"largest client frame accepted"`
	MaxInFlight      int           `name:"max-in-flight" help:"requests in flight per client connection"`
	MaxConns         int           `name:"max-conns" help:"client connections"`
	HandshakeTimeout time.Duration `name:"handshake-timeout" help:"time for a new connection to say Hello"`
	IdleTimeout      time.Duration `name:"idle-timeout" help:"time a silent connection is kept"`
	WriteTimeout     time.Duration `name:"write-timeout" help:"time a client may take to read an answer"`
}

func defaultServeSettings() serveSettings {
	rc := replicator.DefaultConfig()
	tc := transport.DefaultServerConfig()
	rp := server.DefaultRepairPolicy()
	return serveSettings{
		AutoRepair: rp.Auto, RepairDelay: rp.First, PeerProbeInterval: server.DefaultConfig().PeerProbeInterval,
		ID: 1, DataDir: "lockstitch-data",
		RaftAddr: "127.0.0.1:7410", ClientAddr: "127.0.0.1:7400", AdminAddr: "127.0.0.1:7420",
		UnixSocketMode: fmt.Sprintf("%#o", server.DefaultConfig().UnixSocketMode),
		LogLevel:       "info", LogFormat: "text", ShutdownTimeout: 10 * time.Second,
		RTT: rc.RTT, ElectionRTT: rc.ElectionRTT, HeartbeatRTT: rc.HeartbeatRTT, Quiesce: server.DefaultConfig().Replicator.Quiesce,
		SnapshotEntries: rc.SnapshotEntries, CompactionOverhead: rc.CompactionOverhead, SnapshotBytes: rc.SnapshotBytes,
		LogDB: string(rc.LogDB), EngineWorkers: rc.EngineWorkers, DeploymentID: rc.DeploymentID,
		MaxOpBytes: rc.MaxOpBytes, MaxBatchBytes: rc.MaxBatchBytes, MaxBatchOps: rc.MaxBatchOps,
		BatchLinger: rc.BatchLinger, BatchGap: rc.BatchGap, MaxInflightBatches: rc.MaxInflightBatches,
		MaxPendingOps: rc.MaxPendingOps, MaxPendingBytes: rc.MaxPendingBytes, MaxNodePendingBytes: rc.MaxNodePendingBytes, ProposalTimeout: rc.ProposalTimeout,
		SegmentBytes: rc.SegmentBytes, RetainBytes: rc.RetainBytes, RetainAge: rc.RetainAge, CopyBytesPerSecond: rc.CopyBytesPerSecond,
		CursorRetainOps: rc.CursorRetainOps, CheckpointInterval: rc.CheckpointInterval, ProgressInterval: rc.ProgressInterval,
		MaxFrameBytes: tc.MaxFrameBytes, MaxInFlight: tc.MaxInFlight, MaxConns: tc.MaxConns,
		HandshakeTimeout: tc.HandshakeTimeout, IdleTimeout: tc.IdleTimeout, WriteTimeout: tc.WriteTimeout,
	}
}

// nodeConfig turns settings into a node configuration and checks it.
func (s serveSettings) nodeConfig(logger *slog.Logger) (server.Config, error) {
	var errs []error
	peers, err := parsePeers(s.Peers)
	if err != nil {
		errs = append(errs, err)
	}
	rc := server.DefaultConfig().Replicator // with the built-in plugins, quiesce on
	rc.RTT, rc.ElectionRTT, rc.HeartbeatRTT, rc.Quiesce = s.RTT, s.ElectionRTT, s.HeartbeatRTT, s.Quiesce
	rc.SnapshotEntries, rc.CompactionOverhead, rc.SnapshotBytes = s.SnapshotEntries, s.CompactionOverhead, s.SnapshotBytes
	rc.LogDB, rc.EngineWorkers, rc.DeploymentID = replicator.LogDB(s.LogDB), s.EngineWorkers, s.DeploymentID
	rc.MaxOpBytes, rc.MaxBatchBytes, rc.MaxBatchOps = s.MaxOpBytes, s.MaxBatchBytes, s.MaxBatchOps
	rc.BatchLinger, rc.BatchGap, rc.MaxInflightBatches = s.BatchLinger, s.BatchGap, s.MaxInflightBatches
	rc.MaxPendingOps, rc.MaxPendingBytes, rc.ProposalTimeout = s.MaxPendingOps, s.MaxPendingBytes, s.ProposalTimeout
	rc.MaxNodePendingBytes = s.MaxNodePendingBytes
	rc.SegmentBytes, rc.RetainBytes, rc.RetainAge = s.SegmentBytes, s.RetainBytes, s.RetainAge
	rc.CopyBytesPerSecond, rc.CursorRetainOps = s.CopyBytesPerSecond, s.CursorRetainOps
	rc.CheckpointInterval, rc.ProgressInterval = s.CheckpointInterval, s.ProgressInterval
	tc := transport.DefaultServerConfig()
	tc.MaxFrameBytes, tc.MaxInFlight, tc.MaxConns = s.MaxFrameBytes, s.MaxInFlight, s.MaxConns
	tc.HandshakeTimeout, tc.IdleTimeout, tc.WriteTimeout = s.HandshakeTimeout, s.IdleTimeout, s.WriteTimeout
	cfg := server.DefaultConfig()
	cfg.ID, cfg.DataDir, cfg.RaftAddr, cfg.RaftListen = lockstitch.NodeID(s.ID), s.DataDir, s.RaftAddr, s.RaftListen
	cfg.ClientAddr, cfg.ClientListen, cfg.UnixSocket, cfg.AdminAddr = s.ClientAddr, s.ClientListen, s.UnixSocket, s.AdminAddr
	if mode, err := strconv.ParseUint(s.UnixSocketMode, 8, 32); err != nil {
		errs = append(errs, fmt.Errorf("unix-socket-mode %q is not an octal mode such as 0660", s.UnixSocketMode))
	} else {
		cfg.UnixSocketMode = os.FileMode(mode)
	}
	cfg.UnixSocketGroup = s.UnixSocketGroup
	if s.RaftTLS {
		if s.TLSCA == "" || s.TLSCert == "" || s.TLSKey == "" {
			errs = append(errs, errors.New("--raft-tls needs --tls-ca, --tls-cert and --tls-key"))
		} else {
			rc.RaftTLS = replicator.RaftTLS{CAFile: s.TLSCA, CertFile: s.TLSCert, KeyFile: s.TLSKey}
		}
	}
	cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, cfg.TLS.RequireClientCert = s.TLSCert, s.TLSKey, s.TLSClientCA, s.TLSRequireClientCert
	cfg.AdminTLS, cfg.AdminTokenFile = s.AdminTLS, s.AdminTokenFile
	switch {
	case s.TLSCert != "":
		cfg.PeerCAFile = s.TLSCA
	case s.TLSCA != "" && !s.RaftTLS:
		errs = append(errs, errors.New("--tls-ca needs --tls-cert and --tls-key"))
	}
	cfg.AuthFile, cfg.PeerTokenFile = s.AuthFile, s.PeerTokenFile
	if err := s.plainExposed(); err != nil {
		errs = append(errs, err)
	}
	cfg.Peers, cfg.Replicator, cfg.Transport, cfg.Logger = peers, rc, tc, logger
	cfg.Repair.Auto, cfg.Repair.First = s.AutoRepair, s.RepairDelay
	cfg.PeerProbeInterval = s.PeerProbeInterval
	cfg.Repair.Max = max(cfg.Repair.Max, s.RepairDelay)
	// Check every layer now (the node's Validate checks the replicator's
	// and the transport's), so that a bad setting is one clear error
	// before anything starts.
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if tc.MaxFrameBytes < rc.MaxOpBytes+appendFrameOverhead {
		errs = append(errs, fmt.Errorf("max-frame-bytes %d must hold the largest op: at least max-op-bytes (%d) + %d", tc.MaxFrameBytes, rc.MaxOpBytes, appendFrameOverhead))
	}
	if s.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown-timeout must be positive"))
	}
	return cfg, errors.Join(errs...)
}

// plainExposed refuses a client or Raft port on a non-loopback address
// without TLS, unless --insecure: the ports carry every op and all of the
// cluster's administration.
func (s serveSettings) plainExposed() error {
	if s.Insecure {
		return nil
	}
	var exposed []string
	listen := s.ClientListen
	if listen == "" {
		listen = s.ClientAddr
	}
	if s.TLSCert == "" && !loopback(listen) {
		exposed = append(exposed, "client port "+listen)
	}
	raft := s.RaftListen
	if raft == "" {
		raft = s.RaftAddr
	}
	if !s.RaftTLS && !loopback(raft) {
		exposed = append(exposed, "Raft port "+raft)
	}
	if len(exposed) == 0 {
		return nil
	}
	return fmt.Errorf("refusing to serve without TLS on a non-loopback address (%s): set --tls-cert and --tls-key (and --raft-tls with --tls-ca), or --insecure to serve in plain text", strings.Join(exposed, ", "))
}

// loopback reports whether a host:port is on the loopback interface
// only: localhost or a loopback IP. An unspecified host (0.0.0.0, ":7400")
// or any other name is not.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return true // Validate reports it
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// appendFrameOverhead is what an Append frame body adds to its payload.
const appendFrameOverhead = 28

// parsePeers parses id=raft-addr/client-addr,...
func parsePeers(s string) ([]server.Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []server.Peer
	for _, item := range strings.Split(s, ",") {
		id, addrs, ok := strings.Cut(strings.TrimSpace(item), "=")
		raft, client, ok2 := strings.Cut(addrs, "/")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || !ok2 || err != nil || raft == "" || client == "" {
			return nil, fmt.Errorf("peers: %q is not id=raft-addr/client-addr", item)
		}
		peers = append(peers, server.Peer{ID: lockstitch.NodeID(n), RaftAddr: raft, ClientAddr: client})
	}
	return peers, nil
}

// newLogger builds the process logger.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log-format %q is not text or json", format)
}

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", os.Getenv("LOCKSTITCH_CONFIG"), "TOML config file (env LOCKSTITCH_CONFIG); flags and environment override it")
	s := defaultServeSettings()
	settings := bindSettings(fs, &s)
	if code, ok := parseFlags(fs, args, stdout, stderr); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(stderr, "serve takes no arguments, got %q", fs.Args())
	}
	// Every problem, from every stage, in one report.
	loadErr := loadSettings(settings, *config)
	logger, logErr := newLogger(stderr, s.LogLevel, s.LogFormat)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, cfgErr := s.nodeConfig(logger)
	if err := errors.Join(loadErr, logErr, flagNamed(cfgErr)); err != nil {
		return fail(stderr, fmt.Errorf("invalid configuration: %w", err))
	}
	if s.MutexProfileFraction > 0 {
		runtime.SetMutexProfileFraction(s.MutexProfileFraction)
	}
	if s.BlockProfileRate > 0 {
		runtime.SetBlockProfileRate(s.BlockProfileRate)
	}
	n, err := server.Start(cfg)
	if err != nil {
		return fail(stderr, err)
	}
	return runUntilSignal(logger.With("node", s.ID), s.ShutdownTimeout, []*server.Node{n})
}

// runUntilSignal serves until SIGINT or SIGTERM, then stops the nodes
// gracefully; a second signal exits at once.
func runUntilSignal(logger *slog.Logger, timeout time.Duration, nodes []*server.Node) int {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() {
			if err := <-n.Errors(); err != nil {
				errs <- err
			}
		}()
	}
	code := 0
	select {
	case s := <-sig:
		logger.Info("signal received; stopping (send it again to exit at once)", "signal", s.String())
	case err := <-errs:
		logger.Error("stopping", "err", err)
		code = 1
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		for _, n := range nodes {
			if err := n.Shutdown(ctx); err != nil {
				logger.Error("shutdown", "err", err)
				code = 1
			}
		}
	}()
	select {
	case <-done:
		logger.Info("stopped")
		return code
	case s := <-sig:
		logger.Warn("second signal: exiting at once", "signal", s.String())
		return 1
	}
}

// flagNamed is err with the settings that the libraries' validation
// names by their Go field names (ElectionRTT) named by their flags
// (--election-rtt), which is what an operator changes, said once. It
// wraps err.
func flagNamed(err error) error {
	if err == nil {
		return nil
	}
	// The line starts "invalid configuration": the libraries' own
	// "server: invalid config: " and "replicator: invalid config: " say
	// it again.
	msg := regexp.MustCompile(`\b(server|replicator): invalid config: `).ReplaceAllString(err.Error(), "")
	t := reflect.TypeFor[serveSettings]()
	for i := range t.NumField() {
		f := t.Field(i)
		if len(f.Name) < 3 || f.Name == "DataDir" { // ID, and words that are not only settings
			continue
		}
		msg = regexp.MustCompile(`\b`+f.Name+`\b`).ReplaceAllString(msg, "--"+f.Tag.Get("name"))
	}
	return &renamedError{msg, err}
}

// renamedError is an error with another text.
type renamedError struct {
	msg string
	err error
}

func (e *renamedError) Error() string { return e.msg }
func (e *renamedError) Unwrap() error { return e.err }
