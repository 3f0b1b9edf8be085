package tenant

import (
	"flag"
	"fmt"
	"time"

	"github.com/prometheus/common/model"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/labels"
)

// Rate limit strategies.
const (
	// LocalStrategy applies the tenant's rate in each distributor on its
	// own: N distributors admit up to N times the configured rate.
	LocalStrategy = "local"
	// GlobalStrategy divides the tenant's rate by the number of healthy
	// distributors, so the cluster as a whole admits the configured rate
	// when load is spread evenly across distributors. The burst is not
	// divided: each distributor must still accept the largest single push.
	GlobalStrategy = "global"
)

// BytesInMB is what Loki means by "MB" in ingestion_rate_mb: a mebibyte.
const BytesInMB = 1 << 20

// Limits are one tenant's limits. Field names, YAML keys and defaults are
// Loki's (limits_config), so an overrides file written for Loki reads the
// same here. The ingester's limits (streams per tenant) join when the
// ingester does.
type Limits struct {
	// IngestionRateStrategy is local or global; see the constants. Default
	// global, Loki's.
	IngestionRateStrategy string `yaml:"ingestion_rate_strategy"`
	// IngestionRateMB is the sustained ingestion rate per tenant in MiB/s of
	// line plus structured-metadata bytes. Default 4. Raising it lets one
	// tenant take more of the shared Kafka and ingester capacity.
	IngestionRateMB float64 `yaml:"ingestion_rate_mb"`
	// IngestionBurstSizeMB is the token bucket's size in MiB: the largest
	// push accepted at once, and how far above the rate a tenant may go
	// briefly. Default 6. A push larger than the burst is always rejected.
	IngestionBurstSizeMB float64 `yaml:"ingestion_burst_size_mb"`
	// MaxLineSize rejects (line_too_long) entries whose line is longer; 0
	// disables. Default 256KB (262144 bytes, as in Loki). Long lines make large chunks
	// blocks and slow queries.
	MaxLineSize config.ByteSize `yaml:"max_line_size"`
	// MaxLabelNamesPerSeries bounds labels per stream. Default 15.
	MaxLabelNamesPerSeries int `yaml:"max_label_names_per_series"`
	// MaxLabelNameLength bounds a label name in bytes. Default 1024.
	MaxLabelNameLength int `yaml:"max_label_name_length"`
	// MaxLabelValueLength bounds a label value in bytes. Default 2048.
	MaxLabelValueLength int `yaml:"max_label_value_length"`
	// RejectOldSamples turns on the max-age check. Default true.
	RejectOldSamples bool `yaml:"reject_old_samples"`
	// RejectOldSamplesMaxAge rejects (greater_than_max_sample_age) entries
	// older than this. Default 1w. Old entries would land in index days the
	// compactor may already have merged, and widen every query.
	RejectOldSamplesMaxAge model.Duration `yaml:"reject_old_samples_max_age"`
	// CreationGracePeriod rejects (too_far_in_future) entries newer than
	// now plus this. Default 10m: it tolerates client clock skew.
	CreationGracePeriod model.Duration `yaml:"creation_grace_period"`
	// AllowStructuredMetadata accepts per-line metadata. Default true.
	AllowStructuredMetadata bool `yaml:"allow_structured_metadata"`
	// MaxStructuredMetadataSize bounds one entry's metadata bytes (names
	// plus values). Default 64KB; 0 disables.
	MaxStructuredMetadataSize config.ByteSize `yaml:"max_structured_metadata_size"`
	// MaxStructuredMetadataEntriesCount bounds one entry's metadata pairs.
	// Default 128; 0 disables.
	MaxStructuredMetadataEntriesCount int `yaml:"max_structured_metadata_entries_count"`
	// MaxGlobalStreamsPerUser bounds a tenant's active streams (streams
	// written within the idle timeout). Pushes that would create more get
	// 429 (stream_limit) at the distributor, before anything is written —
	// not at the ingester, where refusing an acknowledged line would lose
	// it. Default 5000, Loki's; 0 disables. Every stream costs ingester
	// memory (a chunk, an index entry per flush) however few lines it has:
	// this is the limit that keeps a label with a request ID in it from
	// taking the ingesters down.
	MaxGlobalStreamsPerUser int `yaml:"max_global_streams_per_user"`
	// RetentionPeriod deletes a tenant's chunks whose newest entry is older
	// than this; the compactor applies it. Default 0: keep forever, as in
	// Loki. Retention happens at compaction, so data outlives its period by
	// up to compaction_interval plus the compactor's deletion delay.
	RetentionPeriod model.Duration `yaml:"retention_period"`
	// RetentionStream overrides RetentionPeriod for streams matching a
	// selector: the matching rule with the highest priority applies, the
	// shorter period among equal priorities. Loki's retention_stream.
	RetentionStream []StreamRetention `yaml:"retention_stream,omitempty"`

	// The read path's limits: what one query may cost. Each refusal is a
	// 400 with Loki's wording, so a client written for Loki reads it.

	// MaxQueryLength is the longest time range a query may cover. Default
	// 721h (30 days and an hour), Loki's; 0 disables.
	MaxQueryLength model.Duration `yaml:"max_query_length"`
	// MaxEntriesLimitPerQuery caps a log query's limit parameter. Default
	// 5000, Loki's; 0 disables.
	MaxEntriesLimitPerQuery int `yaml:"max_entries_limit_per_query"`
	// MaxQuerySeries caps the series a metric query returns and the
	// streams /series lists. Default 500, Loki's.
	MaxQuerySeries int `yaml:"max_query_series"`
	// QueryTimeout bounds one query's execution. Default 1m, Loki's.
	QueryTimeout model.Duration `yaml:"query_timeout"`
	// MaxQueryParallelism is how many split intervals of one query run at
	// once. Default 32, Loki's; 0 disables querying for the tenant.
	MaxQueryParallelism int `yaml:"max_query_parallelism"`
	// SplitQueriesByInterval cuts a query's range into intervals of this
	// length, evaluated independently and merged: memory follows one
	// interval, and intervals run in parallel. Default 1h, Loki's; 0 does
	// not split.
	SplitQueriesByInterval model.Duration `yaml:"split_queries_by_interval"`
	// MaxQuerierBytesRead bounds the line bytes one split interval of a
	// query may read (the store's index says before a chunk is fetched;
	// ingesters' answers are counted as they arrive). Default 150GB,
	// Loki's; 0 disables. It is what keeps `{app=~".+"}` over a busy hour
	// from holding the hour in the querier's memory: lower it to fit the
	// machine.
	MaxQuerierBytesRead config.ByteSize `yaml:"max_querier_bytes_read"`
}

