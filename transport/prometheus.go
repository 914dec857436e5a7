package transport

import (
	"github.com/prometheus/client_golang/prometheus"
)

// PrometheusMetrics implements Metrics with Prometheus collectors under
// the lockstitch_transport_ prefix: open and accepted connections, frames
// and bytes in each direction by frame type, and Error frames by code.
// Label values are bounded (the protocol's frame types and error codes),
// and each counter is resolved once, so a frame costs one atomic add.
type PrometheusMetrics struct {
	open     prometheus.Gauge
	accepted prometheus.Counter
	tlsFail  prometheus.Counter
	authBad  prometheus.Counter
	authRate prometheus.Counter
	recvB    prometheus.Counter
	sentB    prometheus.Counter
	recv     [256]prometheus.Counter
	sent     [256]prometheus.Counter
	errs     [lastCode + 1]prometheus.Counter
	errOther prometheus.Counter
}

var _ Metrics = (*PrometheusMetrics)(nil)

// NewPrometheusMetrics registers the transport's collectors with reg.
func NewPrometheusMetrics(reg prometheus.Registerer) *PrometheusMetrics {
	const ns, sub = "lockstitch", "transport"
	open := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "connections",
		Help: "Client connections open."})
	accepted := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "connections_accepted_total",
		Help: "Client connections accepted."})
	tlsFail := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tls_handshake_failures_total",
		Help: "Client connections refused by their TLS handshake (no certificate, an untrusted or expired one, no TLS)."})
	authFail := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "auth_failures_total",
		Help: "Client connections refused by authentication, by reason: credentials (refused) or rate_limited (too many failures from the address)."}, []string{"reason"})
	recvB := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "received_bytes_total",
		Help: "Bytes of frames received from clients, headers included."})
	sentB := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sent_bytes_total",
		Help: "Bytes of frames queued for clients, headers included."})
	recv := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "frames_received_total",
		Help: "Frames received from clients, by type."}, []string{"type"})
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "frames_sent_total",
		Help: "Frames queued for clients, by type."}, []string{"type"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
		Help: "Error frames sent to clients, by code."}, []string{"code"})
	reg.MustRegister(open, accepted, tlsFail, authFail, recvB, sentB, recv, sent, errs)
	m := &PrometheusMetrics{open: open, accepted: accepted, tlsFail: tlsFail, recvB: recvB, sentB: sentB, errOther: errs.WithLabelValues("other"),
		authBad: authFail.WithLabelValues("credentials"), authRate: authFail.WithLabelValues("rate_limited")}
	for _, t := range []FrameType{TypeHello, TypePing, TypeAppend, TypeAppendBatch, TypeRead, TypeSubscribe, TypeCredit, TypeCancel, TypeQuery, TypeStatus, TypeAdmin, TypeCursor} {
		m.recv[t] = recv.WithLabelValues(t.String())
	}
	for _, t := range []FrameType{TypeWelcome, TypePong, TypeAppendResult, TypeAppendBatchResult, TypeReadResult, TypeData, TypeEnd, TypeSnapshot, TypeQueryResult, TypeStatusResult, TypeAdminResult, TypeCursorResult, TypeError} {
		m.sent[t] = sent.WithLabelValues(t.String())
	}
	for c := CodeProtocol; c <= lastCode; c++ {
		if c.sentinel() != nil {
			m.errs[c] = errs.WithLabelValues(c.String())
		}
	}
	other := recv.WithLabelValues("other")
	otherSent := sent.WithLabelValues("other")
	for i := range m.recv {
		if m.recv[i] == nil {
			m.recv[i] = other
		}
		if m.sent[i] == nil {
			m.sent[i] = otherSent
		}
	}
	return m
}

// ConnOpened implements Metrics.
func (m *PrometheusMetrics) ConnOpened() { m.open.Inc(); m.accepted.Inc() }

// TLSHandshakeFailed implements Metrics.
func (m *PrometheusMetrics) TLSHandshakeFailed() { m.tlsFail.Inc() }

// AuthFailed implements Metrics.
func (m *PrometheusMetrics) AuthFailed(reason string) {
	if reason == "rate_limited" {
		m.authRate.Inc()
	} else {
		m.authBad.Inc()
	}
}

// ConnClosed implements Metrics.
func (m *PrometheusMetrics) ConnClosed() { m.open.Dec() }

// FrameReceived implements Metrics.
func (m *PrometheusMetrics) FrameReceived(t FrameType, bytes int) {
	m.recv[t].Inc()
	m.recvB.Add(float64(bytes))
}

// FrameSent implements Metrics.
func (m *PrometheusMetrics) FrameSent(t FrameType, bytes int) {
	m.sent[t].Inc()
	m.sentB.Add(float64(bytes))
}

// ErrorSent implements Metrics.
func (m *PrometheusMetrics) ErrorSent(c Code) {
	if int(c) < len(m.errs) && m.errs[c] != nil {
		m.errs[c].Inc()
		return
	}
	m.errOther.Inc()
}
