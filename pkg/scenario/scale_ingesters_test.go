package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runScaleTest(t *testing.T, knobs map[string]string) *Result {
	t.Helper()
	bin := lokilabBinary(t)
	dir := t.TempDir()
	var progress strings.Builder
	res, err := Run(context.Background(), ScaleIngesters(), Options{Short: true, Dir: dir, Knobs: knobs, Progress: &progress, Binary: bin})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("run error: %v", res.Err)
	}
	for _, f := range []string{"scale-bytes.png", "scale-partitions.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("no plot %s: %v", f, err)
		}
	}
	noLeftovers(t, 0)
	return res
}

// TestScaleIngesters: 3 → 4 → 2 ingesters under load in ring mode: up,
// only partitions given to the newcomer move; down, only the leavers',
// each leaver LEAVING then gone after committing everything it consumed;
// pushes never fail and nothing acknowledged is lost.
func TestScaleIngesters(t *testing.T) {
	res := runScaleTest(t, nil)
	requirePassed(t, res)
	var sawLeaver bool
	for _, c := range res.Checks {
		sawLeaver = sawLeaver || strings.HasSuffix(c.Name, ": flushed and committed everything it had consumed before handing over")
	}
	if !sawLeaver {
		t.Error("no leaver was checked for a graceful handover")
	}
}

// TestScaleIngestersBrokenKnobFailsGracefulCheck: with flush on shutdown
// off, the leavers drop what they hold instead of flushing it: the check
// that they committed everything they had consumed fails, and nothing else
// does — Kafka still has the records, the next owners replay them.
func TestScaleIngestersBrokenKnobFailsGracefulCheck(t *testing.T) {
	res := runScaleTest(t, map[string]string{"shutdown-flush": "false"})
	if res.Passed {
		t.Fatal("the run passed with -shutdown-flush=false")
	}
	const want = ": flushed and committed everything it had consumed before handing over"
	found := 0
	for _, c := range res.Failed() {
		if strings.HasSuffix(c.Name, want) {
			found++
			t.Logf("failed as it must: %s: got %s, want %s", c.Name, c.Got, c.Want)
		} else {
			t.Errorf("another check failed: %s: got %s, want %s", c.Name, c.Got, c.Want)
		}
	}
	if found == 0 {
		t.Errorf("no %q check failed; failed: %v", want, failedChecks(res))
	}
}
