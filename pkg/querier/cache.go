package querier

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/internal/lru"
)

// ChunkCache keeps recently read chunk objects in memory, least recently
// used out first, bounded in bytes (internal/lru). Keys name immutable objects (a chunk's
// key holds its checksum; a re-flush of the same data writes the same
// key), so an entry is never stale and there is nothing to invalidate.
//
// Dashboards refresh the same last hour every few seconds: those repeated
// reads of the same chunks are what the cache saves, turning an object
// store GET (milliseconds, and money on S3) into a map lookup.
type ChunkCache struct {
	lru *lru.Cache[[]byte]
}

// NewChunkCache returns a cache holding at most maxBytes of chunk data. A
// chunk larger than an eighth of that is not cached: one such read would
// flush everything else.
func NewChunkCache(maxBytes int64, reg prometheus.Registerer) *ChunkCache {
	return &ChunkCache{lru: lru.New[[]byte](maxBytes, reg, lru.Metrics{
		Prefix: "lokilab_querier_chunk_cache",
		What:   "chunk objects",
		Bytes:  "the chunk objects' size",
	}, nil)}
}

// Get returns the cached object for key. The bytes are shared: callers
// must not modify them.
func (c *ChunkCache) Get(key string) ([]byte, bool) { return c.lru.Get(key) }

// Put caches data under key, evicting the least recently used entries
// until it fits.
func (c *ChunkCache) Put(key string, data []byte) { c.lru.Put(key, data, int64(len(data))) }
