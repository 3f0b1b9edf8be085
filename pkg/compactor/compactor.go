// Package compactor merges each tenant's index segments, day by day.
//
// Ingesters write a new index segment for every tenant and day at every
// flush cycle (pkg/index): cheap to write, nothing shared to coordinate, but
// a query over a day then downloads and decodes every one of them — after a
// day of 30-second flushes from three ingesters, thousands. The compactor
// replaces a day's segments with one: it reads them, merges them (dropping
// the duplicate chunk references that replays create), writes the merged
// segment under a name never used before (readers cache segments by key, so
// a key is never rewritten: see mergedName), and only then deletes the
// inputs. A reader that listed an input just before it was deleted lists
// again (index.Client) and finds the merged segment; a compactor killed
// between the write and the deletes leaves both, which the next run — or
// any reader, since Merge dedupes — handles. Nothing is ever deleted before
// what replaces it is durable.
//
// Only the segments listed at the start of a run are merged and deleted, so
// segments ingesters write meanwhile are left for the next run.
//
// Retention rides on compaction (retention.go): with retention_enabled, a
// day's merged segment leaves out the chunks past their tenant's
// retention_period or the best-matching retention_stream rule, a marker
// remembers them, and a sweep deletes them from the store after
// retention_delete_delay.
package compactor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// Config is the compactor's configuration.
type Config struct {
	// CompactionInterval is how often a run starts. Default 10m (Loki's).
	// Shorter keeps fewer segments per day for queries to read, for more
	// reads and writes of index objects.
	CompactionInterval time.Duration `yaml:"compaction_interval"`
	// MinSegments is how many segments a tenant-day must have before it is
	// compacted. Default 2: a day with one segment is already compact
	// (unless retention expires some of its chunks).
	MinSegments int `yaml:"min_segments"`
	// RetentionEnabled applies tenants' retention_period and
	// retention_stream. Default false, as in Loki: deleting data is opt-in.
	RetentionEnabled bool `yaml:"retention_enabled"`
	// RetentionDeleteDelay is how long expired chunks stay in the store
	// after they left the index, so queries that read the index before
	// finish reading them. Default 2h, Loki's.
	RetentionDeleteDelay time.Duration `yaml:"retention_delete_delay"`
}

// RegisterFlags registers the compactor flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.CompactionInterval, "compactor.compaction-interval", 10*time.Minute, "How often to compact index segments.")
	fs.IntVar(&c.MinSegments, "compactor.min-segments", 2, "Segments a tenant-day needs before it is compacted.")
	fs.BoolVar(&c.RetentionEnabled, "compactor.retention-enabled", false, "Apply tenants' retention_period and retention_stream.")
	fs.DurationVar(&c.RetentionDeleteDelay, "compactor.retention-delete-delay", 2*time.Hour, "How long expired chunks stay after leaving the index.")
}

// Validate reports a configuration the compactor cannot run with.
func (c *Config) Validate() error {
	if c.CompactionInterval <= 0 || c.MinSegments < 2 || c.RetentionDeleteDelay < 0 {
		return errors.New("compactor: compaction_interval must be positive, min_segments at least 2 and retention_delete_delay not negative")
	}
	return nil
}

// Compactor merges index segments. Build it with New, run it with Run.
type Compactor struct {
	cfg    Config
	bkt    objstore.Bucket
	index  *index.Client
	limits tenant.LimitsSource
	logger *slog.Logger
	now    func() time.Time

	chunksMarked   prometheus.Counter
	chunksDeleted  prometheus.Counter
	bytesReclaimed prometheus.Counter

	runs           *prometheus.CounterVec
	segmentsRead   prometheus.Counter
	segmentsOut    prometheus.Counter
	segmentsDelete prometheus.Counter
	refsDeduped    prometheus.Counter
	lastSuccess    prometheus.Gauge
}

