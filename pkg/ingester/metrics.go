package ingester

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	memoryStreams      *prometheus.GaugeVec
	streamsCreated     *prometheus.CounterVec
	streamsRemoved     *prometheus.CounterVec
	memoryChunks       prometheus.Gauge
	memoryChunkBytes   prometheus.Gauge
	memoryChunkLimit   prometheus.Gauge
	fetchPaused        prometheus.Gauge
	fetchPauses        prometheus.Counter
	chunksFlushed      *prometheus.CounterVec
	chunkSize          prometheus.Histogram
	chunkEntries       prometheus.Histogram
	chunkCompression   prometheus.Histogram
	chunkAge           prometheus.Histogram
	flushFailures      *prometheus.CounterVec
	flushDuration      prometheus.Histogram
	indexSegments      prometheus.Counter
	entriesAppended    *prometheus.CounterVec
	bytesAppended      *prometheus.CounterVec
	duplicates         *prometheus.CounterVec
	recordsConsumed    *prometheus.CounterVec
	recordsCorrupt     *prometheus.CounterVec
	lag                *prometheus.GaugeVec
	committedOffset    *prometheus.GaugeVec
	commits            *prometheus.CounterVec
	commitFailures     *prometheus.CounterVec
	catchUpDuration    prometheus.Histogram
	replayedRecords    *prometheus.CounterVec
	ownedPartitions    prometheus.Gauge
	partitionsAcquired prometheus.Counter
	partitionsReleased *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	sizeBuckets := prometheus.ExponentialBuckets(1<<10, 2, 14) // 1KiB .. 8MiB
	m := &metrics{
		memoryStreams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "loki_ingester_memory_streams",
			Help: "Streams held in memory, per tenant.",
		}, []string{"tenant"}),
		streamsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_ingester_streams_created_total",
			Help: "Streams created in memory, per tenant.",
		}, []string{"tenant"}),
		streamsRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_ingester_streams_removed_total",
			Help: "Streams removed from memory once flushed, per tenant.",
		}, []string{"tenant"}),
		memoryChunks: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loki_ingester_memory_chunks",
			Help: "Chunks held in memory: open heads plus chunks waiting to be flushed.",
		}),
		memoryChunkBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lokilab_ingester_memory_chunk_bytes",
			Help: "Bytes charged for chunks in memory; compare with lokilab_ingester_memory_chunk_bytes_limit.",
		}),
		memoryChunkLimit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lokilab_ingester_memory_chunk_bytes_limit",
			Help: "max_memory_chunk_bytes: above it, fetching from Kafka pauses (0: no limit).",
		}),
		fetchPaused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lokilab_ingester_fetch_paused",
			Help: "1 while fetching from Kafka is paused because chunk memory is over its limit.",
		}),
		fetchPauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_ingester_fetch_pauses_total",
			Help: "Times fetching from Kafka paused for chunk memory.",
		}),
		chunksFlushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_ingester_chunks_flushed_total",
			Help: "Chunks flushed to object storage (uploaded and indexed), by the reason they were cut.",
		}, []string{"reason"}),
		chunkSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "loki_ingester_chunk_size_bytes",
			Help:    "Compressed size of flushed chunks.",
			Buckets: sizeBuckets,
		}),
		chunkEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "loki_ingester_chunk_entries",
			Help:    "Entries per flushed chunk.",
			Buckets: prometheus.ExponentialBuckets(16, 4, 9),
		}),
		chunkCompression: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "loki_ingester_chunk_compression_ratio",
			Help:    "Uncompressed over compressed size of flushed chunks.",
			Buckets: prometheus.LinearBuckets(1, 1.5, 8),
		}),
		chunkAge: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "loki_ingester_chunk_age_seconds",
			Help:    "Time from a chunk's first append to its flush.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		flushFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loki_ingester_chunks_flush_failures_total",
			Help: "Failed chunk uploads and index writes; the chunks stay in memory and are retried.",
		}, []string{"op"}),
		flushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "loki_ingester_flush_duration_seconds",
			Help:    "Duration of one partition's flush cycle: uploads, index segment, commit.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		indexSegments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_ingester_index_segments_written_total",
			Help: "Index segments written (one per tenant and day per flush cycle).",
		}),
		entriesAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_entries_appended_total",
			Help: "Entries appended to chunks, per tenant (duplicates excluded).",
		}, []string{"tenant"}),
		bytesAppended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_bytes_appended_total",
			Help: "Line and structured metadata bytes appended to chunks, per tenant.",
		}, []string{"tenant"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_duplicate_entries_total",
			Help: "Entries dropped as exact duplicates (same timestamp, line and metadata) of one in the chunk's head block.",
		}, []string{"tenant"}),
		recordsConsumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_records_consumed_total",
			Help: "Kafka records processed, per partition.",
		}, []string{"partition"}),
		recordsCorrupt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_records_corrupt_total",
			Help: "Kafka records that could not be decoded and were skipped; should stay 0.",
		}, []string{"partition"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lokilab_ingester_partition_lag_records",
			Help: "Records between the partition's high watermark (as of the last fetch) and the next record this ingester will process.",
		}, []string{"partition"}),
		committedOffset: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lokilab_ingester_partition_committed_offset",
			Help: "The committed offset: every record before it is durable in object storage.",
		}, []string{"partition"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_offset_commits_total",
			Help: "Offset commits, per partition.",
		}, []string{"partition"}),
		commitFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_offset_commit_failures_total",
			Help: "Failed offset commits, per partition; retried at the next flush cycle.",
		}, []string{"partition"}),
		catchUpDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lokilab_ingester_partition_catch_up_duration_seconds",
			Help:    "Time from taking a partition to having replayed up to its end offset as of taking it.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}),
		replayedRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_replayed_records_total",
			Help: "Records processed while catching up after taking a partition: the work a restart or handover repeats.",
		}, []string{"partition"}),
		ownedPartitions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lokilab_ingester_owned_partitions",
			Help: "Kafka partitions this ingester consumes.",
		}),
		partitionsAcquired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_ingester_partitions_acquired_total",
			Help: "Partitions taken (start, handover or rebalance).",
		}),
		partitionsReleased: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_ingester_partitions_released_total",
			Help: "Partitions given up, by how: handover (flushed and committed) or lost (dropped without flushing).",
		}, []string{"how"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{
			m.memoryStreams, m.streamsCreated, m.streamsRemoved, m.memoryChunks, m.memoryChunkBytes, m.memoryChunkLimit,
			m.fetchPaused, m.fetchPauses, m.chunksFlushed, m.chunkSize, m.chunkEntries, m.chunkCompression, m.chunkAge,
			m.flushFailures, m.flushDuration, m.indexSegments, m.entriesAppended, m.bytesAppended, m.duplicates,
			m.recordsConsumed, m.recordsCorrupt, m.lag, m.committedOffset, m.commits, m.commitFailures,
			m.catchUpDuration, m.replayedRecords, m.ownedPartitions, m.partitionsAcquired, m.partitionsReleased,
		} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
