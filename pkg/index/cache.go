package index

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/internal/lru"
)

// SegmentCache keeps decoded segments in memory, least recently used out
// first, so that Client.Segments downloads and decodes only the segments it
// has not seen before. Share one cache between the clients of one bucket
// only: entries are keyed by object key, which names an object in a bucket,
// not across buckets.
//
// # Why a cache of decoded segments is correct
//
// A segment key is written once with one content and never rewritten with
// another (see Client.Write: ingesters and the compactor pick names that
// are never reused), so a cached segment is never stale and there is
// nothing to invalidate. What can happen is that a key is deleted: the
// compactor replaced it, or retention expired its day. Client only asks the
// cache for keys it has just listed, so a deleted segment is never served,
// and each listing drops the cached segments of its directory it no longer
// holds (retain), so the cache holds live segments, not the inputs of
// every compaction so far.
//
// # Why it is worth it
//
// A metric query reads its range in time slices and asks the index again
// for every slice; a dashboard asks again every few seconds. Without the
// cache each of those asks downloads and decodes every segment of the day
// again. With it, an ask costs one LIST per day plus the segments written
// since the last ask — after compaction, usually none.
//
// # Cost
//
// The cache is bounded by the encoded size of the segments it holds, the
// size that was downloaded, because that is known exactly before anything
// is kept; the decoded form is larger by a roughly constant factor that the
// operator has to allow for. Measured with the test generator
// (genSeries): about 2.4 times for a busy tenant-day of 10k streams × 5
// chunks, 1.8 times with 20 chunks per stream and 3.6 times with one (a
// single flush's segment, where labels dominate). Budget the process
// memory for about 3 times maxBytes. Charging an estimate of the decoded
// size instead would only make the bound look precise; the encoded size at
// least is what the metric and the operator can check against the bucket.
//
// A segment larger than an eighth of the cache is not kept: one such read
// would evict most of what the other queries use. The price is that a
// tenant whose compacted day is that large downloads it on every ask, so
// size the cache at eight times the largest day segment worth keeping
// (lokilab_index_segment_cache_misses_total shows when it is not).
//
// # Sharing
//
// Every caller of Segments gets the same *Segment. That is safe because a
// Segment is built whole by Decode and never modified after: it has no
// lazily built state (no memoised postings, no sync.Once), and its methods
// only read it — what they return is either newly allocated or, like label
// sets and single postings lists, shared and documented as read-only.
type SegmentCache struct {
	lru *lru.Cache[*Segment] // sizes: encoded bytes; groups: a day's tenant directory
}

// NewSegmentCache returns a cache holding decoded segments of at most
// maxBytes encoded bytes in total (see SegmentCache for the memory this
// takes once decoded). Its metrics are registered with reg, which may be
// nil; a registry takes one cache, as a second registration panics.
func NewSegmentCache(maxBytes int64, reg prometheus.Registerer) *SegmentCache {
	return &SegmentCache{lru: lru.New[*Segment](maxBytes, reg, lru.Metrics{
		Prefix: "lokilab_index_segment_cache",
		What:   "decoded index segments",
		Bytes:  "the segments' encoded size (decoded, they take 2 to 4 times as much memory)",
	}, keyDir)}
}

// get returns the cached segment of key. A nil cache has nothing.
func (c *SegmentCache) get(key string) (*Segment, bool) {
	if c == nil {
		return nil, false
	}
	return c.lru.Get(key)
}

// put caches seg, decoded from size encoded bytes, under key. A nil cache
// keeps nothing.
func (c *SegmentCache) put(key string, seg *Segment, size int64) {
	if c != nil {
		c.lru.Put(key, seg, size)
	}
}

// retain drops the cached segments of dir (a day's tenant directory) that
// listed, a sorted listing of dir just taken, no longer holds: the
// compactor replaced them, or retention deleted them. Nothing would ask for
// them again, and without this they would sit in the cache until evicted —
// a querier's heap filling to the cache's size with the inputs of every
// compaction, which looks like a leak until the bound is reached.
//
// A listing taken before a concurrent put may drop the newer key: that
// costs one download later, never a wrong answer.
func (c *SegmentCache) retain(dir string, listed []string) {
	if c == nil {
		return
	}
	c.lru.Retain(dir, func(key string) bool {
		_, ok := slices.BinarySearch(listed, key)
		return ok
	})
}

// keyDir is the directory of a segment key: index/<day>/<tenant>/.
func keyDir(key string) string { return key[:strings.LastIndexByte(key, '/')+1] }
