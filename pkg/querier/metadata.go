package querier

import (
	"context"
	"slices"
	"strings"

	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
)

// seriesInfo is one stream as the metadata APIs see it, summed over the
// store's index and the ingesters' memory.
type seriesInfo struct {
	labels labels.Labels
	index.Stats
}

// series returns tenants' streams matching any of the matcher sets (all
// streams when there is none) with chunks overlapping [from, through),
// from the store's index and the ingesters, sorted by labels.
func (q *Querier) series(ctx context.Context, tenants []string, sets [][]*labels.Matcher, from, through int64, w *warnings) ([]seriesInfo, error) {
	if len(sets) == 0 {
		sets = [][]*labels.Matcher{nil}
	}
	byKey := map[string]*seriesInfo{}
	add := func(ls labels.Labels, st index.Stats) {
		k := ls.String()
		si := byKey[k]
		if si == nil {
			si = &seriesInfo{labels: ls}
			si.Streams = 1
			byKey[k] = si
		}
		si.Chunks += st.Chunks
		si.Entries += st.Entries
		si.Bytes += st.Bytes
	}
	for _, t := range tenants {
		multi := len(tenants) > 1
		for _, ms := range sets {
			if q.ingesters != nil && through > q.now().Add(-q.cfg.QueryIngestersWithin).UnixNano() {
				got, ws := q.client.series(ctx, q.ingesters, t, ms, from, through)
				w.add(ws...)
				for _, s := range got {
					ls, err := labels.Parse(s.Stream)
					if err != nil {
						w.add("an ingester sent a stream with bad labels " + s.Stream)
						continue
					}
					add(withTenant(ls, t, multi), index.Stats{Chunks: uint64(s.Chunks), Entries: uint64(s.Entries), Bytes: uint64(s.Bytes)})
				}
			}
			stored, err := q.store.Index().Series(ctx, t, from, through-1, ms...)
			if err != nil {
				return nil, err
			}
			for _, s := range stored {
				if len(s.Chunks) > 0 {
					add(withTenant(s.Labels, t, multi), index.StatsOf([]index.Series{s}))
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	out := make([]seriesInfo, 0, len(byKey))
	for _, si := range byKey {
		out = append(out, *si)
	}
	slices.SortFunc(out, func(a, b seriesInfo) int { return strings.Compare(a.labels.String(), b.labels.String()) })
	return out, nil
}

// labelNames returns the label names of the streams, sorted.
func labelNames(series []seriesInfo) []string {
	seen := map[string]bool{}
	for _, s := range series {
		for _, l := range s.labels {
			seen[l.Name] = true
		}
	}
	return sortedKeys(seen)
}

// labelValues returns the values name takes in the streams, sorted.
func labelValues(series []seriesInfo, name string) []string {
	seen := map[string]bool{}
	for _, s := range series {
		if v := s.labels.Get(name); v != "" {
			seen[v] = true
		}
	}
	return sortedKeys(seen)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// totalStats sums the streams' stats, as /index/stats answers.
func totalStats(series []seriesInfo) index.Stats {
	var st index.Stats
	for _, s := range series {
		st.Streams++
		st.Chunks += s.Chunks
		st.Entries += s.Entries
		st.Bytes += s.Bytes
	}
	return st
}
