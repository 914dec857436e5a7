package replicator

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lockstitch/lockstitch"
)

// metricsNamespace is the namespace of every Lockstitch metric.
const metricsNamespace = "lockstitch"

// Metrics are a Replicator's Prometheus metrics. Open builds them when
// Config.Registerer is set; a nil *Metrics records nothing.
//
// Per-op metrics have no partition label. Per-partition gauges are
// computed when scraped: eight series per hosted partition and, on the
// leader, one lag series per other replica, so a node with N partitions of
// R replicas exports 8N + (R-1)·L such series, L being the partitions it
// leads.
type Metrics struct {
	appends *prometheus.CounterVec
	// appendsBy holds appends' counters by result, in appendResults'
	// order, sparing a label lookup per op.
	appendsBy      []prometheus.Counter
	appendDuration prometheus.Histogram
	batchOps       prometheus.Histogram
	checkpoints    prometheus.Counter
	checkpointDur  prometheus.Histogram
	copySent       prometheus.Counter
	copyReceived   prometheus.Counter
	copiesActive   prometheus.Gauge
	copies         *prometheus.CounterVec
	subsLeft       prometheus.Counter
	quiesceWakes   prometheus.Counter

	reg        prometheus.Registerer
	collectors []prometheus.Collector
}

// Append outcomes, and the values of the result label of appends_total.
const (
	resultOK = iota
	resultDuplicate
	resultStaleSequence
	resultBusy
	resultNotLeader
	resultAborted
	resultUnavailable
	resultTooLarge
	resultChecksum
	resultClosed
	resultOther
)

var appendResults = [...]string{
	resultOK: "ok", resultDuplicate: "duplicate", resultStaleSequence: "stale_sequence",
	resultBusy: "busy", resultNotLeader: "not_leader", resultAborted: "aborted",
	resultUnavailable: "unavailable", resultTooLarge: "too_large", resultChecksum: "checksum",
	resultClosed: "closed", resultOther: "other",
}

func newMetrics(reg prometheus.Registerer, r *Replicator) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "appends_total",
			Help: "Appends handled by this node, by result: completed on the leader, or refused (not_leader on a follower, busy, too_large, ...).",
		}, []string{"result"}),
		appendDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "append_duration_seconds",
			Help:    "Time from an append being queued to its completion (commit on a quorum and apply here).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		batchOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "append_batch_ops",
			Help:    "Ops coalesced into each Raft entry proposed.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "checkpoints_total",
			Help: "Partition state checkpoints written.",
		}),
		checkpointDur: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "checkpoint_duration_seconds",
			Help:    "Time to sync a partition's log and write its checkpoint.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 12),
		}),
		copySent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "copy_sent_bytes_total",
			Help: "Bytes of state copies (snapshots) sent to replicas that fell behind.",
		}),
		copyReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "copy_received_bytes_total",
			Help: "Bytes of state copies (snapshots) received and restored.",
		}),
		copiesActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: metricsNamespace, Name: "copies_active",
			Help: "State copies being sent from or restored on this node.",
		}),
		copies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "copies_total",
			Help: "State copies finished, by direction (sent, received) and result (ok, error).",
		}, []string{"direction", "result"}),
		subsLeft: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "subscriptions_left_total",
			Help: "Subscriptions this node ended because its replica lost touch with its leader (Subscription.WaitInTouch): their consumers follow from another replica.",
		}),
		quiesceWakes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "quiesce_wakes_total",
			Help: "Quiet replicas woken because a node they depend on (their leader's, or a quorum of their voters') was seen down (Config.Quiesce).",
		}),
	}
	for _, res := range appendResults {
		m.appendsBy = append(m.appendsBy, m.appends.WithLabelValues(res))
	}
	m.reg = reg
	m.collectors = []prometheus.Collector{m.appends, m.appendDuration, m.batchOps, m.checkpoints, m.checkpointDur,
		m.copySent, m.copyReceived, m.copiesActive, m.copies, m.subsLeft, m.quiesceWakes, &partitionCollector{r: r}}
	reg.MustRegister(m.collectors...)
	return m
}

