package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueInOrder(t *testing.T) {
	for i := 1; i < numBuckets; i++ {
		lo, prev := bucketLow(i), bucketLow(i-1)
		if lo <= prev {
			t.Fatalf("bucket %d starts at %d, not after bucket %d at %d", i, lo, i-1, prev)
		}
		if bucketOf(lo) != i || bucketOf(lo-1) != i-1 {
			t.Fatalf("bucketOf(%d) = %d, bucketOf(%d) = %d; want %d, %d", lo, bucketOf(lo), lo-1, bucketOf(lo-1), i, i-1)
		}
		// Width at most 1/8 of the bucket's start: the resolution.
		if hi := bucketLow(i + 1); i+1 < numBuckets && i >= subBuckets && float64(hi-lo) > float64(lo)/8 {
			t.Fatalf("bucket %d is [%d, %d): wider than 12.5%%", i, lo, hi)
		}
	}
	if b := bucketOf(math.MaxUint64); b != numBuckets-1 {
		t.Fatalf("bucketOf(max) = %d, want %d", b, numBuckets-1)
	}
}

func TestQuantilesWithinBucketResolution(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var h histogram
	var exact []time.Duration
	for range 100000 {
		// Log-normal-ish latencies from 100µs to seconds.
		d := time.Duration(math.Exp(r.NormFloat64()*1.5+math.Log(3e6))) + time.Microsecond
		h.record(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	s := h.snapshot()
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := exact[int(q*float64(len(exact)))-1]
		got := s.quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.07 {
			t.Errorf("p%v = %s, exact %s: %.1f%% off, want within 7%%", q*100, got, want, rel*100)
		}
	}
	if s.max != exact[len(exact)-1] || s.quantile(1) != s.max {
		t.Errorf("max %s, quantile(1) %s; exact max %s", s.max, s.quantile(1), exact[len(exact)-1])
	}
	// An interval's histogram is the difference of two snapshots; its
	// quantiles are its own, not bounded by the run's maximum.
	h.record(time.Hour)
	s = h.snapshot()
	for range 10 {
		h.record(time.Millisecond)
	}
	d := h.snapshot().sub(s)
	if d.total() != 10 || d.quantile(0.5) != d.quantile(1) || d.quantile(1) < 950*time.Microsecond || d.quantile(1) > 1100*time.Microsecond {
		t.Errorf("an interval of ten 1ms values: %d values, p50 %s, p100 %s", d.total(), d.quantile(0.5), d.quantile(1))
	}
	var empty histogram
	if q := empty.snapshot().quantile(0.99); q != 0 {
		t.Errorf("an empty histogram's p99 is %s", q)
	}
}
