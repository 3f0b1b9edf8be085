package logql

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/common/model"

	"github.com/lokilab/lokilab/pkg/labels"
)

// ParseError is a query that is not valid LogQL: where, and what was
// expected there. Its message starts with "parse error", which the querier
// answers with 400, as Loki does.
type ParseError struct {
	Query string
	Pos   int // byte offset
	Msg   string
	Err   error // a sentinel callers may test for with errors.Is, or nil
}

// ErrEmptyCompatibleSelector is Loki's rule that a stream selector must
// not match every stream: at least one matcher must fail on the empty
// value. A query breaking it would read a tenant's whole index.
var ErrEmptyCompatibleSelector = errors.New(`queries require at least one matcher that cannot match an empty value, e.g. {app="api"} rather than {app=~".*"}`)

func (e *ParseError) Unwrap() error { return e.Err }

func (e *ParseError) Error() string {
	line, col := 1, 1
	for _, r := range e.Query[:min(e.Pos, len(e.Query))] {
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("parse error at line %d, col %d: %s", line, col, e.Msg)
}

// MaxQueryLength bounds what Parse reads; longer queries are refused before
// lexing.
const MaxQueryLength = 64 << 10

// maxDepth bounds nesting (parentheses, aggregations), so a hostile query
// cannot exhaust the stack.
const maxDepth = 64

// Parse parses a LogQL query.
func Parse(q string) (Expr, error) {
	if len(q) > MaxQueryLength {
		return nil, &ParseError{Query: q[:64], Pos: 0, Msg: fmt.Sprintf("query of %d bytes is longer than the %d allowed", len(q), MaxQueryLength)}
	}
	// Labels and lines are UTF-8 (the distributor refuses anything else),
	// so a selector or filter that is not can only be a mistake.
	for i, r := range q {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(q[i:]); size == 1 {
				return nil, &ParseError{Query: q, Pos: i, Msg: "the query is not valid UTF-8"}
			}
		}
	}
	toks, err := lex(q)
	if err != nil {
		return nil, err
	}
	p := &parser{q: q, toks: toks}
	e, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errorf(t, "unexpected %s after the query", t.describe())
	}
	return e, nil
}

// ParseLogQuery parses a query that must be a log query (the /tail
// endpoint, the recent-data API).
func ParseLogQuery(q string) (*LogQuery, error) {
	e, err := Parse(q)
	if err != nil {
		return nil, err
	}
	lq, ok := e.(*LogQuery)
	if !ok {
		return nil, &ParseError{Query: q, Msg: "a log query (a stream selector with an optional pipeline) is required here, not a metric query"}
	}
	return lq, nil
}

type parser struct {
	q     string
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(t token, format string, args ...any) error {
	return &ParseError{Query: p.q, Pos: t.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) expect(k tokKind, what string) (token, error) {
	t := p.next()
	if t.kind != k {
		return t, p.errorf(t, "expected %s %s, found %s", k, what, t.describe())
	}
	return t, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errorf(p.peek(), "query nested deeper than %d levels", maxDepth)
	}
	return nil
}

// Operator precedence for binary arithmetic.
var precedence = map[tokKind]int{tAdd: 1, tSub: 1, tMul: 2, tDiv: 2}

// expr parses a binary expression whose operators bind tighter than
// minPrec (precedence climbing).
func (p *parser) expr(minPrec int) (Expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		prec, ok := precedence[t.kind]
		if !ok || prec <= minPrec {
			return left, nil
		}
		p.next()
		right, err := p.expr(prec)
		if err != nil {
			return nil, err
		}
		if _, isLog := left.(*LogQuery); isLog {
			return nil, p.errorf(t, "arithmetic needs metric expressions; wrap the log query in a range aggregation such as count_over_time(...[5m])")
		}
		if _, isLog := right.(*LogQuery); isLog {
			return nil, p.errorf(t, "arithmetic needs metric expressions; wrap the log query in a range aggregation such as count_over_time(...[5m])")
		}
		left = &BinaryExpr{Op: t.text, Left: left, Right: right}
	}
}

