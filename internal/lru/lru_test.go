package lru

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/internal/metricstest"
)

// keys lists the cached keys, most recently used first, and checks the
// bookkeeping against the list: the bytes, the map and the groups.
func (c *Cache[V]) keys(t *testing.T) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		keys    []string
		bytes   int64
		grouped int
	)
	for el := c.ll.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry[V])
		keys = append(keys, e.key)
		bytes += e.size
	}
	for _, g := range c.groups {
		grouped += len(g)
	}
	if bytes != c.bytes || len(keys) != len(c.items) || (c.groupOf != nil && grouped != len(keys)) {
		t.Fatalf("the list holds %d bytes in %d entries; bookkeeping: %d bytes, %d in the map, %d in groups", bytes, len(keys), c.bytes, len(c.items), grouped)
	}
	return keys
}

// puts returns the ops of TestCache that put keys of size bytes.
func puts(size int, keys ...string) []string {
	ops := make([]string, len(keys))
	for i, k := range keys {
		ops[i] = fmt.Sprintf("put %s %d", k, size)
	}
	return ops
}

// TestCache drives a cache of 800 bytes, which holds eight entries of 100,
// and refuses anything over 100 (an eighth). Keys are "<group>/<name>".
func TestCache(t *testing.T) {
	tests := []struct {
		name string
		// "put <key> <size>"; "get <key>", which must hit; "miss <key>",
		// which must miss; "retain <group> <key>,<key>,…", the keys kept.
		ops []string
		// after the ops:
		wantKeys      []string // most recently used first
		wantBytes     int64
		wantEvictions float64
	}{
		{
			name:      "fills up to the limit",
			ops:       puts(100, "a", "b", "c", "d", "e", "f", "g", "h"),
			wantKeys:  []string{"h", "g", "f", "e", "d", "c", "b", "a"},
			wantBytes: 800,
		},
		{
			name:          "evicts the least recently used",
			ops:           slices.Concat(puts(100, "a", "b", "c", "d", "e", "f", "g", "h"), []string{"get a"}, puts(100, "i"), []string{"miss b"}),
			wantKeys:      []string{"i", "a", "h", "g", "f", "e", "d", "c"},
			wantBytes:     800,
			wantEvictions: 1,
		},
		{
			name:          "evicts as many as it takes, by bytes",
			ops:           slices.Concat(puts(50, "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"), puts(100, "x")),
			wantKeys:      []string{"x", "p", "o", "n", "m", "l", "k", "j", "i", "h", "g", "f", "e", "d", "c"},
			wantBytes:     800,
			wantEvictions: 2,
		},
		{
			name:      "an eighth is kept, more is not",
			ops:       []string{"put fits 100", "put over 101", "miss over"},
			wantKeys:  []string{"fits"},
			wantBytes: 100,
		},
		{
			name:      "a second put of a key keeps the first and counts as a use",
			ops:       []string{"put a 100", "put b 100", "put a 100"},
			wantKeys:  []string{"a", "b"},
			wantBytes: 200,
		},
		{
			name:      "retain drops what its group's listing no longer holds, and nothing of other groups",
			ops:       []string{"put d1/a 100", "put d1/b 100", "put d2/a 100", "put d1/c 50", "retain d1/ d1/b,d1/c,d1/new", "miss d1/a"},
			wantKeys:  []string{"d1/c", "d2/a", "d1/b"},
			wantBytes: 250,
		},
		{
			name:      "retain of a group with nothing cached",
			ops:       []string{"put d1/a 100", "retain d9/ d9/x"},
			wantKeys:  []string{"d1/a"},
			wantBytes: 100,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			group := func(key string) string { return key[:strings.LastIndexByte(key, '/')+1] }
			c := New[int](800, reg, Metrics{Prefix: "test_cache", What: "test values", Bytes: "their size"}, group)
			for i, op := range tt.ops {
				f := strings.Fields(op)
				switch f[0] {
				case "put":
					size, err := strconv.ParseInt(f[2], 10, 64)
					if err != nil {
						t.Fatal(err)
					}
					c.Put(f[1], i, size)
				case "get", "miss":
					if _, ok := c.Get(f[1]); ok != (f[0] == "get") {
						t.Fatalf("%s: hit %v", op, ok)
					}
				case "retain":
					keep := strings.Split(f[2], ",")
					c.Retain(f[1], func(key string) bool { return slices.Contains(keep, key) })
				}
			}
			if keys := c.keys(t); !slices.Equal(keys, tt.wantKeys) {
				t.Errorf("cached %q, want %q", keys, tt.wantKeys)
			}
			for name, want := range map[string]float64{
				"test_cache_bytes":           float64(tt.wantBytes),
				"test_cache_items":           float64(len(tt.wantKeys)),
				"test_cache_evictions_total": tt.wantEvictions,
			} {
				if got := metricstest.Value(t, reg, name); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestCacheConcurrent: the cache is safe for concurrent use (run with
// -race) and its bookkeeping holds after it.
func TestCacheConcurrent(t *testing.T) {
	c := New[[]byte](1000, prometheus.NewRegistry(), Metrics{Prefix: "test_cache"}, func(key string) string { return key[:1] })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				k := strconv.Itoa((i * (g + 1)) % 60)
				if _, ok := c.Get(k); !ok {
					c.Put(k, make([]byte, 10+i%100), int64(10+i%100))
				}
				if i%50 == 0 {
					c.Retain(k[:1], func(key string) bool { return key != k })
				}
			}
		})
	}
	wg.Wait()
	c.keys(t)
	if c.bytes > 1000 {
		t.Errorf("%d bytes cached, max 1000", c.bytes)
	}
}
