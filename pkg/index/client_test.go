package index

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/pkg/labels"
)

// day19675 is 2023-11-14 UTC, in nanoseconds.
const (
	day19675 = int64(19675) * nsPerDay
	hour     = int64(3600e9)
)

func TestClientWriteSplitsByDay(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	c := NewClient(bkt)

	ls := mustLabels(t, `{app="api"}`)
	morning := chunk(ls, day19675+8*hour, day19675+9*hour)
	midnight := chunk(ls, day19675+23*hour, day19675+25*hour) // crosses into 19676
	tomorrow := chunk(ls, day19675+30*hour, day19675+31*hour)
	other := stream(t, `{app="web"}`, day19675+hour, day19675+2*hour)

	keys, err := c.Write(ctx, "team-a", "ingester-0-1-1", []Series{
		{Labels: ls, Chunks: []ChunkRef{tomorrow, midnight, morning}},
		other,
	})
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"index/19675/team-a/ingester-0-1-1.idx", "index/19676/team-a/ingester-0-1-1.idx"}
	if !slices.Equal(keys, wantKeys) {
		t.Fatalf("keys %q, want %q", keys, wantKeys)
	}

	segs, segKeys, err := c.Segments(ctx, "team-a", day19675, day19675+nsPerDay-1)
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != 1 || segKeys[0] != wantKeys[0] {
		t.Fatalf("segments of day 19675: %q", segKeys)
	}
	wantDay1 := []Series{{Labels: ls, Chunks: []ChunkRef{morning, midnight}}, other}
	if got := Merge(segs...); !equalSeries(got, wantDay1) {
		t.Fatalf("day 19675 holds %s", describe(got))
	}
	segs, _, err = c.Segments(ctx, "team-a", day19675+nsPerDay, day19675+nsPerDay)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Merge(segs...), []Series{{Labels: ls, Chunks: []ChunkRef{midnight, tomorrow}}}; !equalSeries(got, want) {
		t.Fatalf("day 19676 holds %s", describe(got))
	}

	// Across both days, the chunk written to both comes back once.
	got, err := c.Series(ctx, "team-a", day19675, day19675+2*nsPerDay-1, labels.MustNewMatcher(labels.MatchEqual, "app", "api"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []Series{{Labels: ls, Chunks: []ChunkRef{morning, midnight, tomorrow}}}; !equalSeries(got, want) {
		t.Fatalf("Series = %s", describe(got))
	}
	// A range within the second day finds the midnight chunk there.
	got, err = c.Series(ctx, "team-a", day19675+nsPerDay, day19675+nsPerDay+hour/2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Series{{Labels: ls, Chunks: []ChunkRef{midnight}}}; !equalSeries(got, want) {
		t.Fatalf("Series just after midnight = %s", describe(got))
	}

	days, err := c.Days(ctx)
	if err != nil || !slices.Equal(days, []int{19675, 19676}) {
		t.Fatalf("Days = %v, %v", days, err)
	}
}

func TestClientSeriesMergesSegments(t *testing.T) {
	ctx := context.Background()
	c := NewClient(objstore.NewInMemBucket())
	a := stream(t, `{app="api"}`, day19675+hour, day19675+2*hour)
	aAgain := stream(t, `{app="api"}`, day19675+hour, day19675+2*hour, day19675+3*hour, day19675+4*hour)
	// Two ingesters, and a replay that flushed the same chunk again.
	for _, w := range []struct {
		name   string
		series Series
	}{{"ingester-0-1-1", a}, {"ingester-1-1-1", aAgain}, {"ingester-0-2-1", a}} {
		if _, err := c.Write(ctx, "t", w.name, []Series{w.series}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.Series(ctx, "t", day19675, day19675+nsPerDay-1)
	if err != nil {
		t.Fatal(err)
	}
	if !equalSeries(got, []Series{aAgain}) {
		t.Fatalf("Series = %s, want %s", describe(got), describe([]Series{aAgain}))
	}
}

func TestClientTenantIsolation(t *testing.T) {
	ctx := context.Background()
	c := NewClient(objstore.NewInMemBucket())
	a := stream(t, `{app="api"}`, day19675+hour, day19675+2*hour)
	b := stream(t, `{app="api"}`, day19675+3*hour, day19675+4*hour) // same stream name, other tenant
	if _, err := c.Write(ctx, "tenant-a", "w-1", []Series{a}); err != nil {
		t.Fatal(err)
	}
	// "tenant-a-b" shares tenant-a's prefix as a string: listing must not
	// run into it.
	if _, err := c.Write(ctx, "tenant-a-b", "w-1", []Series{b}); err != nil {
		t.Fatal(err)
	}
	for tenantID, want := range map[string]Series{"tenant-a": a, "tenant-a-b": b} {
		got, err := c.Series(ctx, tenantID, math.MinInt64/2, math.MaxInt64/2)
		if err != nil {
			t.Fatal(err)
		}
		if !equalSeries(got, []Series{want}) {
			t.Fatalf("tenant %s sees %s", tenantID, describe(got))
		}
	}
	got, err := c.Series(ctx, "tenant-c", day19675, day19675+nsPerDay)
	if err != nil || len(got) != 0 {
		t.Fatalf("a tenant without data sees %s, %v", describe(got), err)
	}
	tenants, err := c.Tenants(ctx, 19675)
	if err != nil || !slices.Equal(tenants, []string{"tenant-a", "tenant-a-b"}) {
		t.Fatalf("Tenants = %q, %v", tenants, err)
	}
}

func TestClientRejectsUnsafeKeyParts(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	c := NewClient(bkt)
	s := []Series{stream(t, `{app="api"}`, 1, 2)}
	tests := []struct {
		name, tenant, segment, wantErr string
	}{
		{"empty tenant", "", "w", "no org id"},
		{"dot tenant", ".", "w", "'.' or '..'"},
		{"dot-dot tenant", "..", "w", "'.' or '..'"},
		{"tenant with a slash", "a/b", "w", "unsupported character '/'"},
		{"tenant escaping upwards", "../b", "w", "unsupported character '/'"},
		{"tenant with a backslash", `a\b`, "w", `unsupported character '\\'`},
		{"tenant with NUL", "a\x00", "w", `unsupported character '\x00'`},
		{"empty name", "t", "", `segment name ""`},
		{"name with a slash", "t", "x/../../y", `segment name "x/../../y"`},
		{"dot-dot name", "t", "..", `segment name ".."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Write(ctx, tt.tenant, tt.segment, s)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Write error = %v, want one containing %q", err, tt.wantErr)
			}
			if tt.segment == "w" {
				if _, err := c.Series(ctx, tt.tenant, 0, 1); err == nil {
					t.Fatal("Series accepted the tenant")
				}
			}
		})
	}
	if n := len(bkt.Objects()); n != 0 {
		t.Fatalf("%d objects written", n)
	}
}

func TestClientWriteRejectsBadSeriesBeforeUploading(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	c := NewClient(bkt)
	good := stream(t, `{app="api"}`, day19675, day19675+hour)
	bad := stream(t, `{app="web"}`, day19675+nsPerDay, day19675+nsPerDay+hour)
	bad.Chunks[0].Fingerprint++
	if _, err := c.Write(ctx, "t", "w", []Series{good, bad}); err == nil || !strings.Contains(err.Error(), "index: write t/w: series {app=\"web\"}: chunk fingerprint") {
		t.Fatalf("Write error = %v", err)
	}
	long := stream(t, `{app="api"}`, 0, 40*nsPerDay)
	if _, err := c.Write(ctx, "t", "w", []Series{long}); err == nil || !strings.Contains(err.Error(), "spans 41 days, more than 31") {
		t.Fatalf("Write error = %v", err)
	}
	if n := len(bkt.Objects()); n != 0 {
		t.Fatalf("%d objects written", n)
	}
	if keys, err := c.Write(ctx, "t", "w", []Series{{Labels: good.Labels}}); err != nil || keys != nil {
		t.Fatalf("Write of a series without chunks = %q, %v; want nothing written", keys, err)
	}
}

func TestClientWriteSegmentKeepsChunksAsGiven(t *testing.T) {
	ctx := context.Background()
	c := NewClient(objstore.NewInMemBucket())
	s := stream(t, `{app="api"}`, day19675+23*hour, day19675+25*hour)
	key, err := c.WriteSegment(ctx, 19675, "t", "compacted-1", []Series{s})
	if err != nil || key != "index/19675/t/compacted-1.idx" {
		t.Fatalf("WriteSegment = %q, %v", key, err)
	}
	days, err := c.Days(ctx)
	if err != nil || !slices.Equal(days, []int{19675}) {
		t.Fatalf("Days = %v, %v: WriteSegment must write one day only", days, err)
	}
}

func TestClientSegmentsReportsCorruption(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	c := NewClient(bkt)
	if _, err := c.Write(ctx, "t", "w", []Series{stream(t, `{app="api"}`, day19675, day19675+hour)}); err != nil {
		t.Fatal(err)
	}
	key := SegmentKey(19675, "t", "w")
	b := bkt.Objects()[key]
	b[len(b)-1] ^= 1
	if err := bkt.Upload(ctx, key, strings.NewReader(string(b))); err != nil {
		t.Fatal(err)
	}
	// Objects that are not segments are ignored.
	if err := bkt.Upload(ctx, "index/19675/t/README", strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	_, err := c.Series(ctx, "t", day19675, day19675+hour)
	if err == nil || !strings.Contains(err.Error(), "index: read index/19675/t/w.idx: index: postings section: checksum mismatch") {
		t.Fatalf("Series error = %v", err)
	}
}

// compactingBucket plays a compactor that replaces the day's segments with
// a merged one right after the reader listed them.
type compactingBucket struct {
	objstore.Bucket
	once    sync.Once
	compact func()
}

func (b *compactingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.once.Do(b.compact)
	return b.Bucket.Get(ctx, name)
}

func TestClientSegmentsRelistsWhenTheCompactorReplacedSegments(t *testing.T) {
	ctx := context.Background()
	mem := objstore.NewInMemBucket()
	s1 := stream(t, `{app="api"}`, day19675+hour, day19675+2*hour)
	s2 := stream(t, `{app="web"}`, day19675+hour, day19675+2*hour)
	for name, s := range map[string]Series{"w-1": s1, "w-2": s2} {
		if _, err := NewClient(mem).Write(ctx, "t", name, []Series{s}); err != nil {
			t.Fatal(err)
		}
	}
	bkt := &compactingBucket{Bucket: mem}
	bkt.compact = func() {
		if _, err := NewClient(mem).WriteSegment(ctx, 19675, "t", "compacted", []Series{s1, s2}); err != nil {
			t.Error(err)
		}
		for _, name := range []string{"w-1", "w-2"} {
			if err := mem.Delete(ctx, SegmentKey(19675, "t", name)); err != nil {
				t.Error(err)
			}
		}
	}
	segs, keys, err := NewClient(bkt).Segments(ctx, "t", day19675, day19675+hour)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"index/19675/t/compacted.idx"}) {
		t.Fatalf("keys %q", keys)
	}
	if got := Merge(segs...); !equalSeries(got, []Series{s1, s2}) {
		t.Fatalf("merged %s", describe(got))
	}
}

func TestClientSegmentsOfAnEmptyRange(t *testing.T) {
	segs, keys, err := NewClient(objstore.NewInMemBucket()).Segments(context.Background(), "t", 10, 9)
	if err != nil || segs != nil || keys != nil {
		t.Fatalf("Segments(10, 9) = %v, %v, %v", segs, keys, err)
	}
}

func TestClientTenantsSkipsForeignDirectories(t *testing.T) {
	ctx := context.Background()
	bkt := objstore.NewInMemBucket()
	for _, key := range []string{"index/5/good/x.idx", "index/5/bad name/x.idx", "index/5/stray.idx", "index/x/t/y.idx", "index/05/t/y.idx"} {
		if err := bkt.Upload(ctx, key, strings.NewReader("")); err != nil {
			t.Fatal(err)
		}
	}
	c := NewClient(bkt)
	tenants, err := c.Tenants(ctx, 5)
	if err != nil || !slices.Equal(tenants, []string{"good"}) {
		t.Fatalf("Tenants = %q, %v", tenants, err)
	}
	days, err := c.Days(ctx)
	if err != nil || !slices.Equal(days, []int{5}) {
		t.Fatalf("Days = %v, %v", days, err)
	}
}

func TestClientSegmentsOverALongRangeVisitsOnlyDaysWithData(t *testing.T) {
	ctx := context.Background()
	c := NewClient(objstore.NewInMemBucket())
	for _, day := range []int64{10, 50, 100} {
		s := stream(t, `{app="api"}`, day*nsPerDay, day*nsPerDay+hour)
		if _, err := c.Write(ctx, "t", "w", []Series{s}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		from, through int64
		want          []string
	}{
		{20 * nsPerDay, 90 * nsPerDay, []string{"index/50/t/w.idx"}},
		{50 * nsPerDay, 100 * nsPerDay, []string{"index/50/t/w.idx", "index/100/t/w.idx"}},
		{math.MinInt64, math.MaxInt64, []string{"index/10/t/w.idx", "index/50/t/w.idx", "index/100/t/w.idx"}},
		{11 * nsPerDay, 49 * nsPerDay, nil},
	}
	for _, tt := range tests {
		_, keys, err := c.Segments(ctx, "t", tt.from, tt.through)
		if err != nil || !slices.Equal(keys, tt.want) {
			t.Errorf("Segments(day %d, day %d) = %q, %v; want %q", DayOf(tt.from), DayOf(tt.through), keys, err, tt.want)
		}
	}
}

// countingBucket counts the reads of each key, and plays a compactor that
// replaces two of the day's segments with a merged one at the first read.
type countingBucket struct {
	objstore.Bucket
	mu      sync.Mutex
	gets    map[string]int
	once    sync.Once
	compact func()
}

func (b *countingBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.once.Do(b.compact)
	b.mu.Lock()
	b.gets[name]++
	b.mu.Unlock()
	return b.Bucket.Get(ctx, name)
}

// A relist after a replaced segment downloads only what is new: on a day
// of hundreds of segments under a heavy write load, a reader that read the
// whole day again after every replacement would be overtaken by the next
// compaction each time, and fail (seen under lokilab soak).
func TestClientSegmentsKeepsWhatItReadAcrossRelists(t *testing.T) {
	ctx := context.Background()
	mem := objstore.NewInMemBucket()
	var all []Series
	for i := range 20 {
		s := stream(t, fmt.Sprintf(`{app="a%02d"}`, i), day19675+hour, day19675+2*hour)
		all = append(all, s)
		if _, err := NewClient(mem).Write(ctx, "t", fmt.Sprintf("w-%02d", i), []Series{s}); err != nil {
			t.Fatal(err)
		}
	}
	bkt := &countingBucket{Bucket: mem, gets: map[string]int{}}
	bkt.compact = func() {
		if _, err := NewClient(mem).WriteSegment(ctx, 19675, "t", "compacted", all[:2]); err != nil {
			t.Error(err)
		}
		for _, name := range []string{"w-00", "w-01"} {
			if err := mem.Delete(ctx, SegmentKey(19675, "t", name)); err != nil {
				t.Error(err)
			}
		}
	}
	segs, keys, err := NewClient(bkt).Segments(ctx, "t", day19675, day19675+hour)
	if err != nil {
		t.Fatal(err)
	}
	if got := Merge(segs...); !equalSeries(got, all) {
		t.Fatalf("keys %q: merged %s", keys, describe(got))
	}
	for key, n := range bkt.gets {
		if n > 1 && key != SegmentKey(19675, "t", "w-00") && key != SegmentKey(19675, "t", "w-01") {
			t.Errorf("%s read %d times: the relist downloaded a segment it already had", key, n)
		}
	}
}
