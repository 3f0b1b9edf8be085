package querier

import (
	"flag"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/ring"
)

// TestRingIngestersWarnsAboutPartitionsWithoutALiveOwner: every partition
// whose lines no healthy ACTIVE or LEAVING owner can answer for makes the
// answer partial, and says so — also when no partition has an owner at
// all, as while every ingester restarts at once (an answer without a
// warning then was silently stale).
func TestRingIngestersWarnsAboutPartitionsWithoutALiveOwner(t *testing.T) {
	var rc ring.Config
	rc.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	rc.BindAddr, rc.BindPort, rc.Partitions = "127.0.0.1", 0, 3
	r, err := ring.New(rc, ring.InstanceDesc{ID: "ingester-a", Addr: "127.0.0.1:1", Role: ring.RoleIngester}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Kill()
	r.SetState(ring.InstanceActive)
	set := RingIngesters{Ring: r}

	for _, step := range []struct {
		name   string
		change func()
		want   string // a substring of the one warning; "" for none
	}{
		{"no owner at all", func() {}, "partitions 0,1,2 have no live owner (owners: none)"},
		{"every partition ACTIVE", func() {
			for p := range int32(3) {
				r.SetOwner(p, ring.OwnerActive)
			}
		}, ""},
		{"a LEAVING owner still answers", func() { r.SetOwner(1, ring.OwnerLeaving) }, ""},
		{"a JOINING owner is still replaying", func() { r.SetOwner(2, ring.OwnerJoining) }, "partitions 2 have no live owner (owners: ingester-a (JOINING))"},
	} {
		step.change()
		ings, warnings := set.Ingesters()
		if len(ings) != 1 || ings[0].ID != "ingester-a" {
			t.Errorf("%s: ingesters %v, want ingester-a", step.name, ings)
		}
		switch {
		case step.want == "" && len(warnings) > 0:
			t.Errorf("%s: warnings %q, want none", step.name, warnings)
		case step.want != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], step.want)):
			t.Errorf("%s: warnings %q, want one containing %q", step.name, warnings, step.want)
		}
	}
}
