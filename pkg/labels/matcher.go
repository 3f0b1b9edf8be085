package labels

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// MatchType is the operator of a label matcher in a stream selector.
type MatchType uint8

// The four operators of PromQL and LogQL stream selectors.
const (
	MatchEqual     MatchType = iota // =
	MatchNotEqual                   // !=
	MatchRegexp                     // =~
	MatchNotRegexp                  // !~
)

// String returns the operator as written in a selector: "=", "!=", "=~" or
// "!~".
func (t MatchType) String() string {
	switch t {
	case MatchEqual:
		return "="
	case MatchNotEqual:
		return "!="
	case MatchRegexp:
		return "=~"
	case MatchNotRegexp:
		return "!~"
	}
	return fmt.Sprintf("MatchType(%d)", uint8(t))
}

// Matcher is one name<op>"value" term of a stream selector, such as
// app=~"api|web". Build one with NewMatcher; the zero value is not usable
// for regexp types.
//
// A label a stream does not have matches as the empty string, as in
// Prometheus and Loki: {a=""} selects streams without a, {a!=""} streams
// that have it, and {a=~".*"} selects everything.
type Matcher struct {
	Type  MatchType
	Name  string
	Value string

	re     *regexp.Regexp // nil when fast decides alone
	fast   fastKind
	set    []string            // the values of a fastSet (or of =, !=), in the order written
	setMap map[string]struct{} // set as a map, only when it is larger than setScanMax
}

// fastKind names a regexp shape that is answered without running the
// regexp engine. These shapes are most of what users type into Grafana
// ({app=~"api|web"}, {app=~".+"}), and the engine costs tens of ns per
// value even for a short literal (BenchmarkMatcher: ~30 ns against ~6 ns for
// a four-value set), which adds up when an index filters every series.
type fastKind uint8

const (
	fastNone     fastKind = iota // run re
	fastAny                      // ".*": every value, including ""
	fastNonEmpty                 // ".+": every value but ""
	fastSet                      // "a|b|c": one of a fixed set of literals
)

// setScanMax is the set size up to which a linear scan of short strings
// beats hashing the value into a map.
const setScanMax = 16

// NewMatcher returns a matcher, compiling the value once when t is a regexp
// type. Regexps are fully anchored, as in Prometheus: app=~"api" matches
// "api" but not "api-2"; the value is compiled as ^(?s:value)$, so "."
// matches a newline too.
//
// The regexp shapes ".*", ".+" and alternations of literals ("a|b|c", or a
// single literal) are recognised and answered without the regexp engine
// (see SetMatches). Anything else runs through Go's RE2 engine, whose
// running time is linear in the value's length whatever the pattern.
func NewMatcher(t MatchType, name, value string) (*Matcher, error) {
	if t > MatchNotRegexp {
		return nil, fmt.Errorf("matcher: unknown match type %d", uint8(t))
	}
	if !IsValidName(name) {
		return nil, fmt.Errorf("matcher: invalid label name %q", name)
	}
	m := &Matcher{Type: t, Name: name, Value: value}
	switch t {
	case MatchEqual, MatchNotEqual:
		m.set = []string{value}
		return m, nil
	}
	re, err := regexp.Compile("^(?s:" + value + ")$")
	if err != nil {
		return nil, fmt.Errorf("matcher: %s%s%q: %w", name, t, value, err)
	}
	switch {
	case value == ".*":
		m.fast = fastAny
	case value == ".+":
		m.fast = fastNonEmpty
	default:
		if set, ok := literalAlternation(value); ok {
			m.fast, m.set = fastSet, set
			if len(set) > setScanMax {
				m.setMap = make(map[string]struct{}, len(set))
				for _, v := range set {
					m.setMap[v] = struct{}{}
				}
			}
		} else {
			m.re = re
		}
	}
	return m, nil
}

// MustNewMatcher is NewMatcher for tests and constants: it panics on error.
func MustNewMatcher(t MatchType, name, value string) *Matcher {
	m, err := NewMatcher(t, name, value)
	if err != nil {
		panic(err)
	}
	return m
}

// literalAlternation returns the alternatives of a regexp that is a plain
// alternation of literals, "a|b|c" (one alternative, "a", included), and
// whether it is one. An alternative containing any regexp metacharacter —
// an escape included, so "a\|b" is not split — disqualifies the whole value,
// which keeps the rule obviously correct rather than clever.
func literalAlternation(v string) ([]string, bool) {
	alts := strings.Split(v, "|")
	seen := make(map[string]struct{}, len(alts))
	set := alts[:0]
	for _, a := range alts {
		if regexp.QuoteMeta(a) != a {
			return nil, false
		}
		if _, dup := seen[a]; !dup {
			seen[a] = struct{}{}
			set = append(set, a)
		}
	}
	return set, true
}

func containsString(set []string, v string) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}

// Matches reports whether the value v of the matcher's label satisfies it;
// pass "" for a label the stream does not have.
func (m *Matcher) Matches(v string) bool {
	switch m.Type {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.matchRegexp(v)
	case MatchNotRegexp:
		return !m.matchRegexp(v)
	}
	return false
}

func (m *Matcher) matchRegexp(v string) bool {
	switch m.fast {
	case fastAny:
		return true
	case fastNonEmpty:
		return v != ""
	case fastSet:
		if m.setMap != nil {
			_, ok := m.setMap[v]
			return ok
		}
		return containsString(m.set, v)
	}
	if m.re == nil { // a zero Matcher with a regexp type
		return false
	}
	return m.re.MatchString(v)
}

// SetMatches returns the only values the matcher accepts when it accepts a
// fixed, finite set — for = and for an =~ alternation of literals — and nil
// otherwise. An index uses it to read postings lists instead of scanning
// every series. The slice is shared: do not modify it. The set may contain
// "", which also matches streams without the label.
func (m *Matcher) SetMatches() []string {
	switch {
	case m.Type == MatchEqual, m.Type == MatchRegexp && m.fast == fastSet:
		return m.set
	}
	return nil
}

// String returns the matcher as written in a selector, with the value
// quoted by strconv.Quote: app=~"api|web".
func (m *Matcher) String() string {
	return m.Name + m.Type.String() + strconv.Quote(m.Value)
}

// Matches reports whether the label set satisfies every matcher; with no
// matchers it is true. A label the set does not have is matched as "".
func (ls Labels) Matches(ms ...*Matcher) bool {
	for _, m := range ms {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}