// unregister removes the node's metrics from the registry, so that a node
// opened again later can register them.
func (m *Metrics) unregister() {
	if m == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}

// subscriptionLeft records a subscription ended because its replica lost
// touch with its leader.
func (m *Metrics) subscriptionLeft() {
	if m != nil {
		m.subsLeft.Inc()
	}
}

// appendDone records one append's outcome, known at now.
func (m *Metrics) appendDone(start, now time.Time, err error, dup bool) {
	if m == nil {
		return
	}
	m.appendsBy[appendResult(err, dup)].Inc()
	if err == nil {
		m.appendDuration.Observe(now.Sub(start).Seconds())
	}
}

// appendResult classifies an append's outcome (an index of appendResults).
func appendResult(err error, dup bool) int {
	switch {
	case err == nil && dup:
		return resultDuplicate
	case err == nil:
		return resultOK
	case errors.Is(err, lockstitch.ErrStaleSequence):
		return resultStaleSequence
	case errors.Is(err, lockstitch.ErrBusy):
		return resultBusy
	case errors.Is(err, lockstitch.ErrNotLeader):
		return resultNotLeader
	case errors.Is(err, lockstitch.ErrAborted):
		return resultAborted
	case errors.Is(err, lockstitch.ErrUnavailable):
		return resultUnavailable
	case errors.Is(err, lockstitch.ErrTooLarge):
		return resultTooLarge
	case errors.Is(err, lockstitch.ErrChecksum):
		return resultChecksum
	case errors.Is(err, lockstitch.ErrClosed):
		return resultClosed
	}
	return resultOther
}

func (m *Metrics) batchProposed(ops int) {
	if m != nil {
		m.batchOps.Observe(float64(ops))
	}
}

func (m *Metrics) checkpointed(start time.Time) {
	if m != nil {
		m.checkpoints.Inc()
		m.checkpointDur.Observe(time.Since(start).Seconds())
	}
}

// copyStarted and copyEnded bracket sending or restoring a state copy.
func (m *Metrics) copyStarted() {
	if m != nil {
		m.copiesActive.Inc()
	}
}

