// Package logql parses LogQL, Loki's query language, for the subset lokilab
// answers: log queries (a stream selector and a pipeline of line filters,
// parsers, label filters, line_format and drop) and metric queries (range
// aggregations over a log query, vector aggregations over those, and
// arithmetic between them and numbers, which Grafana's data source test
// needs).
//
// The parser is hand-written recursive descent over a small lexer, because
// the lesson is in what a query *is*: the tree printed by String is the
// plan the querier executes, and every error says where the query went
// wrong and what was expected there, as Loki's "parse error at line 1,
// col 12: …" does.
package logql

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
)

// Expr is a parsed query: a *LogQuery or a metric expression
// (*RangeAggregation, *VectorAggregation, *BinaryExpr, *NumberLiteral,
// *VectorLiteral).
type Expr interface {
	String() string
	expr()
}

// LogQuery selects streams and transforms their lines: {app="api"} |= "error" | json.
type LogQuery struct {
	Matchers []*labels.Matcher
	Pipeline []Stage
}

// Stage is one step of a pipeline.
type Stage interface {
	String() string
	stage()
}

// LineFilterOp is a line filter's operator.
type LineFilterOp int

// Line filter operators.
const (
	LineContains    LineFilterOp = iota // |=
	LineNotContains                     // !=
	LineMatches                         // |~
	LineNotMatches                      // !~
)

var lineOps = [...]string{"|=", "!=", "|~", "!~"}

// LineFilter keeps or drops lines by a substring or a regular expression.
// It runs on the raw line, before any parsing: the cheapest stage, so
// queries should lead with it.
type LineFilter struct {
	Op    LineFilterOp
	Value string
	// Re is compiled once, at parse time, for the regex operators.
	Re *regexp.Regexp
}

// ParserKind names a parser stage.
type ParserKind string

// Parser stages.
const (
	JSONParser   ParserKind = "json"
	LogfmtParser ParserKind = "logfmt"
)

// ParserStage extracts labels from the line.
type ParserStage struct{ Kind ParserKind }

// LabelFilter keeps entries whose labels (stream labels, and those
// extracted by parsers) satisfy a predicate.
type LabelFilter struct{ Pred LabelPredicate }

// LabelPredicate is a label filter's condition: a comparison, or and/or of
// predicates.
type LabelPredicate interface {
	String() string
	pred()
}

// BinaryPredicate combines two predicates with and/or.
type BinaryPredicate struct {
	And         bool // false: or
	Left, Right LabelPredicate
}

// CmpOp is a label comparison operator.
type CmpOp string

// Comparison operators.
const (
	CmpEq  CmpOp = "="
	CmpNeq CmpOp = "!="
	CmpRe  CmpOp = "=~"
	CmpNre CmpOp = "!~"
	CmpEqq CmpOp = "=="
	CmpGt  CmpOp = ">"
	CmpGte CmpOp = ">="
	CmpLt  CmpOp = "<"
	CmpLte CmpOp = "<="
)

// ValueKind is the type a label's value is compared as.
type ValueKind int

// Value kinds.
const (
	StringValue   ValueKind = iota // "text": =, !=, =~, !~ as a matcher
	NumberValue                    // 200, 1.5
	DurationValue                  // 250ms, 1h30m: the label parsed as a duration
	BytesValue                     // 10KB, 1.5MiB: the label parsed as a byte size
)

// LabelCmp compares one label with a value.
type LabelCmp struct {
	Name string
	Op   CmpOp
	Kind ValueKind
	// Text is the value as written; Matcher is set for StringValue, Number
	// for the others (durations in seconds, bytes in bytes).
	Text    string
	Matcher *labels.Matcher
	Number  float64
}

// LineFormat rewrites the line from a text/template over the labels.
type LineFormat struct{ Template string }

// Drop removes labels (Grafana adds | drop __error__ to its queries).
type Drop struct{ Names []string }

// RangeOp is a range aggregation.
type RangeOp string

// Range aggregations.
const (
	CountOverTime RangeOp = "count_over_time"
	Rate          RangeOp = "rate"
	BytesOverTime RangeOp = "bytes_over_time"
	BytesRate     RangeOp = "bytes_rate"
)

// RangeAggregation turns each stream's entries in a sliding window into a
// number per step: count_over_time({app="api"}[5m]).
type RangeAggregation struct {
	Op    RangeOp
	Query *LogQuery
	Range time.Duration
}

