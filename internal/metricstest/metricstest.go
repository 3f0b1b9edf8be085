// Package metricstest reads single values out of a Prometheus registry, so
// tests can assert on what a user would see at /metrics.
package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Value returns the value of the counter or gauge name whose labels include
// the given name/value pairs, or 0 if there is none (a counter never
// incremented is absent, which reads as 0, as PromQL treats it).
func Value(t testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	t.Helper()
	m := find(t, g, name, labelPairs)
	switch {
	case m == nil:
		return 0
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	t.Fatalf("metric %s is not a counter or gauge", name)
	return 0
}

// HistogramCount returns the sample count of the histogram name whose labels
// include the given pairs, or 0.
func HistogramCount(t testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) uint64 {
	t.Helper()
	m := find(t, g, name, labelPairs)
	if m == nil {
		return 0
	}
	if m.Histogram == nil {
		t.Fatalf("metric %s is not a histogram", name)
	}
	return m.Histogram.GetSampleCount()
}

// HistogramSum returns the sum of observations of the histogram name whose
// labels include the given pairs, or 0.
func HistogramSum(t testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	t.Helper()
	m := find(t, g, name, labelPairs)
	if m == nil {
		return 0
	}
	if m.Histogram == nil {
		t.Fatalf("metric %s is not a histogram", name)
	}
	return m.Histogram.GetSampleSum()
}

// Sum adds up every series of the counter or gauge name whose labels include
// the given pairs.
func Sum(t testing.TB, g prometheus.Gatherer, name string, labelPairs ...string) float64 {
	t.Helper()
	total := 0.0
	for _, m := range all(t, g, name, labelPairs) {
		total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	return total
}

func find(t testing.TB, g prometheus.Gatherer, name string, labelPairs []string) *dto.Metric {
	t.Helper()
	ms := all(t, g, name, labelPairs)
	if len(ms) > 1 {
		t.Fatalf("%d series of %s match %v; name more labels", len(ms), name, labelPairs)
	}
	if len(ms) == 0 {
		return nil
	}
	return ms[0]
}

func all(t testing.TB, g prometheus.Gatherer, name string, labelPairs []string) []*dto.Metric {
	t.Helper()
	if len(labelPairs)%2 != 0 {
		t.Fatalf("odd number of label arguments: %v", labelPairs)
	}
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i < len(labelPairs); i += 2 {
				if have[labelPairs[i]] != labelPairs[i+1] {
					continue metrics
				}
			}
			out = append(out, m)
		}
	}
	return out
}
