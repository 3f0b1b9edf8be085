// Package querier answers Loki's query API over what lokilab holds: the
// recent past in the ingesters' memory, everything flushed in the object
// store.
//
// A query's range is cut into split intervals (split_queries_by_interval,
// aligned to the epoch, so the same hour is the same interval in every
// query — what makes the chunk cache useful). For each interval:
//
//  1. If the interval is newer than now − query_ingesters_within, every
//     healthy ingester is asked for the matching streams' entries it holds
//     (ingesters found in the ring; one that fails is a warning — a
//     partial answer — never silence).
//  2. Then the store: index segments of the interval's days name the
//     chunks of matching streams; chunks are fetched in parallel (bounded,
//     through the chunk cache), checked against the index's checksum and
//     decoded.
//  3. Both are merged per stream, by time, and identical entries — the
//     same line from an ingester and from a chunk it just flushed, or from
//     two chunks of a replay — are kept once and counted as duplicates.
//
// The ingesters are asked before the store on purpose: an ingester drops a
// chunk only after the index that names it is written, so a chunk flushed
// while a query runs is found in one place or the other. Asked the other
// way round, it could slip between the two reads.
//
// Log queries walk the intervals in the query's direction and stop once
// the limit is reached: a `{app="api"}` over 30 days with limit 100 reads
// the newest hour, not the month. Metric queries evaluate intervals in
// parallel (max_query_parallelism), each over its own steps, and
// concatenate the results: every LogQL operation lokilab evaluates is
// per step, so splitting by steps changes nothing in the answer.
//
// Memory: a log query holds one interval's matching entries at a time;
// that is what split_queries_by_interval trades against the number of
// index and chunk reads. A metric query reads each interval in time
// slices of about metric_slice_bytes of lines and keeps only per-step sums
// between them (slices.go), so it holds one slice per interval it
// evaluates at once.
package querier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/thanos-io/objstore"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// TenantLabel names a result's tenant in multi-tenant queries, as in Loki.
const TenantLabel = "__tenant_id__"

// maxPoints is the most steps a range query may have: Loki's 11,000.
const maxPoints = 11000

// Deps are what a querier reads from.
type Deps struct {
	// Bucket is the object store the ingesters flush to.
	Bucket objstore.Bucket
	// Ingesters finds the ingesters to ask for recent data; nil reads the
	// store only.
	Ingesters IngesterSet
	Limits    tenant.LimitsSource
	// AuthEnabled requires X-Scope-OrgID; without it every request is
	// tenant "fake".
	AuthEnabled bool
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
	// Now is the clock; nil is time.Now. Tests move it.
	Now func() time.Time
	// HTTPClient asks the ingesters; nil is a client with no overall
	// timeout (each call is bounded by ingester_query_timeout).
	HTTPClient *http.Client
}

// Querier answers queries for one or more tenants.
type Querier struct {
	cfg       Config
	store     *Store
	ingesters IngesterSet
	client    *ingesterClient
	limits    tenant.LimitsSource
	auth      bool
	now       func() time.Time
	logger    *slog.Logger
	metrics   *metrics
	inflight  *inFlight // subqueries running now (inflight.go)
}

// New builds a querier.
func New(cfg Config, deps Deps) (*Querier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("querier: %w", err)
	}
	if deps.Bucket == nil || deps.Limits == nil || deps.Registerer == nil {
		return nil, errors.New("querier: Bucket, Limits and Registerer are required")
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{}
	}
	var cache *ChunkCache
	if cfg.ChunkCacheSize > 0 {
		cache = NewChunkCache(int64(cfg.ChunkCacheSize), deps.Registerer)
	}
	var segments *index.SegmentCache
	if cfg.IndexCacheSize > 0 {
		segments = index.NewSegmentCache(int64(cfg.IndexCacheSize), deps.Registerer)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	inf, err := newInFlight(deps.Registerer)
	if err != nil {
		return nil, err
	}
	return &Querier{
		cfg:       cfg,
		store:     NewStore(deps.Bucket, cfg.MaxConcurrent, cache, segments),
		ingesters: deps.Ingesters,
		client:    &ingesterClient{http: deps.HTTPClient, timeout: cfg.IngesterQueryTimeout},
		limits:    deps.Limits,
		auth:      deps.AuthEnabled,
		now:       deps.Now,
		logger:    deps.Logger,
		metrics:   m,
		inflight:  inf,
	}, nil
}

// Stats says what a query cost, in the parts Loki reports: the store, the
// ingesters and a summary.
type Stats struct {
	Store           StoreStats
	Ingester        IngesterStats
	Splits          int
	LinesProcessed  int   // entries that went through the pipeline
	BytesProcessed  int64 // their lines' bytes
	EntriesReturned int
	ExecTime        time.Duration
}