func (p *parser) unary() (Expr, error) {
	t := p.peek()
	switch t.kind {
	case tLBrace:
		return p.logQuery()
	case tLParen:
		p.next()
		e, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "to close '('"); err != nil {
			return nil, err
		}
		return e, nil
	case tNumber:
		v, err := p.number("")
		if err != nil {
			return nil, err
		}
		return &NumberLiteral{Value: v}, nil
	case tSub:
		p.next()
		v, err := p.number("after '-'")
		if err != nil {
			return nil, err
		}
		return &NumberLiteral{Value: -v}, nil
	case tIdent:
		switch name := t.text; {
		case name == "vector":
			p.next()
			if _, err := p.expect(tLParen, "after vector"); err != nil {
				return nil, err
			}
			v, err := p.number("in vector(...)")
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(tRParen, "to close vector("); err != nil {
				return nil, err
			}
			return &VectorLiteral{Value: v}, nil
		case isRangeOp(name):
			return p.rangeAggregation()
		case isVectorOp(name):
			return p.vectorAggregation()
		}
	}
	return nil, p.errorf(t, "expected a stream selector '{...}', a range aggregation (count_over_time, rate, bytes_over_time, bytes_rate), a vector aggregation (sum, avg, min, max, count, topk, bottomk) or a number, found %s", t.describe())
}

// number reads a plain number token.
func (p *parser) number(where string) (float64, error) {
	n, err := p.expect(tNumber, where)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(n.text, 64)
	if err != nil {
		return 0, p.errorf(n, "invalid number %q", n.text)
	}
	return v, nil
}

func isRangeOp(s string) bool {
	switch RangeOp(s) {
	case CountOverTime, Rate, BytesOverTime, BytesRate:
		return true
	}
	return false
}

func isVectorOp(s string) bool {
	switch VectorOp(s) {
	case Sum, Avg, Min, Max, Count, TopK, BottomK:
		return true
	}
	return false
}

func (p *parser) rangeAggregation() (Expr, error) {
	op := p.next()
	if _, err := p.expect(tLParen, "after "+op.text); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tLBrace {
		return nil, p.errorf(t, "%s needs a log query with a range, e.g. %s({app=\"api\"}[5m]); found %s", op.text, op.text, t.describe())
	}
	q, err := p.logQuery()
	if err != nil {
		return nil, err
	}
	if _, err := p.expect(tLBracket, "with the range, e.g. [5m],"); err != nil {
		return nil, err
	}
	d, err := p.expect(tNumber, "(a duration such as 5m)")
	if err != nil {
		return nil, err
	}
	rng, err := model.ParseDuration(d.text)
	if err != nil || rng <= 0 {
		return nil, p.errorf(d, "invalid range %q: want a positive duration such as 30s, 5m or 1h", d.text)
	}
	if _, err := p.expect(tRBracket, "to close the range"); err != nil {
		return nil, err
	}
	if _, err := p.expect(tRParen, "to close "+op.text+"("); err != nil {
		return nil, err
	}
	return &RangeAggregation{Op: RangeOp(op.text), Query: q, Range: time.Duration(rng)}, nil
}

