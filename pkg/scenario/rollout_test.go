package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runRolloutTest(t *testing.T, knobs map[string]string) *Result {
	t.Helper()
	bin := lokilabBinary(t)
	dir := t.TempDir()
	var progress strings.Builder
	res, err := Run(context.Background(), Rollout(), Options{Short: true, Dir: dir, Knobs: knobs, Progress: &progress, Binary: bin})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("run error: %v", res.Err)
	}
	if _, err := os.Stat(filepath.Join(dir, "rollout-lag.png")); err != nil {
		t.Errorf("no lag plot: %v", err)
	}
	noLeftovers(t, 0)
	return res
}

// TestRollout: a rolling restart of the three ingesters (SIGTERM, the
// next once the restarted one is ready) fails no push, keeps queries whole
// and fresh and the lag bounded; all at once fails no push either, but the
// lag peaks far higher and queries go stale; nothing acknowledged is lost.
func TestRollout(t *testing.T) {
	res := runRolloutTest(t, nil)
	requirePassed(t, res)
	var sawRolling, sawAll bool
	for _, c := range res.Checks {
		sawRolling = sawRolling || strings.HasPrefix(c.Name, "rolling: ")
		sawAll = sawAll || strings.HasPrefix(c.Name, "all-at-once: ")
	}
	if !sawRolling || !sawAll {
		t.Errorf("checks of both strategies expected (rolling %v, all-at-once %v)", sawRolling, sawAll)
	}
}

// TestRolloutBrokenKnobFailsRollingChecks: a rolling restart that does not
// wait for the restarted ingester to be ready fails the rolling
// restart's own expectations.
func TestRolloutBrokenKnobFailsRollingChecks(t *testing.T) {
	res := runRolloutTest(t, map[string]string{"strategy": "rolling", "wait": "none"})
	if res.Passed {
		t.Fatal("the run passed with a rolling restart that does not wait for readiness")
	}
	const want = "rolling: each restarted ingester held its share, caught up, when it was declared ready"
	var found bool
	for _, c := range res.Failed() {
		if c.Name == want {
			found = true
		}
		t.Logf("failed: %s: got %s, want %s", c.Name, c.Got, c.Want)
		if !strings.HasPrefix(c.Name, "rolling: ") {
			t.Errorf("a check that is not the rolling restart's failed: %s", c.Name)
		}
	}
	if !found {
		t.Errorf("%q did not fail; failed: %v", want, failedChecks(res))
	}
}