func (s *Stats) add(o Stats) {
	s.Store.add(o.Store)
	s.Ingester.Reached = max(s.Ingester.Reached, o.Ingester.Reached)
	s.Ingester.LinesSent += o.Ingester.LinesSent
	s.Ingester.Duplicates += o.Ingester.Duplicates
	s.Splits += o.Splits
	s.LinesProcessed += o.LinesProcessed
	s.BytesProcessed += o.BytesProcessed
	s.EntriesReturned += o.EntriesReturned
}

// Duplicates is every identical entry removed, wherever it was found.
func (s *Stats) Duplicates() int { return s.Store.Duplicates + s.Ingester.Duplicates }

// queryLimits is the limits a query over tenants is held to: one tenant's
// own, or for several the most restrictive of each (the smallest positive
// value; 0 where it means "no limit" only if every tenant has no limit).
// A multi-tenant query thus never lets a tenant read more than its own
// limits allow, whichever tenant the header names first.
//
// max_querier_bytes_read stays per tenant: fetch applies it to each
// tenant's reads (see fetch).
func (q *Querier) queryLimits(tenants []string) *tenant.Limits {
	if len(tenants) == 1 {
		return q.limits.For(tenants[0])
	}
	l := *q.limits.For(tenants[0])
	for _, id := range tenants[1:] {
		o := q.limits.For(id)
		l.MaxQueryLength = smallestPositive(l.MaxQueryLength, o.MaxQueryLength)
		l.MaxEntriesLimitPerQuery = smallestPositive(l.MaxEntriesLimitPerQuery, o.MaxEntriesLimitPerQuery)
		l.MaxQuerySeries = smallestPositive(l.MaxQuerySeries, o.MaxQuerySeries)
		l.QueryTimeout = smallestPositive(l.QueryTimeout, o.QueryTimeout)
		l.SplitQueriesByInterval = smallestPositive(l.SplitQueriesByInterval, o.SplitQueriesByInterval)
		// 0 here means querying is disabled: one disabled tenant
		// disables the query.
		l.MaxQueryParallelism = min(l.MaxQueryParallelism, o.MaxQueryParallelism)
	}
	return &l
}

// smallestPositive is the smaller of a and b where 0 means unlimited.
func smallestPositive[T model.Duration | int](a, b T) T {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}

// warnings collects, without repeats, what makes an answer partial.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) add(ws ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range ws {
		if !slices.Contains(w.list, s) {
			w.list = append(w.list, s)
		}
	}
}

// interval is one split of a query's range: [from, through) in ns.
type interval struct{ from, through int64 }

// splitRange cuts [from, through) at multiples of split (epoch-aligned).
func splitRange(from, through int64, split time.Duration) []interval {
	if split <= 0 || through <= from {
		return []interval{{from, through}}
	}
	var out []interval
	for start := from; start < through; {
		end := (floorDiv(start, int64(split)) + 1) * int64(split)
		end = min(end, through)
		out = append(out, interval{start, end})
		start = end
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// fetch returns tenant's streams matching ms with their entries in
// [from, through), from the ingesters (if the range is recent enough) and
// the store, merged and deduplicated. Both drop the lines lq's raw line
// filters reject before copying them. ingesterLimit caps what each
// ingester sends per stream (0: everything).
func (q *Querier) fetch(ctx context.Context, tenantID string, lq *logql.LogQuery, from, through int64, backward bool, ingesterLimit int, st *Stats, w *warnings) ([]logql.StreamEntries, error) {
	ms := lq.Matchers
	var all []logql.StreamEntries
	// Ingesters first; see the package doc for why the order matters.
	maxBytes := int64(q.limits.For(tenantID).MaxQuerierBytesRead)
	ctx, span := tracing.Child(ctx, "querier.fetch", attribute.String("tenant", tenantID),
		attribute.Int64("from", from), attribute.Int64("through", through))
	defer span.End()
	if q.ingesters != nil && through > q.now().Add(-q.cfg.QueryIngestersWithin).UnixNano() {
		ictx, ispan := tracing.Child(ctx, "querier.ingesters")
		streams, ist, ws, err := q.client.recent(ictx, q.ingesters, tenantID, lq, from, through, backward, ingesterLimit, maxBytes)
		ispan.SetAttributes(attribute.Int("reached", ist.Reached), attribute.Int("lines", ist.LinesSent))
		tracing.End(ispan, err)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return nil, err
		}
		w.add(ws...)
		st.Ingester.Reached = max(st.Ingester.Reached, ist.Reached)
		st.Ingester.LinesSent += ist.LinesSent
		st.Ingester.Duplicates += ist.Duplicates
		all = append(all, streams...)
	}
	sctx, sspan := tracing.Child(ctx, "querier.store")
	stored, sst, err := q.store.Streams(sctx, tenantID, Read{Matchers: ms, From: from, Through: through, Keep: lq.RawLineFilter(), BlockFilter: lq.BlockFilter(), MaxBytes: maxBytes})
	sspan.SetAttributes(attribute.Int("chunks", sst.Chunks), attribute.Int("blocks_skipped", sst.BlocksSkipped))
	tracing.End(sspan, err)
	st.Store.add(sst)
	// Lines dropped in the store went through (the first part of) the
	// pipeline there, those of blocks its block filter skipped included
	// (readChunk says why).
	st.LinesProcessed += sst.Filtered
	st.BytesProcessed += sst.FilteredBytes
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return stored, nil
	}
	merged, dups := mergeStreams(append(all, stored...))
	st.Ingester.Duplicates += dups
	return merged, nil
}

