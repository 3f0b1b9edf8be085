package compactor

import (
	"context"
	"flag"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
)

func testConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	return c
}

// writeFlushes writes segments as ingesters do: one per flush, some
// repeating chunk refs (a replay re-flushes them).
func writeFlushes(t *testing.T, ic *index.Client, tenant string, day0 time.Time, flushes int) {
	t.Helper()
	for f := range flushes {
		var series []index.Series
		for s := range 5 {
			ls := labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "pod", Value: fmt.Sprint(s)})
			// Flush f holds chunk f and, as a replay would, chunk f-1 again.
			var refs []index.ChunkRef
			for _, c := range []int{f - 1, f} {
				if c < 0 {
					continue
				}
				from := day0.Add(time.Duration(c) * time.Hour).UnixNano()
				refs = append(refs, index.ChunkRef{Fingerprint: ls.Hash(), From: from, Through: from + int64(time.Minute), Checksum: uint32(c*10 + s), Entries: 10, UncompressedBytes: 1000, CompressedBytes: 300})
			}
			series = append(series, index.Series{Labels: ls, Chunks: refs})
		}
		if _, err := ic.Write(context.Background(), tenant, fmt.Sprintf("ingester-0-p0-%d", f), series); err != nil {
			t.Fatal(err)
		}
	}
}

