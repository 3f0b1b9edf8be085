package querier

import (
	"context"
	"time"

	"github.com/lokilab/lokilab/pkg/logql"
)

// A metric query's memory.
//
// The evaluator keeps two numbers per step and series, never the lines
// (logql's rangeAgg), so what a metric query holds is what its source
// holds at once. Read whole, a split interval of a busy selector is every
// one of its lines: sum(count_over_time({app="auth"}[10s])) over the last
// two minutes, at 68,000 lines/s, held 1.2 GB in the 30-minute soak, and a
// querier's heap followed the queries up and down by that much.
//
// So readSlices reads the range in consecutive time slices and hands each
// one's streams to the evaluator before it reads the next: memory is one
// slice's lines. How long a slice should be depends on the data, not the
// query — ten seconds of one selector can be a thousand lines or a
// gigabyte — so the slices are sized from the data. Where the whole range
// is in the store (older than query_ingesters_within), the index says
// before anything is read how many bytes its chunks hold, and the first
// slice is as long as that says will hold metric_slice_bytes: a range
// under it is read in one slice, exactly as before slicing. Where the
// ingesters hold part of it, nothing says so in advance, and the first
// slice is 10 s. After that, each slice is as long as the last one's bytes
// per second say will hold metric_slice_bytes, at most maxGrowth times the
// last and at least minSlice: sparse recent data costs a few reads
// (10 s, 80 s, 640 s, the rest), not hundreds. The estimate is only as
// good as the data is steady: a burst ten times the rate of the slice
// before it fills its slice ten times over.
//
// The price is more reads: every slice asks the ingesters and the index
// again, and a chunk that spans several slices is decoded for each (its
// object comes from the chunk cache after the first), and counted for each
// in the query's stats, which count chunk reads. Asking both again per
// slice is also what keeps the answer whole: the ingesters are asked
// before the index in each slice (see the package doc), which a single
// index read for the whole range would break. The slices cut the range by
// timestamp, so an entry and its duplicates always fall in the same slice,
// where fetch removes them.
const (
	// firstSlice is the first slice's length where the ingesters hold
	// part of the range, and nothing is known of the data in advance.
	firstSlice = 10 * time.Second
	// minSlice bounds the slices from below: past it, a query pays more
	// in per-slice requests than it saves in memory.
	minSlice = 100 * time.Millisecond
	// maxGrowth bounds how much longer a slice may be than the one before
	// it: the estimate from a slice that held nearly nothing is the least
	// certain.
	maxGrowth = 8
)

// readSlices hands emit the streams of tenants matching lq in [from,
// through), one time slice after the other; see above.
func (q *Querier) readSlices(ctx context.Context, tenants []string, lq *logql.LogQuery, from, through int64, st *Stats, w *warnings, emit func(logql.StreamEntries) error) error {
	length := q.firstSlice(ctx, tenants, lq, from, through)
	for start := from; start < through; {
		end := min(start+length, through)
		var bytes int64
		for _, t := range tenants {
			streams, err := q.fetch(ctx, t, lq, start, end, false, 0, st, w)
			if err != nil {
				return err
			}
			for _, s := range streams {
				s.Labels = withTenant(s.Labels, t, len(tenants) > 1)
				st.LinesProcessed += len(s.Entries)
				for _, e := range s.Entries {
					bytes += int64(len(e.Line))
				}
				if err := emit(s); err != nil {
					return err
				}
			}
		}
		st.BytesProcessed += bytes
		q.metrics.sliceBytes.Observe(float64(bytes))
		length = nextSlice(end-start, bytes, int64(q.cfg.MetricSliceBytes))
		start = end
	}
	return nil
}

// firstSlice is the length of the first slice of [from, through): from
// the index's chunk sizes where the store holds the whole range, else
// firstSlice. A chunk partly in the range counts for the part of its time
// span inside it (its bytes taken as spread evenly over it); line filters
// are not known to the index, so the estimate is an upper bound, and the
// slices after the first grow if it was too high.
func (q *Querier) firstSlice(ctx context.Context, tenants []string, lq *logql.LogQuery, from, through int64) int64 {
	if q.ingesters != nil && through > q.now().Add(-q.cfg.QueryIngestersWithin).UnixNano() {
		return int64(firstSlice)
	}
	var bytes float64
	for _, t := range tenants {
		series, err := q.store.Index().Series(ctx, t, from, through-1, lq.Matchers...)
		if err != nil {
			return int64(firstSlice) // the read itself reports the error
		}
		for _, s := range series {
			for _, c := range s.Chunks {
				inside := max(min(c.Through, through-1)-max(c.From, from)+1, 0)
				bytes += float64(c.UncompressedBytes) * float64(inside) / float64(c.Through-c.From+1)
			}
		}
	}
	length := through - from
	if target := float64(q.cfg.MetricSliceBytes); bytes > target {
		length = max(int64(float64(length)*target/bytes), int64(minSlice))
	}
	return length
}

// nextSlice is the length of the slice after one of length ns that held
// bytes: the length that would hold target at the same bytes per second,
// at most maxGrowth times the last and at least minSlice.
func nextSlice(length, bytes, target int64) int64 {
	grown := maxGrowth * length
	if bytes <= 0 {
		return grown
	}
	// In floating point: length (up to hours in ns) times target overflows
	// an int64.
	next := int64(float64(length) * float64(target) / float64(bytes))
	return max(min(next, grown), int64(minSlice))
}
