package labels

import (
	"strings"
	"testing"
)

func TestParseMatchers(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // matchers joined by ", "; empty means an error is expected
		err  string
	}{
		{in: `{app="api"}`, want: `app="api"`},
		{in: ` { app = "api" , env!="dev",pod=~"api-.*", level !~ "debug|trace" } `, want: `app="api", env!="dev", pod=~"api-.*", level!~"debug|trace"`},
		{in: "{app=`raw\\d`}", want: `app="raw\\d"`},
		{in: `{}`, err: "expected a label name"},
		{in: `app="api"`, err: "expected '{'"},
		{in: `{app=="api"}`, err: "expected a quoted value"},
		{in: `{app~"api"}`, err: "expected one of"},
		{in: `{app="api"`, err: "expected ',' or '}'"},
		{in: `{app=~"("}`, err: "error parsing regexp"},
		{in: `{app="api"} |= "x"`, err: "unexpected"},
	} {
		ms, err := ParseMatchers(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMatchers(%q) error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseMatchers(%q): %v", tc.in, err)
			continue
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.String())
		}
		if strings.Join(got, ", ") != tc.want {
			t.Errorf("ParseMatchers(%q) = %s, want %s", tc.in, strings.Join(got, ", "), tc.want)
		}
	}
}

// FuzzParseMatchers: the selector parser never panics, and a selector it
// accepts, printed back from its matchers, parses to the same matchers.
func FuzzParseMatchers(f *testing.F) {
	for _, s := range []string{`{app="api"}`, `{a!="b", c=~"d.*", e!~"f|g"}`, "{a=`x`}", `{}`, `{a="\u00e9\\n"}`, `{a=~"("}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseMatchers(s)
		if err != nil {
			return
		}
		var parts []string
		for _, m := range ms {
			parts = append(parts, m.String())
		}
		again, err := ParseMatchers("{" + strings.Join(parts, ", ") + "}")
		if err != nil {
			t.Fatalf("%q parsed, but its printed form %v does not: %v", s, parts, err)
		}
		for i := range ms {
			if again[i].Type != ms[i].Type || again[i].Name != ms[i].Name || again[i].Value != ms[i].Value {
				t.Fatalf("%q: matcher %d printed and parsed back as %v, was %v", s, i, again[i], ms[i])
			}
		}
	})
}