// StreamRetention is one retention_stream rule.
type StreamRetention struct {
	// Selector is a stream selector, e.g. {namespace="dev"}.
	Selector string `yaml:"selector"`
	// Priority decides between matching rules: highest wins.
	Priority int `yaml:"priority"`
	// Period is how long matching streams are kept.
	Period model.Duration `yaml:"period"`
}

// RegisterFlags registers the default limits with Loki's flag names.
func (l *Limits) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&l.IngestionRateStrategy, "distributor.ingestion-rate-limit-strategy", GlobalStrategy, "Ingestion rate strategy: local (per distributor) or global (divided among healthy distributors).")
	fs.Float64Var(&l.IngestionRateMB, "distributor.ingestion-rate-limit-mb", 4, "Per-tenant ingestion rate limit in MiB/s.")
	fs.Float64Var(&l.IngestionBurstSizeMB, "distributor.ingestion-burst-size-mb", 6, "Per-tenant ingestion burst size in MiB.")
	l.MaxLineSize = 256 << 10
	fs.Var(&l.MaxLineSize, "distributor.max-line-size", "Maximum line size, e.g. 256KB; 0 disables.")
	fs.IntVar(&l.MaxLabelNamesPerSeries, "validation.max-label-names-per-series", 15, "Maximum label names per stream.")
	fs.IntVar(&l.MaxLabelNameLength, "validation.max-length-label-name", 1024, "Maximum length of a label name in bytes.")
	fs.IntVar(&l.MaxLabelValueLength, "validation.max-length-label-value", 2048, "Maximum length of a label value in bytes.")
	fs.BoolVar(&l.RejectOldSamples, "validation.reject-old-samples", true, "Reject entries older than reject_old_samples_max_age.")
	l.RejectOldSamplesMaxAge = model.Duration(7 * 24 * time.Hour)
	fs.Var(&l.RejectOldSamplesMaxAge, "validation.reject-old-samples.max-age", "Maximum accepted entry age, e.g. 1w.")
	l.CreationGracePeriod = model.Duration(10 * time.Minute)
	fs.Var(&l.CreationGracePeriod, "validation.create-grace-period", "How far in the future an entry's timestamp may be.")
	fs.BoolVar(&l.AllowStructuredMetadata, "validation.allow-structured-metadata", true, "Accept structured metadata on entries.")
	l.MaxStructuredMetadataSize = 64 << 10
	fs.Var(&l.MaxStructuredMetadataSize, "limits.max-structured-metadata-size", "Maximum structured metadata bytes per entry; 0 disables.")
	fs.IntVar(&l.MaxStructuredMetadataEntriesCount, "limits.max-structured-metadata-entries-count", 128, "Maximum structured metadata pairs per entry; 0 disables.")
	fs.IntVar(&l.MaxGlobalStreamsPerUser, "ingester.max-global-streams-per-user", 5000, "Maximum active streams per tenant; 0 disables.")
	fs.Var(&l.RetentionPeriod, "store.retention", "Delete chunks older than this (applied by the compactor); 0 keeps forever.")
	l.MaxQueryLength = model.Duration(721 * time.Hour)
	fs.Var(&l.MaxQueryLength, "store.max-query-length", "Longest time range a query may cover; 0 disables.")
	fs.IntVar(&l.MaxEntriesLimitPerQuery, "validation.max-entries-limit", 5000, "Largest limit a log query may ask for; 0 disables.")
	fs.IntVar(&l.MaxQuerySeries, "querier.max-query-series", 500, "Most series a metric query may return (and /series list); 0 disables.")
	l.QueryTimeout = model.Duration(time.Minute)
	fs.Var(&l.QueryTimeout, "querier.query-timeout", "How long one query may run.")
	fs.IntVar(&l.MaxQueryParallelism, "querier.max-query-parallelism", 32, "Split intervals of one query evaluated at once; 0 disables querying.")
	l.SplitQueriesByInterval = model.Duration(time.Hour)
	fs.Var(&l.SplitQueriesByInterval, "querier.split-queries-by-interval", "Split queries into intervals of this length; 0 does not split.")
	l.MaxQuerierBytesRead = 150 << 30
	fs.Var(&l.MaxQuerierBytesRead, "frontend.max-querier-bytes-read", "Most line bytes one split interval of a query may read, e.g. 1GB; 0 disables.")
}

