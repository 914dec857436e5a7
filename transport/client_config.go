package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// ClientConfig configures a Client. Start from DefaultClientConfig.
type ClientConfig struct {
	// Logger receives connection events; nil discards.
	Logger *slog.Logger
	// Name identifies the client in server logs.
	Name string
	// Credentials are sent in every Hello. Servers of protocol version 1
	// accept any value; a later version authenticates them.
	Credentials []byte
	// TLS, when set, secures the connections to TCP addresses (Unix
	// sockets stay plain). Its ServerName, when empty, is the host of the
	// address dialed. Build it with tlsconf.OpenClient. A failed TLS
	// handshake (an untrusted or expired certificate, a server that wants
	// a client certificate) is ErrTLS and is not retried.
	TLS *tls.Config
	// Dial opens a connection; nil uses a net.Dialer. network is "tcp" or
	// "unix", as Listen parses the address.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// DialTimeout bounds a dial and its handshake.
	DialTimeout time.Duration
	// WriteTimeout bounds one write to a connection.
	WriteTimeout time.Duration
	// PingInterval is how often an idle connection is pinged. A
	// connection that receives nothing for three intervals is considered
	// dead. It must be well under the servers' IdleTimeout.
	PingInterval time.Duration
	// StallTimeout detects a server that stopped answering (paused,
	// cut off) while requests or subscriptions wait on it: after
	// StallTimeout with calls in flight or a subscription open and
	// nothing received, the client pings; after another with still
	// nothing, it drops the connection, and the calls are retried on
	// another node (appends under their producer sequence, so at most
	// once) and subscriptions resume there from their marker. A server
	// that is slow but alive (or a quiet partition) answers the ping at
	// once. It also bounds the handshake of a new connection to twice
	// StallTimeout (DialTimeout still bounds the TCP dial): a process
	// that is paused has its connections accepted by the kernel and
	// answers nothing. 0 turns it off: only PingInterval's idle check
	// remains. It assumes round trips well below it.
	StallTimeout time.Duration

	// MaxFrameBytes is the largest frame body the client accepts; the
	// server sizes its answers to fit.
	MaxFrameBytes int
	// MaxInFlight bounds the requests in flight per connection; the
	// server's limit, announced in Welcome, applies if it is lower. A call
	// beyond it waits for a slot.
	MaxInFlight int
	// ReadBufferBytes is the initial read buffer of a connection.
	ReadBufferBytes int

	// MaxAttempts bounds the attempts of one call through retryable
	// errors: NotLeader, Busy, Unavailable, ShuttingDown, a lost
	// connection. The call's context bounds them too.
	MaxAttempts int
	// BackoffMin and BackoffMax bound the exponential backoff between
	// attempts and between dials to a failing address.
	BackoffMin, BackoffMax time.Duration

	// ProducerID identifies this client's appends for duplicate
	// detection; 0 picks a random one at Dial. Two live clients must not
	// share a producer id.
	ProducerID uint64

	// SubscribeWindowOps and SubscribeWindowBytes are the credit a
	// Subscription grants: at most that many ops and bytes are in flight
	// to it or buffered in it. The byte window is raised to MaxFrameBytes
	// when lower, so that any record the server may send gets through.
	SubscribeWindowOps int
	// SubscribeWindowBytes is the byte credit, in log frame bytes.
	SubscribeWindowBytes int64
}

// DefaultClientConfig returns the defaults: frames up to 32 MiB + 4 KiB,
// 4096 requests in flight per connection, a ping every 15 s, 8 attempts
// per call with backoff from 5 ms to 1 s, and subscription windows of 4096
// ops and 8 MiB.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		Name:                 "lockstitch-go",
		DialTimeout:          5 * time.Second,
		WriteTimeout:         30 * time.Second,
		PingInterval:         15 * time.Second,
		StallTimeout:         500 * time.Millisecond,
		MaxFrameBytes:        32<<20 + 4<<10,
		MaxInFlight:          4096,
		ReadBufferBytes:      64 << 10,
		MaxAttempts:          12,
		BackoffMin:           5 * time.Millisecond,
		BackoffMax:           time.Second,
		SubscribeWindowOps:   4096,
		SubscribeWindowBytes: 8 << 20,
	}
}

// Validate reports every invalid setting. It does not change c.
func (c ClientConfig) Validate() error {
	var errs []error
	if len(c.Name) > maxName {
		errs = append(errs, fmt.Errorf("the name is %d bytes, more than %d", len(c.Name), maxName))
	}
	if len(c.Credentials) > maxCredentials {
		errs = append(errs, fmt.Errorf("the credentials are %d bytes, more than %d", len(c.Credentials), maxCredentials))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"DialTimeout", c.DialTimeout}, {"WriteTimeout", c.WriteTimeout}, {"PingInterval", c.PingInterval}, {"BackoffMin", c.BackoffMin}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %v must be positive", d.name, d.v))
		}
	}
	if c.StallTimeout < 0 {
		errs = append(errs, fmt.Errorf("StallTimeout %v is negative", c.StallTimeout))
	}
	if c.BackoffMax < c.BackoffMin {
		errs = append(errs, fmt.Errorf("BackoffMax %v is below BackoffMin %v", c.BackoffMax, c.BackoffMin))
	}
	if c.MaxFrameBytes < minFrameBytes || c.MaxFrameBytes > maxFrameLimit {
		errs = append(errs, fmt.Errorf("MaxFrameBytes %d is outside [%d, %d]", c.MaxFrameBytes, minFrameBytes, maxFrameLimit))
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 1<<20 {
		errs = append(errs, fmt.Errorf("MaxInFlight %d is outside [1, %d]", c.MaxInFlight, 1<<20))
	}
	if c.ReadBufferBytes < HeaderSize {
		errs = append(errs, fmt.Errorf("ReadBufferBytes %d is below %d", c.ReadBufferBytes, HeaderSize))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("MaxAttempts %d is below 1", c.MaxAttempts))
	}
	if c.SubscribeWindowOps < 1 || c.SubscribeWindowOps > 1<<20 {
		errs = append(errs, fmt.Errorf("SubscribeWindowOps %d is outside [1, %d]", c.SubscribeWindowOps, 1<<20))
	}
	if c.SubscribeWindowBytes < 1 {
		errs = append(errs, fmt.Errorf("SubscribeWindowBytes %d is below 1", c.SubscribeWindowBytes))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("transport: invalid client config: %w", err)
	}
	return nil
}
