package querier

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	rtmetrics "runtime/metrics"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// benchHour writes one hour of realistic lines (nginx, logfmt, JSON,
// stack traces) for streams streams into a fresh in-memory bucket, in
// chunks of ~1.5 MB as an ingester would cut them, and returns the bucket
// and the hour's start.
func benchHour(b *testing.B, streams, linesPerStream int) (objstore.Bucket, time.Time, int64) {
	b.Helper()
	bkt := objstore.NewInMemBucket()
	start := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(1, 2))
	step := time.Hour / time.Duration(linesPerStream)
	var total int64
	idx := index.NewClient(bkt)
	var series []index.Series
	for s := range streams {
		ls := labels.New(labels.Label{Name: "app", Value: "app"}, labels.Label{Name: "env", Value: "prod"}, labels.Label{Name: "pod", Value: fmt.Sprintf("pod-%d", s)})
		c := chunk.New(chunk.EncodingSnappy, 256<<10, 1500<<10)
		var refs []index.ChunkRef
		cut := func() {
			if err := c.Seal(); err != nil {
				b.Fatal(err)
			}
			data, err := c.Encode()
			if err != nil {
				b.Fatal(err)
			}
			from, through := c.Bounds()
			ref := index.ChunkRef{Fingerprint: ls.Hash(), From: from, Through: through, Checksum: crc32.Checksum(data, castagnoli),
				Entries: uint32(c.Entries()), UncompressedBytes: uint32(c.UncompressedSize()), CompressedBytes: uint32(len(data))}
			if err := bkt.Upload(context.Background(), ref.Key("bench"), bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			refs = append(refs, ref)
			c = chunk.New(chunk.EncodingSnappy, 256<<10, 1500<<10)
		}
		for i := range linesPerStream {
			line := pushtest.Line(r, "")
			total += int64(len(line))
			if _, err := c.Append(start.Add(time.Duration(i)*step).UnixNano(), line, nil); err != nil {
				b.Fatal(err)
			}
			if c.Full() {
				cut()
			}
		}
		if c.Entries() > 0 {
			cut()
		}
		series = append(series, index.Series{Labels: ls, Chunks: refs})
	}
	if _, err := idx.Write(context.Background(), "bench", "bench", series); err != nil {
		b.Fatal(err)
	}
	return bkt, start, total
}

func benchQuerier(b *testing.B, bkt objstore.Bucket, now time.Time, cacheBytes int64) *Querier {
	b.Helper()
	var c Config
	c.RegisterFlags(newFlagSet())
	c.ChunkCacheSize = 0
	if cacheBytes > 0 {
		c.ChunkCacheSize.Set(fmt.Sprint(cacheBytes))
	}
	lim := tenant.DefaultLimits()
	q, err := New(c, Deps{Bucket: bkt, Limits: fixedLimits{l: &lim}, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	return q
}

// BenchmarkLogQuery: log queries over one stored hour whose filters keep
// almost nothing, so every chunk is fetched, decoded and filtered: bytes/s
// is lines scanned per second (SetBytes is the hour's line bytes), on
// GOMAXPROCS cores (chunk fetch and decode run max_concurrent at once).
func BenchmarkLogQuery(b *testing.B) {
	bkt, start, total := benchHour(b, 20, 20000)
	for _, tc := range []struct {
		name, query string
		cache       int64
	}{
		{"selector only, limit 100", `{app="app"}`, 0},
		{"substring filter", `{app="app"} |= "status=999"`, 0},
		{"substring filter cached", `{app="app"} |= "status=999"`, 1 << 30},
		{"regex filter", `{app="app"} |~ "rt=0\\.99[0-9]+ id"`, 0},
		{"logfmt label filter", `{app="app"} |= "level=" | logfmt | duration > 1999ms`, 0},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := benchQuerier(b, bkt, start.Add(time.Hour), tc.cache)
			lq, err := logql.ParseLogQuery(tc.query)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(total)
			b.ReportAllocs()
			var st Stats
			for b.Loop() {
				st = Stats{}
				var w warnings
				if _, err := q.SelectLogs(context.Background(), []string{"bench"}, LogQuery{Query: lq, From: start.UnixNano(), Through: start.Add(time.Hour).UnixNano(), Backward: true, Limit: 100}, &st, &w); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.LinesProcessed), "lines/op")
			b.ReportMetric(float64(st.Store.Chunks), "chunks/op")
		})
	}
}

