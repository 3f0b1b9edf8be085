package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNoisyNeighbor runs question 2's scenario in short mode with two
// distributors: the noisy tenants get 429 and about 1× (global) and 2×
// (local) their limit, the quiet tenant keeps its acceptance and latency.
func TestNoisyNeighbor(t *testing.T) {
	res, dir := runScenarioForTest(t, NoisyNeighbor(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### The quiet tenant (quiet-1), phase by phase", "### The noisy tenants", "Ingestion rate limit exceeded for user noisy-1", "distributor-2: http://"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"noisy-neighbor-accepted.png", "noisy-neighbor-pushes.png", "noisy-neighbor-quiet-latency.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestNoisyNeighborLocalStrategyFails is the broken knob: the tenant the
// hypothesis limits globally set to the local strategy gets the full limit
// from each of the two distributors, so the "about 1×" check fails — and
// only that one.
func TestNoisyNeighborLocalStrategyFails(t *testing.T) {
	res, _ := runScenarioForTest(t, NoisyNeighbor(), map[string]string{"strategy": "local"})
	got := failedChecks(res)
	want := []string{"noisy-1 gets about 1× its limit in all (global strategy, 2 distributors)"}
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
