package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestScenarioCommand checks the command's front: the list, unknown names
// and bad knob values. pkg/scenario runs the scenarios themselves.
func TestScenarioCommand(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		wantErr  string
		wantText string
	}{
		{[]string{"--list"}, "", "  1  tour"},
		{nil, "name a scenario", "tour"},
		{[]string{"nope"}, `unknown scenario "nope"`, "tour"},
		{[]string{"tour", "-lines", "many", "-out", t.TempDir()}, `knob -lines: "many" is not a valid int`, ""},
		{[]string{"tour", "-help"}, "help requested", "-skip-flush"},
		{[]string{"tour", "extra"}, "unexpected arguments", ""},
	} {
		var out, errOut bytes.Buffer
		err := runScenario(context.Background(), tc.args, &out, &errOut)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("scenario %q: error %v, want %q", tc.args, err, tc.wantErr)
		}
		if text := out.String() + errOut.String(); !strings.Contains(text, tc.wantText) {
			t.Errorf("scenario %q printed %q, want %q", tc.args, text, tc.wantText)
		}
	}
}
