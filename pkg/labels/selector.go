package labels

// ParseMatchers parses a stream selector, {name op "value", ...} with op one
// of =, !=, =~, !~, into matchers. It is the selector part of LogQL; the
// ingester's recent-data API takes one, and the LogQL parser builds on the
// same rules. An empty selector {} is an error: it would match every stream.
func ParseMatchers(s string) ([]*Matcher, error) {
	p := parser{s: s}
	var ms []*Matcher
	err := p.braced(false, func() error {
		m, err := p.matcher()
		ms = append(ms, m)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

func (p *parser) matcher() (*Matcher, error) {
	name, err := p.name()
	if err != nil {
		return nil, err
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