func (m *Metrics) copyEnded(direction string, bytes int64, err error) {
	if m == nil {
		return
	}
	m.copiesActive.Dec()
	if direction == "sent" {
		m.copySent.Add(float64(bytes))
	} else {
		m.copyReceived.Add(float64(bytes))
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.copies.WithLabelValues(direction, result).Inc()
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// partitionCollector exports per-partition gauges at scrape time.
type partitionCollector struct{ r *Replicator }

var (
	descPartitions  = prometheus.NewDesc(metricsNamespace+"_partitions", "Partitions this node hosts a replica of.", nil, nil)
	descLeader      = prometheus.NewDesc(metricsNamespace+"_partition_leader", "1 if this node's replica leads the partition.", []string{"partition"}, nil)
	descApplied     = prometheus.NewDesc(metricsNamespace+"_partition_applied_lsn", "Last LSN applied by this node's replica.", []string{"partition"}, nil)
	descCommitted   = prometheus.NewDesc(metricsNamespace+"_partition_committed_lsn", "Last LSN this replica knows to be committed.", []string{"partition"}, nil)
	descFirst       = prometheus.NewDesc(metricsNamespace+"_partition_first_lsn", "First LSN this replica's log retains.", []string{"partition"}, nil)
	descEpoch       = prometheus.NewDesc(metricsNamespace+"_partition_epoch", "Epoch of the last op applied.", []string{"partition"}, nil)
	descPending     = prometheus.NewDesc(metricsNamespace+"_partition_pending_appends", "Appends queued or in flight on this leader.", []string{"partition"}, nil)
	descWALBytes    = prometheus.NewDesc(metricsNamespace+"_wal_bytes", "Bytes of this replica's operation log.", []string{"partition"}, nil)
	descWALSegs     = prometheus.NewDesc(metricsNamespace+"_wal_segments", "Segment files of this replica's operation log.", []string{"partition"}, nil)
	descLag         = prometheus.NewDesc(metricsNamespace+"_replica_lag_ops", "Ops a replica is behind the leader, as of its last progress report; exported by the leader only.", []string{"partition", "replica"}, nil)
	descQuiesced    = prometheus.NewDesc(metricsNamespace+"_replicas_quiesced", "Replicas of this node in dragonboat's quiesce: idle, sending no heartbeats (Config.Quiesce).", nil, nil)
	descQuarantined = prometheus.NewDesc(metricsNamespace+"_replicas_quarantined", "Replicas this node holds but does not run because their state failed to open (see the node's status and /readyz).", nil, nil)
	descNodePending = prometheus.NewDesc(metricsNamespace+"_node_pending_bytes", "Payload bytes of the appends queued or in flight across every partition this node leads.", nil, nil)
	descNodeMax     = prometheus.NewDesc(metricsNamespace+"_node_pending_max_bytes", "Config.MaxNodePendingBytes: beyond it, Append answers Busy.", nil, nil)
)

func (c *partitionCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPartitions, descLeader, descApplied, descCommitted, descFirst, descEpoch, descPending, descWALBytes, descWALSegs, descLag, descQuarantined, descQuiesced, descNodePending, descNodeMax} {
		ch <- d
	}
}

func (c *partitionCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.mu.RLock()
	parts := make([]*partition, 0, len(c.r.parts))
	for _, p := range c.r.parts {
		parts = append(parts, p)
	}
	c.r.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(descPartitions, prometheus.GaugeValue, float64(len(parts)))
	quarantined, quiet := 0, 0
	for _, p := range parts {
		if p.quarantine.Load() != nil {
			quarantined++
		}
		if p.isQuiesced() {
			quiet++
		}
	}
	ch <- prometheus.MustNewConstMetric(descQuarantined, prometheus.GaugeValue, float64(quarantined))
	ch <- prometheus.MustNewConstMetric(descQuiesced, prometheus.GaugeValue, float64(quiet))
	ch <- prometheus.MustNewConstMetric(descNodePending, prometheus.GaugeValue, float64(c.r.pendingBytes.Load()))
	ch <- prometheus.MustNewConstMetric(descNodeMax, prometheus.GaugeValue, float64(c.r.cfg.MaxNodePendingBytes))
	for _, p := range parts {
		s, err := p.state()
		if err != nil {
			continue
		}
		id := strconv.FormatUint(uint64(p.id), 10)
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{id}, labels...)...)
		}
		leader := p.isLeader()
		applied := lockstitch.LSN(s.applied.Load())
		gauge(descLeader, b2f(leader))
		gauge(descApplied, float64(applied))
		gauge(descEpoch, float64(s.epoch.Load()))
		st := s.wal.Stats()
		gauge(descFirst, float64(st.First))
		gauge(descWALBytes, float64(st.Bytes))
		gauge(descWALSegs, float64(st.Segments))
		p.batcher.mu.Lock()
		pending := p.batcher.pendingOps
		p.batcher.mu.Unlock()
		gauge(descPending, float64(pending))
		committed := applied
		s.progressMu.Lock()
		if !leader {
			if r, ok := s.progress[lockstitch.ReplicaID(p.leader.Load())]; ok && r.applied > committed {
				committed = r.applied
			}
		} else {
			for id, r := range s.progress {
				if id != p.replica {
					lag := 0.0
					if applied > r.applied {
						lag = float64(applied - r.applied)
					}
					gauge(descLag, lag, strconv.FormatUint(uint64(id), 10))
				}
			}
		}
		s.progressMu.Unlock()
		gauge(descCommitted, float64(committed))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
