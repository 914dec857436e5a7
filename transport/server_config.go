package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// maxFrameLimit is the largest frame body limit a configuration may set:
// the header's length is 32 bits and a frame must fit in an int on every
// platform.
const maxFrameLimit = 1<<31 - 1 - HeaderSize

// ServerConfig configures a Server. Start from DefaultServerConfig.
type ServerConfig struct {
	// Logger receives connection and protocol events; nil discards.
	Logger *slog.Logger
	// Metrics receives counts of connections, frames and errors; nil
	// means none.
	Metrics Metrics
	// TLS, when set, is the TLS of the server's TCP listeners (Unix
	// sockets stay plain: a local peer is trusted by the socket's
	// permissions). Build it with tlsconf.OpenServer to reload rotated
	// certificates. A connection's TLS handshake is bounded by
	// HandshakeTimeout.
	TLS *tls.Config
	// NodeID is announced to clients in Welcome and Status.
	NodeID uint64
	// Authenticator, when set, authenticates every connection after its
	// Hello and authorizes each of its requests (see Action): a request
	// its principal may not make is answered PermissionDenied. Nil lets
	// every client do everything.
	Authenticator Authenticator
	// AuthFailureBurst and AuthFailureEvery bound failed authentications
	// per source IP: a source may fail AuthFailureBurst times in a row,
	// then once per AuthFailureEvery; beyond that its connections are
	// refused (Unauthenticated) before their credentials are checked.
	AuthFailureBurst int
	AuthFailureEvery time.Duration

	// MaxFrameBytes is the largest frame body the server accepts. It must
	// hold the largest op plus its framing (28 bytes for Append) and the
	// largest Query request. A longer frame is refused before its body is
	// read and the connection is closed.
	MaxFrameBytes int
	// MaxInFlight bounds the requests in flight per connection, active
	// subscriptions included. A request beyond it is answered ErrBusy.
	MaxInFlight int
	// MaxConns bounds the open connections. A connection beyond it is
	// answered ErrBusy and closed.
	MaxConns int
	// MaxQueuedBytes bounds the answers queued for a connection before the
	// server stops reading its requests until the queue drains. Answers
	// to requests already in flight are always queued, so the queue may
	// exceed it by what those answers hold.
	MaxQueuedBytes int
	// ReadBufferBytes is the initial read buffer of a connection. It grows
	// as a large frame arrives (never ahead of the bytes received) and
	// shrinks back once the frame is handled.
	ReadBufferBytes int
	// StreamChunkBytes is the target size of a subscription's Data frames.
	StreamChunkBytes int

	// HandshakeTimeout bounds the time from accept to a complete Hello.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that sends no frame for this long.
	// The Client pings well within it.
	IdleTimeout time.Duration
	// FrameTimeout bounds the time from the first byte of a frame to its
	// last: a client that stalls mid-frame is disconnected.
	FrameTimeout time.Duration
	// WriteTimeout bounds one write to a connection: a client that does
	// not read its answers is disconnected.
	WriteTimeout time.Duration
}

// DefaultServerConfig returns the defaults: frames up to 32 MiB + 4 KiB
// (the wal's default largest payload with room for its framing), 4096
// requests in flight per connection, 4096 connections, 4 MiB of queued
// answers per connection, and the timeouts of docs/protocol.md.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{
		MaxFrameBytes:    32<<20 + 4<<10,
		MaxInFlight:      4096,
		MaxConns:         4096,
		MaxQueuedBytes:   4 << 20,
		ReadBufferBytes:  64 << 10,
		StreamChunkBytes: 256 << 10,
		HandshakeTimeout: 10 * time.Second,
		IdleTimeout:      2 * time.Minute,
		FrameTimeout:     30 * time.Second,
		WriteTimeout:     30 * time.Second,
		AuthFailureBurst: 10,
		AuthFailureEvery: time.Second,
	}
}

// Validate reports every invalid setting. It does not change c.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.MaxFrameBytes < minFrameBytes || c.MaxFrameBytes > maxFrameLimit {
		errs = append(errs, fmt.Errorf("MaxFrameBytes %d is outside [%d, %d]", c.MaxFrameBytes, minFrameBytes, maxFrameLimit))
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 1<<20 {
		errs = append(errs, fmt.Errorf("MaxInFlight %d is outside [1, %d]", c.MaxInFlight, 1<<20))
	}
	if c.MaxConns < 1 {
		errs = append(errs, fmt.Errorf("MaxConns %d is below 1", c.MaxConns))
	}
	if c.MaxQueuedBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("MaxQueuedBytes %d is below 64 KiB", c.MaxQueuedBytes))
	}
	if c.ReadBufferBytes < HeaderSize || c.ReadBufferBytes > c.MaxFrameBytes+HeaderSize {
		errs = append(errs, fmt.Errorf("ReadBufferBytes %d is outside [%d, MaxFrameBytes+%d]", c.ReadBufferBytes, HeaderSize, HeaderSize))
	}
	if c.StreamChunkBytes < 1 {
		errs = append(errs, fmt.Errorf("StreamChunkBytes %d is below 1", c.StreamChunkBytes))
	}
	if c.Authenticator != nil && (c.AuthFailureBurst < 1 || c.AuthFailureEvery <= 0) {
		errs = append(errs, fmt.Errorf("AuthFailureBurst %d and AuthFailureEvery %v must be positive", c.AuthFailureBurst, c.AuthFailureEvery))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HandshakeTimeout", c.HandshakeTimeout}, {"IdleTimeout", c.IdleTimeout}, {"FrameTimeout", c.FrameTimeout}, {"WriteTimeout", c.WriteTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v must be positive", d.name, d.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transport: invalid server config: %w", err)
	}
	return nil
}
