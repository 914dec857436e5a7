package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/server"
)

// TestServeAuth runs serve with an auth file and mutual TLS: the CLI
// presents a token with --token-file (or a client certificate that a
// principal names), is refused without one (exit 7, with the hint), and
// is denied what its principal may not do (exit 7); hash-token prints
// what the file holds.
func TestServeAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	t.Parallel()
	dir := t.TempDir()
	ca := testutil.NewCA(t, "cluster CA")
	node, client := ca.IssueFiles(t, dir, "node"), ca.IssueFiles(t, dir, "client")
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var hashed bytes.Buffer
	if code := cmdHashToken(nil, strings.NewReader("ops-secret\n"), &hashed, os.Stderr); code != 0 || strings.TrimSpace(hashed.String()) != server.HashToken("ops-secret") {
		t.Fatalf("hash-token: exit %d, %q", code, hashed.String())
	}
	auth := write("auth.toml", `
[[principal]]
name = "ops"
token_sha256 = "`+strings.TrimSpace(hashed.String())+`"
read = ["*"]
admin = ["*"]

[[principal]]
name = "app"
token_sha256 = "`+server.HashToken("app-secret")+`"
append = ["1"]
read = ["1"]

[[principal]]
name = "reporting"
certificate = "client"
read = ["1"]
`)
	opsTok, appTok := write("ops.token", "ops-secret\n"), write("app.token", "app-secret\n")
	addr, raft := testutil.FreeAddr(t), testutil.FreeAddr(t)
	p := startServe(t, []string{"--id", "1", "--data-dir", filepath.Join(dir, "data"), "--client-addr", addr, "--raft-addr", raft,
		"--admin-addr", "", "--rtt", "5ms", "--tls-cert", node.Cert, "--tls-key", node.Key, "--tls-ca", node.CA,
		"--tls-client-ca", node.CA, "--auth-file", auth})
	// as is a command line: cmd's words and flags, the flags to reach
	// the node with token file tok (none when empty), then the ops.
	as := func(tok string, cmd []string, ops ...string) []string {
		args := append([]string{}, cmd...)
		args = append(args, "--addr", addr, "--tls-ca", client.CA)
		if tok != "" {
			args = append(args, "--token-file", tok)
		}
		return append(args, ops...)
	}
	type words = []string
	testutil.WaitFor(t, "serve to answer", 30*time.Second, func() bool {
		code, _, _ := cli(t, as(opsTok, words{"partition", "list"})...)
		return code == 0 || p.cmd.ProcessState != nil
	})
	if code, out, errOut := cli(t, as(opsTok, words{"partition", "create", "--id", "1", "--replicas", "1"})...); code != 0 {
		t.Fatalf("create by ops: exit %d, %s%s\nserve's log:\n%s", code, out, errOut, p.log.String())
	}
	if code, out, errOut := cli(t, as(appTok, words{"append", "--partition", "1"}, "hello")...); code != 0 || !strings.Contains(out, "LSN 1") {
		t.Fatalf("append by app: exit %d, %q %q", code, out, errOut)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no token", as("", words{"append", "--partition", "1"}, "x"), "--token-file or LOCKSTITCH_TOKEN"},
		{"app deletes", as(appTok, words{"partition", "delete", "--id", "1"}), "app may not administer partition 1"},
		{"app creates", as(appTok, words{"partition", "create", "--id", "2"}), "app may not administer partition 2"},
	} {
		if code, _, errOut := cli(t, tc.args...); code != exitDenied || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, %q; want exit %d saying %q", tc.name, code, errOut, exitDenied, tc.want)
		}
	}
	// The client certificate is principal reporting's: it reads, and may
	// not append.
	withCert := []string{"--addr", addr, "--tls-ca", client.CA, "--tls-cert", client.Cert, "--tls-key", client.Key}
	if code, out, errOut := cli(t, append([]string{"tail", "--partition", "1", "--from", "1"}, withCert...)...); code != 0 || !strings.Contains(out, "hello") {
		t.Fatalf("tail by certificate: exit %d, %q %q", code, out, errOut)
	}
	if code, _, errOut := cli(t, append([]string{"append", "--partition", "1"}, append(withCert, "x")...)...); code != exitDenied || !strings.Contains(errOut, "reporting may not append") {
		t.Fatalf("append by certificate: exit %d, %q", code, errOut)
	}
}
