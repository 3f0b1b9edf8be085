package querier

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	partial        prometheus.Counter
	duplicates     prometheus.Counter
	bytesProcessed *prometheus.CounterVec
	linesProcessed *prometheus.CounterVec
	chunksFetched  prometheus.Counter
	blocksSkipped  prometheus.Counter
	ingesterLines  prometheus.Counter
	queries        *prometheus.CounterVec
	tails          prometheus.Gauge
	sliceBytes     prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		partial: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_querier_partial_results_total",
			Help: "Answers sent with warnings because part of the data could not be read (an ingester down, a partition without a live owner).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_querier_duplicates_removed_total",
			Help: "Identical entries removed while merging ingesters and chunks (replays, re-flushes, handovers).",
		}),
		bytesProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_logql_querystats_bytes_processed_total",
			Help: "Bytes of lines that went through query pipelines, by tenant.",
		}, []string{"tenant"}),
		linesProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_querier_lines_processed_total",
			Help: "Lines that went through query pipelines, by tenant.",
		}, []string{"tenant"}),
		chunksFetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_querier_chunks_read_total",
			Help: "Chunks read for queries, from the object store or the chunk cache.",
		}),
		blocksSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_querier_blocks_skipped_total",
			Help: "Chunk blocks decompressed for queries and skipped whole because they lack a substring every line the query wants contains (a |= filter).",
		}),
		ingesterLines: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_querier_ingester_lines_received_total",
			Help: "Lines ingesters sent for queries.",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_querier_queries_total",
			Help: "Queries answered, by type (log, metric) and outcome (success, partial, error).",
		}, []string{"type", "outcome"}),
		tails: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loki_querier_tail_active",
			Help: "Open /tail connections.",
		}),
		sliceBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lokilab_querier_metric_slice_bytes",
			Help: "Bytes of lines read per time slice of a metric query: what one query holds at once (metric_slice_bytes is the target). The count is the slices read.",
			// 64 KiB to 4 GiB.
			Buckets: prometheus.ExponentialBuckets(64<<10, 4, 9),
		}),
	}
	for _, c := range []prometheus.Collector{m.partial, m.duplicates, m.bytesProcessed, m.linesProcessed, m.chunksFetched, m.blocksSkipped, m.ingesterLines, m.queries, m.tails, m.sliceBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// observe records what one query cost.
func (m *metrics) observe(tenants []string, kind string, st *Stats, partial bool, err error) {
	outcome := "success"
	switch {
	case err != nil:
		outcome = "error"
	case partial:
		outcome = "partial"
	}
	m.queries.WithLabelValues(kind, outcome).Inc()
	m.duplicates.Add(float64(st.Duplicates()))
	m.chunksFetched.Add(float64(st.Store.Chunks))
	m.blocksSkipped.Add(float64(st.Store.BlocksSkipped))
	m.ingesterLines.Add(float64(st.Ingester.LinesSent))
	// Multi-tenant queries are counted under the first tenant: the split
	// per tenant is not tracked.
	m.bytesProcessed.WithLabelValues(tenants[0]).Add(float64(st.BytesProcessed))
	m.linesProcessed.WithLabelValues(tenants[0]).Add(float64(st.LinesProcessed))
}
