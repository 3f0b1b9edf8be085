package ingester

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// RecentQuery asks an ingester for the entries it holds in memory: the
// data not yet (or only just) in the store, which the querier needs for
// the recent part of a query range.
type RecentQuery struct {
	Tenant   string
	Matchers []*labels.Matcher
	// From and Through bound entry timestamps in ns: From <= ts < Through.
	From, Through int64
	Direction     chunk.Direction
	// Limit is the most entries returned per stream, in direction order
	// (a query's overall limit needs no more from any one stream); 0
	// returns them all.
	Limit int
	// Filter, if not nil, drops the lines it rejects before they are
	// copied or counted against Limit: a log query's raw line filters
	// (logql.LogQuery.RawLineFilter), so that `{app="api"} |= "error"`
	// sends the querier only lines with "error" in them.
	Filter func(line string) bool
	// BlockFilter, if not nil, skips the cut blocks of in-memory chunks
	// that cannot hold a line Filter accepts
	// (logql.LogQuery.BlockFilter: a block lacking a `|=` substring),
	// after one search of each decompressed block instead of a decode and
	// a Filter call per line. The head block is always read. The
	// ingester reports no lines-processed statistics, so unlike the
	// querier's store it does not count what it skips.
	BlockFilter func(block []byte) bool
}

// MaxRecentLimit caps RecentQuery.Limit: Loki's max_entries_limit_per_query.
const MaxRecentLimit = 5000

// recentBatch is the most entries QueryRecent hands fn at once: a metric
// query asks for every entry of a stream (Limit 0), and a batch, not the
// stream, is what this API holds decompressed at a time.
const recentBatch = 1000

// QueryRecent calls fn with the entries of each matching stream in
// q.Direction order, deduplicated (the same timestamp and line twice in a
// stream is one entry): up to q.Limit per stream, or all of them when
// q.Limit is 0, in batches of at most recentBatch entries — one stream's
// batches consecutively. Streams are read one at a time, so memory is
// bounded by one stream's chunk iterators and one batch, not by what the
// ingester holds. The entries' strings are copies fn may keep.
//
// A stream's chunks are snapshotted under the partition's lock (the head
// block's entries are copied by chunk.FilteredIterator); decompressing and merging
// happen after the lock is released, so a query never stalls ingestion for
// longer than it takes to list one stream's chunks.
func (i *Ingester) QueryRecent(ctx context.Context, q RecentQuery, fn func(stream string, entries []push.Entry) error) error {
	if q.Limit < 0 || q.Limit > MaxRecentLimit {
		return fmt.Errorf("limit must be between 0 (all) and %d", MaxRecentLimit)
	}
	for _, id := range i.owned() {
		p := i.partition(id)
		if p == nil {
			continue
		}
		for _, s := range p.matching(q.Tenant, q.Matchers) {
			if err := ctx.Err(); err != nil {
				return err
			}
			its := p.iterators(s, q)
			if len(its) == 0 {
				continue // flushed and dropped since it was listed
			}
			err := mergeStream(its, q.Direction, q.Limit, recentBatch, q.Filter, func(entries []push.Entry) error { return fn(s.lstr, entries) })
			if err != nil {
				return fmt.Errorf("ingester: reading stream %s: %w", s.lstr, err)
			}
		}
	}
	return nil
}

// StreamStats describes one stream an ingester holds: its labels and its
// in-memory chunks overlapping a time range (whole chunks: an estimate of
// the entries in the range, as Loki's index stats are).
type StreamStats struct {
	Labels  string `json:"stream"`
	Chunks  int    `json:"chunks"`
	Entries int    `json:"entries"`
	Bytes   int    `json:"bytes"` // uncompressed line bytes
}

// Series lists tenant's in-memory streams matching ms with chunks
// overlapping [from, through): the recent half of /series, /labels and
// /index/stats, which the store's index cannot know about until a flush.
func (i *Ingester) Series(tenantID string, ms []*labels.Matcher, from, through int64) []StreamStats {
	var out []StreamStats
	for _, id := range i.owned() {
		p := i.partition(id)
		if p == nil {
			continue
		}
		for _, s := range p.matching(tenantID, ms) {
			if st, ok := p.streamStats(s, from, through); ok {
				out = append(out, st)
			}
		}
	}
	return out
}

