package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantErr  string
		wantText string
	}{
		{nil, "no command given", "Usage:"},
		{[]string{"bogus"}, `unknown command "bogus"`, "Usage:"},
		{[]string{"help"}, "", "lokilab run"},
		{[]string{"run", "-no-such-flag"}, "flag provided but not defined", "-data.dir"},
		{[]string{"kafka", "-help"}, "help requested", "-kafka.broker.data-dir"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		err := run(tt.args, &out, &errOut)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("run(%q) error = %v, want %q", tt.args, err, tt.wantErr)
		}
		if text := out.String() + errOut.String(); !strings.Contains(text, tt.wantText) {
			t.Errorf("run(%q) printed %q, want it to contain %q", tt.args, text, tt.wantText)
		}
	}
}
