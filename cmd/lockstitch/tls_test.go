package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
)

// TestPlainExposed: serve refuses a client or Raft port on a non-loopback
// address without TLS, in one line, unless --insecure; loopback needs
// nothing.
func TestPlainExposed(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*serveSettings)
		want string // "" for no refusal
	}{
		{"defaults (loopback)", func(*serveSettings) {}, ""},
		{"localhost", func(s *serveSettings) { s.ClientAddr, s.RaftAddr = "localhost:7400", "[::1]:7410" }, ""},
		{"client listen on every interface", func(s *serveSettings) { s.ClientListen = "0.0.0.0:7400" }, "(client port 0.0.0.0:7400)"},
		{"client and Raft on a LAN address", func(s *serveSettings) { s.ClientAddr, s.RaftAddr = "10.0.0.1:7400", "10.0.0.1:7410" },
			"(client port 10.0.0.1:7400, Raft port 10.0.0.1:7410)"},
		{"a host name", func(s *serveSettings) { s.RaftAddr = "node1:7410" }, "(Raft port node1:7410)"},
		{"Raft listen on every interface", func(s *serveSettings) { s.RaftListen = "0.0.0.0:7410" }, "(Raft port 0.0.0.0:7410)"},
		{"Raft reached by name, listening on loopback (a proxy in front)", func(s *serveSettings) { s.RaftAddr, s.RaftListen = "node1:7410", "127.0.0.1:7410" }, ""},
		{"client TLS, Raft plain", func(s *serveSettings) {
			s.ClientAddr, s.RaftAddr, s.TLSCert, s.TLSKey = "10.0.0.1:7400", "10.0.0.1:7410", "n.crt", "n.key"
		}, "(Raft port 10.0.0.1:7410)"},
		{"TLS on both", func(s *serveSettings) {
			s.ClientAddr, s.RaftAddr, s.TLSCert, s.TLSKey, s.TLSCA, s.RaftTLS = "10.0.0.1:7400", "10.0.0.1:7410", "n.crt", "n.key", "ca.crt", true
		}, ""},
		{"--insecure", func(s *serveSettings) { s.ClientListen, s.RaftAddr, s.Insecure = "0.0.0.0:7400", "10.0.0.1:7410", true }, ""},
	} {
		s := defaultServeSettings()
		tc.set(&s)
		err := s.plainExposed()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "refusing to serve without TLS on a non-loopback address "+tc.want+": set --tls-cert")):
			t.Errorf("%s: %v, want a refusal naming %s", tc.name, err, tc.want)
		}
	}
	// Through the command: one line, exit 1. --election-rtt 2 is invalid
	// too, so that nothing would start if the refusal were missing.
	code, _, errOut := cli(t, "serve", "--data-dir", t.TempDir(), "--client-listen", "0.0.0.0:7400", "--election-rtt", "2")
	if code != 1 || !strings.Contains(errOut, "refusing to serve without TLS") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Fatalf("serve --client-listen 0.0.0.0:7400: exit %d, %q", code, errOut)
	}
	code, _, errOut = cli(t, "serve", "--data-dir", t.TempDir(), "--client-listen", "0.0.0.0:7400", "--insecure", "--election-rtt", "2")
	if code != 1 || strings.Contains(errOut, "refusing") {
		t.Fatalf("serve --insecure: exit %d, %q", code, errOut)
	}
}

// TestServeTLS runs serve with TLS on the client and Raft ports and client
// certificates required, and the CLI against it: with the CA and a client
// certificate it works; without a certificate, or without TLS, it fails
// at once saying why.
func TestServeTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	t.Parallel()
	dir := t.TempDir()
	ca := testutil.NewCA(t, "cluster CA")
	node, client := ca.IssueFiles(t, dir, "node"), ca.IssueFiles(t, dir, "client")
	addr, raft := testutil.FreeAddr(t), testutil.FreeAddr(t)
	p := startServe(t, []string{"--id", "1", "--data-dir", filepath.Join(dir, "data"), "--client-addr", addr, "--raft-addr", raft,
		"--admin-addr", "", "--rtt", "5ms", "--tls-cert", node.Cert, "--tls-key", node.Key, "--tls-ca", node.CA,
		"--tls-client-ca", node.CA, "--tls-require-client-cert", "--raft-tls"})
	// withTLS is a command line: cmd, the TLS flags, then rest.
	withTLS := func(cmd []string, rest ...string) []string {
		args := append(cmd, "--addr", addr, "--tls-ca", client.CA, "--tls-cert", client.Cert, "--tls-key", client.Key)
		return append(args, rest...)
	}
	testutil.WaitFor(t, "serve to answer over TLS", 30*time.Second, func() bool {
		code, _, _ := cli(t, withTLS([]string{"partition", "list"})...)
		return code == 0 || p.cmd.ProcessState != nil
	})
	if code, out, errOut := cli(t, withTLS([]string{"partition", "create"}, "--id", "1", "--replicas", "1")...); code != 0 {
		t.Fatalf("partition create: exit %d, %s%s\nserve's log:\n%s", code, out, errOut, p.log.String())
	}
	if code, out, errOut := cli(t, withTLS([]string{"append"}, "--partition", "1", "hello")...); code != 0 || !strings.Contains(out, "LSN 1") {
		t.Fatalf("append: exit %d, %q %q", code, out, errOut)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no client certificate", []string{"--addr", addr, "--tls-ca", client.CA}, "certificate required"},
		{"no TLS", []string{"--addr", addr}, "this port requires TLS"},
		{"key of another certificate", []string{"--addr", addr, "--tls-ca", client.CA, "--tls-cert", client.Cert, "--tls-key", node.Key}, "private key does not match"},
	} {
		start := time.Now()
		code, _, errOut := cli(t, append([]string{"append", "--partition", "1", "--timeout", "20s"}, append(tc.args, "x")...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, %q; want a failure saying %q", tc.name, code, errOut, tc.want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: failed after %v: retried", tc.name, d)
		}
	}
}
