package labels

// ParseMatchers parses a stream selector, {name op "value", ...} with op one
// of =, !=, =~, !~, into matchers. It is the selector part of LogQL; the
// ingester's recent-data API takes one, and the LogQL parser builds on the
// same rules. An empty selector {} is an error: it would match every stream.
func ParseMatchers(s string) ([]*Matcher, error) {
	p := parser{s: s}
	p.skipSpace()
	if p.pos >= len(p.s) || p.s[p.pos] != '{' {
		return nil, p.errorf("expected '{'")
	}
	p.pos++
	var ms []*Matcher
	for {
		p.skipSpace()
		m, err := p.matcher()
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
		p.skipSpace()
		if p.pos >= len(p.s) {
			return nil, p.errorf("expected ',' or '}'")
		}
		if p.s[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.s[p.pos] == '}' {
			p.pos++
			break
		}
		return nil, p.errorf("expected ',' or '}', found %q", p.s[p.pos])
	}
	p.skipSpace()
	if p.pos != len(p.s) {
		return nil, p.errorf("unexpected %q after '}'", p.s[p.pos:])
	}
	return ms, nil
}

func (p *parser) matcher() (*Matcher, error) {
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
			return nil, p.errorf("expected a label name, found %q", p.s[p.pos])
		}
		return nil, p.errorf("invalid label name %q", name)
	}
	p.skipSpace()
	var t MatchType
	switch {
	case hasPrefixAt(p.s, p.pos, "=~"):
		t, p.pos = MatchRegexp, p.pos+2
	case hasPrefixAt(p.s, p.pos, "!~"):
		t, p.pos = MatchNotRegexp, p.pos+2
	case hasPrefixAt(p.s, p.pos, "!="):
		t, p.pos = MatchNotEqual, p.pos+2
	case hasPrefixAt(p.s, p.pos, "="):
		t, p.pos = MatchEqual, p.pos+1
	default:
		return nil, p.errorf("expected one of =, !=, =~, !~ after label name %q", name)
	}
	p.skipSpace()
	value, err := p.quoted()
	if err != nil {
		return nil, err
	}
	m, err := NewMatcher(t, name, value)
	if err != nil {
		return nil, p.errorf("%v", err)
	}
	return m, nil
}

func hasPrefixAt(s string, i int, prefix string) bool {
	return len(s)-i >= len(prefix) && s[i:i+len(prefix)] == prefix
}
