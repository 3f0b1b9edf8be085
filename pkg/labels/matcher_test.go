package labels

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestMatcherMatches(t *testing.T) {
	tests := []struct {
		name  string
		typ   MatchType
		value string
		in    string
		want  bool
	}{
		{"equal matches the same value", MatchEqual, "api", "api", true},
		{"equal rejects another value", MatchEqual, "api", "web", false},
		{"equal empty matches an absent label", MatchEqual, "", "", true},
		{"equal empty rejects a present label", MatchEqual, "", "api", false},
		{"not equal rejects the value", MatchNotEqual, "api", "api", false},
		{"not equal accepts another value", MatchNotEqual, "api", "web", true},
		{"not equal accepts an absent label", MatchNotEqual, "api", "", true},
		{"not equal empty requires the label", MatchNotEqual, "", "", false},
		{"not equal empty accepts any present value", MatchNotEqual, "", "x", true},

		{"regexp is anchored at both ends", MatchRegexp, "api", "api-2", false},
		{"regexp is anchored at the start", MatchRegexp, "pi", "api", false},
		{"regexp literal matches itself", MatchRegexp, "api", "api", true},
		{"regexp alternation matches each literal", MatchRegexp, "api|web|db", "web", true},
		{"regexp alternation rejects a prefix", MatchRegexp, "api|web", "we", false},
		{"regexp alternation rejects a superstring", MatchRegexp, "api|web", "apiweb", false},
		{"regexp alternation with an empty branch matches absent", MatchRegexp, "api|", "", true},
		{"regexp dot star matches anything", MatchRegexp, ".*", "whatever", true},
		{"regexp dot star matches absent", MatchRegexp, ".*", "", true},
		{"regexp dot star matches a newline", MatchRegexp, ".*", "a\nb", true},
		{"regexp dot plus matches a value", MatchRegexp, ".+", "x", true},
		{"regexp dot plus rejects absent", MatchRegexp, ".+", "", false},
		{"regexp class", MatchRegexp, "api-[0-9]+", "api-42", true},
		{"regexp class rejects", MatchRegexp, "api-[0-9]+", "api-x", false},
		{"regexp top-level alternation is anchored as a whole", MatchRegexp, "a.*|b", "xb", false},
		{"regexp top-level alternation second branch", MatchRegexp, "a.*|b", "b", true},
		{"regexp escaped pipe is a literal", MatchRegexp, `a\|b`, "a|b", true},
		{"regexp escaped pipe does not split", MatchRegexp, `a\|b`, "a", false},
		{"regexp empty matches only absent", MatchRegexp, "", "", true},
		{"regexp empty rejects a value", MatchRegexp, "", "x", false},
		{"regexp case sensitive", MatchRegexp, "api", "API", false},
		{"regexp case insensitive flag", MatchRegexp, "(?i)api", "API", true},

		{"not regexp rejects a match", MatchNotRegexp, "api|web", "api", false},
		{"not regexp accepts a non-match", MatchNotRegexp, "api|web", "db", true},
		{"not regexp dot plus accepts only absent", MatchNotRegexp, ".+", "", true},
		{"not regexp dot plus rejects a value", MatchNotRegexp, ".+", "x", false},
		{"not regexp dot star rejects everything", MatchNotRegexp, ".*", "", false},
		{"not regexp class", MatchNotRegexp, "[0-9]+", "12a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewMatcher(tt.typ, "app", tt.value)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Matches(tt.in); got != tt.want {
				t.Fatalf("%s.Matches(%q) = %v, want %v", m, tt.in, got, tt.want)
			}
		})
	}
}

// The fast paths must give exactly the regexp engine's answers.
func TestMatcherFastPathsAgreeWithRegexp(t *testing.T) {
	patterns := []string{".*", ".+", "a", "a|b", "a|b|", "|", "api|web|api", "x|yy|zzz",
		strings.Repeat("v|", 40) + "w"} // large set: the map path
	inputs := []string{"", "a", "b", "ab", "a|b", "api", "web", "x", "yy", "zzz", "zz", "\n", "a\nb", "v", "w", "vw"}
	for _, p := range patterns {
		re := regexp.MustCompile("^(?s:" + p + ")$")
		for _, typ := range []MatchType{MatchRegexp, MatchNotRegexp} {
			m := MustNewMatcher(typ, "n", p)
			if m.fast == fastNone {
				t.Fatalf("%s: fast path not taken", m)
			}
			for _, in := range inputs {
				want := re.MatchString(in) == (typ == MatchRegexp)
				if got := m.Matches(in); got != want {
					t.Errorf("%s.Matches(%q) = %v, the regexp engine says %v", m, in, got, want)
				}
			}
		}
	}
}

