package scenario

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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
	for _, name := range orphanedCgroups(t, "/sys/fs/cgroup/memory", "ingester-2") {
		t.Errorf("memory cgroup %s left behind by a supervisor that has exited", name)
	}
	return res
}

// orphanedCgroups lists the memory cgroups of process name whose
// supervisor has exited. A group is named lokilab-<supervisor pid>-<name>
// (pkg/app's cgroupName); the supervisor removes its groups on its way
// out, so one whose supervisor is gone was left behind. A group whose
// supervisor still runs belongs to another lab on this machine — the
// fault matrix runs an OOM fault in parallel with this package — and is
// none of this test's business.
func orphanedCgroups(t *testing.T, root, name string) []string {
	t.Helper()
	des, err := os.ReadDir(root)
	if err != nil {
		t.Fatalf("listing memory cgroups: %v", err)
	}
	var orphans []string
	for _, de := range des {
		rest, ok := strings.CutPrefix(de.Name(), "lokilab-")
		if !ok {
			continue
		}
		pidText, proc, ok := strings.Cut(rest, "-")
		if !ok || proc != name {
			continue
		}
		pid, err := strconv.Atoi(pidText)
		if err != nil {
			continue
		}
		// Signal 0 checks that the process exists; EPERM means it does
		// but is someone else's.
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue
		}
		orphans = append(orphans, de.Name())
	}
	return orphans
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
