package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRetention runs question 13's scenario in short mode: 90 hours of
// data on the accelerated clock; the compactor expires exactly what the
// tenant's period and the stream rule say, sweeps exactly those objects
// after the deletion delay and counts their bytes; the other tenant keeps
// everything.
func TestRetention(t *testing.T) {
	res, dir := runScenarioForTest(t, Retention(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Lines after the compactor's run", "### Chunk objects the run wrote, and those left after the last sweep", "### The batches on the accelerated clock", "| AdvanceClock |"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"retention-compactor.png", "retention-bytes.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestRetentionBroadRuleFails is the broken knob: a retention_stream rule
// written too broadly ({env=~"dev|prod"} instead of {env="dev"}) also
// expires the prod stream after the rule's period, so the check that
// nothing outside the rule is touched fails, and so does the sweep's.
func TestRetentionBroadRuleFails(t *testing.T) {
	res, _ := runScenarioForTest(t, Retention(), map[string]string{"rule-selector": `{env=~"dev|prod"}`})
	got := failedChecks(res)
	want := []string{
		"ret-a's other streams keep its retention_period (72h0m0s): nothing outside the rule touched",
		"the sweep deletes exactly the expired chunks",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
