package loadgen

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram is a log-bucketed latency histogram in the manner of HDR
// histograms: each power of two of nanoseconds is split into 8 linear
// buckets, so any recorded value is known within 12.5% (a quantile is
// reported as its bucket's midpoint, within about 6%), over the whole range
// from 1ns to centuries, in 496 counters.
//
// Why not keep the latencies and sort them: a long run at thousands of
// pushes per second would hold millions, and a sampled reservoir loses
// exactly the tail that p99 and max are about. A fixed histogram costs 4KB,
// records with one atomic add (workers never contend on a lock), and two
// snapshots subtract into the histogram of the interval between them,
// which is how the progress line shows the last second's p50/p99 while the
// summary shows the whole run's. The maximum is kept exactly.
type histogram struct {
	counts [numBuckets]atomic.Uint64
	max    atomic.Int64
}

const (
	subBits    = 3
	subBuckets = 1 << subBits
	numBuckets = (64 - subBits + 1) * subBuckets
)

// bucketOf is the bucket holding v nanoseconds: values below 8 have one
// bucket each; above, the top 4 significant bits pick it.
func bucketOf(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	e := bits.Len64(v) - 1 // v is in [2^e, 2^(e+1))
	sub := (v >> uint(e-subBits)) & (subBuckets - 1)
	return (e-subBits+1)<<subBits + int(sub)
}

// bucketLow is the smallest value in bucket i.
func bucketLow(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	e := i>>subBits + subBits - 1
	sub := uint64(i & (subBuckets - 1))
	return (subBuckets + sub) << uint(e-subBits)
}

func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// snapshot is a histogram's counts at one moment.
type snapshot struct {
	counts [numBuckets]uint64
	// max is the largest value recorded: exact in a histogram's snapshot,
	// an upper bound (the whole run's) in a difference of two.
	max      time.Duration
	exactMax bool
}

func (h *histogram) snapshot() *snapshot {
	s := &snapshot{max: time.Duration(h.max.Load()), exactMax: true}
	for i := range h.counts {
		s.counts[i] = h.counts[i].Load()
	}
	return s
}

// sub returns the counts recorded between prev and s. The interval's own
// maximum is not known, only that it is at most the run's.
func (s *snapshot) sub(prev *snapshot) *snapshot {
	d := &snapshot{max: s.max}
	for i := range s.counts {
		d.counts[i] = s.counts[i] - prev.counts[i]
	}
	return d
}

func (s *snapshot) total() uint64 {
	var n uint64
	for _, c := range s.counts {
		n += c
	}
	return n
}

// quantile returns the q-quantile (0 < q <= 1) as the midpoint of its
// bucket, capped at the maximum (the exact maximum itself for the last
// value, when it is known); 0 when empty.
func (s *snapshot) quantile(q float64) time.Duration {
	n := s.total()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank >= n && s.exactMax {
		return s.max
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketLow(i), bucketLow(i+1)
			if i == numBuckets-1 {
				hi = lo
			}
			mid := time.Duration(lo + (hi-lo)/2)
			if s.max > 0 && mid > s.max {
				mid = s.max
			}
			return mid
		}
	}
	return s.max
}
