package scenario

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestTenants runs question 7's scenario in short mode: two tenants with
// identical streams read back only their own lines, from memory and from
// the store; their objects sit under their own prefixes; a multi-tenant
// read happens only when asked; path tricks are refused; team-a's limit
// and retention leave team-b alone.
func TestTenants(t *testing.T) {
	res, dir := runScenarioForTest(t, Tenants(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### The object store by prefix, after the flush", "`team-a/chunks/`", "`team-b/chunks/`", "### Tenant IDs with path tricks", "Ingestion rate limit exceeded for user team-a"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"tenants-bytes.png", "tenants-store.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestTenantsLeakyGatewayFails is the broken knob: team-b's reads sent
// with a multi-tenant header (a gateway that forwards what it should not)
// include team-a's lines, and exactly the two checks of team-b's reads
// fail.
func TestTenantsLeakyGatewayFails(t *testing.T) {
	res, _ := runScenarioForTest(t, Tenants(), map[string]string{"b-org-id": mtB + "|" + mtA})
	got := failedChecks(res)
	want := []string{
		"team-b reads exactly its own lines (ingesters' memory)",
		"team-b reads exactly its own lines (object store)",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}
