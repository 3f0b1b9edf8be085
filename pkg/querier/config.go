package querier

import (
	"errors"
	"flag"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
)

// Config is the querier's own configuration. What a query may cost is a
// per-tenant limit (tenant.Limits: max_query_length, max_query_series,
// query_timeout, split_queries_by_interval, …), not configured here.
type Config struct {
	// QueryIngestersWithin: intervals newer than now minus this also ask
	// the ingesters; older ones read only the store. Default 3h, Loki's.
	// It must exceed the longest a line can stay unflushed (the ingesters'
	// max_chunk_age plus a flush cycle), or recent lines go missing from
	// answers until they are flushed.
	QueryIngestersWithin time.Duration `yaml:"query_ingesters_within"`
	// MaxConcurrent bounds the chunk fetches of one split interval.
	// Default 8.
	MaxConcurrent int `yaml:"max_concurrent"`
	// IngesterQueryTimeout bounds one ingester's answer. An ingester that
	// does not answer in time makes the result partial (a warning), not a
	// failure: it must be shorter than query_timeout to matter. Default 10s.
	IngesterQueryTimeout time.Duration `yaml:"ingester_query_timeout"`
	// ChunkCacheSize bounds the cache of chunk objects, in bytes. Chunks
	// are immutable (their key holds their checksum), so a cached chunk
	// never goes stale. Default 256MB; 0 disables the cache.
	ChunkCacheSize config.ByteSize `yaml:"chunk_cache_size"`
	// IndexCacheSize bounds the cache of decoded index segments, in bytes
	// of the segments as stored (decoded they take about 2-4 times that).
	// Segment keys are never rewritten, so a cached segment never goes
	// stale; every read still lists the days, and downloads only the
	// segments it has not seen. Without it, every query — and every slice
	// of a metric query — downloads and decodes the whole day's index.
	// Default 64MB; 0 disables the cache.
	IndexCacheSize config.ByteSize `yaml:"index_cache_size"`
	// MetricSliceBytes is about how many bytes of lines a metric query
	// reads at once, per split interval it evaluates at once: it reads its
	// range in time slices sized to hold this much (slices.go). Raising it
	// saves requests to the ingesters and the index per query; lowering it
	// lowers the querier's memory per query. Default 64MB; it cannot be 0.
	MetricSliceBytes config.ByteSize `yaml:"metric_slice_bytes"`
	// MultiTenantQueriesEnabled lets X-Scope-OrgID name several tenants
	// separated by '|'; results carry a __tenant_id__ label. Default
	// false, Loki's.
	MultiTenantQueriesEnabled bool `yaml:"multi_tenant_queries_enabled"`
	// TailMaxDuration ends a /tail connection after this long. Default 1h,
	// Loki's.
	TailMaxDuration time.Duration `yaml:"tail_max_duration"`
	// TailPollInterval is how often a tail asks for new lines. Default 1s.
	TailPollInterval time.Duration `yaml:"tail_poll_interval"`
	// TailWriteTimeout drops a tail whose client stops reading: a message
	// that cannot be written within it ends the connection. Default 10s.
	// Without it a client that never reads would hold a goroutine and the
	// message it blocks on for up to tail_max_duration.
	TailWriteTimeout time.Duration `yaml:"tail_write_timeout"`
	// LabLeakTailSubscribers is a LAB FAULT, off by default: each /tail
	// the client closes leaves a goroutine behind, pinning its connection
	// (tail_leak.go, question 12). Turn it on only to practise finding a
	// leak with pprof.
	LabLeakTailSubscribers bool `yaml:"lab_leak_tail_subscribers"`
}

// RegisterFlags registers the querier's flags with Loki's names where
// Loki has the setting.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.QueryIngestersWithin, "querier.query-ingesters-within", 3*time.Hour, "Ask the ingesters for intervals newer than this; older ones read only the store.")
	fs.IntVar(&c.MaxConcurrent, "querier.max-concurrent", 8, "Chunk fetches at once per split interval.")
	fs.DurationVar(&c.IngesterQueryTimeout, "querier.ingester-query-timeout", 10*time.Second, "How long one ingester may take to answer before the result is partial.")
	c.ChunkCacheSize = 256 << 20
	fs.Var(&c.ChunkCacheSize, "querier.chunk-cache-size", "Bytes of chunk objects cached; 0 disables the cache.")
	c.IndexCacheSize = 64 << 20
	fs.Var(&c.IndexCacheSize, "querier.index-cache-size", "Bytes of index segments (as stored) kept decoded; 0 disables the cache.")
	c.MetricSliceBytes = 64 << 20
	fs.Var(&c.MetricSliceBytes, "querier.metric-slice-bytes", "Bytes of lines a metric query reads at once per split interval: its range is read in time slices sized to hold about this much.")
	fs.BoolVar(&c.MultiTenantQueriesEnabled, "querier.multi-tenant-queries-enabled", false, "Accept X-Scope-OrgID with several tenants separated by '|'.")
	fs.DurationVar(&c.TailMaxDuration, "querier.tail-max-duration", time.Hour, "Longest a /tail connection stays open.")
	fs.DurationVar(&c.TailPollInterval, "querier.tail-poll-interval", time.Second, "How often a tail asks for new lines.")
	fs.DurationVar(&c.TailWriteTimeout, "querier.tail-write-timeout", 10*time.Second, "How long a tail may wait for a client that does not read before dropping it.")
	fs.BoolVar(&c.LabLeakTailSubscribers, "querier.lab-leak-tail-subscribers", false, "LAB FAULT (question 12): leak a goroutine and its connection for every /tail the client closes.")
}

// Validate reports settings the querier cannot run with.
func (c *Config) Validate() error {
	switch {
	case c.QueryIngestersWithin < 0:
		return errors.New("query_ingesters_within must not be negative")
	case c.MaxConcurrent < 1:
		return errors.New("max_concurrent must be at least 1")
	case c.MetricSliceBytes <= 0:
		return errors.New("metric_slice_bytes must be positive")
	case c.IngesterQueryTimeout <= 0:
		return errors.New("ingester_query_timeout must be positive")
	case c.TailMaxDuration <= 0 || c.TailPollInterval <= 0 || c.TailWriteTimeout <= 0:
		return errors.New("tail_max_duration, tail_poll_interval and tail_write_timeout must be positive")
	}
	return nil
}
