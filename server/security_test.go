package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/replicator"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/tlsconf"
)

// secureNode turns on every port's TLS for a node of a test cluster, with
// a certificate of ca, and the admin token file token.
func secureNode(t testing.TB, ca *testutil.CA, dir, token string) func(*Config) {
	return func(cfg *Config) {
		f := ca.IssueFiles(t, dir, fmt.Sprint("node", cfg.ID))
		cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, cfg.TLS.RequireClientCert = f.Cert, f.Key, f.CA, true
		cfg.PeerCAFile = f.CA
		cfg.Replicator.RaftTLS.CAFile, cfg.Replicator.RaftTLS.CertFile, cfg.Replicator.RaftTLS.KeyFile = f.CA, f.Cert, f.Key
		cfg.AdminTLS, cfg.AdminTokenFile = true, token
	}
}

// TestClusterTLS runs a cluster with TLS on every port: a client with a
// certificate of the cluster's CA creates a partition (the nodes call
// each other over TLS with their own certificates) and appends to it
// (Raft over mutual TLS); the Raft port refuses a peer without a
// certificate of the cluster's CA, and a plain TCP one; the admin
// listener speaks TLS and wants the token for pprof only.
func TestClusterTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testutil.NewCA(t, "cluster CA")
	token := filepath.Join(dir, "admin-token")
	sum := sha256.Sum256([]byte("s3cret"))
	if err := os.WriteFile(token, []byte("sha256:"+hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClusterWith(t, 3, 3, secureNode(t, ca, dir, token))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	client := ca.IssueFiles(t, dir, "client")
	cc := tlsconf.DefaultClientConfig()
	cc.CAFile, cc.CertFile, cc.KeyFile = client.CA, client.Cert, client.Key
	ctls, err := tlsconf.OpenClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := transport.DefaultClientConfig()
	cfg.TLS = ctls
	cl, err := transport.Dial(ctx, cfg, c.addrs()...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if placed, err := cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Replicas: 3}); err != nil || len(placed) != 3 {
		t.Fatalf("create over TLS: %v, %v", placed, err)
	}
	for i := range 10 {
		if _, err := cl.Append(ctx, 1, []byte(fmt.Sprint("op ", i))); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	if _, err := transport.Dial(ctx, transport.DefaultClientConfig(), c.addrs()[0]); !errors.Is(err, transport.ErrProtocol) {
		t.Fatalf("a plain client on the client port: %v", err)
	}
	// The Unix socket stays plain. (An append there may be sent on to the
	// leader's TCP port, which wants TLS: ask the node itself.)
	sock := "unix:" + c.nodes[0].cfg.UnixSocket
	ucl, err := transport.Dial(ctx, transport.DefaultClientConfig(), sock)
	if err != nil {
		t.Fatalf("a plain client on the Unix socket: %v", err)
	}
	_, err = ucl.Status(ctx, sock)
	ucl.Close()
	if err != nil {
		t.Fatalf("status over the Unix socket: %v", err)
	}

	// The Raft port: a peer with a certificate of the cluster's CA is
	// answered; without one, with one of another CA, or without TLS, not.
	raft := c.peers[0].RaftAddr
	stranger := testutil.NewCA(t, "another CA").IssueFiles(t, dir, "stranger")
	for _, tc := range []struct {
		name  string
		files *testutil.CertFiles
		want  bool
	}{
		{"certificate of the cluster CA", &client, true},
		{"no certificate", &testutil.CertFiles{}, false},
		{"certificate of another CA", &stranger, false},
		{"plain TCP", nil, false},
	} {
		var conf *tls.Config
		if tc.files != nil {
			cc := tlsconf.DefaultClientConfig()
			cc.CAFile, cc.CertFile, cc.KeyFile = client.CA, tc.files.Cert, tc.files.Key
			if conf, err = tlsconf.OpenClient(cc); err != nil {
				t.Fatal(err)
			}
			conf.ServerName = "127.0.0.1"
		}
		if got := raftPeerAnswers(raft, conf); got != tc.want {
			t.Errorf("Raft port, %s: answered %v, want %v", tc.name, got, tc.want)
		}
	}

	// The admin listener.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: ctls.Clone()}}
	defer hc.CloseIdleConnections()
	base := "https://" + c.nodes[0].AdminAddr()
	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200}, {"/readyz", "", 200}, {"/metrics", "", 200},
		{"/debug/pprof/", "", 401}, {"/debug/pprof/cmdline", "wrong", 401}, {"/debug/pprof/cmdline", "s3cret", 200},
	} {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with token %q: %d, want %d", tc.path, tc.token, resp.StatusCode, tc.want)
		}
	}
	if resp, err := http.Get("http://" + c.nodes[0].AdminAddr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("the admin listener answered plain HTTP")
		}
	}
}

// raftPeerAnswers dials a Raft port as a peer would, with conf (nil:
// plain TCP), sends dragonboat's "poison" (two zero bytes, which a node
// answers with two zero bytes and a close) and reports whether the node
// answered: whether it took the connection as a peer's. A node that
// refuses the TLS handshake answers nothing (dragonboat leaves a refused
// connection open: the read waits for its deadline).
func raftPeerAnswers(addr string, conf *tls.Config) bool {
	d := &net.Dialer{Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return false
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(2 * time.Second))
	if conf != nil {
		tc := tls.Client(nc, conf)
		if err := tc.Handshake(); err != nil {
			return false
		}
		nc = tc
	}
	if _, err := nc.Write([]byte{0, 0}); err != nil {
		return false
	}
	var ack [2]byte
	_, err = io.ReadFull(nc, ack[:])
	return err == nil && ack == [2]byte{}
}

// TestStartTLSErrors: a node with a bad certificate does not start, and
// says why.
func TestStartTLSErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := testutil.NewCA(t, "cluster CA")
	good := ca.IssueFiles(t, dir, "good")
	oldCert, oldKey := ca.Issue(t, "old", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	testutil.WriteFile(t, filepath.Join(dir, "old.crt"), oldCert)
	testutil.WriteFile(t, filepath.Join(dir, "old.key"), oldKey)
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"client port, expired", func(c *Config) {
			c.TLS.CertFile, c.TLS.KeyFile = filepath.Join(dir, "old.crt"), filepath.Join(dir, "old.key")
		}, `client port TLS: tls: certificate ` + filepath.Join(dir, "old.crt") + `: tlsconf: certificate expired or not yet valid: "old" expired at`},
		{"Raft, key of another certificate", func(c *Config) {
			c.Replicator.RaftTLS = replicatorRaftTLS(good.CA, good.Cert, filepath.Join(dir, "old.key"))
		}, "Raft TLS: tls: certificate " + good.Cert + " with key " + filepath.Join(dir, "old.key") + ": tls: private key does not match public key"},
		{"admin token file missing", func(c *Config) { c.AdminTokenFile = filepath.Join(dir, "none") }, "admin token: open " + filepath.Join(dir, "none")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Peer{ID: 1, RaftAddr: testutil.FreeAddr(t), ClientAddr: "127.0.0.1:0"}
			cfg := testConfig(t, p, nil)
			cfg.ClientListener, cfg.ClientAddr = listen(t), ""
			tc.set(&cfg)
			n, err := Start(cfg)
			if err == nil {
				n.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start: %v\nwant it to say: %s", err, tc.want)
			}
		})
	}
}

func replicatorRaftTLS(ca, cert, key string) (t replicator.RaftTLS) {
	t.CAFile, t.CertFile, t.KeyFile = ca, cert, key
	return t
}
