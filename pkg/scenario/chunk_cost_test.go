package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestChunkCost runs question 11's scenario in short mode: the same
// traffic with snappy and with zstd; zstd stores fewer bytes, every PUT
// is accounted for, every line reads back, and the cost table is priced.
func TestChunkCost(t *testing.T) {
	res, dir := runScenarioForTest(t, ChunkCost(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### The same traffic, per combination", "### Monthly cost of 1 TiB of raw lines a day", "the codec sets the bytes stored", "$0.023 per GB-month"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"chunk-cost-bytes.png", "chunk-cost-puts.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestChunkCostNoPausesFails is the broken knob: with every stream
// writing at every tick (-quiet-every 1) no chunk ever waits out an idle
// period, so a 5m idle period writes no more objects than 30m and that
// check, alone, fails.
func TestChunkCostNoPausesFails(t *testing.T) {
	res, _ := runScenarioForTest(t, ChunkCost(), map[string]string{"codecs": "snappy", "idle-periods": "5m,30m", "quiet-every": "1"})
	got := failedChecks(res)
	want := []string{"a shorter idle period writes more chunk objects (quiet streams are cut at every pause)"}
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
