package querier

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
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

// TestSlicesOfStoredData: where the store holds the whole range, the index
// sizes the first slice. Two stored hours, a minute of lines per chunk,
// split by the hour: under metric_slice_bytes an hour is read in one
// slice, as it was before slicing; at a tenth of an hour's bytes, in
// about ten. The answer is the same either way.
func TestSlicesOfStoredData(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	from := now.Add(-6 * time.Hour) // older than query_ingesters_within (3h)
	ls := labels.New(labels.Label{Name: "app", Value: "api"})
	var hourBytes int64
	load := func(tq *testQuerier) {
		hourBytes = 0
		for m := range 120 {
			var es []push.Entry
			for s := range 60 {
				line := fmt.Sprintf("minute %d second %d status=200", m, s)
				es = append(es, push.Entry{Timestamp: from.Add(time.Duration(m)*time.Minute + time.Duration(s)*time.Second).UnixNano(), Line: line})
				if m < 60 {
					hourBytes += int64(len(line))
				}
			}
			flush(t, tq.bkt, "a", ls, es, fmt.Sprintf("m%d", m))
		}
	}
	e, err := logql.Parse(`sum(count_over_time({app="api"}[1m]))`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		target       func() int64
		minSl, maxSl uint64
	}{
		{"an hour under the target: one slice per hour", func() int64 { return 64 << 20 }, 2, 2},
		{"a tenth of an hour per slice", func() int64 { return hourBytes / 10 }, 20, 26},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tq := newTestQuerier(t, now, 0, nil)
			load(tq)
			tq.cfg.MetricSliceBytes = config.ByteSize(tc.target())
			var (
				st Stats
				w  warnings
			)
			res, err := tq.SelectSamples(context.Background(), []string{"a"}, MetricQuery{Expr: e, Start: from.Add(time.Minute), End: from.Add(119 * time.Minute), Step: time.Minute}, &st, &w)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 1 || len(res[0].Samples) != 119 {
				t.Fatalf("got %v, want one series of 119 samples", res)
			}
			for _, smp := range res[0].Samples {
				if smp.V != 60 {
					t.Fatalf("sample %v, want 60 lines a minute", smp)
				}
			}
			if n := metricstest.HistogramCount(t, tq.reg, "lokilab_querier_metric_slice_bytes"); n < tc.minSl || n > tc.maxSl {
				t.Errorf("%d slices, want %d to %d", n, tc.minSl, tc.maxSl)
			}
		})
	}
}
