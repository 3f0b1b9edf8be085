package querier

import (
	"testing"
	"time"
)

func TestNextSlice(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name          string
		length        time.Duration
		bytes, target int64
		want          time.Duration
	}{
		{"on target: same length", 10 * time.Second, 64 * mb, 64 * mb, 10 * time.Second},
		{"twice the target: half as long", 10 * time.Second, 128 * mb, 64 * mb, 5 * time.Second},
		{"a quarter of the target: four times as long", 10 * time.Second, 16 * mb, 64 * mb, 40 * time.Second},
		{"nearly nothing: at most maxGrowth times as long", 10 * time.Second, 1, 64 * mb, maxGrowth * 10 * time.Second},
		{"nothing at all: maxGrowth times as long", 10 * time.Second, 0, 64 * mb, maxGrowth * 10 * time.Second},
		{"a flood: never below minSlice", time.Second, 1 << 40, 64 * mb, minSlice},
		// length*target is past int64 here; the estimate must not wrap.
		{"hours at a huge target", 6 * time.Hour, 1 << 30, 1 << 40, maxGrowth * 6 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := time.Duration(nextSlice(int64(tc.length), tc.bytes, tc.target)); got != tc.want {
				t.Fatalf("nextSlice(%v, %d, %d) = %v, want %v", tc.length, tc.bytes, tc.target, got, tc.want)
			}
		})
	}
}
