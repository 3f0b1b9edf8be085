package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTrace runs question 14's scenario in short mode: one push's spans,
// from the HTTP request through the Kafka record's traceparent header to
// the ingester's flush and offset commit, form one tree; a query's trace
// fans out to every ingester.
func TestTrace(t *testing.T) {
	res, dir := runScenarioForTest(t, Trace(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Hops of the push's trace", "kafka.commit_offset", "querier.ingester", "HTTP GET ingester_query_recent"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	tree, err := os.ReadFile(filepath.Join(dir, "push-trace.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(tree), "another root") {
		t.Errorf("push-trace.txt shows a broken tree:\n%s", tree)
	}
}

// TestTraceWithoutRecordHeaderFails is the broken knob: without the
// traceparent record header the ingester's spans start traces of their
// own, so the push's tree ends at kafka.produce and the checks that follow
// it past Kafka fail — and only those.
func TestTraceWithoutRecordHeaderFails(t *testing.T) {
	res, _ := runScenarioForTest(t, Trace(), map[string]string{"propagate": "false"})
	got := failedChecks(res)
	want := []string{"every hop appears in the push's trace", "the offset commit descends from the push through the Kafka record",
		"every record's consume span made it into the push's trace"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
