// Package compactor merges each tenant's index segments, day by day.
//
// Ingesters write a new index segment for every tenant and day at every
// flush cycle (pkg/index): cheap to write, nothing shared to coordinate, but
// a query over a day then downloads and decodes every one of them — after a
// day of 30-second flushes from three ingesters, thousands. The compactor
// replaces a day's segments with one: it reads them, merges them (dropping
// the duplicate chunk references that replays create), writes the merged
// segment under a new name, and only then deletes the inputs. A reader that
// listed an input just before it was deleted lists again (index.Client) and
// finds the merged segment; a compactor killed between the write and the
// deletes leaves both, which the next run — or any reader, since Merge
// dedupes — handles. Nothing is ever deleted before what replaces it is
// durable.
//
// Only the segments listed at the start of a run are merged and deleted, so
// segments ingesters write meanwhile are left for the next run.
//
// Retention (deleting chunks past a tenant's retention period) belongs here
// too and comes with the read path (issue 4).
package compactor

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/index"
)

// Config is the compactor's configuration.
type Config struct {
	// CompactionInterval is how often a run starts. Default 10m (Loki's).
	// Shorter keeps fewer segments per day for queries to read, for more
	// reads and writes of index objects.
	CompactionInterval time.Duration `yaml:"compaction_interval"`
	// MinSegments is how many segments a tenant-day must have before it is
	// compacted. Default 2: a day with one segment is already compact.
	MinSegments int `yaml:"min_segments"`
}

// RegisterFlags registers the compactor flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.DurationVar(&c.CompactionInterval, "compactor.compaction-interval", 10*time.Minute, "How often to compact index segments.")
	fs.IntVar(&c.MinSegments, "compactor.min-segments", 2, "Segments a tenant-day needs before it is compacted.")
}

// Validate reports a configuration the compactor cannot run with.
func (c *Config) Validate() error {
	if c.CompactionInterval <= 0 || c.MinSegments < 2 {
		return errors.New("compactor: compaction_interval must be positive and min_segments at least 2")
	}
	return nil
}

// Compactor merges index segments. Build it with New, run it with Run.
type Compactor struct {
	cfg    Config
	bkt    objstore.Bucket
	index  *index.Client
	logger *slog.Logger
	now    func() time.Time

	runs           *prometheus.CounterVec
	segmentsRead   prometheus.Counter
	segmentsOut    prometheus.Counter
	segmentsDelete prometheus.Counter
	refsDeduped    prometheus.Counter
	lastSuccess    prometheus.Gauge
}

// New builds a compactor over bkt. reg may be nil; now nil means time.Now.
func New(cfg Config, bkt objstore.Bucket, reg prometheus.Registerer, logger *slog.Logger, now func() time.Time) (*Compactor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	c := &Compactor{
		cfg: cfg, bkt: bkt, index: index.NewClient(bkt), logger: logger, now: now,
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
		for _, m := range []prometheus.Collector{c.runs, c.segmentsRead, c.segmentsOut, c.segmentsDelete, c.refsDeduped, c.lastSuccess} {
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
	if err := errors.Join(errs...); err != nil {
		c.runs.WithLabelValues("failure").Inc()
		return err
	}
	c.runs.WithLabelValues("success").Inc()
	c.lastSuccess.Set(float64(c.now().Unix()))
	return nil
}

func (c *Compactor) compactDay(ctx context.Context, day int, tenant string) error {
	from, through := index.DayBounds(day)
	segs, keys, err := c.index.Segments(ctx, tenant, from, through)
	if err != nil {
		return err
	}
	// DayBounds covers exactly the day, so these are its segments only.
	inDay, inKeys := segs, keys
	if len(inDay) < c.cfg.MinSegments {
		return nil
	}
	c.segmentsRead.Add(float64(len(inDay)))
	merged := index.Merge(inDay...)
	before := 0
	for _, s := range inDay {
		before += int(s.Stats(from, through).Chunks)
	}
	after := 0
	for _, s := range merged {
		after += len(s.Chunks)
	}
	if before > after {
		c.refsDeduped.Add(float64(before - after))
	}
	name := "compacted-" + strconv.FormatInt(c.now().UnixMilli(), 10)
	key, err := c.index.WriteSegment(ctx, day, tenant, name, merged)
	if err != nil {
		return err
	}
	c.segmentsOut.Inc()
	// The merged segment is durable; only now may the inputs go. A delete
	// that fails leaves a duplicate that readers dedupe and the next run
	// removes.
	var errs []error
	for _, k := range inKeys {
		if k == key {
			continue
		}
		if err := c.bkt.Delete(ctx, k); err != nil {
			errs = append(errs, err)
			continue
		}
		c.segmentsDelete.Inc()
	}
	c.logger.Info("compacted index day", "day", day, "tenant", tenant, "segments", len(inKeys), "series", len(merged), "chunks", after, "into", key)
	return errors.Join(errs...)
}
