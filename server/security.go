package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/lockstitch/lockstitch/transport"
	"github.com/lockstitch/lockstitch/transport/tlsconf"
)

// security is what Start reads of a Config's TLS and token files.
type security struct {
	tls        *tlsconf.Server // the client port's; nil without TLS
	peerTLS    *tls.Config     // of the node's calls to its peers
	adminToken []byte          // SHA-256 of the admin token; nil: none
	auth       *authPolicy     // the client port's; nil: open
	peerToken  []byte          // the token the node presents to its peers
}

// openSecurity reads and checks the node's certificates and token, so
// that a bad file is one clear error before anything listens.
func openSecurity(cfg Config, log *slog.Logger) (security, error) {
	var sec security
	if cfg.TLS.Enabled() {
		tc := cfg.TLS
		if tc.Logger == nil {
			tc.Logger = log
		}
		var err error
		if sec.tls, err = tlsconf.OpenServer(tc); err != nil {
			return sec, fmt.Errorf("server: client port TLS: %w", err)
		}
		if sec.peerTLS, err = sec.tls.ClientTLS(cfg.PeerCAFile); err != nil {
			return sec, fmt.Errorf("server: peer CA: %w", err)
		}
	}
	if rt := cfg.Replicator.RaftTLS; rt.Enabled() {
		// Dragonboat reads them itself; check them here, where an expired
		// certificate or a key of another one is said plainly.
		c := tlsconf.DefaultServerConfig()
		c.CertFile, c.KeyFile, c.ClientCAFile, c.RequireClientCert = rt.CertFile, rt.KeyFile, rt.CAFile, true
		if _, err := tlsconf.OpenServer(c); err != nil {
			return sec, fmt.Errorf("server: Raft TLS: %w", err)
		}
	}
	if cfg.AdminTokenFile != "" {
		var err error
		if sec.adminToken, err = loadToken(cfg.AdminTokenFile); err != nil {
			return sec, fmt.Errorf("server: admin token: %w", err)
		}
	}
	if cfg.PeerTokenFile != "" {
		b, err := os.ReadFile(cfg.PeerTokenFile)
		if err != nil {
			return sec, fmt.Errorf("server: peer token: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if sec.peerToken = []byte(strings.TrimSpace(line)); len(sec.peerToken) == 0 {
			return sec, fmt.Errorf("server: peer token: %s: empty", cfg.PeerTokenFile)
		}
	}
	if cfg.AuthFile != "" {
		var err error
		if sec.auth, err = loadAuth(cfg.AuthFile); err != nil {
			return sec, fmt.Errorf("server: auth file: %w", err)
		}
		if name := sec.auth.byCertificate(); name != "" && cfg.TLS.ClientCAFile == "" {
			return sec, fmt.Errorf("server: auth file: principal %q authenticates by certificate only, but the client port asks for no client certificates: set the client CA (--tls-client-ca)", name)
		}
		if sec.peerToken != nil {
			// The node's calls to its peers must pass their checks, which
			// read the same file.
			p, err := sec.auth.Authenticate(context.Background(), transport.Credentials{Token: sec.peerToken})
			if err != nil {
				return sec, fmt.Errorf("server: the peer token: %w in the auth file", err)
			}
			if pp := p.(*principal); !pp.grants[transport.ActionAdmin].all || !pp.grants[transport.ActionRead].all {
				return sec, fmt.Errorf("server: the peer token is principal %q's, which needs read and admin on \"*\" (nodes administer each other's replicas)", pp.name)
			}
		}
	}
	return sec, nil
}

// adminTLS is the admin listener's TLS: the client port's certificate,
// no client certificates (scrapers and probes present none).
func (sec security) adminTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return sec.tls.Certificate(), nil
	}}
}

// hashPrefix marks a token file that holds the token's SHA-256 rather
// than the token.
const hashPrefix = "sha256:"

// loadToken reads a token file: its first line is the token, or
// "sha256:" and the token's SHA-256 in hex. It returns the SHA-256.
func loadToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return nil, fmt.Errorf("%s: empty", path)
	}
	if h, ok := strings.CutPrefix(line, hashPrefix); ok {
		sum, err := hex.DecodeString(h)
		if err != nil || len(sum) != sha256.Size {
			return nil, fmt.Errorf("%s: %q is not %s and %d hex digits", path, line, hashPrefix, 2*sha256.Size)
		}
		return sum, nil
	}
	sum := sha256.Sum256([]byte(line))
	return sum[:], nil
}

// errNoToken is the answer to a request without the token.
var errNoToken = errors.New("this endpoint needs the admin token: Authorization: Bearer TOKEN")

// requireToken serves the requests under prefix only when they carry the
// token whose SHA-256 is sum; the others pass through.
func requireToken(h http.Handler, prefix string, sum []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, prefix) {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
			if !ok || subtle.ConstantTimeCompare(got[:], sum) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lockstitch admin"`)
				http.Error(w, errNoToken.Error(), http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
