package distributor

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// streamTracker enforces max_global_streams_per_user before a push is
// acknowledged.
//
// Why here and not in the ingester, where Loki's classic write path
// enforces it: once Kafka has acknowledged a record, the distributor has
// answered 204, and an ingester that refused the record's stream would lose
// an acknowledged line. So the limit is checked where a refusal can still be
// a 429: each distributor remembers the fingerprints of every tenant's
// streams it has written recently, and refuses a push that would take a
// tenant past its limit with new streams.
//
// The count is per distributor. Clients spread their pushes over the
// distributors, so each one sees (nearly) all of a tenant's active streams;
// a stream pushed rarely may be seen by only some of them, so the limit is
// approximate from below: a tenant can have somewhat more streams than the
// limit, never fewer admitted than it. A stream stays counted until it has
// been idle for the idle timeout (the ingesters' chunk_idle_period, after
// which its chunk is flushed and the stream leaves their memory).
//
// Memory is bounded by the limits themselves: at most
// max_global_streams_per_user fingerprints per tenant, 16 bytes each.
type streamTracker struct {
	idle time.Duration

	mu      sync.Mutex
	tenants map[string]map[uint64]int64 // tenant → fingerprint → last seen (unix ns)

	active *prometheus.GaugeVec
}

func newStreamTracker(idle time.Duration, active *prometheus.GaugeVec) *streamTracker {
	return &streamTracker{idle: idle, tenants: make(map[string]map[uint64]int64), active: active}
}

// admit decides, for each stream fingerprint of one push, whether it may be
// written: a stream already active always may; a new one only while the
// tenant has fewer than limit active streams (limit <= 0: no limit). It
// records what it admits, so concurrent pushes cannot together pass the
// limit. A stream admitted by a push that then fails stays counted until
// it is idle. ok[i] answers fps[i].
func (t *streamTracker) admit(tenant string, fps []uint64, limit int, now time.Time, ok []bool) []bool {
	ok = ok[:0]
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := t.tenants[tenant]
	if seen == nil {
		seen = make(map[uint64]int64)
		t.tenants[tenant] = seen
	}
	for _, fp := range fps {
		if _, known := seen[fp]; known || limit <= 0 || len(seen) < limit {
			seen[fp] = ns
			ok = append(ok, true)
			continue
		}
		ok = append(ok, false)
	}
	t.active.WithLabelValues(tenant).Set(float64(len(seen)))
	return ok
}

// sweep forgets streams idle for longer than the idle timeout.
func (t *streamTracker) sweep(now time.Time) (removed int) {
	cutoff := now.Add(-t.idle).UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	for tenant, seen := range t.tenants {
		for fp, last := range seen {
			if last < cutoff {
				delete(seen, fp)
				removed++
			}
		}
		if len(seen) == 0 {
			delete(t.tenants, tenant)
			t.active.DeleteLabelValues(tenant)
			continue
		}
		t.active.WithLabelValues(tenant).Set(float64(len(seen)))
	}
	return removed
}

// streamFingerprint is a 64-bit FNV-1a of the canonical labels: the
// stream's identity within its tenant. (StreamToken, 32 bits, picks the
// partition; 64 bits keep collisions, which would undercount, negligible.)
func streamFingerprint(labels string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(labels); i++ {
		h = (h ^ uint64(labels[i])) * 1099511628211
	}
	return h
}
