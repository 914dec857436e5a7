package tlsconf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DefaultCheckInterval is how often, at most, the files are looked at for
// a change.
const DefaultCheckInterval = time.Second

// ServerConfig configures the TLS of a server port. The zero CertFile
// and KeyFile mean no TLS. Start from DefaultServerConfig.
type ServerConfig struct {
	// CertFile and KeyFile are the PEM files of the server's certificate
	// (with its intermediates, leaf first) and private key. A node's
	// certificate serves its ports and is its client certificate when it
	// calls its peers, so it should allow both server and client
	// authentication (extended key usages serverAuth and clientAuth).
	CertFile, KeyFile string
	// ClientCAFile is a PEM file of the CAs that client certificates must
	// chain to. When set, a client that presents a certificate is
	// verified against it.
	ClientCAFile string
	// RequireClientCert refuses clients without a certificate that chains
	// to ClientCAFile (mutual TLS).
	RequireClientCert bool
	// CheckInterval is how often, at most, the files are looked at for a
	// change (on a handshake).
	CheckInterval time.Duration
	// Clock is the time the checks and the expiry checks read; nil means
	// time.Now.
	Clock func() time.Time
	// Logger receives reloads and reload failures; nil discards them.
	Logger *slog.Logger
}

// DefaultServerConfig returns a ServerConfig without TLS that checks the
// files every DefaultCheckInterval.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{CheckInterval: DefaultCheckInterval}
}

// Enabled reports whether c turns TLS on.
func (c ServerConfig) Enabled() bool { return c.CertFile != "" || c.KeyFile != "" }

// Validate reports what is wrong with c; it does not change c or read the
// files (OpenServer does).
func (c ServerConfig) Validate() error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("a certificate file and a key file go together: set both or neither"))
	}
	if !c.Enabled() && (c.ClientCAFile != "" || c.RequireClientCert) {
		errs = append(errs, errors.New("a client CA or a required client certificate needs TLS: set the certificate and key files"))
	}
	if c.RequireClientCert && c.ClientCAFile == "" {
		errs = append(errs, errors.New("requiring client certificates needs the client CA file they are verified against"))
	}
	if c.CheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("check interval %v must be positive", c.CheckInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tls: invalid config: %w", err)
	}
	return nil
}

// ClientConfig configures the TLS of a client. Start from
// DefaultClientConfig.
type ClientConfig struct {
	// CAFile is a PEM file of the CAs that servers' certificates must
	// chain to; empty means the system's roots.
	CAFile string
	// CertFile and KeyFile are the client's certificate and key, for
	// servers that require one; both or neither.
	CertFile, KeyFile string
	// ServerName is the name the server's certificate must carry; empty
	// means the host of the address dialed.
	ServerName string
	// CheckInterval, Clock and Logger are as in ServerConfig.
	CheckInterval time.Duration
	Clock         func() time.Time
	Logger        *slog.Logger
}

// DefaultClientConfig returns a ClientConfig that trusts the system's
// roots and presents no certificate.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{CheckInterval: DefaultCheckInterval}
}

// Validate reports what is wrong with c; it does not change c or read the
// files (OpenClient does).
func (c ClientConfig) Validate() error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("a certificate file and a key file go together: set both or neither"))
	}
	if c.CheckInterval <= 0 {
		errs = append(errs, fmt.Errorf("check interval %v must be positive", c.CheckInterval))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tls: invalid client config: %w", err)
	}
	return nil
}

// minVersion is the oldest TLS version any Lockstitch port speaks.
const minVersion = tls.VersionTLS12