func segmentKeys(t *testing.T, bkt objstore.Bucket, day int, tenant string) []string {
	t.Helper()
	var keys []string
	if err := bkt.Iter(context.Background(), fmt.Sprintf("index/%d/%s/", day, tenant), func(k string) error {
		keys = append(keys, k)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestCompactionKeepsEveryRef: a day's many segments become one, with the
// same series and chunk refs (replayed duplicates counted and dropped), and
// another tenant's and another day's segments are untouched.
func TestCompactionKeepsEveryRef(t *testing.T) {
	bkt := objstore.NewInMemBucket()
	ic := index.NewClient(bkt)
	day0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	day := index.DayOf(day0.UnixNano())
	writeFlushes(t, ic, "a", day0, 12)
	writeFlushes(t, ic, "b", day0, 3)
	if _, err := ic.Write(context.Background(), "a", "next-day", []index.Series{{
		Labels: labels.New(labels.Label{Name: "app", Value: "x"}),
		Chunks: []index.ChunkRef{{Fingerprint: labels.New(labels.Label{Name: "app", Value: "x"}).Hash(), From: day0.Add(25 * time.Hour).UnixNano(), Through: day0.Add(25 * time.Hour).UnixNano(), Checksum: 1, Entries: 1}},
	}}); err != nil {
		t.Fatal(err)
	}
	before, err := ic.Series(context.Background(), "a", 0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	bBefore := segmentKeys(t, bkt, day, "b")

	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.MinSegments = 5 // tenant b's 3 segments stay as they are
	c, err := New(cfg, bkt, nil, reg, nil, func() time.Time { return day0.Add(48 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}

	keys := segmentKeys(t, bkt, day, "a")
	if len(keys) != 1 || !strings.Contains(keys[0], "compacted-") {
		t.Fatalf("tenant a's day holds %v after compaction, want one compacted segment", keys)
	}
	after, err := ic.Series(context.Background(), "a", 0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(before, after, func(x, y index.Series) bool {
		return x.Labels.String() == y.Labels.String() && slices.Equal(x.Chunks, y.Chunks)
	}) {
		t.Fatalf("series changed by compaction:\nbefore %v\nafter  %v", before, after)
	}
	if got := segmentKeys(t, bkt, day, "b"); !slices.Equal(got, bBefore) {
		t.Fatalf("tenant b (under min_segments) changed: %v, was %v", got, bBefore)
	}
	if got := segmentKeys(t, bkt, day+1, "a"); len(got) != 1 || !strings.HasSuffix(got[0], "next-day.idx") {
		t.Fatalf("the next day's single segment changed: %v", got)
	}
	// 12 flushes x 5 streams wrote 11 replayed refs per stream twice.
	if got := metricstest.Value(t, reg, "lokilab_compactor_chunk_refs_deduplicated_total"); got != 55 {
		t.Errorf("deduplicated refs = %v, want 55", got)
	}
	if got := metricstest.Value(t, reg, "lokilab_compactor_segments_deleted_total"); got != 12 {
		t.Errorf("deleted segments = %v, want 12", got)
	}

	// A second run has nothing to do.
	if err := c.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := segmentKeys(t, bkt, day, "a"); !slices.Equal(got, keys) {
		t.Fatalf("a second run changed a compact day: %v", got)
	}
}

// failingDeletes refuses every Delete, as a compactor killed right after
// writing the merged segment would leave things.
type failingDeletes struct{ objstore.Bucket }

func (failingDeletes) Delete(context.Context, string) error { return fmt.Errorf("injected") }

// TestInterruptedCompactionLosesNothing: the merged segment is written
// before any input is deleted, so when the deletes fail readers see the
// inputs and the merged segment together — duplicates, deduped — and the
// next run finishes the job.
func TestInterruptedCompactionLosesNothing(t *testing.T) {
	bkt := objstore.NewInMemBucket()
	ic := index.NewClient(bkt)
	day0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	day := index.DayOf(day0.UnixNano())
	writeFlushes(t, ic, "a", day0, 4)
	before, _ := ic.Series(context.Background(), "a", 0, math.MaxInt64)

	broken, err := New(testConfig(), failingDeletes{bkt}, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := broken.Compact(context.Background()); err == nil {
		t.Fatal("compaction with failing deletes reported success")
	}
	if n := len(segmentKeys(t, bkt, day, "a")); n != 5 {
		t.Fatalf("%d segments after an interrupted compaction, want the 4 inputs and the merged one", n)
	}
	mid, _ := ic.Series(context.Background(), "a", 0, math.MaxInt64)
	if fmt.Sprint(mid) != fmt.Sprint(before) {
		t.Fatal("readers see different series while inputs and merged segment coexist")
	}

	c, _ := New(testConfig(), bkt, nil, nil, nil, nil)
	if err := c.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(segmentKeys(t, bkt, day, "a")); n != 1 {
		t.Fatalf("%d segments after the next run, want 1", n)
	}
	after, _ := ic.Series(context.Background(), "a", 0, math.MaxInt64)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatal("series changed")
	}
}

// TestCompactionsAtTheSameInstantWriteDistinctKeys: readers cache segments
// by key, so a merged segment must never reuse a key. Two runs at the same
// (injected) instant, with a flush between them, used to write the same
// compacted-<ms> key with different content, and a caching reader kept
// answering from the first: the flushed chunk went missing.
func TestCompactionsAtTheSameInstantWriteDistinctKeys(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	ic := index.NewClient(bkt)
	reader := index.NewClient(bkt, index.WithSegmentCache(index.NewSegmentCache(1<<20, nil)))
	day0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	day := index.DayOf(day0.UnixNano())
	now := day0.Add(48 * time.Hour)
	c, err := New(testConfig(), bkt, nil, nil, nil, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(fmt.Sprintf(`^index/%d/a/compacted-%d-[0-9a-f]{16}\.idx$`, day, now.UnixMilli()))

	var merged []string
	for run, flushes := range []int{3, 5} {
		// The second round writes the first round's three flushes again
		// (same names, same content: allowed, and deleted by the first
		// run anyway) and two new ones, whose chunks only the second
		// merged segment holds.
		writeFlushes(t, ic, "a", day0, flushes)
		want, err := ic.Series(ctx, "a", 0, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reader.Series(ctx, "a", 0, math.MaxInt64); err != nil { // cache the inputs
			t.Fatal(err)
		}
		if err := c.Compact(ctx); err != nil {
			t.Fatal(err)
		}
		keys := segmentKeys(t, bkt, day, "a")
		if len(keys) != 1 || !name.MatchString(keys[0]) {
			t.Fatalf("run %d: the day holds %q, want one segment named like %s", run, keys, name)
		}
		merged = append(merged, keys[0])
		got, err := reader.Series(ctx, "a", 0, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("run %d: a caching reader sees\n%v\nwant\n%v", run, got, want)
		}
	}
	if merged[0] == merged[1] {
		t.Fatalf("both runs wrote %s", merged[0])
	}
}