func (p *partition) streamStats(s *stream, from, through int64) (StreamStats, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := StreamStats{Labels: s.lstr}
	add := func(c *chunk.Chunk) {
		if c.Entries() == 0 {
			return
		}
		if lo, hi := c.Bounds(); hi < from || lo >= through {
			return
		}
		st.Chunks++
		st.Entries += c.Entries()
		st.Bytes += c.UncompressedSize()
	}
	for _, sc := range s.sealed {
		add(sc.c)
	}
	if s.head != nil {
		add(s.head.c)
	}
	return st, st.Chunks > 0
}

// matching lists the tenant's streams whose labels match ms.
func (p *partition) matching(tenantID string, ms []*labels.Matcher) []*stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*stream
	for _, s := range p.streams[tenantID] {
		if s.labels.Matches(ms...) {
			out = append(out, s)
		}
	}
	return out
}

// iterators snapshots one stream's chunks overlapping q's time range.
func (p *partition) iterators(s *stream, q RecentQuery) []chunk.Iterator {
	p.mu.Lock()
	defer p.mu.Unlock()
	var its []chunk.Iterator
	add := func(c *chunk.Chunk) {
		if c.Entries() == 0 {
			return
		}
		if lo, hi := c.Bounds(); hi < q.From || lo >= q.Through {
			return
		}
		its = append(its, c.FilteredIterator(q.From, q.Through, q.Direction, q.BlockFilter, nil))
	}
	for _, sc := range s.sealed {
		add(sc.c)
	}
	if s.head != nil {
		add(s.head.c)
	}
	return its
}

// mergeStream merges one stream's chunk iterators by timestamp, dropping
// identical entries and those filter (if not nil) rejects, and emits them
// in batches of up to batchSize: up to limit entries, all of them if limit
// is 0.
func mergeStream(its []chunk.Iterator, dir chunk.Direction, limit, batchSize int, filter func(string) bool, emit func([]push.Entry) error) error {
	defer closeAll(its)
	h := &iterHeap{dir: dir}
	for _, it := range its {
		if it.Next() {
			h.its = append(h.its, heapItem{it: it, e: it.At()})
		} else if err := it.Err(); err != nil {
			return err
		}
	}
	heap.Init(h)
	var (
		batch   []push.Entry
		emitted int
		// Lines at the current timestamp: chunks interleave entries of
		// one timestamp, so a duplicate need not be adjacent to its twin.
		curTs  int64
		atCurT []string
	)
	for h.Len() > 0 && (limit == 0 || emitted < limit) {
		top := &h.its[0]
		e := top.e
		if len(atCurT) == 0 || e.Timestamp != curTs {
			curTs, atCurT = e.Timestamp, atCurT[:0]
		}
		if (filter == nil || filter(e.Line)) && !slices.Contains(atCurT, e.Line) {
			c := e.Clone()
			atCurT = append(atCurT, c.Line)
			batch = append(batch, c)
			emitted++
			if len(batch) == batchSize {
				if err := emit(batch); err != nil {
					return err
				}
				batch = nil
			}
		}
		if top.it.Next() {
			top.e = top.it.At()
			heap.Fix(h, 0)
		} else {
			if err := top.it.Err(); err != nil {
				return err
			}
			heap.Pop(h)
		}
	}
	if len(batch) > 0 {
		return emit(batch)
	}
	return nil
}

func closeAll(its []chunk.Iterator) {
	for _, it := range its {
		it.Close()
	}
}

type heapItem struct {
	it chunk.Iterator
	e  push.Entry
}

type iterHeap struct {
	its []heapItem
	dir chunk.Direction
}

func (h *iterHeap) Len() int { return len(h.its) }
func (h *iterHeap) Less(a, b int) bool {
	if h.dir == chunk.Backward {
		return h.its[a].e.Timestamp > h.its[b].e.Timestamp
	}
	return h.its[a].e.Timestamp < h.its[b].e.Timestamp
}
func (h *iterHeap) Swap(a, b int) { h.its[a], h.its[b] = h.its[b], h.its[a] }
func (h *iterHeap) Push(x any)    { h.its = append(h.its, x.(heapItem)) }
func (h *iterHeap) Pop() any {
	x := h.its[len(h.its)-1]
	h.its = h.its[:len(h.its)-1]
	return x
}

