package scenario

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that a run stops everything it started: the system
// under test, the sampler, the watchers. It removes the lokilab binary
// processes-mode tests built (processes_test.go).
//
// The one exception is pkg/ring's (its TestMain says why): memberlist's
// Shutdown does not interrupt a failure-detector probe in flight, whose
// goroutine outlives it by up to a probe interval.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
		goleak.IgnoreAnyFunction("github.com/hashicorp/memberlist.(*Memberlist).sendPingAndWaitForAck"),
		goleak.Cleanup(func(code int) { removeBuiltBinary(); os.Exit(code) }))
}