// DefaultLimits returns Loki's default limits, as RegisterFlags sets them.
func DefaultLimits() Limits {
	var l Limits
	l.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	return l
}

// Validate reports limits no component could apply.
func (l *Limits) Validate() error {
	switch l.IngestionRateStrategy {
	case LocalStrategy, GlobalStrategy:
	default:
		return fmt.Errorf("ingestion_rate_strategy %q: want %s or %s", l.IngestionRateStrategy, LocalStrategy, GlobalStrategy)
	}
	if l.IngestionRateMB < 0 || l.IngestionBurstSizeMB < 0 {
		return fmt.Errorf("ingestion_rate_mb and ingestion_burst_size_mb must not be negative")
	}
	if l.MaxLabelNamesPerSeries < 0 || l.MaxLabelNameLength < 0 || l.MaxLabelValueLength < 0 || l.MaxStructuredMetadataEntriesCount < 0 || l.MaxGlobalStreamsPerUser < 0 {
		return fmt.Errorf("label and structured metadata limits must not be negative")
	}
	if l.MaxQueryLength < 0 || l.MaxEntriesLimitPerQuery < 0 || l.MaxQuerySeries < 0 || l.QueryTimeout < 0 || l.MaxQueryParallelism < 0 || l.SplitQueriesByInterval < 0 {
		return fmt.Errorf("query limits must not be negative")
	}
	if l.RetentionPeriod < 0 {
		return fmt.Errorf("retention_period must not be negative")
	}
	for i, r := range l.RetentionStream {
		if _, err := labels.ParseMatchers(r.Selector); err != nil {
			return fmt.Errorf("retention_stream[%d] selector %q: %w", i, r.Selector, err)
		}
		if r.Period <= 0 {
			return fmt.Errorf("retention_stream[%d] needs a positive period", i)
		}
	}
	return nil
}

// IngestionRateBytes is the rate limit in bytes per second.
func (l *Limits) IngestionRateBytes() float64 { return l.IngestionRateMB * BytesInMB }

// IngestionBurstBytes is the burst in bytes.
func (l *Limits) IngestionBurstBytes() int { return int(l.IngestionBurstSizeMB * BytesInMB) }
