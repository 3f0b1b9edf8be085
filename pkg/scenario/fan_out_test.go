package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestFanOut runs question 5's scenario in short mode: the subqueries in
// flight reach max_query_parallelism and never pass it, goroutines stay
// bounded, and a cancelled query stops its workers and its reads.
func TestFanOut(t *testing.T) {
	res, dir := runScenarioForTest(t, FanOut(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### The same wide query at each max_query_parallelism", "### The cancelled query", "lokilab_querier_subqueries_in_flight"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"fan-out-in-flight.png", "fan-out-latency.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestFanOutWithoutSplitFails is the broken knob: with
// split_queries_by_interval 0 the wide query is one subquery, nothing
// fans out, and the "reaches the limit" check fails — and only that one.
func TestFanOutWithoutSplitFails(t *testing.T) {
	res, _ := runScenarioForTest(t, FanOut(), map[string]string{"split": "0s"})
	got := failedChecks(res)
	want := []string{"the fan-out reaches the limit"}
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
