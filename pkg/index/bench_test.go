package index

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/labels"
)

// benchSeries is the index of one busy tenant-day: 10k streams × 5 chunks.
func benchSeries() []Series { return genSeries(10_000, 5, rand.New(rand.NewPCG(7, 8))) }

func BenchmarkEncode(b *testing.B) {
	series := benchSeries()
	enc := mustEncode(b, series)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(series); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(enc))/(10_000*5), "bytes/chunk")
}

func BenchmarkDecode(b *testing.B) {
	enc := mustEncode(b, benchSeries())
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSegmentSeries(b *testing.B) {
	seg := mustSegment(b, benchSeries()...)
	for _, bc := range []struct {
		name string
		ms   []*labels.Matcher
	}{
		// ~100 of 10k streams, from one postings list.
		{"equal", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "app", "app-5")}},
		// One stream: the intersection is bounded by the shorter list.
		{"equal-intersect", []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "env", "prod"), labels.MustNewMatcher(labels.MatchEqual, "instance", "10.0.3.6:8080")}},
		// The union of three lists.
		{"regexp-set", []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "app", "app-1|app-2|app-3")}},
		// No postings: every series is matched by the regexp engine.
		{"regexp-scan", []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "app", "app-1.")}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n = len(seg.Series(math.MinInt64, math.MaxInt64, bc.ms...))
			}
			b.ReportMetric(float64(n), "series")
		})
	}
}

func BenchmarkMerge(b *testing.B) {
	// Ten flushes of the same day, each with 1k streams, half shared.
	rnd := rand.New(rand.NewPCG(9, 10))
	var segs []*Segment
	for range 10 {
		segs = append(segs, mustSegment(b, genSeries(1000, 5, rnd)...))
	}
	b.ReportAllocs()
	for b.Loop() {
		Merge(segs...)
	}
}

// BenchmarkSegments asks for one tenant-day of 100 flush segments (100
// streams × 1 chunk each), as every slice of a metric query does, without
// and with a warm SegmentCache. The in-memory bucket makes a GET a copy,
// so the difference is the decoding alone; against S3 the cached ask also
// saves 100 round trips.
func BenchmarkSegments(b *testing.B) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	rnd := rand.New(rand.NewPCG(11, 12))
	for i := range 100 {
		if _, err := NewClient(bkt).WriteSegment(ctx, 19675, "t", fmt.Sprintf("w-%03d", i), genSeries(100, 1, rnd)); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name  string
		cache *SegmentCache
	}{
		{"uncached", nil},
		{"cached", NewSegmentCache(1<<30, nil)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := NewClient(bkt, WithSegmentCache(bc.cache))
			if _, _, err := c.Segments(ctx, "t", day19675, day19675); err != nil { // warm the cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				segs, _, err := c.Segments(ctx, "t", day19675, day19675)
				if err != nil || len(segs) != 100 {
					b.Fatalf("%d segments, %v", len(segs), err)
				}
			}
		})
	}
}
