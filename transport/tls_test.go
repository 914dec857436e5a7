package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch"
	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport/tlsconf"
)

// tlsRig is a server with mutual TLS required, its CA and certificate
// files, and the clock its reloading reads.
type tlsRig struct {
	dir     string
	ca      *testutil.CA
	node    testutil.CertFiles
	clock   *testutil.Clock
	addr    string
	metrics *countingMetrics
}

func newTLSRig(t *testing.T) *tlsRig { return newTLSRigWith(t, func(*ServerConfig) {}) }

// newTLSRigWith is newTLSRig with the server's configuration changed by
// tweak.
func newTLSRigWith(t *testing.T, tweak func(*ServerConfig)) *tlsRig {
	t.Helper()
	r := &tlsRig{dir: t.TempDir(), ca: testutil.NewCA(t, "cluster CA"), clock: testutil.NewClock(time.Now()), metrics: newCountingMetrics()}
	r.node = r.ca.IssueFiles(t, r.dir, "node")
	sc := tlsconf.DefaultServerConfig()
	sc.CertFile, sc.KeyFile, sc.ClientCAFile, sc.RequireClientCert, sc.Clock = r.node.Cert, r.node.Key, r.node.CA, true, r.clock.Now
	st, err := tlsconf.OpenServer(sc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testServerConfig()
	cfg.TLS, cfg.Metrics = st.TLSConfig(), r.metrics
	tweak(&cfg)
	_, r.addr = startServer(t, newFakeHandler(), cfg)
	return r
}

// client returns a client configuration trusting the rig's CA and
// presenting the certificate files f (none when f.Cert is empty).
func (r *tlsRig) client(t *testing.T, f testutil.CertFiles) ClientConfig {
	t.Helper()
	cc := tlsconf.DefaultClientConfig()
	cc.CAFile, cc.CertFile, cc.KeyFile = r.node.CA, f.Cert, f.Key
	c, err := tlsconf.OpenClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testClientConfig()
	cfg.TLS = c
	return cfg
}

// TestTLS: with mutual TLS required, a client with a certificate of the
// cluster's CA is served; one without a certificate, with one of another
// CA, with an expired one, or without TLS is refused at once with an
// error that says why; and a client does not trust a server outside its
// CA.
func TestTLS(t *testing.T) {
	r := newTLSRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	good := r.ca.IssueFiles(t, r.dir, "client")
	cl := dialTest(t, r.client(t, good), r.addr)
	if _, err := cl.Append(ctx, 1, []byte("over TLS")); err != nil {
		t.Fatalf("append with a good certificate: %v", err)
	}

	other := testutil.NewCA(t, "another CA").IssueFiles(t, r.dir, "stranger")
	expCert, expKey := r.ca.Issue(t, "expired", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	expired, err := tls.X509KeyPair(expCert, expKey)
	if err != nil {
		t.Fatal(err)
	}
	expiredCfg := r.client(t, testutil.CertFiles{})
	expiredCfg.TLS.Certificates = []tls.Certificate{expired} // OpenClient refuses to load it; a foreign client may send one
	plain := testClientConfig()

	for _, tc := range []struct {
		name string
		cfg  ClientConfig
		is   error
		want string
	}{
		{"no client certificate", r.client(t, testutil.CertFiles{}), ErrTLS, "certificate required"},
		{"certificate of another CA", r.client(t, other), ErrTLS, "unknown certificate authority"},
		{"expired certificate", expiredCfg, ErrTLS, "expired certificate"},
		{"no TLS", plain, ErrProtocol, "this port requires TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			cl, err := Dial(ctx, tc.cfg, r.addr)
			if err == nil {
				cl.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Dial: %v; want %v saying %q", err, tc.is, tc.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refused after %v: retried a refusal that cannot change", d)
			}
		})
	}

	// A client whose CA did not sign the server's certificate.
	cc := tlsconf.DefaultClientConfig()
	cc.CAFile = other.CA
	wrongCA, err := tlsconf.OpenClient(cc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testClientConfig()
	cfg.TLS = wrongCA
	if _, err := Dial(ctx, cfg, r.addr); !errors.Is(err, ErrTLS) || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("Dial of a server outside the client's CA: %v", err)
	}
	testutil.WaitFor(t, "the server to count the refused handshakes", 5*time.Second, func() bool {
		r.metrics.mu.Lock()
		defer r.metrics.mu.Unlock()
		return r.metrics.tlsFailed == 5
	})
}

// TestTLSRotation: new connections get the certificate that replaced the
// server's files, from the first check after the change; the connection
// already open goes on.
func TestTLSRotation(t *testing.T) {
	r := newTLSRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := r.ca.IssueFiles(t, r.dir, "client")
	cl := dialTest(t, r.client(t, client), r.addr)

	served := func() string {
		t.Helper()
		cfg := r.client(t, client).TLS.Clone()
		cfg.ServerName = "127.0.0.1"
		c, err := tls.Dial("tcp", r.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "node" {
		t.Fatalf("served %q, want node", got)
	}
	rotated := r.ca.IssueFiles(t, t.TempDir(), "node-rotated")
	for _, f := range [][2]string{{rotated.Cert, r.node.Cert}, {rotated.Key, r.node.Key}} {
		testutil.WriteFile(t, f[1], readFile(t, f[0]))
	}
	r.clock.Advance(tlsconf.DefaultCheckInterval)
	if got := served(); got != "node-rotated" {
		t.Fatalf("served %q after the rotation, want node-rotated", got)
	}
	if _, err := cl.Append(ctx, 1, []byte("still here")); err != nil {
		t.Fatalf("append on the connection opened before the rotation: %v", err)
	}
	cl2 := dialTest(t, r.client(t, client), r.addr)
	if _, err := cl2.Append(ctx, 1, []byte("new connection")); err != nil {
		t.Fatalf("append on a connection after the rotation: %v", err)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTLSMaxConns: a connection beyond MaxConns is told so over TLS, and
// one that never starts its handshake does not hold up the accept loop.
func TestTLSMaxConns(t *testing.T) {
	r := newTLSRigWith(t, func(c *ServerConfig) { c.MaxConns = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := r.ca.IssueFiles(t, r.dir, "client")
	dialTest(t, r.client(t, client), r.addr)
	silent := dialRaw(t, r.addr) // connects, never says a word
	defer silent.nc.Close()
	cfg := r.client(t, client)
	cfg.MaxAttempts = 1
	start := time.Now()
	_, err := Dial(ctx, cfg, r.addr)
	if !errors.Is(err, lockstitch.ErrUnavailable) || !strings.Contains(err.Error(), "busy: too many connections") {
		t.Fatalf("Dial beyond MaxConns: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("refused after %v: the silent connection held the accept loop", d)
	}
}