// BenchmarkMetricQuery: a 1-hour query_range (step 1m, as Grafana asks
// for a one-hour panel) of count_over_time and of sum by (level) over a
// logfmt parse, reading the hour (56 MB of lines) in slices of 8 MB and,
// as the baseline, at once. peak-heap-MB is the most heap in use seen
// while the query ran (sampled every millisecond): the figure the slices
// are for.
func BenchmarkMetricQuery(b *testing.B) {
	bkt, start, total := benchHour(b, 20, 20000)
	for _, query := range []string{
		`sum(count_over_time({app="app"}[1m]))`,
		`sum by (level) (count_over_time({app="app"} |= "level=" | logfmt [5m]))`,
	} {
		for _, slice := range []struct {
			name  string
			bytes string
		}{{"slices=8MB", "8MB"}, {"whole", "1TB"}} {
			b.Run(query+"/"+slice.name, func(b *testing.B) {
				q := benchQuerier(b, bkt, start.Add(time.Hour), 0)
				if err := q.cfg.MetricSliceBytes.Set(slice.bytes); err != nil {
					b.Fatal(err)
				}
				e, err := logql.Parse(query)
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(total)
				b.ReportAllocs()
				runtime.GC()
				peak := heapPeak()
				for b.Loop() {
					var (
						st Stats
						w  warnings
					)
					if _, err := q.SelectSamples(context.Background(), []string{"bench"}, MetricQuery{Expr: e, Start: start, End: start.Add(time.Hour), Step: time.Minute}, &st, &w); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(peak())/1e6, "peak-heap-MB")
			})
		}
	}
}

// heapPeak samples the heap in use (runtime/metrics' live and not yet
// swept objects) every millisecond until the function it returns is
// called, which returns the most it saw.
func heapPeak() func() uint64 {
	done := make(chan struct{})
	result := make(chan uint64)
	go func() {
		s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var peak uint64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			rtmetrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				result <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-result }
}

// BenchmarkStoreBlockFilter: one stored hour (20 streams, about 56 MB of
// lines) read by Store.Streams for `|= "status=999"`, which almost no line
// holds, with the query's block filter and without it. Each iteration
// runs both, alternating which goes first, so both see the same machine;
// the figure to read is prefilter-%-of-time, the filtered read's time as a
// percentage of the unfiltered one's (docs/performance.md). The stats of
// the two reads must be the same work.
func BenchmarkStoreBlockFilter(b *testing.B) {
	bkt, start, total := benchHour(b, 20, 20000)
	lq, err := logql.ParseLogQuery(`{app="app"} |= "status=999"`)
	if err != nil {
		b.Fatal(err)
	}
	s := NewStore(bkt, 2, nil, nil)
	r := Read{Matchers: lq.Matchers, From: start.UnixNano(), Through: start.Add(time.Hour).UnixNano(), Keep: lq.RawLineFilter()}
	withBF := r
	withBF.BlockFilter = lq.BlockFilter()
	var (
		perLine, prefilter time.Duration
		st                 StoreStats
	)
	read := func(r Read, d *time.Duration) StoreStats {
		t0 := time.Now()
		_, st, err := s.Streams(context.Background(), "bench", r)
		*d += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var a, c StoreStats
		if i%2 == 0 {
			a, c = read(r, &perLine), read(withBF, &prefilter)
		} else {
			c, a = read(withBF, &prefilter), read(r, &perLine)
		}
		if a.FilteredBytes != c.FilteredBytes || a.Entries != c.Entries {
			b.Fatalf("stats differ: %+v without the block filter, %+v with", a, c)
		}
		st = c
	}
	mb := float64(b.N) * float64(total) / 1e6
	b.ReportMetric(mb/perLine.Seconds(), "per-line-MB/s")
	b.ReportMetric(mb/prefilter.Seconds(), "prefilter-MB/s")
	b.ReportMetric(100*prefilter.Seconds()/perLine.Seconds(), "prefilter-%-of-time")
	b.ReportMetric(100*float64(st.EntriesSkipped)/float64(max(st.Entries, 1)), "%-lines-skipped")
}