// New builds a compactor over bkt. limits supplies tenants' retention and
// may be nil when retention is off; reg may be nil; now nil means time.Now.
func New(cfg Config, bkt objstore.Bucket, limits tenant.LimitsSource, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time) (*Compactor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if cfg.RetentionEnabled && limits == nil {
		return nil, errors.New("compactor: retention needs tenant limits")
	}
	c := &Compactor{
		cfg: cfg, bkt: bkt, index: index.NewClient(bkt), limits: limits, logger: logger, now: now,
		chunksMarked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_compactor_chunks_marked_total", Help: "Chunks past their retention, removed from the index and marked for deletion.",
		}),
		chunksDeleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_compactor_chunks_deleted_total", Help: "Expired chunks deleted from the store after the deletion delay.",
		}),
		bytesReclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_compactor_bytes_reclaimed_total", Help: "Bytes of expired chunks deleted from the store.",
		}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_compactor_runs_total", Help: "Compaction runs, by result.",
		}, []string{"result"}),
		segmentsRead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_compactor_segments_read_total", Help: "Index segments read for compaction.",
		}),
		segmentsOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_compactor_segments_written_total", Help: "Merged index segments written.",
		}),
		segmentsDelete: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_compactor_segments_deleted_total", Help: "Index segments deleted once merged.",
		}),
		refsDeduped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lokilab_compactor_chunk_refs_deduplicated_total", Help: "Duplicate chunk references (from replays and re-flushes) dropped by merging.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loki_compactor_last_successful_run_timestamp_seconds", Help: "Unix time of the last successful compaction run.",
		}),
	}
	if reg != nil {
		for _, m := range []prometheus.Collector{c.runs, c.segmentsRead, c.segmentsOut, c.segmentsDelete, c.refsDeduped, c.lastSuccess, c.chunksMarked, c.chunksDeleted, c.bytesReclaimed} {
			if err := reg.Register(m); err != nil {
				return nil, fmt.Errorf("compactor: registering metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Run compacts every compaction_interval until ctx ends. A failed run is
// logged and retried at the next interval.
func (c *Compactor) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.CompactionInterval)
	defer t.Stop()
	for {
		if err := c.Compact(ctx); err != nil && ctx.Err() == nil {
			c.logger.Warn("compaction incomplete; retrying next interval", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Compact runs once over every day and tenant in the store.
func (c *Compactor) Compact(ctx context.Context) error {
	days, err := c.index.Days(ctx)
	if err != nil {
		c.runs.WithLabelValues("failure").Inc()
		return err
	}
	var errs []error
	for _, day := range days {
		tenants, err := c.index.Tenants(ctx, day)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, t := range tenants {
			if err := c.compactDay(ctx, day, t); err != nil {
				errs = append(errs, fmt.Errorf("compactor: day %d tenant %s: %w", day, t, err))
			}
		}
	}
	if c.cfg.RetentionEnabled {
		if err := c.Sweep(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.runs.WithLabelValues("failure").Inc()
		return err
	}
	c.runs.WithLabelValues("success").Inc()
	c.lastSuccess.Set(float64(c.now().Unix()))
	return nil
}

func (c *Compactor) compactDay(ctx context.Context, day int, tenantID string) error {
	from, through := index.DayBounds(day)
	// DayBounds covers exactly the day, so these are its segments only.
	segs, keys, err := c.index.Segments(ctx, tenantID, from, through)
	if err != nil || len(segs) == 0 {
		return err
	}
	merged := index.Merge(segs...)
	var expired []string
	if c.cfg.RetentionEnabled {
		rules, err := rulesFor(c.limits.For(tenantID))
		if err != nil {
			return err
		}
		merged, expired = rules.expire(tenantID, merged, c.now())
	}
	if len(segs) < c.cfg.MinSegments && len(expired) == 0 {
		return nil
	}
	c.segmentsRead.Add(float64(len(segs)))
	before := 0
	for _, s := range segs {
		before += int(s.Stats(from, through).Chunks)
	}
	after := len(expired)
	for _, s := range merged {
		after += len(s.Chunks)
	}
	if before > after {
		c.refsDeduped.Add(float64(before - after))
	}
	// The marker first: whatever is interrupted after it, the expired
	// chunks are remembered, and the sweep deletes none that an index
	// segment still references.
	if len(expired) > 0 {
		if err := c.writeMarker(ctx, marker{Tenant: tenantID, Day: day, Chunks: expired}); err != nil {
			return err
		}
	}
	key := ""
	if len(merged) > 0 {
		name := mergedName(c.now())
		if key, err = c.index.WriteSegment(ctx, day, tenantID, name, merged); err != nil {
			return err
		}
		c.segmentsOut.Inc()
	}
	// The merged segment is durable; only now may the inputs go. A delete
	// that fails leaves a duplicate that readers dedupe and the next run
	// removes.
	var errs []error
	for _, k := range keys {
		// key was not listed (its name is new), so this never matches
		// while names are unique. It stays because the cost of being
		// wrong is so unequal: skipping a delete leaves a duplicate that
		// readers dedupe, deleting the segment just written loses the day.
		if k == key {
			continue
		}
		if err := c.bkt.Delete(ctx, k); err != nil {
			errs = append(errs, err)
			continue
		}
		c.segmentsDelete.Inc()
	}
	c.logger.Info("compacted index day", "day", day, "tenant", tenantID, "segments", len(keys), "series", len(merged), "expired_chunks", len(expired), "into", key)
	return errors.Join(errs...)
}

// mergedName returns a new name for a merged segment:
// compacted-<unix ms>-<16 hex digits>.
//
// Readers cache segments by key, so a key must never be written twice with
// different content (index.Client.Write). The time alone does not ensure
// that: two runs in the same millisecond (a restarted compactor, an
// injected clock, a clock stepped back) would each write the same key with
// a different merge, and a later run could reuse a name an earlier one
// wrote and then deleted. 64 random bits make a repeat for one tenant-day
// as unlikely as a hash collision, with no state to keep across restarts.
// The time stays first, so a day's merged segments list in the order they
// were written and a name tells when.
func mergedName(now time.Time) string {
	var b [8]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return "compacted-" + strconv.FormatInt(now.UnixMilli(), 10) + "-" + hex.EncodeToString(b[:])
}
