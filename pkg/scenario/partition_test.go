package scenario

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/netns"
)

func runPartitionTest(t *testing.T, knobs map[string]string) *Result {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the system as separate processes")
	}
	bin := lokilabBinary(t)
	var progress strings.Builder
	res, err := Run(context.Background(), Partition(), Options{Short: true, Dir: t.TempDir(), Knobs: knobs, Progress: &progress, Binary: bin})
	t.Log(progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("run error: %v", res.Err)
	}
	noLeftovers(t, 0)
	return res
}

// TestPartition: one ingester cut off its peers under load: every push is
// still accepted, Kafka keeps its partitions' records, queries answer
// with a partial-result warning, and after the heal the ingester catches
// up, answers are whole and every acknowledged line is there once.
func TestPartition(t *testing.T) {
	requirePassed(t, runPartitionTest(t, nil))
}

// TestPartitionBrokenKnobFailsConvergence: a cut that is not healed in
// time fails the convergence check, and only it (the heal comes later, so
// nothing is lost).
func TestPartitionBrokenKnobFailsConvergence(t *testing.T) {
	res := runPartitionTest(t, map[string]string{"heal": "false", "converge-within": "4s"})
	if res.Passed {
		t.Fatal("the run passed with the cut never healed in time")
	}
	const want = "after the heal the ingester catches up and answers are whole"
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
		t.Fatalf("the check %q did not fail", want)
	}
}

// TestPartitionNetns: the same scenario with the victim in a network
// namespace of its own, cut by its veth pair losing every frame: the same
// checks hold, with silence and timeouts where netcut refuses. Where
// namespaces cannot be made it skips, loudly, saying why.
func TestPartitionNetns(t *testing.T) {
	requireNetns(t)
	res := runPartitionTest(t, map[string]string{"cut": "netns"})
	if b, err := os.ReadFile(res.Report); err == nil {
		t.Logf("the report:\n%s", b)
	}
	requirePassed(t, res)
}

// TestPartitionNetnsBrokenKnobFailsConvergence: with netns too, a cut not
// healed in time fails exactly the convergence check.
func TestPartitionNetnsBrokenKnobFailsConvergence(t *testing.T) {
	requireNetns(t)
	res := runPartitionTest(t, map[string]string{"cut": "netns", "heal": "false", "converge-within": "4s"})
	if res.Passed {
		t.Fatal("the run passed with the cut never healed in time")
	}
	for _, c := range res.Failed() {
		if c.Name != "after the heal the ingester catches up and answers are whole" {
			t.Errorf("another check failed: %s: got %s, want %s", c.Name, c.Got, c.Want)
		}
	}
}

// requireNetns skips loudly where network namespaces cannot be made.
func requireNetns(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the system as separate processes")
	}
	if err := netns.Check(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "SKIPPING %s: network namespaces unavailable: %v\n", t.Name(), err)
		t.Skipf("SKIPPED LOUDLY: network namespaces unavailable: %v", err)
	}
}
