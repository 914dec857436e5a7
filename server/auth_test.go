package server

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/wal"
)

// authFiles writes an auth file with principals nodes (the peer token's),
// ops and app, and the peer token file; it returns their paths.
func authFiles(t *testing.T, extra string) (auth, peerToken string) {
	t.Helper()
	dir := t.TempDir()
	auth, peerToken = filepath.Join(dir, "auth.toml"), filepath.Join(dir, "peer-token")
	body := `
[[principal]]
name = "nodes"
token_sha256 = "` + HashToken("node-secret") + `"
read = ["*"]
admin = ["*"]

[[principal]]
name = "ops"
token_sha256 = "` + HashToken("ops-secret") + `"
read = ["*"]
admin = ["1-5"]

[[principal]]
name = "app"
token_sha256 = "` + HashToken("app-secret") + `"
certificate = "app.clients"
append = ["1"]
read = ["1"]
` + extra
	if err := os.WriteFile(auth, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(peerToken, []byte("node-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return auth, peerToken
}

// TestClusterAuth runs three nodes with an auth file: the nodes
// administer each other with the peer token, an administrator creates
// partitions, an application appends and reads where it may and is
// denied elsewhere, and unknown credentials are refused and counted.
func TestClusterAuth(t *testing.T) {
	t.Parallel()
	auth, peerToken := authFiles(t, "")
	c := newClusterWith(t, 3, 3, func(cfg *Config) {
		cfg.AuthFile, cfg.PeerTokenFile = auth, peerToken
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dial := func(tok string) (*transport.Client, error) {
		cfg := transport.DefaultClientConfig()
		cfg.Credentials = []byte(tok)
		return transport.Dial(ctx, cfg, c.addrs()...)
	}
	ops, err := dial("ops-secret")
	if err != nil {
		t.Fatal(err)
	}
	defer ops.Close()
	for _, id := range []uint64{1, 2} {
		if _, err := ops.CreatePartition(ctx, transport.PartitionSpec{ID: lockstitch.PartitionID(id), Replicas: 3}); err != nil {
			t.Fatalf("create %d by an administrator (the nodes call each other): %v", id, err)
		}
	}
	if _, err := ops.CreatePartition(ctx, transport.PartitionSpec{ID: 9}); !errors.Is(err, transport.ErrPermissionDenied) {
		t.Fatalf("create outside the administrator's partitions: %v", err)
	}

	app, err := dial("app-secret")
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	res, err := app.Append(ctx, 1, []byte("permitted"))
	if err != nil {
		t.Fatalf("append where permitted: %v", err)
	}
	var recs transport.Records
	var rec wal.Record
	if err := app.Read(ctx, 1, res.LSN, transport.ReadOptions{}, &recs); err != nil || recs.Next(&rec) != nil || string(rec.Payload) != "permitted" {
		t.Fatalf("read where permitted: %q, %v", rec.Payload, err)
	}
	if _, err := app.Append(ctx, 2, []byte("no")); !errors.Is(err, transport.ErrPermissionDenied) {
		t.Fatalf("append to partition 2: %v, want PermissionDenied", err)
	}
	if err := app.DeletePartition(ctx, 1); !errors.Is(err, transport.ErrPermissionDenied) {
		t.Fatalf("delete by an application: %v, want PermissionDenied", err)
	}

	for _, tok := range []string{"", "guess"} {
		if cl, err := dial(tok); !errors.Is(err, transport.ErrUnauthenticated) {
			if cl != nil {
				cl.Close()
			}
			t.Fatalf("dial with token %q: %v, want Unauthenticated", tok, err)
		}
	}
	resp, err := http.Get("http://" + c.nodes[0].AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `lockstitch_transport_auth_failures_total{reason="credentials"} `) {
		t.Fatal("no auth failures counted in /metrics")
	}
}

// TestLoadAuth: a good file's grants, and each bad file refused with its
// reason.
func TestLoadAuth(t *testing.T) {
	good, _ := authFiles(t, "")
	pol, err := loadAuth(good)
	if err != nil {
		t.Fatal(err)
	}
	app, err := pol.Authenticate(context.Background(), transport.Credentials{Token: []byte("app-secret")})
	if err != nil || app.Name() != "app" {
		t.Fatalf("app's token: %v, %v", app, err)
	}
	for _, c := range []struct {
		a    transport.Action
		p    uint64
		want bool
	}{{transport.ActionAppend, 1, true}, {transport.ActionAppend, 2, false}, {transport.ActionRead, 1, true}, {transport.ActionAdmin, 1, false}} {
		if got := app.Allowed(c.a, lockstitch.PartitionID(c.p)); got != c.want {
			t.Errorf("app %s %d: %v, want %v", c.a, c.p, got, c.want)
		}
	}
	ops, _ := pol.Authenticate(context.Background(), transport.Credentials{Token: []byte("ops-secret")})
	if !ops.Allowed(transport.ActionAdmin, 5) || ops.Allowed(transport.ActionAdmin, 6) || !ops.Allowed(transport.ActionRead, 1<<40) {
		t.Fatal("ops's grants: admin 1-5, read all")
	}
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "app.clients"}}
	if p, err := pol.Authenticate(context.Background(), transport.Credentials{Certificates: []*x509.Certificate{cert}}); err != nil || p.Name() != "app" {
		t.Fatalf("app's certificate: %v, %v", p, err)
	}
	cert.Subject.CommonName = "stranger"
	if _, err := pol.Authenticate(context.Background(), transport.Credentials{Certificates: []*x509.Certificate{cert}}); err == nil {
		t.Fatal("a certificate no principal names was accepted")
	}

	dir := t.TempDir()
	for name, c := range map[string]struct{ body, want string }{
		"empty":      {"", "no principal"},
		"no name":    {"[[principal]]\ntoken_sha256 = \"" + HashToken("x") + "\"\n", "has no name"},
		"no creds":   {"[[principal]]\nname = \"a\"\nread = [\"*\"]\n", "neither token_sha256 nor certificate"},
		"bad hash":   {"[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"\n", "64 hex digits"},
		"bad range":  {"[[principal]]\nname = \"a\"\ncertificate = \"a\"\nread = [\"5-2\"]\n", "not a partition id"},
		"zero":       {"[[principal]]\nname = \"a\"\ncertificate = \"a\"\nappend = [\"0\"]\n", "not a partition id"},
		"unknown":    {"[[principal]]\nname = \"a\"\ncertificate = \"a\"\nwrite = [\"1\"]\n", "unknown key"},
		"duplicate":  {"[[principal]]\nname = \"a\"\ncertificate = \"a\"\n[[principal]]\nname = \"a\"\ncertificate = \"b\"\n", "two principals"},
		"same cert":  {"[[principal]]\nname = \"a\"\ncertificate = \"x\"\n[[principal]]\nname = \"b\"\ncertificate = \"x\"\n", "the same certificate name"},
		"same token": {"[[principal]]\nname = \"a\"\ntoken_sha256 = \"" + HashToken("x") + "\"\n[[principal]]\nname = \"b\"\ntoken_sha256 = \"" + HashToken("x") + "\"\n", "the same token"},
		"not toml":   {"[[principal", "auth.toml"},
	} {
		p := filepath.Join(dir, "auth.toml")
		if err := os.WriteFile(p, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadAuth(p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}

// TestStartAuthErrors: a node with peers and an auth file needs a peer
// token, and that token must be able to administer every partition.
func TestStartAuthErrors(t *testing.T) {
	auth, peerToken := authFiles(t, "")
	peers := []Peer{{ID: 1, RaftAddr: "127.0.0.1:1", ClientAddr: "127.0.0.1:2"}, {ID: 2, RaftAddr: "127.0.0.1:3", ClientAddr: "127.0.0.1:4"}}
	cfg := testConfig(t, peers[0], peers)
	cfg.AuthFile = auth
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), "peer token") {
		t.Fatalf("an auth file without a peer token: %v", err)
	}
	weak := filepath.Join(t.TempDir(), "weak-token")
	if err := os.WriteFile(weak, []byte("ops-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.PeerTokenFile = weak
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), `needs read and admin on "*"`) {
		t.Fatalf("a peer token of a principal that cannot administer everything: %v", err)
	}
	certOnly, _ := authFiles(t, "[[principal]]\nname = \"viewer\"\ncertificate = \"viewer\"\nread = [\"*\"]\n")
	cfg.AuthFile, cfg.PeerTokenFile = certOnly, peerToken
	if _, err := Start(cfg); err == nil || !strings.Contains(err.Error(), `principal "viewer" authenticates by certificate only`) {
		t.Fatalf("a certificate principal on a port that asks for no certificates: %v", err)
	}
}

// TestPeerCredentialsRefused: when a peer refuses this node's own token,
// the client that asked this node is told the node is unavailable (its
// peer credentials were refused), not that its own token was.
func TestPeerCredentialsRefused(t *testing.T) {
	t.Parallel()
	auth1, peer1 := authFiles(t, "")
	// Nodes 2 and 3 know another nodes' token than node 1 presents.
	dir := t.TempDir()
	body, err := os.ReadFile(auth1)
	if err != nil {
		t.Fatal(err)
	}
	auth2 := filepath.Join(dir, "auth.toml")
	other := strings.Replace(string(body), HashToken("node-secret"), HashToken("other-secret"), 1)
	if err := os.WriteFile(auth2, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	peer2 := filepath.Join(dir, "peer-token")
	if err := os.WriteFile(peer2, []byte("other-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newClusterWith(t, 3, 3, func(cfg *Config) {
		cfg.AuthFile, cfg.PeerTokenFile = auth2, peer2
		if cfg.ID == 1 {
			cfg.AuthFile, cfg.PeerTokenFile = auth1, peer1
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := transport.DefaultClientConfig()
	cfg.Credentials = []byte("ops-secret")
	cl, err := transport.Dial(ctx, cfg, c.peers[0].ClientAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = cl.CreatePartition(ctx, transport.PartitionSpec{ID: 1, Replicas: 3})
	if errors.Is(err, transport.ErrUnauthenticated) || !errors.Is(err, lockstitch.ErrUnavailable) || !strings.Contains(err.Error(), "refused this node's peer credentials") {
		t.Fatalf("create through a node whose peers refuse it: %v, want Unavailable saying the peer credentials were refused", err)
	}
}
