package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSlowQuery runs question 4's scenario in short mode: every variant
// answers right, and the query stats show what each one read — a narrow
// range fewer chunks, a regex the same bytes as a substring, splitting and
// parallelism the same work, recent lines from the ingesters, a rare
// needle the whole range.
func TestSlowQuery(t *testing.T) {
	res, dir := runScenarioForTest(t, SlowQuery(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### The same question, asked eight ways", "| baseline: 1h, substring |", "(?i)timeout", "regex vs substring, per byte"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"slow-query-work.png", "slow-query-latency.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestSlowQueryDayLongChunksFail is the broken knob: with max_chunk_age
// 24h each stream's logs fit one chunk, so the index cannot skip any for
// a narrow range and the "fewer chunks" check fails — and only that one.
func TestSlowQueryDayLongChunksFail(t *testing.T) {
	res, _ := runScenarioForTest(t, SlowQuery(), map[string]string{"max-chunk-age": "24h"})
	got := failedChecks(res)
	want := []string{"a narrower range touches fewer chunks"}
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
