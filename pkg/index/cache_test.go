package index

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/internal/metricstest"
)

// meteredBucket counts what a reader costs: GETs per key, and listings.
type meteredBucket struct {
	objstore.Bucket
	mem   *objstore.InMemBucket // the same bucket, unmetered
	mu    sync.Mutex
	gets  map[string]int
	lists int
}

func newMeteredBucket() *meteredBucket {
	mem := objstore.NewInMemBucket()
	return &meteredBucket{Bucket: mem, mem: mem, gets: map[string]int{}}
}

func (b *meteredBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	b.mu.Lock()
	b.gets[name]++
	b.mu.Unlock()
	return b.Bucket.Get(ctx, name)
}

func (b *meteredBucket) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	b.mu.Lock()
	b.lists++
	b.mu.Unlock()
	return b.Bucket.Iter(ctx, dir, f, opts...)
}

// reset returns the keys read since the last reset, sorted, and the number
// of listings.
func (b *meteredBucket) reset() (gets []string, lists int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	gets = slices.Sorted(maps.Keys(b.gets))
	lists = b.lists
	clear(b.gets)
	b.lists = 0
	return gets, lists
}

func segKeys(names ...string) []string {
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = SegmentKey(19675, "t", n)
	}
	return keys
}

// TestClientSegmentsCache walks a tenant-day through flushes and a
// compaction, asking the index after each change, as a dashboard does: each
// ask lists the day once and downloads only the segments it has not seen,
// and never returns one that is gone.
func TestClientSegmentsCache(t *testing.T) {
	ctx := context.Background()
	bkt := newMeteredBucket()
	reg := prometheus.NewRegistry()
	c := NewClient(bkt, WithSegmentCache(NewSegmentCache(1<<20, reg)))
	w := NewClient(bkt.mem) // the writers, unmetered

	// What each live segment holds, by name: the reader must return
	// exactly these, whether from the bucket or the cache.
	live := map[string][]Series{}
	flush := func(name string) []Series {
		return []Series{stream(t, fmt.Sprintf(`{app=%q}`, name), day19675+hour, day19675+2*hour)}
	}

	steps := []struct {
		name     string
		write    []string // segments written before the ask
		merge    string   // if set, a merged segment of the deleted ones
		del      []string // segments deleted before the ask
		wantKeys []string
		wantGets []string
	}{
		{
			name:     "first ask reads every segment",
			write:    []string{"w-0", "w-1", "w-2"},
			wantKeys: segKeys("w-0", "w-1", "w-2"),
			wantGets: segKeys("w-0", "w-1", "w-2"),
		},
		{
			name:     "second ask reads none",
			wantKeys: segKeys("w-0", "w-1", "w-2"),
		},
		{
			name:     "a new flush is the only segment read",
			write:    []string{"w-3"},
			wantKeys: segKeys("w-0", "w-1", "w-2", "w-3"),
			wantGets: segKeys("w-3"),
		},
		{
			name:     "compaction: the merged segment is read, the cached inputs are not returned",
			merge:    "compacted-1",
			del:      []string{"w-0", "w-1", "w-2", "w-3"},
			wantKeys: segKeys("compacted-1"),
			wantGets: segKeys("compacted-1"),
		},
		{
			name:     "after compaction, a flush",
			write:    []string{"w-4"},
			wantKeys: segKeys("compacted-1", "w-4"),
			wantGets: segKeys("w-4"),
		},
	}
	for _, st := range steps {
		for _, name := range st.write {
			live[name] = flush(name)
			if _, err := w.Write(ctx, "t", name, live[name]); err != nil {
				t.Fatal(err)
			}
		}
		if st.merge != "" {
			var in []Series
			for _, name := range st.del {
				in = append(in, live[name]...)
			}
			live[st.merge] = normalize(in)
			if _, err := w.WriteSegment(ctx, 19675, "t", st.merge, live[st.merge]); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range st.del {
			delete(live, name)
			if err := bkt.mem.Delete(ctx, SegmentKey(19675, "t", name)); err != nil {
				t.Fatal(err)
			}
		}
		bkt.reset()

		segs, keys, err := c.Segments(ctx, "t", day19675, day19675+nsPerDay-1)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		gets, lists := bkt.reset()
		if !slices.Equal(keys, st.wantKeys) {
			t.Errorf("%s: keys %q, want %q", st.name, keys, st.wantKeys)
		}
		if !slices.Equal(gets, st.wantGets) {
			t.Errorf("%s: downloaded %q, want %q", st.name, gets, st.wantGets)
		}
		if lists != 1 {
			t.Errorf("%s: %d listings, want 1 (one day)", st.name, lists)
		}
		want := normalize(slices.Concat(slices.Collect(maps.Values(live))...))
		if got := Merge(segs...); !equalSeries(got, want) {
			t.Errorf("%s: merged %s, want %s", st.name, describe(got), describe(want))
		}
	}

	// The five asks listed 3, 3, 4, 1 and 2 segments and downloaded 3, 0,
	// 1, 1 and 1 of them. The compaction's listing dropped the deleted
	// inputs from the cache: only the live segments stay.
	for name, want := range map[string]float64{
		"lokilab_index_segment_cache_hits_total":   0 + 3 + 3 + 0 + 1,
		"lokilab_index_segment_cache_misses_total": 3 + 0 + 1 + 1 + 1,
		"lokilab_index_segment_cache_items":        2,
	} {
		if got := metricstest.Value(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestClientSegmentsCacheSize: a segment is read again on every ask when
// there is no cache or when it is larger than an eighth of the cache.
func TestClientSegmentsCacheSize(t *testing.T) {
	ctx := context.Background()
	bkt := newMeteredBucket()
	// WriteSegment stores the series as given, whatever their times: the
	// day only places the key.
	key, err := NewClient(bkt.mem).WriteSegment(ctx, 19675, "t", "w", genSeries(50, 2, rand.New(rand.NewPCG(1, 1))))
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(bkt.mem.Objects()[key]))
	tests := []struct {
		name      string
		cache     *SegmentCache
		wantReads int // over two asks
	}{
		{"no cache", nil, 2},
		{"larger than an eighth", NewSegmentCache(8*size-1, nil), 2},
		{"exactly an eighth", NewSegmentCache(8*size, nil), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClient(bkt, WithSegmentCache(tt.cache))
			bkt.reset()
			for range 2 {
				if _, _, err := c.Segments(ctx, "t", day19675, day19675); err != nil {
					t.Fatal(err)
				}
			}
			bkt.mu.Lock()
			n := bkt.gets[key]
			bkt.mu.Unlock()
			if n != tt.wantReads {
				t.Errorf("the %d-byte segment was read %d times, want %d", size, n, tt.wantReads)
			}
		})
	}
}

// TestClientSegmentsConcurrent: queries ask at once while an ingester
// flushes, through a cache small enough to evict all the time (run with
// -race). Every answer holds, under each key it returns, exactly what was
// written under that key.
func TestClientSegmentsConcurrent(t *testing.T) {
	ctx := context.Background()
	mem := objstore.NewInMemBucket()
	const segments = 40
	content := make(map[string][]Series, segments) // by key; read-only once the readers run
	names := make([]string, segments)
	for i := range names {
		names[i] = fmt.Sprintf("w-%02d", i)
		content[SegmentKey(19675, "t", names[i])] = []Series{stream(t, fmt.Sprintf(`{app="a%02d"}`, i), day19675+hour, day19675+2*hour)}
	}
	w := NewClient(mem)
	for _, name := range names[:segments/2] {
		if _, err := w.Write(ctx, "t", name, content[SegmentKey(19675, "t", name)]); err != nil {
			t.Fatal(err)
		}
	}
	// The segments are of equal size (the names are): ten fit.
	size := int64(len(mustEncode(t, content[SegmentKey(19675, "t", names[0])])))
	c := NewClient(mem, WithSegmentCache(NewSegmentCache(10*size, nil)))

	var wg sync.WaitGroup
	wg.Go(func() {
		for _, name := range names[segments/2:] {
			if _, err := w.Write(ctx, "t", name, content[SegmentKey(19675, "t", name)]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 8 {
		wg.Go(func() {
			for range 20 {
				segs, keys, err := c.Segments(ctx, "t", day19675, day19675+nsPerDay-1)
				if err != nil {
					t.Error(err)
					return
				}
				if len(keys) < segments/2 {
					t.Errorf("%d segments, want at least %d", len(keys), segments/2)
				}
				for i, k := range keys {
					if got := Merge(segs[i]); !equalSeries(got, content[k]) {
						t.Errorf("%s holds %s, want %s", k, describe(got), describe(content[k]))
					}
					// Read the shared segment as a query would.
					segs[i].Stats(day19675, day19675+nsPerDay-1)
				}
			}
		})
	}
	wg.Wait()
}
