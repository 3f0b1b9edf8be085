package tenant

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DistributorCounter reports how many distributors are healthy, which the
// global strategy divides each tenant's rate by. The ring (pkg/ring)
// implements it; a static count serves tests.
type DistributorCounter interface {
	HealthyDistributors() int
}

// StaticDistributors is a fixed distributor count.
type StaticDistributors int

// HealthyDistributors returns the count, at least 1.
func (n StaticDistributors) HealthyDistributors() int { return max(int(n), 1) }

// RateLimiter is a token bucket per tenant, sized from the tenant's current
// limits on every call, so an overrides reload or a change in the number of
// healthy distributors applies to the next push without a restart.
//
// A push is admitted or rejected whole (AllowN with the push's byte count):
// half a push accepted would leave the client unable to know what to retry.
type RateLimiter struct {
	limits       LimitsSource
	distributors DistributorCounter
	now          func() time.Time

	mu      sync.RWMutex
	tenants map[string]*tenantBucket
}

type tenantBucket struct {
	mu      sync.Mutex
	limiter *rate.Limiter
	rate    float64
	burst   int
	removed bool // set by sweep; a caller holding a removed bucket fetches a new one
}

// NewRateLimiter returns a limiter reading limits from src. now is the
// clock the idle-bucket sweep uses; it must be the clock AllowN is called
// with (nil means time.Now).
func NewRateLimiter(src LimitsSource, distributors DistributorCounter, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	return &RateLimiter{limits: src, distributors: distributors, now: now, tenants: map[string]*tenantBucket{}}
}

// AllowN reports whether tenant may ingest n bytes at now, taking the tokens
// if so.
func (l *RateLimiter) AllowN(now time.Time, tenant string, n int) bool {
	r, burst := l.Limit(tenant)
	for {
		ok, stale := l.bucket(tenant).take(now, r, burst, n)
		if !stale {
			return ok
		}
		// Swept between lookup and lock: taking tokens from it would let
		// the new bucket hand out a second burst. Look it up again.
	}
}

// take applies the current rate and burst, then takes n tokens if they are
// there. stale reports a bucket the sweep has removed; nothing is taken.
func (b *tenantBucket) take(now time.Time, r float64, burst, n int) (ok, stale bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.removed {
		return false, true
	}
	if r != b.rate {
		b.limiter.SetLimitAt(now, rate.Limit(r))
		b.rate = r
	}
	if burst != b.burst {
		b.limiter.SetBurstAt(now, burst)
		b.burst = burst
	}
	return b.limiter.AllowN(now, n), false
}

// Limit returns the rate (bytes/s) and burst (bytes) this distributor
// applies to tenant right now.
func (l *RateLimiter) Limit(tenant string) (bytesPerSecond float64, burst int) {
	lim := l.limits.For(tenant)
	r := lim.IngestionRateBytes()
	if lim.IngestionRateStrategy == GlobalStrategy {
		r /= float64(max(l.distributors.HealthyDistributors(), 1))
	}
	return r, lim.IngestionBurstBytes()
}

func (l *RateLimiter) bucket(tenant string) *tenantBucket {
	l.mu.RLock()
	b, ok := l.tenants[tenant]
	l.mu.RUnlock()
	if ok {
		return b
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.tenants[tenant]; ok {
		return b
	}
	r, burst := l.Limit(tenant)
	b = &tenantBucket{limiter: rate.NewLimiter(rate.Limit(r), burst), rate: r, burst: burst}
	l.tenants[tenant] = b
	return b
}

// Run removes the buckets of tenants that have gone quiet, every interval,
// until ctx is done. Without it the map would grow with every tenant ID ever
// seen. A bucket is dropped only once it has refilled to its burst: such a
// bucket is indistinguishable from a new one, so dropping it changes no
// decision.
func (l *RateLimiter) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			l.sweep(l.now())
		}
	}
}

func (l *RateLimiter) sweep(now time.Time) (removed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, b := range l.tenants {
		b.mu.Lock()
		full := b.limiter.TokensAt(now) >= float64(b.burst)
		b.removed = full
		b.mu.Unlock()
		if full {
			delete(l.tenants, id)
			removed++
		}
	}
	return removed
}

// Tenants is the number of buckets held.
func (l *RateLimiter) Tenants() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.tenants)
}
