package scenario

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runRebalanceTest(t *testing.T, knobs map[string]string) *Result {
	t.Helper()
	bin := lokilabBinary(t)
	dir := t.TempDir()
	var progress strings.Builder
	res, err := Run(context.Background(), Rebalance(), Options{Short: true, Dir: dir, Knobs: knobs, Progress: &progress, Binary: bin})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("run error: %v", res.Err)
	}
	for _, f := range []string{"rebalance-lag.png", "rebalance-consumed.png"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("no plot %s: %v", f, err)
		}
	}
	noLeftovers(t, 0)
	return res
}

// TestRebalanceRingAndGroup: one ingester killed under steady load, ring
// ownership then a consumer group: in the ring only the victim's
// partitions pause, for its restart and replay, and nothing is reassigned;
// in the group they wait for the session timeout and a rebalance assigns
// them; the survivors never pause and nothing acknowledged is lost in
// either. Short mode: about 65s (two systems in processes mode).
func TestRebalanceRingAndGroup(t *testing.T) {
	res := runRebalanceTest(t, nil)
	requirePassed(t, res)
	var sawRing, sawGroup bool
	for _, c := range res.Checks {
		sawRing = sawRing || strings.HasPrefix(c.Name, "ring: ")
		sawGroup = sawGroup || strings.HasPrefix(c.Name, "group: ")
	}
	if !sawRing || !sawGroup {
		t.Errorf("checks of both modes expected (ring %v, group %v)", sawRing, sawGroup)
	}
}

// TestRebalanceBrokenKnobFailsSessionTimeoutCheck: the group's
// expectations against the ring fail for real: the ring's victim is back
// long before a session timeout would have passed.
func TestRebalanceBrokenKnobFailsSessionTimeoutCheck(t *testing.T) {
	res := runRebalanceTest(t, map[string]string{"ownership": "ring", "expect": "group"})
	if res.Passed {
		t.Fatal("the run passed with ring ownership and the group's expectations")
	}
	const want = "ring: the victim's partitions waited for the session timeout (the dead member held them)"
	var found bool
	for _, c := range res.Failed() {
		if c.Name == want {
			found = true
			t.Logf("failed as it must: %s: got %s, want %s", c.Name, c.Got, c.Want)
		} else {
			t.Errorf("another check failed: %s: got %s, want %s", c.Name, c.Got, c.Want)
		}
	}
	if !found {
		t.Errorf("%q did not fail; failed: %v", want, res.Failed())
	}
}
