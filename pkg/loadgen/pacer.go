package loadgen

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// pacer holds the workers to the configured rate, reshaped by the pattern.
//
// The rate is a token bucket (golang.org/x/time/rate) shared by all
// workers: a worker takes one token per line, or per byte, before each push.
// The bucket holds a tenth of a second's worth, so a burst after a pause is
// short. The pattern only changes the bucket's refill rate, or, for the
// square wave's off phase, holds workers until the next on phase.
type pacer struct {
	lim     *rate.Limiter // nil: unlimited
	base    rate.Limit
	perByte bool
	pattern PatternConfig
	start   time.Time

	mu   sync.Mutex
	mult float64 // the multiplier lim is set to
}

func newPacer(cfg *Config, start time.Time) *pacer {
	p := &pacer{pattern: cfg.Pattern, start: start, mult: 1}
	switch {
	case cfg.BytesPerSecond > 0:
		p.base, p.perByte = rate.Limit(cfg.BytesPerSecond), true
	case cfg.LinesPerSecond > 0:
		p.base = rate.Limit(cfg.LinesPerSecond)
	default:
		return p
	}
	burst := max(1, int(float64(p.base)/10))
	p.lim = rate.NewLimiter(p.base, burst)
	// Start with an empty bucket: the first tenth of a second is paced
	// like every other, not a burst.
	p.lim.ReserveN(start, burst)
	return p
}

// multiplier is the pattern's factor on the base rate at time now, and
// when it next changes. A factor of 0 means pause.
func (p *pacer) multiplier(now time.Time) (float64, time.Time) {
	pc := &p.pattern
	switch pc.Kind {
	case "square":
		return phase(now.Sub(p.start), pc.Period, time.Duration(float64(pc.Period)*pc.Duty), 1, 0, now)
	case "spike":
		return phase(now.Sub(p.start), pc.Period, pc.SpikeLength, pc.SpikeFactor, 1, now)
	}
	return 1, time.Time{}
}

// phase is a two-phase cycle of length period: first for the first
// length, second for the rest.
func phase(elapsed, period, length time.Duration, first, second float64, now time.Time) (float64, time.Time) {
	in := elapsed % period
	if in < length {
		return first, now.Add(length - in)
	}
	return second, now.Add(period - in)
}

// wait blocks until a push of the given lines and bytes may go, or ctx
// ends. A square wave's push goes only if its tokens come within the on
// phase; otherwise it waits for the next one.
func (p *pacer) wait(ctx context.Context, lines, bytes int) error {
	n := lines
	if p.perByte {
		n = bytes
	}
	for {
		now := time.Now()
		m, next := p.multiplier(now)
		if m == 0 {
			if err := sleepUntil(ctx, next); err != nil {
				return err
			}
			continue
		}
		if p.lim == nil {
			return ctx.Err()
		}
		p.setMultiplier(now, m)
		// The bucket holds at most a burst: take a large push in pieces.
		k := min(n, p.lim.Burst())
		r := p.lim.ReserveN(now, k)
		at := now.Add(r.DelayFrom(now))
		if p.pattern.Kind == "square" && !at.Before(next) {
			r.CancelAt(now)
			if err := sleepUntil(ctx, next); err != nil {
				return err
			}
			continue
		}
		if dl, ok := ctx.Deadline(); ok && at.After(dl) {
			r.CancelAt(now)
			return context.DeadlineExceeded
		}
		if err := sleepUntil(ctx, at); err != nil {
			r.CancelAt(time.Now())
			return err
		}
		if n -= k; n <= 0 {
			return nil
		}
	}
}

// sleepUntil sleeps until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

func (p *pacer) setMultiplier(now time.Time, m float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m != p.mult {
		p.mult = m
		p.lim.SetLimitAt(now, p.base*rate.Limit(m))
	}
}
