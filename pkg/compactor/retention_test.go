package compactor

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/tenant"
)

type staticLimits map[string]*tenant.Limits

func (s staticLimits) For(t string) *tenant.Limits {
	if l, ok := s[t]; ok {
		return l
	}
	d := tenant.DefaultLimits()
	return &d
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestRetention: on an injected clock, the tenant's period and a
// higher-priority stream rule expire exactly the chunks past them: they
// leave the index at once and the store after the deletion delay, while
// every other chunk, and the other tenant, stay queryable.
func TestRetention(t *testing.T) {
	bkt := objstore.NewInMemBucket()
	ic := index.NewClient(bkt)
	day0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	// Streams with one chunk per hour for 3 days, each chunk an object.
	streams := []labels.Labels{
		labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "env", Value: "prod"}),
		labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "env", Value: "dev"}),
		labels.New(labels.Label{Name: "app", Value: "debug"}, labels.Label{Name: "env", Value: "dev"}),
	}
	all := map[string]map[string]index.ChunkRef{} // tenant → key → ref
	for _, tn := range []string{"a", "b"} {
		all[tn] = map[string]index.ChunkRef{}
		for h := range 72 {
			var series []index.Series
			for i, ls := range streams {
				from := day0.Add(time.Duration(h) * time.Hour).UnixNano()
				ref := index.ChunkRef{Fingerprint: ls.Hash(), From: from, Through: from + int64(30*time.Minute), Checksum: uint32(h*10 + i), Entries: 1, CompressedBytes: 100}
				if err := bkt.Upload(context.Background(), ref.Key(tn), bytes.NewReader(make([]byte, 100))); err != nil {
					t.Fatal(err)
				}
				all[tn][ref.Key(tn)] = ref
				series = append(series, index.Series{Labels: ls, Chunks: []index.ChunkRef{ref}})
			}
			if _, err := ic.Write(context.Background(), tn, fmt.Sprintf("flush-%d", h), series); err != nil {
				t.Fatal(err)
			}
		}
	}

	la := tenant.DefaultLimits()
	la.RetentionPeriod = model.Duration(48 * time.Hour)
	la.RetentionStream = []tenant.StreamRetention{
		{Selector: `{env="dev"}`, Priority: 1, Period: model.Duration(36 * time.Hour)},
		{Selector: `{app="debug"}`, Priority: 2, Period: model.Duration(12 * time.Hour)}, // wins over env="dev"
		{Selector: `{app="debug"}`, Priority: 2, Period: model.Duration(24 * time.Hour)}, // same priority: the shorter applies
	}
	clk := &clock{t: day0.Add(72 * time.Hour)}
	cfg := testConfig()
	cfg.RetentionEnabled = true
	cfg.RetentionDeleteDelay = 2 * time.Hour
	reg := prometheus.NewRegistry()
	c, err := New(cfg, bkt, staticLimits{"a": &la}, reg, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}

	period := map[string]time.Duration{`{app="api", env="prod"}`: 48 * time.Hour, `{app="api", env="dev"}`: 36 * time.Hour, `{app="debug", env="dev"}`: 12 * time.Hour}
	expiredAt := func(now time.Time) map[string]bool {
		exp := map[string]bool{}
		for k, ref := range all["a"] {
			for _, ls := range streams {
				if ls.Hash() == ref.Fingerprint && ref.Through < now.Add(-period[ls.String()]).UnixNano() {
					exp[k] = true
				}
			}
		}
		return exp
	}
	indexed := func(tn string) map[string]bool {
		series, err := ic.Series(context.Background(), tn, 0, math.MaxInt64)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, s := range series {
			for _, r := range s.Chunks {
				out[r.Key(tn)] = true
			}
		}
		return out
	}
	stored := func() map[string]bool {
		out := map[string]bool{}
		bkt.Iter(context.Background(), "", func(k string) error { out[k] = true; return nil }, objstore.WithRecursiveIter())
		return out
	}

	if err := c.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	exp := expiredAt(clk.now())
	if len(exp) == 0 || len(exp) == len(all["a"]) {
		t.Fatalf("test setup: %d of %d chunks expired", len(exp), len(all["a"]))
	}
	idx := indexed("a")
	for k := range all["a"] {
		if idx[k] == exp[k] {
			t.Fatalf("chunk %s: indexed %v, expired %v", k, idx[k], exp[k])
		}
	}
	if len(indexed("b")) != len(all["b"]) {
		t.Fatalf("tenant b (no retention) lost chunks from its index: %d of %d", len(indexed("b")), len(all["b"]))
	}
	// Before the delay, the objects are still there for in-flight queries.
	st := stored()
	for k := range exp {
		if !st[k] {
			t.Fatalf("expired chunk %s deleted before the deletion delay", k)
		}
	}

	clk.add(3 * time.Hour)
	exp3 := expiredAt(clk.now()) // three more hours have expired some more
	if err := c.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	st = stored()
	for k := range all["a"] {
		switch {
		case exp[k] && st[k]:
			t.Fatalf("chunk %s expired before the delay and still stored after it", k)
		case !exp3[k] && !st[k]:
			t.Fatalf("unexpired chunk %s was deleted", k)
		}
	}
	for k := range all["b"] {
		if !st[k] {
			t.Fatalf("tenant b's chunk %s was deleted", k)
		}
	}
	if got := metricstest.Value(t, reg, "lokilab_compactor_chunks_deleted_total"); got != float64(len(exp)) {
		t.Errorf("deleted = %v, want %d", got, len(exp))
	}
	if got := metricstest.Value(t, reg, "lokilab_compactor_bytes_reclaimed_total"); got != float64(100*len(exp)) {
		t.Errorf("bytes reclaimed = %v, want %d", got, 100*len(exp))
	}
	var left []string
	for k := range st {
		if len(k) > len(markerPrefix) && k[:len(markerPrefix)] == markerPrefix {
			left = append(left, k)
		}
	}
	sort.Strings(left)
	if len(left) == 0 {
		t.Fatal("the second run's marks left no marker to sweep later")
	}
}

// TestSweepSparesReferencedChunks: a marker whose chunk an index segment
// still references (a compaction interrupted after the mark) deletes
// nothing; the chunk stays until no segment points at it.
func TestSweepSparesReferencedChunks(t *testing.T) {
	bkt := objstore.NewInMemBucket()
	ic := index.NewClient(bkt)
	ls := labels.New(labels.Label{Name: "app", Value: "api"})
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	ref := index.ChunkRef{Fingerprint: ls.Hash(), From: t0.UnixNano(), Through: t0.Add(time.Minute).UnixNano(), Checksum: 7, Entries: 1}
	key := ref.Key("a")
	if err := bkt.Upload(context.Background(), key, bytes.NewReader([]byte("chunk"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Write(context.Background(), "a", "flush", []index.Series{{Labels: ls, Chunks: []index.ChunkRef{ref}}}); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: t0.Add(10 * 24 * time.Hour)}
	cfg := testConfig()
	cfg.RetentionEnabled = true
	c, err := New(cfg, bkt, staticLimits{}, nil, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.writeMarker(context.Background(), marker{Tenant: "a", Day: index.DayOf(ref.From), Chunks: []string{key}}); err != nil {
		t.Fatal(err)
	}
	clk.add(3 * time.Hour)
	if err := c.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bkt.Exists(context.Background(), key); !ok {
		t.Fatal("a chunk the index still references was deleted")
	}
}