func (p *parser) vectorAggregation() (Expr, error) {
	op := p.next()
	v := &VectorAggregation{Op: VectorOp(op.text)}
	var err error
	if t := p.peek(); t.kind == tIdent && (t.text == "by" || t.text == "without") {
		if v.Grouping, err = p.grouping(); err != nil {
			return nil, err
		}
	}
	if _, err := p.expect(tLParen, "after "+op.text); err != nil {
		return nil, err
	}
	if v.Op == TopK || v.Op == BottomK {
		n, err := p.expect(tNumber, "(k) as "+op.text+"'s first argument")
		if err != nil {
			return nil, err
		}
		k, err := strconv.Atoi(n.text)
		if err != nil || k < 1 {
			return nil, p.errorf(n, "%s needs a positive integer k, found %q", op.text, n.text)
		}
		v.Param = k
		if _, err := p.expect(tComma, "after k"); err != nil {
			return nil, err
		}
	}
	if v.Inner, err = p.expr(0); err != nil {
		return nil, err
	}
	if _, isLog := v.Inner.(*LogQuery); isLog {
		return nil, p.errorf(op, "%s aggregates metric expressions; wrap the log query in a range aggregation such as count_over_time(...[5m])", op.text)
	}
	if _, err := p.expect(tRParen, "to close "+op.text+"("); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == tIdent && (t.text == "by" || t.text == "without") {
		if v.Grouping != nil {
			return nil, p.errorf(t, "%s already has a grouping", op.text)
		}
		if v.Grouping, err = p.grouping(); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (p *parser) grouping() (*Grouping, error) {
	kw := p.next()
	g := &Grouping{Without: kw.text == "without"}
	if _, err := p.expect(tLParen, "after "+kw.text); err != nil {
		return nil, err
	}
	for p.peek().kind != tRParen {
		n, err := p.expect(tIdent, "(a label name)")
		if err != nil {
			return nil, err
		}
		g.Labels = append(g.Labels, n.text)
		if p.peek().kind == tComma {
			p.next()
			continue
		}
		if p.peek().kind != tRParen {
			t := p.peek()
			return nil, p.errorf(t, "expected ',' or ')' in %s (...), found %s", kw.text, t.describe())
		}
	}
	p.next()
	return g, nil
}

func (p *parser) logQuery() (*LogQuery, error) {
	ms, err := p.selector()
	if err != nil {
		return nil, err
	}
	q := &LogQuery{Matchers: ms}
	for {
		t := p.peek()
		switch t.kind {
		case tPipeExact, tNeq, tPipeMatch, tNre:
			p.next()
			f, err := p.lineFilter(t)
			if err != nil {
				return nil, err
			}
			q.Pipeline = append(q.Pipeline, f)
		case tPipe:
			p.next()
			s, err := p.pipeStage()
			if err != nil {
				return nil, err
			}
			q.Pipeline = append(q.Pipeline, s)
		default:
			return q, nil
		}
	}
}

func (p *parser) selector() ([]*labels.Matcher, error) {
	if _, err := p.expect(tLBrace, "to start a stream selector"); err != nil {
		return nil, err
	}
	var ms []*labels.Matcher
	for {
		name, err := p.expect(tIdent, "(a label name)")
		if err != nil {
			return nil, err
		}
		opTok := p.next()
		var mt labels.MatchType
		switch opTok.kind {
		case tEq:
			mt = labels.MatchEqual
		case tNeq:
			mt = labels.MatchNotEqual
		case tRe:
			mt = labels.MatchRegexp
		case tNre:
			mt = labels.MatchNotRegexp
		default:
			return nil, p.errorf(opTok, "expected one of =, !=, =~, !~ after %q, found %s", name.text, opTok.describe())
		}
		val, err := p.expect(tString, "(a quoted value)")
		if err != nil {
			return nil, err
		}
		m, err := labels.NewMatcher(mt, name.text, val.text)
		if err != nil {
			return nil, p.errorf(val, "%v", err)
		}
		ms = append(ms, m)
		t := p.next()
		if t.kind == tRBrace {
			break
		}
		if t.kind != tComma {
			return nil, p.errorf(t, "expected ',' or '}' in the stream selector, found %s", t.describe())
		}
	}
	if !selectsSomething(ms) {
		return nil, &ParseError{Query: p.q, Pos: p.toks[0].pos, Msg: ErrEmptyCompatibleSelector.Error(), Err: ErrEmptyCompatibleSelector}
	}
	return ms, nil
}

// selectsSomething is Loki's rule that a selector must not match every
// stream: at least one matcher must fail on the empty value.
func selectsSomething(ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches("") {
			return true
		}
	}
	return false
}

func (p *parser) lineFilter(op token) (*LineFilter, error) {
	v, err := p.expect(tString, "(the text to filter on) after "+op.text)
	if err != nil {
		return nil, err
	}
	f := &LineFilter{Value: v.text}
	switch op.kind {
	case tPipeExact:
		f.Op = LineContains
	case tNeq:
		f.Op = LineNotContains
	case tPipeMatch:
		f.Op = LineMatches
	case tNre:
		f.Op = LineNotMatches
	}
	if f.Op == LineMatches || f.Op == LineNotMatches {
		if f.Re, err = regexp.Compile(v.text); err != nil {
			return nil, p.errorf(v, "invalid regular expression %q: %v", v.text, err)
		}
	}
	return f, nil
}

func (p *parser) pipeStage() (Stage, error) {
	t := p.peek()
	if t.kind != tIdent && t.kind != tLParen {
		return nil, p.errorf(t, "expected a stage after '|' (json, logfmt, line_format, drop or a label filter), found %s", t.describe())
	}
	switch t.text {
	case "json":
		p.next()
		return &ParserStage{Kind: JSONParser}, nil
	case "logfmt":
		p.next()
		return &ParserStage{Kind: LogfmtParser}, nil
	case "line_format":
		p.next()
		s, err := p.expect(tString, "(a template) after line_format")
		if err != nil {
			return nil, err
		}
		return &LineFormat{Template: s.text}, nil
	case "drop":
		p.next()
		d := &Drop{}
		for {
			n, err := p.expect(tIdent, "(a label name) after drop")
			if err != nil {
				return nil, err
			}
			d.Names = append(d.Names, n.text)
			if p.peek().kind != tComma {
				return d, nil
			}
			p.next()
		}
	}
	pred, err := p.labelOr()
	if err != nil {
		return nil, err
	}
	return &LabelFilter{Pred: pred}, nil
}

func (p *parser) labelOr() (LabelPredicate, error) {
	left, err := p.labelAnd()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tIdent && t.text == "or"; t = p.peek() {
		p.next()
		right, err := p.labelAnd()
		if err != nil {
			return nil, err
		}
		left = &BinaryPredicate{Left: left, Right: right}
	}
	return left, nil
}

func (p *parser) labelAnd() (LabelPredicate, error) {
	left, err := p.labelPrimary()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if !(t.kind == tIdent && t.text == "and" || t.kind == tComma) {
			return left, nil
		}
		p.next()
		right, err := p.labelPrimary()
		if err != nil {
			return nil, err
		}
		left = &BinaryPredicate{And: true, Left: left, Right: right}
	}
}

