package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runIngesterOOMTest(t *testing.T, knobs map[string]string) *Result {
	t.Helper()
	requireCgroups(t)
	bin := lokilabBinary(t)
	dir := t.TempDir()
	var progress strings.Builder
	res, err := Run(context.Background(), IngesterOOM(), Options{Short: true, Dir: dir, Knobs: knobs, Progress: &progress, Binary: bin})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("run error: %v", res.Err)
	}
	if _, err := os.Stat(filepath.Join(dir, "oom-memory.png")); err != nil {
		t.Errorf("no memory plot: %v", err)
	}
	noLeftovers(t, 0)
	des, _ := os.ReadDir("/sys/fs/cgroup/memory")
	for _, de := range des {
		if strings.HasPrefix(de.Name(), "lokilab-") && strings.HasSuffix(de.Name(), "-ingester-2") {
			t.Errorf("memory cgroup %s left behind", de.Name())
		}
	}
	return res
}

// TestIngesterOOMProtectedSurvives: with the protections on, the burst is
// answered with 429s, the memory-limited ingester is not killed, the lag
// drains and nothing acknowledged is lost.
func TestIngesterOOMProtectedSurvives(t *testing.T) {
	res := runIngesterOOMTest(t, nil)
	requirePassed(t, res)
}

// TestIngesterOOMBrokenKnobFailsNoOOMCheck: the protected run's
// expectations with the protections off fail, on a real OOM kill.
func TestIngesterOOMBrokenKnobFailsNoOOMCheck(t *testing.T) {
	res := runIngesterOOMTest(t, map[string]string{"protections": "false", "expect": "protected", "watch": "5s", "verify-wait": "2s"})
	if res.Passed {
		t.Fatal("the run passed with the protections off and the protected expectations")
	}
	var found bool
	for _, c := range res.Failed() {
		if c.Name == "no ingester was OOM-killed" {
			found = true
			t.Logf("failed as it must: %s: got %s", c.Name, c.Got)
		}
	}
	if !found {
		t.Errorf("the \"no ingester was OOM-killed\" check did not fail; failed: %v", res.Failed())
	}
}
