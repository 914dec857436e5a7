// Package tlsconf builds the TLS configurations of Lockstitch's ports from
// certificate and key files, and picks up new files without a restart.
//
// A ServerConfig names a node's certificate and key (PEM files), the CA
// that client certificates must chain to, and whether a client must
// present one (mutual TLS). OpenServer reads and checks them: a missing
// or unparsable file, a certificate that has expired or is not valid yet,
// or a key that does not match the certificate is an error at once,
// before anything listens. A ClientConfig names the CA a client trusts
// and, optionally, its own certificate and key; OpenClient builds the
// client's tls.Config.
//
// # Reloading
//
// The configurations read the files again when they change, so that a
// certificate is rotated by replacing its files: the next handshake after
// the change (at most CheckInterval later) uses the new ones, and
// connections already open keep theirs. A change is noticed by the files'
// size and modification time, looked at on a handshake at most once per
// CheckInterval. A new pair that fails the checks above (for example a
// certificate replaced before its key) is not used: the old one stays in
// service, the failure is logged, and the files are read again at the next
// check.
//
// # Concurrency
//
// The tls.Config values returned are safe for concurrent handshakes, as
// crypto/tls requires.
package tlsconf
