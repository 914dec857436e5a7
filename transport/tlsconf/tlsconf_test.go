package tlsconf_test

import (
	"bytes"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lockstitch/lockstitch/internal/testutil"
	"github.com/lockstitch/lockstitch/transport/tlsconf"
)

// TestOpenServerErrors: every bad file is a clear error at open.
func TestOpenServerErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "test CA")
	good := ca.IssueFiles(t, dir, "node")
	other := ca.IssueFiles(t, dir, "other")
	expCert, expKey := ca.Issue(t, "old", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	testutil.WriteFile(t, filepath.Join(dir, "old.crt"), expCert)
	testutil.WriteFile(t, filepath.Join(dir, "old.key"), expKey)
	testutil.WriteFile(t, filepath.Join(dir, "junk.crt"), []byte("not a certificate\n"))
	for _, tc := range []struct {
		name       string
		cert, key  string
		ca         string
		want       string
		wantExpire bool
	}{
		{name: "missing cert", cert: filepath.Join(dir, "none.crt"), key: good.Key, want: "no such file"},
		{name: "missing key", cert: good.Cert, key: filepath.Join(dir, "none.key"), want: "no such file"},
		{name: "unparsable", cert: filepath.Join(dir, "junk.crt"), key: good.Key, want: "junk.crt"},
		{name: "expired", cert: filepath.Join(dir, "old.crt"), key: filepath.Join(dir, "old.key"), want: `"old" expired at`, wantExpire: true},
		{name: "key of another cert", cert: good.Cert, key: other.Key, want: "private key does not match public key"},
		{name: "CA file without a certificate", cert: good.Cert, key: good.Key, ca: filepath.Join(dir, "junk.crt"), want: "holds no PEM certificate"},
		{name: "missing CA file", cert: good.Cert, key: good.Key, ca: filepath.Join(dir, "none.crt"), want: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tlsconf.DefaultServerConfig()
			cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile = tc.cert, tc.key, tc.ca
			_, err := tlsconf.OpenServer(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("OpenServer: %v, want an error saying %q", err, tc.want)
			}
			if errors.Is(err, tlsconf.ErrExpired) != tc.wantExpire {
				t.Fatalf("OpenServer: %v: errors.Is(ErrExpired) = %v", err, !tc.wantExpire)
			}
		})
	}
	cfg := tlsconf.DefaultServerConfig()
	cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile = good.Cert, good.Key, good.CA
	if _, err := tlsconf.OpenServer(cfg); err != nil {
		t.Fatalf("OpenServer of good files: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*tlsconf.ServerConfig)
		want string
	}{
		{"cert without key", func(c *tlsconf.ServerConfig) { c.CertFile = "a" }, "go together"},
		{"client CA without TLS", func(c *tlsconf.ServerConfig) { c.ClientCAFile = "ca" }, "needs TLS"},
		{"require without CA", func(c *tlsconf.ServerConfig) { c.CertFile, c.KeyFile, c.RequireClientCert = "a", "b", true }, "client CA file"},
		{"no interval", func(c *tlsconf.ServerConfig) { c.CheckInterval = 0 }, "check interval"},
	} {
		cfg := tlsconf.DefaultServerConfig()
		tc.mod(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate: %v, want %q", tc.name, err, tc.want)
		}
	}
	if err := tlsconf.DefaultServerConfig().Validate(); err != nil {
		t.Errorf("default: %v", err)
	}
}

// TestReload: replaced files are used from the first check after the
// change, not before; a pair that does not load is not used.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := testutil.NewCA(t, "test CA")
	f := ca.IssueFiles(t, dir, "node")
	clock := testutil.NewClock(time.Now())
	cfg := tlsconf.DefaultServerConfig()
	cfg.CertFile, cfg.KeyFile, cfg.Clock = f.Cert, f.Key, clock.Now
	s, err := tlsconf.OpenServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := s.Certificate()
	if first.Leaf.Subject.CommonName != "node" {
		t.Fatalf("certificate %q", first.Leaf.Subject.CommonName)
	}
	newCert, newKey := ca.Issue(t, "node-2", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	// The certificate is replaced before its key: that pair must not be
	// used.
	testutil.WriteFile(t, f.Cert, newCert)
	clock.Advance(time.Second)
	if got := s.Certificate(); got != first {
		t.Fatalf("a certificate with the old key was taken: %q", got.Leaf.Subject.CommonName)
	}
	testutil.WriteFile(t, f.Key, newKey)
	clock.Advance(time.Second / 2)
	if got := s.Certificate(); got != first {
		t.Fatalf("files looked at again before the check interval: %q", got.Leaf.Subject.CommonName)
	}
	clock.Advance(time.Second / 2)
	got := s.Certificate()
	if got.Leaf.Subject.CommonName != "node-2" || !bytes.Equal(got.Certificate[0], decode(t, newCert)) {
		t.Fatalf("after the change and a check interval: %q, want node-2", got.Leaf.Subject.CommonName)
	}
	// An expired replacement is refused too.
	oldCert, oldKey := ca.Issue(t, "node-3", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	testutil.WriteFile(t, f.Cert, oldCert)
	testutil.WriteFile(t, f.Key, oldKey)
	clock.Advance(time.Second)
	if s.Certificate() != got {
		t.Fatal("an expired certificate was taken")
	}
	if err := os.Remove(f.Key); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if s.Certificate() != got {
		t.Fatal("a removed key dropped the certificate in service")
	}
}

func decode(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}
