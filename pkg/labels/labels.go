// Package labels holds label sets: the identity of a log stream.
//
// A stream is named by its label set, written the way Loki and Prometheus
// write it: {app="api", env="prod"}. Clients send that string in protobuf
// pushes and a JSON object in JSON pushes; either way the distributor parses
// it into Labels, validates it, and forwards the canonical string (labels
// sorted by name, values quoted with Go escapes), so that one stream has one
// spelling from Kafka onwards and equal streams hash equal.
//
// Parse keeps duplicate names (sorted next to each other) instead of
// rejecting them, because "duplicate label name" is a validation outcome with
// its own discard reason, reported by the distributor, not a syntax error.
package labels

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Label is one name="value" pair.
type Label struct {
	Name  string
	Value string
}

// Labels is a label set sorted by name (then value). Build one with Parse,
// New or FromMap; they sort.
type Labels []Label

// New returns the labels sorted; it takes ownership of ls.
func New(ls ...Label) Labels {
	slices.SortStableFunc(ls, compare)
	return ls
}

// FromMap returns the labels of m, sorted.
func FromMap(m map[string]string) Labels {
	ls := make(Labels, 0, len(m))
	for n, v := range m {
		ls = append(ls, Label{n, v})
	}
	return New(ls...)
}

func compare(a, b Label) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// Get returns the value of name, or "" when absent.
func (ls Labels) Get(name string) string {
	for _, l := range ls {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Map returns the labels as a map (the last value wins for duplicates).
func (ls Labels) Map() map[string]string {
	m := make(map[string]string, len(ls))
	for _, l := range ls {
		m[l.Name] = l.Value
	}
	return m
}

// String returns the canonical form: {a="1", b="2"} with names in order and
// values quoted by strconv.Quote. It is the form stored in Kafka records,
// chunks and the index, and Parse(ls.String()) == ls.
func (ls Labels) String() string {
	var b strings.Builder
	b.Grow(ls.size())
	b.WriteByte('{')
	for i, l := range ls {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(l.Name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(l.Value))
	}
	b.WriteByte('}')
	return b.String()
}

func (ls Labels) size() int {
	n := 2
	for _, l := range ls {
		n += len(l.Name) + len(l.Value) + 5
	}
	return n
}

// Hash is a 64-bit FNV-1a hash over the names and values, separated by a
// byte that cannot occur in a name (0xff is invalid UTF-8), so {a="bc"} and
// {ab="c"} differ. It is the stream fingerprint within a tenant.
//
// FNV is written out rather than taken from hash/fnv so that hashing a
// string needs no []byte conversion (and no allocation).
func (ls Labels) Hash() uint64 {
	h := uint64(fnvOffset64)
	for _, l := range ls {
		h = fnvString(h, l.Name)
		h = (h ^ 0xff) * fnvPrime64
		h = fnvString(h, l.Value)
		h = (h ^ 0xff) * fnvPrime64
	}
	return h
}

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime64
	}
	return h
}

// IsValidName reports whether s is a legal label name:
// [a-zA-Z_][a-zA-Z0-9_]*, as in Prometheus and Loki.
func IsValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9') {
			continue
		}
		return false
	}
	return true
}

// Parse reads a label set in selector form: {name="value", ...}. Values are
// Go string literals, double-quoted or backtick raw strings; only the =
// operator is allowed. Whitespace between tokens is ignored. The result is
// sorted; duplicate names are kept. A label with an empty value is dropped,
// as in Prometheus and Loki: an empty value means the label is absent, so
// {a="", b="x"} and {b="x"} are the same stream.
func Parse(s string) (Labels, error) {
	p := parser{s: s}
	ls, err := p.parse()
	if err != nil {
		return nil, err
	}
	kept := ls[:0]
	for _, l := range ls {
		if l.Value != "" {
			kept = append(kept, l)
		}
	}
	return New(kept...), nil
}

type parser struct {
	s   string
	pos int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("at position %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) skipSpace() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t' || p.s[p.pos] == '\n' || p.s[p.pos] == '\r') {
		p.pos++
	}
}

func (p *parser) parse() ([]Label, error) {
	var ls []Label
	err := p.braced(true, func() error {
		l, err := p.label()
		ls = append(ls, l)
		return err
	})
	return ls, err
}

// braced parses "{item, item, ...}" and nothing after it, calling item at
// the start of each item. allowEmpty accepts "{}".
func (p *parser) braced(allowEmpty bool, item func() error) error {
	p.skipSpace()
	if p.pos >= len(p.s) || p.s[p.pos] != '{' {
		return p.errorf("expected '{'")
	}
	p.pos++
	for n := 0; ; n++ {
		p.skipSpace()
		if allowEmpty && n == 0 && p.pos < len(p.s) && p.s[p.pos] == '}' {
			p.pos++
			break
		}
		if err := item(); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.s) {
			return p.errorf("expected ',' or '}'")
		}
		if p.s[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.s[p.pos] == '}' {
			p.pos++
			break
		}
		return p.errorf("expected ',' or '}', found %q", p.s[p.pos])
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return p.errorf("unexpected %q after '}'", p.s[p.pos:])
	}
	return nil
}

// name reads a label name at p.pos.
func (p *parser) name() (string, error) {
	start := p.pos
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			p.pos++
			continue
		}
		break
	}
	name := p.s[start:p.pos]
	if !IsValidName(name) {
		if name == "" && p.pos < len(p.s) {
			return "", p.errorf("expected a label name, found %q", p.s[p.pos])
		}
		return "", p.errorf("invalid label name %q", name)
	}
	return name, nil
}

func (p *parser) label() (Label, error) {
	name, err := p.name()
	if err != nil {
		return Label{}, err
	}
	p.skipSpace()
	if p.pos >= len(p.s) || p.s[p.pos] != '=' {
		return Label{}, p.errorf("expected '=' after label name %q", name)
	}
	p.pos++
	if p.pos < len(p.s) && (p.s[p.pos] == '~' || p.s[p.pos] == '=') {
		return Label{}, p.errorf("only '=' is allowed in a stream's labels")
	}
	p.skipSpace()
	value, err := p.quoted()
	if err != nil {
		return Label{}, err
	}
	if !utf8.ValidString(value) {
		return Label{}, p.errorf("label %q has an invalid UTF-8 value", name)
	}
	return Label{Name: name, Value: value}, nil
}

// quoted reads a Go string literal at p.pos.
func (p *parser) quoted() (string, error) {
	if p.pos >= len(p.s) {
		return "", p.errorf("expected a quoted value")
	}
	q := p.s[p.pos]
	if q != '"' && q != '`' {
		return "", p.errorf("expected a quoted value, found %q", q)
	}
	end := p.pos + 1
	for ; end < len(p.s); end++ {
		c := p.s[end]
		if c == q {
			break
		}
		if c == '\\' && q == '"' {
			end++ // skip the escaped byte
		}
		if c == '\n' && q == '"' {
			return "", p.errorf("newline in quoted value")
		}
	}
	if end >= len(p.s) {
		return "", p.errorf("unterminated quoted value")
	}
	lit := p.s[p.pos : end+1]
	p.pos = end + 1
	if q == '`' {
		return lit[1 : len(lit)-1], nil
	}
	// Fast path: no escapes, the value is a substring.
	if !strings.ContainsRune(lit[1:len(lit)-1], '\\') {
		return lit[1 : len(lit)-1], nil
	}
	v, err := strconv.Unquote(lit)
	if err != nil {
		return "", p.errorf("invalid quoted value %s: %v", lit, err)
	}
	return v, nil
}
