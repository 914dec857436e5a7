package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// ErrExpired reports a certificate outside its validity period: expired,
// or not valid yet.
var ErrExpired = errors.New("tlsconf: certificate expired or not yet valid")

// source is a value read from files and read again when they change: the
// reloading policy, apart from the TLS mechanism that asks for the value.
// It is safe for concurrent use.
type source[T any] struct {
	what     string // for logs: "certificate", "client CA"
	files    []string
	load     func(now time.Time) (T, error)
	interval time.Duration
	clock    func() time.Time
	log      *slog.Logger

	mu      sync.Mutex
	val     T
	stamps  []os.FileInfo // of the files val was read from
	checked time.Time     // when the files were last looked at
}

// openSource reads the value a first time; its error is the caller's to
// report.
func openSource[T any](what string, files []string, load func(time.Time) (T, error), interval time.Duration, clock func() time.Time, log *slog.Logger) (*source[T], error) {
	s := &source[T]{what: what, files: files, load: load, interval: interval, clock: clock, log: log}
	stamps, err := s.stat()
	if err != nil {
		return nil, err
	}
	now := clock()
	if s.val, err = load(now); err != nil {
		return nil, err
	}
	s.stamps, s.checked = stamps, now
	return s, nil
}

// get returns the value, first reading the files again if the last look
// is CheckInterval old and they have changed since the value was read. A
// new value that fails to load is not used: the old one is returned, and
// the files are read again at the next check.
func (s *source[T]) get() T {
	now := s.clock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if since := now.Sub(s.checked); since >= 0 && since < s.interval {
		return s.val
	}
	s.checked = now
	stamps, err := s.stat()
	if err != nil {
		s.log.Warn("tls: cannot look at the files; keeping the ones in use", "what", s.what, "err", err)
		return s.val
	}
	if sameFiles(stamps, s.stamps) {
		return s.val
	}
	v, err := s.load(now)
	if err != nil {
		s.log.Warn("tls: changed files do not load; keeping the ones in use until they do", "what", s.what, "err", err)
		return s.val
	}
	s.val, s.stamps = v, stamps
	s.log.Info("tls: reloaded changed files", "what", s.what, "files", s.files)
	return s.val
}

// stat looks at the files.
func (s *source[T]) stat() ([]os.FileInfo, error) {
	out := make([]os.FileInfo, len(s.files))
	for i, f := range s.files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("tls: %s: %w", s.what, err)
		}
		out[i] = fi
	}
	return out, nil
}

// sameFiles reports whether a and b describe the same files, unchanged:
// same file (a file replaced by a rename is another), size and
// modification time.
func sameFiles(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}

// loadKeyPair reads a certificate and its key and checks that they match
// and that the certificate is valid at now.
func loadKeyPair(certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: certificate %s: %w", certFile, err)
		}
	}
	if err := checkValid(cert.Leaf, now); err != nil {
		return nil, fmt.Errorf("tls: certificate %s: %w", certFile, err)
	}
	return &cert, nil
}

// loadPool reads a file of PEM certificates (CAs), each valid at now.
func loadPool(file string, now time.Time) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := b; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tls: CA file %s: %w", file, err)
		}
		if err := checkValid(c, now); err != nil {
			return nil, fmt.Errorf("tls: CA file %s: %w", file, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tls: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// checkValid reports a certificate outside its validity period at now.
func checkValid(c *x509.Certificate, now time.Time) error {
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("%w: %q expired at %s", ErrExpired, c.Subject.CommonName, c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("%w: %q is valid from %s only", ErrExpired, c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}
