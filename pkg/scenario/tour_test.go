package scenario

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runTourForTest(t *testing.T, knobs map[string]string) (*Result, string) {
	t.Helper()
	res, dir := runScenarioForTest(t, Tour(), knobs)
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("the data directory was not removed: %v", err)
	}
	return res, dir
}

// TestTour runs question 1's scenario end to end in short mode: every
// check passes and the report renders with its plots.
func TestTour(t *testing.T) {
	res, dir := runTourForTest(t, nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{"✅ **passed**", "### The batch, hop by hop", "Kafka partition", "Kafka offset", "chunk object key",
		"compression ratio", "index segment", "committed offset", "| 7 | query_range |", "every line came back exactly once",
		"](tour-hops.png)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"tour-hops.png", "tour-lines.png", "tour-ingester-memory.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestTourChecksCanFail turns knobs that break an expectation for real
// and asserts the run fails on exactly the checks that expectation
// backs.
func TestTourChecksCanFail(t *testing.T) {
	for _, tc := range []struct {
		name  string
		knobs map[string]string
		fail  []string
	}{
		{
			// Without a flush the chunk waits for its idle period (30m):
			// no object, so nothing indexed or committed, and fewer hops.
			name:  "no flush",
			knobs: map[string]string{"skip-flush": "true", "hop-timeout": "2s"},
			fail:  []string{"a chunk object holds the stream", "every hop observed"},
		},
		{
			// Another tenant must not see the batch.
			name:  "wrong tenant",
			knobs: map[string]string{"query-tenant": "someone-else"},
			fail:  []string{"every line came back exactly once"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := runTourForTest(t, tc.knobs)
			if res.Passed {
				t.Fatal("the run passed with a broken knob")
			}
			var failed []string
			for _, c := range res.Failed() {
				failed = append(failed, c.Name)
			}
			if strings.Join(failed, "\n") != strings.Join(tc.fail, "\n") {
				t.Fatalf("failed checks:\n  %s\nwant:\n  %s", strings.Join(failed, "\n  "), strings.Join(tc.fail, "\n  "))
			}
			b, _ := os.ReadFile(res.Report)
			if !strings.Contains(string(b), "❌ **failed**") || !strings.Contains(string(b), "| ❌ | "+tc.fail[0]+" |") {
				t.Fatalf("report.md does not show the failure:\n%s", b)
			}
		})
	}
}
