package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"
)

// Server is a server's TLS, open: its certificate and client CAs, read
// from their files and reloaded when they change.
type Server struct {
	cfg  ServerConfig
	pair *source[*tls.Certificate]
	cas  *source[*x509.CertPool] // nil without ClientCAFile
}

// OpenServer reads the files of cfg and checks them (see the package
// comment). cfg must turn TLS on.
func OpenServer(cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, errors.New("tls: OpenServer needs a certificate and a key")
	}
	clock, log := defaults(cfg.Clock, cfg.Logger)
	s := &Server{cfg: cfg}
	var err error
	if s.pair, err = openPair(cfg.CertFile, cfg.KeyFile, cfg.CheckInterval, clock, log); err != nil {
		return nil, err
	}
	if cfg.ClientCAFile != "" {
		load := func(now time.Time) (*x509.CertPool, error) { return loadPool(cfg.ClientCAFile, now) }
		if s.cas, err = openSource("client CA", []string{cfg.ClientCAFile}, load, cfg.CheckInterval, clock, log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// TLSConfig returns the configuration of the server's listeners: the
// current certificate on each handshake and, with a client CA, client
// certificates verified against the current CAs (required or not as
// configured).
func (s *Server) TLSConfig() *tls.Config {
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.pair.get(), nil }
	c := &tls.Config{MinVersion: minVersion, GetCertificate: getCert, Time: s.cfg.Clock}
	if s.cas == nil {
		return c
	}
	auth := tls.VerifyClientCertIfGiven
	if s.cfg.RequireClientCert {
		auth = tls.RequireAndVerifyClientCert
	}
	c.ClientAuth = auth
	c.ClientCAs = s.cas.get()
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{MinVersion: minVersion, GetCertificate: getCert, Time: s.cfg.Clock, ClientAuth: auth, ClientCAs: s.cas.get()}, nil
	}
	return c
}

// Certificate returns the certificate in service now.
func (s *Server) Certificate() *tls.Certificate { return s.pair.get() }

// ClientTLS returns the configuration of this server's own calls to its
// peers: it presents the server's current certificate (so a peer that
// requires client certificates accepts it) and verifies the peers'
// certificates against the CAs in caFile, read now (empty: the system's
// roots).
func (s *Server) ClientTLS(caFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: minVersion, Time: s.cfg.Clock,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return s.pair.get(), nil }}
	if caFile != "" {
		clock, _ := defaults(s.cfg.Clock, nil)
		pool, err := loadPool(caFile, clock())
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	return c, nil
}

// OpenClient reads the files of cfg and returns a client's TLS
// configuration: servers verified against CAFile (read once: a client
// trusts a new CA from its next start), and the client's certificate, if
// any, reloaded when its files change.
func OpenClient(cfg ClientConfig) (*tls.Config, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clock, log := defaults(cfg.Clock, cfg.Logger)
	c := &tls.Config{MinVersion: minVersion, ServerName: cfg.ServerName, Time: cfg.Clock}
	if cfg.CAFile != "" {
		pool, err := loadPool(cfg.CAFile, clock())
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if cfg.CertFile != "" {
		pair, err := openPair(cfg.CertFile, cfg.KeyFile, cfg.CheckInterval, clock, log)
		if err != nil {
			return nil, err
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.get(), nil }
	}
	return c, nil
}

// openPair opens the source of a certificate and key.
func openPair(certFile, keyFile string, interval time.Duration, clock func() time.Time, log *slog.Logger) (*source[*tls.Certificate], error) {
	load := func(now time.Time) (*tls.Certificate, error) { return loadKeyPair(certFile, keyFile, now) }
	return openSource("certificate", []string{certFile, keyFile}, load, interval, clock, log)
}

// defaults fills in a nil clock and logger.
func defaults(clock func() time.Time, log *slog.Logger) (func() time.Time, *slog.Logger) {
	if clock == nil {
		clock = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return clock, log
}