// mergeStreams merges streams with the same labels, each one's entries
// sorted by (timestamp, line) with identical entries once, and returns
// how many were removed.
func mergeStreams(in []logql.StreamEntries) ([]logql.StreamEntries, int) {
	byKey := make(map[string]int, len(in))
	var out []logql.StreamEntries
	for _, s := range in {
		k := s.Labels.String()
		if i, ok := byKey[k]; ok {
			out[i].Entries = append(out[i].Entries, s.Entries...)
			continue
		}
		byKey[k] = len(out)
		out = append(out, s)
	}
	dups := 0
	for i := range out {
		es := out[i].Entries
		slices.SortFunc(es, compareEntries)
		n := len(es)
		es = slices.CompactFunc(es, func(a, b push.Entry) bool { return a.Timestamp == b.Timestamp && a.Line == b.Line })
		dups += n - len(es)
		out[i].Entries = es
	}
	return out, dups
}

func compareEntries(a, b push.Entry) int {
	if c := cmp.Compare(a.Timestamp, b.Timestamp); c != 0 {
		return c
	}
	return strings.Compare(a.Line, b.Line)
}

// LogQuery is a log query's request.
type LogQuery struct {
	Query *logql.LogQuery
	// From and Through bound entry timestamps in ns: From <= ts < Through.
	From, Through int64
	Backward      bool
	Limit         int
}

// SelectLogs answers a log query for tenants: at most Limit entries, the
// first in the query's direction. Entries are ordered by timestamp, then
// by their stream's labels, then by line; backward is exactly the reverse
// of forward. Streams come back sorted by labels, each one's entries in
// the query's direction.
func (q *Querier) SelectLogs(ctx context.Context, tenants []string, lq LogQuery, st *Stats, w *warnings) ([]logql.StreamEntries, error) {
	lim := q.queryLimits(tenants)
	ivs := splitRange(lq.From, lq.Through, time.Duration(lim.SplitQueriesByInterval))
	if lq.Backward {
		slices.Reverse(ivs)
	}
	// The ingesters apply the query's raw line filters; when nothing else
	// in the pipeline can drop a line, Limit lines per stream is all they
	// need to send. Otherwise (a label filter, say) their first Limit
	// lines might all be dropped here, so they send every line. (Loki's
	// ingesters run the whole pipeline; lokilab's stay simple.)
	ingesterLimit := 0
	if lq.Query.KeepsAllAfterRawFilter() {
		ingesterLimit = lq.Limit
	}
	type out struct {
		key string
		ls  labels.Labels
		e   push.Entry
	}
	var kept []out
	for _, iv := range ivs {
		if len(kept) >= lq.Limit {
			break
		}
		st.Splits++
		var batch []out
		for _, t := range tenants {
			done := q.inflight.start()
			streams, err := q.fetch(ctx, t, lq.Query, iv.from, iv.through, lq.Backward, ingesterLimit, st, w)
			done()
			if err != nil {
				return nil, err
			}
			p, err := logql.NewPipeline(lq.Query)
			if err != nil {
				return nil, err
			}
			need := lq.Limit - len(kept)
			for _, s := range streams {
				sls := withTenant(s.Labels, t, len(tenants) > 1)
				skey := sls.String()
				es := s.Entries
				n := 0
				for j := range es {
					e := es[j]
					if lq.Backward {
						e = es[len(es)-1-j]
					}
					// Only the first need entries in direction order can
					// be returned, and no stream can contribute more than
					// that: stop there — but not inside a timestamp, where
					// the answer's order is decided by labels and line.
					if n >= need && e.Timestamp != batch[len(batch)-1].e.Timestamp {
						break
					}
					st.LinesProcessed++
					st.BytesProcessed += int64(len(e.Line))
					line, ls, keep := p.Process(e.Line, sls)
					if !keep {
						continue
					}
					key := skey
					if !sameLabels(ls, sls) {
						key = ls.String()
					}
					batch = append(batch, out{key, ls, push.Entry{Timestamp: e.Timestamp, Line: line}})
					n++
				}
			}
		}
		slices.SortFunc(batch, func(a, b out) int {
			c := cmp.Compare(a.e.Timestamp, b.e.Timestamp)
			if c == 0 {
				c = strings.Compare(a.key, b.key)
			}
			if c == 0 {
				c = strings.Compare(a.e.Line, b.e.Line)
			}
			if lq.Backward {
				c = -c
			}
			return c
		})
		kept = append(kept, batch[:min(len(batch), lq.Limit-len(kept))]...)
	}
	byKey := map[string]int{}
	var result []logql.StreamEntries
	for _, o := range kept {
		i, ok := byKey[o.key]
		if !ok {
			i = len(result)
			byKey[o.key] = i
			result = append(result, logql.StreamEntries{Labels: o.ls})
		}
		result[i].Entries = append(result[i].Entries, o.e)
	}
	slices.SortFunc(result, func(a, b logql.StreamEntries) int { return strings.Compare(a.Labels.String(), b.Labels.String()) })
	st.EntriesReturned = len(kept)
	return result, nil
}

