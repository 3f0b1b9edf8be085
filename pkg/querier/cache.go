package querier

import (
	"container/list"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// ChunkCache keeps recently read chunk objects in memory, least recently
// used out first, bounded in bytes. Keys name immutable objects (a chunk's
// key holds its checksum; a re-flush of the same data writes the same
// key), so an entry is never stale and there is nothing to invalidate.
//
// Dashboards refresh the same last hour every few seconds: those repeated
// reads of the same chunks are what the cache saves, turning an object
// store GET (milliseconds, and money on S3) into a map lookup.
type ChunkCache struct {
	mu       sync.Mutex
	maxBytes int64
	bytes    int64
	ll       *list.List // front: most recently used
	items    map[string]*list.Element

	hits, misses, evictions prometheus.Counter
	bytesGauge, itemsGauge  prometheus.Gauge
}

type cacheEntry struct {
	key  string
	data []byte
}

// NewChunkCache returns a cache holding at most maxBytes of chunk data. A
// chunk larger than an eighth of that is not cached: one such read would
// flush everything else.
func NewChunkCache(maxBytes int64, reg prometheus.Registerer) *ChunkCache {
	f := promauto.With(reg)
	return &ChunkCache{
		maxBytes:   maxBytes,
		ll:         list.New(),
		items:      map[string]*list.Element{},
		hits:       f.NewCounter(prometheus.CounterOpts{Name: "lokilab_querier_chunk_cache_hits_total", Help: "Chunk reads answered from the cache."}),
		misses:     f.NewCounter(prometheus.CounterOpts{Name: "lokilab_querier_chunk_cache_misses_total", Help: "Chunk reads that went to the object store."}),
		evictions:  f.NewCounter(prometheus.CounterOpts{Name: "lokilab_querier_chunk_cache_evictions_total", Help: "Chunks evicted to stay within the cache size."}),
		bytesGauge: f.NewGauge(prometheus.GaugeOpts{Name: "lokilab_querier_chunk_cache_bytes", Help: "Bytes of chunk data in the cache."}),
		itemsGauge: f.NewGauge(prometheus.GaugeOpts{Name: "lokilab_querier_chunk_cache_items", Help: "Chunks in the cache."}),
	}
}

// Get returns the cached object for key. The bytes are shared: callers
// must not modify them.
func (c *ChunkCache) Get(key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		c.misses.Inc()
		return nil, false
	}
	c.hits.Inc()
	c.ll.MoveToFront(el)
	return el.Value.(*cacheEntry).data, true
}

// Put caches data under key, evicting the least recently used entries
// until it fits.
func (c *ChunkCache) Put(key string, data []byte) {
	n := int64(len(data))
	if n > c.maxBytes/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		// Fetched twice at once: keep the cached copy, count the use.
		c.ll.MoveToFront(el)
		return
	}
	for c.bytes+n > c.maxBytes {
		el := c.ll.Back()
		e := el.Value.(*cacheEntry)
		c.ll.Remove(el)
		delete(c.items, e.key)
		c.bytes -= int64(len(e.data))
		c.evictions.Inc()
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, data: data})
	c.bytes += n
	c.bytesGauge.Set(float64(c.bytes))
	c.itemsGauge.Set(float64(len(c.items)))
}
