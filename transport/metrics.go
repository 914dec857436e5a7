package transport

// Metrics receives the server's counts. A later package implements it
// with Prometheus collectors; ServerConfig.Metrics may be nil. Methods are
// called on hot paths, concurrently, and must be cheap and non-blocking.
type Metrics interface {
	// ConnOpened counts an accepted connection; ConnClosed its end.
	ConnOpened()
	ConnClosed()
	// TLSHandshakeFailed counts a connection refused by its TLS
	// handshake (no certificate, an untrusted or expired one, no TLS).
	TLSHandshakeFailed()
	// AuthFailed counts a connection refused by authentication, by
	// reason: "credentials" (refused by the Authenticator) or
	// "rate_limited" (too many failures from its address).
	AuthFailed(reason string)
	// FrameReceived counts a frame read from a client, with its size
	// (header included).
	FrameReceived(t FrameType, bytes int)
	// FrameSent counts a frame queued for a client, with its size.
	FrameSent(t FrameType, bytes int)
	// ErrorSent counts an Error frame queued for a client.
	ErrorSent(c Code)
}

// nopMetrics is the Metrics of a config without one.
type nopMetrics struct{}

func (nopMetrics) ConnOpened()                  {}
func (nopMetrics) ConnClosed()                  {}
func (nopMetrics) TLSHandshakeFailed()          {}
func (nopMetrics) AuthFailed(string)            {}
func (nopMetrics) FrameReceived(FrameType, int) {}
func (nopMetrics) FrameSent(FrameType, int)     {}
func (nopMetrics) ErrorSent(Code)               {}