func (p *parser) labelPrimary() (LabelPredicate, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	if p.peek().kind == tLParen {
		p.next()
		pred, err := p.labelOr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect(tRParen, "to close '('"); err != nil {
			return nil, err
		}
		return pred, nil
	}
	name, err := p.expect(tIdent, "(a label name) in a label filter")
	if err != nil {
		return nil, err
	}
	opTok := p.next()
	c := &LabelCmp{Name: name.text}
	switch opTok.kind {
	case tEq, tNeq, tRe, tNre, tEqEq, tGt, tGte, tLt, tLte:
		c.Op = CmpOp(opTok.text)
	default:
		return nil, p.errorf(opTok, "expected a comparison (=, !=, =~, !~, ==, >, >=, <, <=) after %q, found %s", name.text, opTok.describe())
	}
	v := p.next()
	switch v.kind {
	case tString:
		if c.Op != CmpEq && c.Op != CmpNeq && c.Op != CmpRe && c.Op != CmpNre {
			return nil, p.errorf(v, "%s compares numbers, durations or byte sizes; found the string %s", c.Op, v.describe())
		}
		c.Kind, c.Text = StringValue, v.text
		mt := map[CmpOp]labels.MatchType{CmpEq: labels.MatchEqual, CmpNeq: labels.MatchNotEqual, CmpRe: labels.MatchRegexp, CmpNre: labels.MatchNotRegexp}[c.Op]
		if c.Matcher, err = labels.NewMatcher(mt, name.text, v.text); err != nil {
			return nil, p.errorf(v, "%v", err)
		}
	case tNumber:
		if c.Op == CmpRe || c.Op == CmpNre {
			return nil, p.errorf(v, "%s needs a quoted regular expression, found %s", c.Op, v.describe())
		}
		c.Text = v.text
		if c.Kind, c.Number, err = parseValue(v.text); err != nil {
			return nil, p.errorf(v, "%v", err)
		}
	default:
		return nil, p.errorf(v, "expected a value (a quoted string, a number, a duration such as 250ms or a size such as 10KB) after %s, found %s", c.Op, v.describe())
	}
	return c, nil
}

// parseValue reads an unquoted label filter value: a number, a duration
// (in seconds) or a byte size (in bytes).
func parseValue(s string) (ValueKind, float64, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return NumberValue, f, nil
	}
	if d, err := time.ParseDuration(strings.ReplaceAll(s, "µ", "u")); err == nil {
		return DurationValue, d.Seconds(), nil
	}
	if d, err := model.ParseDuration(s); err == nil {
		return DurationValue, time.Duration(d).Seconds(), nil
	}
	if b, ok := parseBytes(s); ok {
		return BytesValue, b, nil
	}
	return 0, 0, fmt.Errorf("invalid value %q: want a number, a duration (250ms, 1h30m) or a byte size (10KB, 1.5MiB)", s)
}

// parseBytes reads sizes as Loki's bytes filters do: SI units are powers of
// 1000 (KB), IEC units powers of 1024 (KiB), case-insensitive.
func parseBytes(s string) (float64, bool) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	n, err := strconv.ParseFloat(s[:i], 64)
	if err != nil || i == len(s) {
		return 0, false
	}
	mult := map[string]float64{
		"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}[strings.ToLower(s[i:])]
	if mult == 0 || math.IsInf(n*mult, 0) {
		return 0, false
	}
	return n * mult, true
}
