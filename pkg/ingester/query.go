package ingester

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/labels"
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
	// (a query's overall limit needs no more from any one stream). It
	// must be positive: it is what bounds this API's memory.
	Limit int
}

// MaxRecentLimit caps RecentQuery.Limit: Loki's max_entries_limit_per_query.
const MaxRecentLimit = 5000

// QueryRecent calls fn once per matching stream with up to q.Limit of its
// entries in q.Direction order, deduplicated (the same timestamp and line
// twice in a stream is one entry). Streams are read one at a time, so
// memory is bounded by one stream's chunks and q.Limit entries, not by what
// the ingester holds. The entries' strings are copies fn may keep.
//
// A stream's chunks are snapshotted under the partition's lock (the head
// block's entries are copied by chunk.Iterator); decompressing and merging
// happen after the lock is released, so a query never stalls ingestion for
// longer than it takes to list one stream's chunks.
func (i *Ingester) QueryRecent(ctx context.Context, q RecentQuery, fn func(stream string, entries []push.Entry) error) error {
	if q.Limit <= 0 || q.Limit > MaxRecentLimit {
		return fmt.Errorf("limit must be between 1 and %d", MaxRecentLimit)
	}
	for _, id := range i.owned() {
		p := i.partition(id)
		if p == nil {
			continue
		}
		for _, s := range p.matching(q) {
			if err := ctx.Err(); err != nil {
				return err
			}
			its := p.iterators(s, q)
			if len(its) == 0 {
				continue // flushed and dropped since it was listed
			}
			entries, err := mergeStream(its, q.Direction, q.Limit)
			if err != nil {
				return fmt.Errorf("ingester: reading stream %s: %w", s.lstr, err)
			}
			if len(entries) == 0 {
				continue
			}
			if err := fn(s.lstr, entries); err != nil {
				return err
			}
		}
	}
	return nil
}

// matching lists the tenant's streams whose labels match q.
func (p *partition) matching(q RecentQuery) []*stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*stream
	for _, s := range p.streams[q.Tenant] {
		if s.labels.Matches(q.Matchers...) {
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
		its = append(its, c.Iterator(q.From, q.Through, q.Direction))
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
// consecutive identical entries, up to limit entries.
func mergeStream(its []chunk.Iterator, dir chunk.Direction, limit int) ([]push.Entry, error) {
	defer closeAll(its)
	h := &iterHeap{dir: dir}
	for _, it := range its {
		if it.Next() {
			h.its = append(h.its, heapItem{it: it, e: it.At()})
		} else if err := it.Err(); err != nil {
			return nil, err
		}
	}
	heap.Init(h)
	var (
		out []push.Entry
		// lines at the current timestamp: chunks interleave entries of one
		// timestamp, so a duplicate need not be adjacent to its twin.
		atTs int
	)
	for h.Len() > 0 && len(out) < limit {
		top := &h.its[0]
		e := top.e
		if n := len(out); n > 0 && out[n-1].Timestamp != e.Timestamp {
			atTs = n
		}
		dup := false
		for _, prev := range out[atTs:] {
			if prev.Line == e.Line {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, e.Clone())
		}
		if top.it.Next() {
			top.e = top.it.At()
			heap.Fix(h, 0)
		} else {
			if err := top.it.Err(); err != nil {
				return nil, err
			}
			heap.Pop(h)
		}
	}
	return out, nil
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
// querier calls. Parameters: query (a stream selector), start and end
// (ns; default the last hour), direction (forward|backward, default
// backward), limit (per stream, default 100, at most 5000). The tenant is
// X-Scope-OrgID when auth is enabled (401 without it), "fake" otherwise. The answer is one JSON object per
// line, one line per stream, written as each stream is read:
//
//	{"stream":"{app=\"api\"}","values":[["1700000000000000000","line"],...]}
func (i *Ingester) QueryHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := parseRecentQuery(r, i.now())
		if err == nil {
			q.Tenant, err = tenant.FromRequest(r, i.authEnabled)
			if errors.Is(err, tenant.ErrNoOrgID) {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		flusher, _ := w.(http.Flusher)
		enc := json.NewEncoder(w)
		err = i.QueryRecent(r.Context(), q, func(stream string, entries []push.Entry) error {
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

func parseRecentQuery(r *http.Request, now time.Time) (RecentQuery, error) {
	v := r.URL.Query()
	q := RecentQuery{Direction: chunk.Backward, Limit: 100, From: now.Add(-time.Hour).UnixNano(), Through: now.UnixNano() + 1}
	var err error
	if q.Matchers, err = labels.ParseMatchers(v.Get("query")); err != nil {
		return q, fmt.Errorf("query: %w", err)
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
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > MaxRecentLimit {
			return q, fmt.Errorf("limit: want 1 to %d, got %q", MaxRecentLimit, s)
		}
	}
	return q, nil
}
