package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestFaultsCommandRefusesBadInput: `lokilab faults` checks what it is
// asked before it starts any lab.
func TestFaultsCommandRefusesBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"faults", "-only", "no-such-fault"}, `no fault "no-such-fault"`},
		{[]string{"faults", "-short", "-load", "5s", "-fault-at", "3s", "-fault-for", "3s"}, "must end before the load does"},
		{[]string{"faults", "extra"}, "takes no arguments"},
	} {
		var out, errOut bytes.Buffer
		err := run(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"faults", "-help"}, &out, &errOut); err == nil || !strings.Contains(errOut.String(), "ingester-cutoff") {
		t.Errorf("faults -help: %v; printed %q, want the fault names", err, errOut.String())
	}
}