// sameLabels reports whether the pipeline handed back the stream's own
// labels (it returns them unchanged when no stage touched them), sparing
// the label string's formatting per entry.
func sameLabels(a, b labels.Labels) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// withTenant adds the tenant label when a query spans tenants.
func withTenant(ls labels.Labels, tenantID string, multi bool) labels.Labels {
	if !multi {
		return ls
	}
	return labels.New(append(slices.Clone(ls), labels.Label{Name: TenantLabel, Value: tenantID})...)
}

// MetricQuery is a metric query's request: evaluated at start, start+step,
// … up to end; an instant query has start == end and no step.
type MetricQuery struct {
	Expr       logql.Expr
	Start, End time.Time
	Step       time.Duration
}

// SelectSamples evaluates a metric query for tenants, split intervals in
// parallel, each one reading its range in time slices (readSlices).
func (q *Querier) SelectSamples(ctx context.Context, tenants []string, mq MetricQuery, st *Stats, w *warnings) ([]logql.Series, error) {
	lim := q.queryLimits(tenants)
	// The steps of each split interval, evaluated on their own.
	type group struct{ start, end time.Time }
	var groups []group
	if mq.Step <= 0 || mq.Start.Equal(mq.End) {
		groups = []group{{mq.Start, mq.End}}
	} else {
		split := time.Duration(lim.SplitQueriesByInterval)
		cur := group{start: mq.Start, end: mq.Start}
		for t := mq.Start; !t.After(mq.End); t = t.Add(mq.Step) {
			if split > 0 && floorDiv(t.UnixNano(), int64(split)) != floorDiv(cur.start.UnixNano(), int64(split)) {
				groups = append(groups, cur)
				cur = group{start: t}
			}
			cur.end = t
		}
		groups = append(groups, cur)
	}
	results := make([][]logql.Series, len(groups))
	stats := make([]Stats, len(groups))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(lim.MaxQueryParallelism, 1))
	for i, gr := range groups {
		g.Go(func() error {
			defer q.inflight.start()()
			gst := &stats[i]
			gst.Splits = 1
			src := func(lq *logql.LogQuery, from, through int64, emit func(logql.StreamEntries) error) error {
				return q.readSlices(gctx, tenants, lq, from, through, gst, w, emit)
			}
			var err error
			results[i], err = logql.EvalRange(mq.Expr, src, gr.start, gr.end, mq.Step)
			return err
		})
	}
	err := g.Wait()
	for _, s := range stats {
		st.add(s)
	}
	if err != nil {
		return nil, err
	}
	// Concatenate each series' samples across groups (in time order: the
	// groups are).
	byKey := map[string]int{}
	var out []logql.Series
	for _, rs := range results {
		for _, s := range rs {
			k := s.Labels.String()
			i, ok := byKey[k]
			if !ok {
				byKey[k] = len(out)
				out = append(out, logql.Series{Labels: s.Labels})
				i = len(out) - 1
			}
			out[i].Samples = append(out[i].Samples, s.Samples...)
		}
	}
	slices.SortFunc(out, func(a, b logql.Series) int { return strings.Compare(a.Labels.String(), b.Labels.String()) })
	for _, s := range out {
		st.EntriesReturned += len(s.Samples)
	}
	return out, nil
}
