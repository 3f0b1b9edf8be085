package distributor

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/pkg/push"
)

type metrics struct {
	bytesReceived *prometheus.CounterVec
	linesReceived *prometheus.CounterVec
	bytesAcked    *prometheus.CounterVec
	linesAcked    *prometheus.CounterVec
	wireBytes     *prometheus.CounterVec
	discardLines  *prometheus.CounterVec
	discardBytes  *prometheus.CounterVec

	writeDuration      *prometheus.HistogramVec
	pushFailures       *prometheus.CounterVec
	lateWrites         *prometheus.CounterVec
	inflight           prometheus.Gauge
	inflightLimit      prometheus.Gauge
	breakerState       prometheus.Gauge
	breakerTransitions *prometheus.CounterVec
	activeStreams      *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bytesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_distributor_bytes_received_total",
			Help: "Uncompressed line and structured metadata bytes received per tenant, counted as decoded (before validation), as Loki does.",
		}, []string{"tenant"}),
		linesReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_distributor_lines_received_total",
			Help: "Lines received per tenant, counted as decoded (before validation), as Loki does.",
		}, []string{"tenant"}),
		bytesAcked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_distributor_bytes_acknowledged_total",
			Help: "Line and structured metadata bytes Kafka acknowledged before the push was answered: the bytes a 2xx promised are durable.",
		}, []string{"tenant"}),
		linesAcked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_distributor_lines_acknowledged_total",
			Help: "Lines Kafka acknowledged before the push was answered: the lines a 2xx promised are durable. Compare with what ingesters flush.",
		}, []string{"tenant"}),
		wireBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_distributor_wire_bytes_received_total",
			Help: "Push body bytes as sent (compressed), per tenant; with loki_distributor_bytes_received_total it gives the wire compression ratio.",
		}, []string{"tenant"}),
		discardLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_discarded_samples_total",
			Help: "Lines discarded, by reason and tenant.",
		}, []string{"reason", "tenant"}),
		discardBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_discarded_bytes_total",
			Help: "Bytes of lines discarded, by reason and tenant.",
		}, []string{"reason", "tenant"}),
		activeStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lokilab_distributor_active_streams",
			Help: "Streams this distributor counts as active per tenant, against max_global_streams_per_user.",
		}, []string{"tenant"}),
		writeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lokilab_distributor_kafka_write_duration_seconds",
			Help:    "Time from producing a push's records until Kafka answered for all of them (or the write timeout), by result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"result"}),
		pushFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_distributor_push_failures_total",
			Help: "Pushes answered 5xx, by cause: kafka_error, kafka_timeout, producer_buffer_full, breaker_open, inflight_limit, no_partition.",
		}, []string{"reason"}),
		lateWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_distributor_kafka_late_writes_total",
			Help: "Pushes whose records Kafka answered after the push had timed out, by result. Late successes become duplicates when clients retry.",
		}, []string{"result"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lokilab_distributor_inflight_push_bytes",
			Help: "Push bytes awaiting Kafka's acknowledgement.",
		}),
		inflightLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lokilab_distributor_inflight_push_bytes_limit",
			Help: "max_inflight_push_bytes: pushes beyond it get 503 (0: no limit).",
		}),
		breakerState: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lokilab_distributor_kafka_breaker_state",
			Help: "Circuit breaker around Kafka writes: 0 closed, 1 half-open, 2 open.",
		}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_distributor_kafka_breaker_transitions_total",
			Help: "Circuit breaker state changes, by the state entered.",
		}, []string{"state"}),
	}
	for _, c := range []prometheus.Collector{
		m.bytesReceived, m.linesReceived, m.bytesAcked, m.linesAcked, m.wireBytes, m.discardLines, m.discardBytes,
		m.writeDuration, m.pushFailures, m.lateWrites, m.inflight, m.inflightLimit,
		m.breakerState, m.breakerTransitions, m.activeStreams,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("distributor: registering metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) countReceived(tenantID string, req *push.Request) {
	bytes := 0
	for i := range req.Streams {
		bytes += entriesSize(req.Streams[i].Entries)
	}
	m.linesReceived.WithLabelValues(tenantID).Add(float64(req.Entries()))
	m.bytesReceived.WithLabelValues(tenantID).Add(float64(bytes))
}

func (m *metrics) countDiscards(tenantID string, d *discards) {
	for r := range numReasons {
		if d[r].lines == 0 {
			continue
		}
		m.discardLines.WithLabelValues(r.String(), tenantID).Add(float64(d[r].lines))
		m.discardBytes.WithLabelValues(r.String(), tenantID).Add(float64(d[r].bytes))
	}
}
