// Package lru is a cache bounded in bytes that evicts the least recently
// used entry first, with the metrics an operator needs to size it. The
// querier's chunk cache and the index's segment cache are both one.
//
// Both cache objects whose keys are never rewritten with other content (a
// chunk's key holds its checksum; an index segment's name is never reused),
// so an entry is never stale and there is nothing to invalidate: the only
// reasons an entry leaves are the byte bound and, for the segment cache,
// the object's deletion, which the caller learns from a listing (Retain).
//
// An entry larger than an eighth of the cache is not kept: one such read
// would evict most of what other queries use. Keys may belong to a group
// (a directory of the bucket, say) so that a caller can drop the entries
// of one group it knows are gone without walking the whole cache.
package lru

import (
	"container/list"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Cache maps keys to values of a stated size in bytes. It is safe for
// concurrent use. Values are shared between callers: they must not be
// modified.
type Cache[V any] struct {
	mu       sync.Mutex
	maxBytes int64
	bytes    int64
	ll       *list.List // front: most recently used
	items    map[string]*list.Element
	groupOf  func(key string) string    // nil: no groups
	groups   map[string]map[string]bool // group → its keys

	hits, misses, evictions prometheus.Counter
	bytesGauge, itemsGauge  prometheus.Gauge
}

type entry[V any] struct {
	key   string
	value V
	size  int64
}

// Metrics names a cache's metrics: Prefix_hits_total, _misses_total,
// _evictions_total, _bytes and _items, each with a help text built from
// What, the things cached ("chunk objects"), and Bytes, what their size
// measures.
type Metrics struct {
	Prefix string
	What   string
	Bytes  string
}

// New returns a cache holding at most maxBytes, its metrics registered
// with reg (a registry takes one cache of a name; a second registration
// panics). groupOf, if not nil, names the group of a key, for Retain.
func New[V any](maxBytes int64, reg prometheus.Registerer, m Metrics, groupOf func(key string) string) *Cache[V] {
	f := promauto.With(reg)
	return &Cache[V]{
		maxBytes:   maxBytes,
		ll:         list.New(),
		items:      map[string]*list.Element{},
		groupOf:    groupOf,
		groups:     map[string]map[string]bool{},
		hits:       f.NewCounter(prometheus.CounterOpts{Name: m.Prefix + "_hits_total", Help: "Reads of " + m.What + " answered from the cache."}),
		misses:     f.NewCounter(prometheus.CounterOpts{Name: m.Prefix + "_misses_total", Help: "Reads of " + m.What + " the cache did not hold."}),
		evictions:  f.NewCounter(prometheus.CounterOpts{Name: m.Prefix + "_evictions_total", Help: "Entries (" + m.What + ") evicted to stay within the cache size."}),
		bytesGauge: f.NewGauge(prometheus.GaugeOpts{Name: m.Prefix + "_bytes", Help: "Bytes in the cache: " + m.Bytes + "."}),
		itemsGauge: f.NewGauge(prometheus.GaugeOpts{Name: m.Prefix + "_items", Help: "Entries (" + m.What + ") in the cache."}),
	}
}

// Get returns the value cached under key and marks it most recently used.
func (c *Cache[V]) Get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		c.misses.Inc()
		var zero V
		return zero, false
	}
	c.hits.Inc()
	c.ll.MoveToFront(el)
	return el.Value.(*entry[V]).value, true
}

// Put caches value, of size bytes, under key, evicting the least recently
// used entries until it fits. A value over an eighth of the cache is not
// kept. A key already cached keeps its value (keys are never rewritten
// with other content, so two readers that missed at once read the same):
// it is only marked used.
func (c *Cache[V]) Put(key string, value V, size int64) {
	if size > c.maxBytes/8 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.ll.MoveToFront(el)
		return
	}
	// size <= maxBytes/8, so this stops long before the list is empty.
	for c.bytes+size > c.maxBytes {
		c.remove(c.ll.Back())
		c.evictions.Inc()
	}
	c.items[key] = c.ll.PushFront(&entry[V]{key: key, value: value, size: size})
	c.bytes += size
	if c.groupOf != nil {
		g := c.groupOf(key)
		if c.groups[g] == nil {
			c.groups[g] = map[string]bool{}
		}
		c.groups[g][key] = true
	}
	c.setGauges()
}

// Retain drops the entries of group whose key keep rejects: the caller
// has learnt they are gone (a listing of the group no longer holds them).
// Its cost is the group's entries, not the cache's.
func (c *Cache[V]) Retain(group string, keep func(key string) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key := range c.groups[group] {
		if !keep(key) {
			c.remove(c.items[key])
		}
	}
	c.setGauges()
}

// remove takes el out of the cache; c.mu is held.
func (c *Cache[V]) remove(el *list.Element) {
	e := el.Value.(*entry[V])
	c.ll.Remove(el)
	delete(c.items, e.key)
	c.bytes -= e.size
	if c.groupOf != nil {
		g := c.groupOf(e.key)
		delete(c.groups[g], e.key)
		if len(c.groups[g]) == 0 {
			delete(c.groups, g)
		}
	}
}

func (c *Cache[V]) setGauges() {
	c.bytesGauge.Set(float64(c.bytes))
	c.itemsGauge.Set(float64(len(c.items)))
}