func TestMatcherFastPathShapes(t *testing.T) {
	tests := []struct {
		value string
		want  fastKind
		set   []string
	}{
		{".*", fastAny, nil},
		{".+", fastNonEmpty, nil},
		{"api", fastSet, []string{"api"}},
		{"api|web|api", fastSet, []string{"api", "web"}},
		{"api|", fastSet, []string{"api", ""}},
		{"", fastSet, []string{""}},
		{"api.*", fastNone, nil},
		{"a.b", fastNone, nil},
		{`a\|b`, fastNone, nil},
		{"(api|web)", fastNone, nil},
		{"(?i)api", fastNone, nil},
	}
	for _, tt := range tests {
		m := MustNewMatcher(MatchRegexp, "n", tt.value)
		if m.fast != tt.want {
			t.Errorf("%s: fast kind %d, want %d", m, m.fast, tt.want)
		}
		if got := m.SetMatches(); !slices.Equal(got, tt.set) {
			t.Errorf("%s: SetMatches() = %q, want %q", m, got, tt.set)
		}
	}
}

func TestSetMatches(t *testing.T) {
	tests := []struct {
		m    *Matcher
		want []string
	}{
		{MustNewMatcher(MatchEqual, "a", "x"), []string{"x"}},
		{MustNewMatcher(MatchEqual, "a", ""), []string{""}},
		{MustNewMatcher(MatchRegexp, "a", "x|y"), []string{"x", "y"}},
		{MustNewMatcher(MatchNotEqual, "a", "x"), nil},
		{MustNewMatcher(MatchNotRegexp, "a", "x|y"), nil},
		{MustNewMatcher(MatchRegexp, "a", "x.*"), nil},
		{MustNewMatcher(MatchRegexp, "a", ".+"), nil},
	}
	for _, tt := range tests {
		if got := tt.m.SetMatches(); !slices.Equal(got, tt.want) {
			t.Errorf("%s.SetMatches() = %q, want %q", tt.m, got, tt.want)
		}
	}
}

func TestNewMatcherRejects(t *testing.T) {
	tests := []struct {
		name    string
		typ     MatchType
		label   string
		value   string
		wantErr string
	}{
		{"bad regexp", MatchRegexp, "a", "(", "missing closing )"},
		{"bad negative regexp", MatchNotRegexp, "a", "[z-a]", "invalid character class range"},
		{"empty label name", MatchEqual, "", "x", `invalid label name ""`},
		{"label name with a dash", MatchEqual, "a-b", "x", `invalid label name "a-b"`},
		{"unknown match type", MatchType(9), "a", "x", "unknown match type 9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMatcher(tt.typ, tt.label, tt.value)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestMustNewMatcherPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustNewMatcher with a bad regexp did not panic")
		}
	}()
	MustNewMatcher(MatchRegexp, "a", "(")
}

func TestMatcherString(t *testing.T) {
	tests := []struct {
		m    *Matcher
		want string
	}{
		{MustNewMatcher(MatchEqual, "app", "api"), `app="api"`},
		{MustNewMatcher(MatchNotEqual, "app", ""), `app!=""`},
		{MustNewMatcher(MatchRegexp, "app", `api|web\.x`), `app=~"api|web\\.x"`},
		{MustNewMatcher(MatchNotRegexp, "app", "say \"hi\""), `app!~"say \"hi\""`},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("String() = %s, want %s", got, tt.want)
		}
	}
	if got := MatchType(7).String(); got != "MatchType(7)" {
		t.Errorf("MatchType(7).String() = %s", got)
	}
}

func TestLabelsMatches(t *testing.T) {
	ls := FromMap(map[string]string{"app": "api", "env": "prod"})
	tests := []struct {
		name string
		ms   []*Matcher
		want bool
	}{
		{"no matchers select everything", nil, true},
		{"all matchers hold", []*Matcher{MustNewMatcher(MatchEqual, "app", "api"), MustNewMatcher(MatchRegexp, "env", "prod|dev")}, true},
		{"one matcher fails", []*Matcher{MustNewMatcher(MatchEqual, "app", "api"), MustNewMatcher(MatchEqual, "env", "dev")}, false},
		{"absent label equals empty", []*Matcher{MustNewMatcher(MatchEqual, "team", "")}, true},
		{"absent label fails not-empty", []*Matcher{MustNewMatcher(MatchNotEqual, "team", "")}, false},
		{"absent label fails dot plus", []*Matcher{MustNewMatcher(MatchRegexp, "team", ".+")}, false},
		{"absent label passes negative regexp", []*Matcher{MustNewMatcher(MatchNotRegexp, "team", "a|b")}, true},
		{"present label fails empty equality", []*Matcher{MustNewMatcher(MatchEqual, "app", "")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ls.Matches(tt.ms...); got != tt.want {
				t.Fatalf("%s.Matches(%v) = %v, want %v", ls, tt.ms, got, tt.want)
			}
		})
	}
}

func BenchmarkMatcher(b *testing.B) {
	for _, bc := range []struct{ name, value string }{
		{"set", "api|web|db|cache"},
		{"dotstar", ".*"},
		{"engine", "api-[0-9]+"},
	} {
		m := MustNewMatcher(MatchRegexp, "app", bc.value)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Matches("cache")
			}
		})
	}
}
