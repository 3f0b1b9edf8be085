package scenario

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that a run stops everything it started: the system
// under test, the sampler, the watchers. It removes the lokilab binary
// processes-mode tests built (processes_test.go).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) { removeBuiltBinary(); os.Exit(code) }))
}
