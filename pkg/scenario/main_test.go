package scenario

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that a run stops everything it started: the system
// under test, the sampler, the watchers.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