// QueryHandler serves GET /ingester/query_recent: the recent-data API the
// querier calls. Parameters: query (a LogQL log query: its selector picks
// the streams, its line filters before any line_format drop lines here;
// the rest of the pipeline is left to the querier), start and end
// (ns; default the last hour), direction (forward|backward, default
// backward), limit (per stream, default 100, at most 5000; 0 for all, as
// metric queries need). The tenant is X-Scope-OrgID when auth is enabled
// (401 without it), "fake" otherwise. The answer is one JSON object per
// line, one line per batch of a stream's entries (a stream's batches
// consecutive), written as each stream is read:
//
//	{"stream":"{app=\"api\"}","values":[["1700000000000000000","line"],...]}
func (i *Ingester) QueryHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, ok := i.recentQuery(w, r)
		if !ok {
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		flusher, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		err := i.QueryRecent(r.Context(), q, func(stream string, entries []push.Entry) error {
			values := make([][2]string, len(entries))
			for j, e := range entries {
				values[j] = [2]string{strconv.FormatInt(e.Timestamp, 10), e.Line}
			}
			if err := enc.Encode(struct {
				Stream string      `json:"stream"`
				Values [][2]string `json:"values"`
			}{stream, values}); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		})
		if err != nil && !errors.Is(err, context.Canceled) {
			// Headers are gone once a stream was written; the error line
			// tells the reader the answer is incomplete.
			_ = enc.Encode(struct {
				Error string `json:"error"`
			}{err.Error()})
		}
	})
}

// SeriesHandler serves GET /ingester/series: the tenant's in-memory
// streams matching the selector in match (all of them without one), with
// chunks overlapping start and end (ns; default the last hour), as a JSON
// array of StreamStats.
func (i *Ingester) SeriesHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, ok := i.recentQuery(w, r)
		if !ok {
			return
		}
		out := i.Series(q.Tenant, q.Matchers, q.From, q.Through)
		if out == nil {
			out = []StreamStats{}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
}

// recentQuery reads a recent-data request and its tenant, answering 400
// or 401 itself when it cannot.
func (i *Ingester) recentQuery(w http.ResponseWriter, r *http.Request) (RecentQuery, bool) {
	q, err := parseRecentQuery(r, i.now())
	if err == nil {
		q.Tenant, err = tenant.FromRequest(r, i.authEnabled)
	}
	switch {
	case errors.Is(err, tenant.ErrNoOrgID):
		http.Error(w, err.Error(), http.StatusUnauthorized)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
	return q, err == nil
}

func parseRecentQuery(r *http.Request, now time.Time) (RecentQuery, error) {
	v := r.URL.Query()
	q := RecentQuery{Direction: chunk.Backward, Limit: 100, From: now.Add(-time.Hour).UnixNano(), Through: now.UnixNano() + 1}
	var err error
	sel, param := v.Get("query"), "query"
	if r.URL.Path == "/ingester/series" || v.Has("match") {
		sel, param = v.Get("match"), "match"
	}
	// The series API with no match lists every stream (the label APIs
	// ask that way); a query always needs a selector.
	switch {
	case param == "query":
		// A log query: its selector picks the streams, its raw line
		// filters the lines; the rest of its pipeline is the querier's.
		lq, err := logql.ParseLogQuery(sel)
		if err != nil {
			return q, fmt.Errorf("query: %w", err)
		}
		q.Matchers, q.Filter, q.BlockFilter = lq.Matchers, lq.RawLineFilter(), lq.BlockFilter()
	case sel != "":
		if q.Matchers, err = labels.ParseMatchers(sel); err != nil {
			return q, fmt.Errorf("%s: %w", param, err)
		}
	}
	for name, dst := range map[string]*int64{"start": &q.From, "end": &q.Through} {
		if s := v.Get(name); s != "" {
			if *dst, err = strconv.ParseInt(s, 10, 64); err != nil {
				return q, fmt.Errorf("%s: want nanoseconds since the epoch: %w", name, err)
			}
		}
	}
	switch v.Get("direction") {
	case "", "backward", "BACKWARD":
	case "forward", "FORWARD":
		q.Direction = chunk.Forward
	default:
		return q, fmt.Errorf("direction: want forward or backward, got %q", v.Get("direction"))
	}
	if s := v.Get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 0 || q.Limit > MaxRecentLimit {
			return q, fmt.Errorf("limit: want 0 (all) to %d, got %q", MaxRecentLimit, s)
		}
	}
	return q, nil
}