// VectorOp is a vector aggregation.
type VectorOp string

// Vector aggregations.
const (
	Sum     VectorOp = "sum"
	Avg     VectorOp = "avg"
	Min     VectorOp = "min"
	Max     VectorOp = "max"
	Count   VectorOp = "count"
	TopK    VectorOp = "topk"
	BottomK VectorOp = "bottomk"
)

// Grouping is by (...) or without (...).
type Grouping struct {
	Without bool
	Labels  []string
}

// VectorAggregation aggregates series: sum by (app) (rate(...)).
type VectorAggregation struct {
	Op       VectorOp
	Param    int // k for topk and bottomk
	Grouping *Grouping
	Inner    Expr
}

// BinaryExpr is arithmetic between metric expressions or numbers.
type BinaryExpr struct {
	Op          string // + - * /
	Left, Right Expr
}

// NumberLiteral is a scalar.
type NumberLiteral struct{ Value float64 }

// VectorLiteral is vector(n): one series with no labels.
type VectorLiteral struct{ Value float64 }

func (*LogQuery) expr()          {}
func (*RangeAggregation) expr()  {}
func (*VectorAggregation) expr() {}
func (*BinaryExpr) expr()        {}
func (*NumberLiteral) expr()     {}
func (*VectorLiteral) expr()     {}

func (*LineFilter) stage()  {}
func (*ParserStage) stage() {}
func (*LabelFilter) stage() {}
func (*LineFormat) stage()  {}
func (*Drop) stage()        {}

func (*BinaryPredicate) pred() {}
func (*LabelCmp) pred()        {}

// String prints the query in canonical form; Parse(q.String()) gives an
// equal tree.
func (q *LogQuery) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range q.Matchers {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.String())
	}
	b.WriteByte('}')
	for _, s := range q.Pipeline {
		b.WriteByte(' ')
		b.WriteString(s.String())
	}
	return b.String()
}

func (f *LineFilter) String() string  { return lineOps[f.Op] + " " + strconv.Quote(f.Value) }
func (p *ParserStage) String() string { return "| " + string(p.Kind) }
func (f *LabelFilter) String() string { return "| " + f.Pred.String() }
func (f *LineFormat) String() string  { return "| line_format " + strconv.Quote(f.Template) }
func (d *Drop) String() string        { return "| drop " + strings.Join(d.Names, ", ") }

func (p *BinaryPredicate) String() string {
	op := " or "
	if p.And {
		op = " and "
	}
	return "(" + p.Left.String() + op + p.Right.String() + ")"
}

func (c *LabelCmp) String() string {
	if c.Kind == StringValue {
		return c.Name + string(c.Op) + strconv.Quote(c.Text)
	}
	return c.Name + string(c.Op) + c.Text
}

func (r *RangeAggregation) String() string {
	return fmt.Sprintf("%s(%s [%s])", r.Op, r.Query, formatDuration(r.Range))
}

func (v *VectorAggregation) String() string {
	var b strings.Builder
	b.WriteString(string(v.Op))
	if v.Grouping != nil {
		if v.Grouping.Without {
			b.WriteString(" without (")
		} else {
			b.WriteString(" by (")
		}
		b.WriteString(strings.Join(v.Grouping.Labels, ", "))
		b.WriteString(")")
	}
	b.WriteString(" (")
	if v.Op == TopK || v.Op == BottomK {
		b.WriteString(strconv.Itoa(v.Param) + ", ")
	}
	b.WriteString(v.Inner.String())
	b.WriteString(")")
	return b.String()
}

func (e *BinaryExpr) String() string {
	return "(" + e.Left.String() + " " + e.Op + " " + e.Right.String() + ")"
}

func (n *NumberLiteral) String() string { return strconv.FormatFloat(n.Value, 'f', -1, 64) }
func (v *VectorLiteral) String() string {
	return "vector(" + strconv.FormatFloat(v.Value, 'f', -1, 64) + ")"
}

// formatDuration prints d the way LogQL writes ranges: 5m, 1h30m, 250ms.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	for _, u := range []struct {
		s string
		d time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}, {"us", time.Microsecond}, {"ns", 1}} {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10) + u.s)
			d -= n * u.d
		}
	}
	return b.String()
}
