package logql

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/valyala/fastjson"

	"github.com/lokilab/lokilab/pkg/labels"
)

// Error label values, as Loki sets them: an entry whose line a parser could
// not read, or whose label a filter could not convert, is kept with
// __error__ set, so a query can find (or drop) them.
const (
	ErrorLabel          = "__error__"
	ErrJSONParser       = "JSONParserErr"
	ErrLogfmtParser     = "LogfmtParserErr"
	ErrLabelFilter      = "LabelFilterErr"
	ErrTemplateFormat   = "TemplateFormatErr"
	extractedSuffix     = "_extracted"
	maxJSONNestingDepth = 32
)

// Pipeline runs a log query's stages over the entries of streams. It is
// built once per query (templates parsed, regexes already compiled by the
// parser) and is not safe for concurrent use: each worker builds its own
// with NewPipeline, so the scratch space below is reused without locks.
type Pipeline struct {
	stages []Stage
	tmpls  map[*LineFormat]*template.Template

	// Scratch, reused across entries.
	b      builder
	json   fastjson.Parser
	tmplIn map[string]string
	out    bytes.Buffer
	line   string
}

// NewPipeline prepares q's stages for evaluation.
func NewPipeline(q *LogQuery) (*Pipeline, error) {
	p := &Pipeline{stages: q.Pipeline, tmpls: make(map[*LineFormat]*template.Template)}
	for _, s := range q.Pipeline {
		if lf, ok := s.(*LineFormat); ok {
			t, err := template.New("line_format").Option("missingkey=zero").Funcs(template.FuncMap{
				"__line__":  func() string { return p.line },
				"ToUpper":   strings.ToUpper,
				"ToLower":   strings.ToLower,
				"TrimSpace": strings.TrimSpace,
			}).Parse(lf.Template)
			if err != nil {
				return nil, fmt.Errorf("line_format: %w", err)
			}
			p.tmpls[lf] = t
		}
	}
	return p, nil
}

// Process runs the stages over one line of a stream with the given labels.
// It reports whether the entry is kept, and returns its line (rewritten by
// line_format, if any) and labels (the stream's plus what parsers
// extracted, less what drop removed; ls itself when no stage changed them).
//
// Line filters run on the raw line and allocate nothing, so a query that
// leads with them discards most lines before any parsing.
func (p *Pipeline) Process(line string, ls labels.Labels) (string, labels.Labels, bool) {
	p.b.reset(ls)
	for _, s := range p.stages {
		switch s := s.(type) {
		case *LineFilter:
			if !s.keep(line) {
				return "", nil, false
			}
		case *ParserStage:
			if s.Kind == JSONParser {
				p.parseJSON(line)
			} else {
				parseLogfmt(line, &p.b)
			}
		case *LabelFilter:
			keep, convErr := evalPredicate(s.Pred, &p.b)
			if convErr {
				p.b.set(ErrorLabel, ErrLabelFilter)
			}
			if !keep && !convErr {
				return "", nil, false
			}
		case *LineFormat:
			line = p.format(s, line)
		case *Drop:
			for _, n := range s.Names {
				p.b.del(n)
			}
		}
	}
	return line, p.b.labels(), true
}

func (f *LineFilter) keep(line string) bool {
	switch f.Op {
	case LineContains:
		return strings.Contains(line, f.Value)
	case LineNotContains:
		return !strings.Contains(line, f.Value)
	case LineMatches:
		return f.Re.MatchString(line)
	default:
		return !f.Re.MatchString(line)
	}
}

// evalPredicate reports whether the labels satisfy pred, and whether a
// value could not be converted for a numeric comparison.
func evalPredicate(pred LabelPredicate, b *builder) (keep, convErr bool) {
	switch pr := pred.(type) {
	case *BinaryPredicate:
		l, le := evalPredicate(pr.Left, b)
		if pr.And && !l && !le {
			return false, false
		}
		if !pr.And && l {
			return true, le
		}
		r, re := evalPredicate(pr.Right, b)
		if pr.And {
			return l && r, le || re
		}
		return r, le || re
	case *LabelCmp:
		v, has := b.lookup(pr.Name)
		if pr.Kind == StringValue {
			return pr.Matcher.Matches(v), false
		}
		if !has {
			// A number cannot be compared with a label the line does
			// not have: the line is dropped, as in Loki. Only a value
			// that is there and does not convert is an error.
			return false, false
		}
		var x float64
		var err error
		switch pr.Kind {
		case NumberValue:
			x, err = strconv.ParseFloat(v, 64)
		case DurationValue:
			var d time.Duration
			d, err = time.ParseDuration(v)
			x = d.Seconds()
		case BytesValue:
			var ok bool
			if x, ok = parseBytes(v); !ok {
				x, err = strconv.ParseFloat(v, 64)
			}
		}
		if err != nil {
			return false, true
		}
		switch pr.Op {
		case CmpEq, CmpEqq:
			return x == pr.Number, false
		case CmpNeq:
			return x != pr.Number, false
		case CmpGt:
			return x > pr.Number, false
		case CmpGte:
			return x >= pr.Number, false
		case CmpLt:
			return x < pr.Number, false
		case CmpLte:
			return x <= pr.Number, false
		}
	}
	return false, false
}

func (p *Pipeline) format(lf *LineFormat, line string) string {
	if p.tmplIn == nil {
		p.tmplIn = make(map[string]string)
	}
	clear(p.tmplIn)
	for _, l := range p.b.all() {
		p.tmplIn[l.Name] = l.Value
	}
	p.line = line
	p.out.Reset()
	if err := p.tmpls[lf].Execute(&p.out, p.tmplIn); err != nil {
		p.b.set(ErrorLabel, ErrTemplateFormat)
		return line
	}
	return p.out.String()
}

// parseJSON adds the line's JSON fields as labels: nested objects are
// flattened with "_" (a.b → a_b), names sanitised to label syntax, values
// as text (strings unquoted, numbers and booleans as written); arrays are
// skipped. A line that is not a JSON object sets __error__.
func (p *Pipeline) parseJSON(line string) {
	v, err := p.json.Parse(line)
	if err != nil {
		p.b.set(ErrorLabel, ErrJSONParser)
		return
	}
	o, err := v.Object()
	if err != nil {
		p.b.set(ErrorLabel, ErrJSONParser)
		return
	}
	addJSONObject(&p.b, o, "", 0)
}

func addJSONObject(b *builder, o *fastjson.Object, prefix string, depth int) {
	if depth > maxJSONNestingDepth {
		return
	}
	o.Visit(func(k []byte, v *fastjson.Value) {
		name := prefix + sanitizeLabelName(string(k))
		switch v.Type() {
		case fastjson.TypeObject:
			sub, _ := v.Object()
			addJSONObject(b, sub, name+"_", depth+1)
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			b.extract(name, string(s))
		case fastjson.TypeNumber, fastjson.TypeTrue, fastjson.TypeFalse:
			b.extract(name, string(v.MarshalTo(nil)))
		case fastjson.TypeNull:
			b.extract(name, "")
		}
	})
}

// parseLogfmt adds key=value pairs as labels. Values may be "quoted" with
// Go escapes; a bare key has the empty value. Malformed input (an
// unterminated quote) sets __error__ after keeping what was read.
func parseLogfmt(line string, b *builder) {
	i := 0
	for i < len(line) {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		start := i
		for i < len(line) && line[i] != '=' && line[i] != ' ' {
			i++
		}
		key := line[start:i]
		if key == "" {
			i++
			continue
		}
		val := ""
		if i < len(line) && line[i] == '=' {
			i++
			if i < len(line) && line[i] == '"' {
				end := i + 1
				for end < len(line) && line[end] != '"' {
					if line[end] == '\\' {
						end++
					}
					end++
				}
				if end >= len(line) {
					b.set(ErrorLabel, ErrLogfmtParser)
					return
				}
				s, err := strconv.Unquote(line[i : end+1])
				if err != nil {
					s = line[i+1 : end]
				}
				val, i = s, end+1
			} else {
				vs := i
				for i < len(line) && line[i] != ' ' {
					i++
				}
				val = line[vs:i]
			}
		}
		b.extract(sanitizeLabelName(key), val)
	}
}

// sanitizeLabelName turns a field name into a label name: invalid
// characters become "_", and a leading digit gets a "_" prefix.
func sanitizeLabelName(s string) string {
	if labels.IsValidName(s) {
		return s
	}
	out := []byte(s)
	for i, c := range out {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			out[i] = '_'
		}
	}
	if len(out) > 0 && out[0] >= '0' && out[0] <= '9' {
		out = append([]byte{'_'}, out...)
	}
	if len(out) == 0 {
		return "_"
	}
	return string(out)
}

// builder holds an entry's labels while stages add, change and drop them,
// without rebuilding the stream's label set for every entry.
type builder struct {
	base    labels.Labels
	add     []labels.Label // extracted or set labels, later ones win
	dropped []string
	changed bool
}

func (b *builder) reset(base labels.Labels) {
	b.base, b.add, b.dropped, b.changed = base, b.add[:0], b.dropped[:0], false
}

// lookup returns a label's value as the stages so far left it, and
// whether the entry has the label at all.
func (b *builder) lookup(name string) (string, bool) {
	for i := len(b.add) - 1; i >= 0; i-- {
		if b.add[i].Name == name {
			return b.add[i].Value, true
		}
	}
	if slices.Contains(b.dropped, name) {
		return "", false
	}
	for _, l := range b.base {
		if l.Name == name {
			return l.Value, true
		}
	}
	return "", false
}

// extract adds a parsed field; one that collides with a stream label gets
// the _extracted suffix, as in Loki, so a line cannot rewrite its stream's
// identity.
func (b *builder) extract(name, value string) {
	if b.base.Get(name) != "" {
		name += extractedSuffix
	}
	b.set(name, value)
}

func (b *builder) set(name, value string) {
	b.changed = true
	b.dropped = slices.DeleteFunc(b.dropped, func(d string) bool { return d == name })
	b.add = append(b.add, labels.Label{Name: name, Value: value})
}

func (b *builder) del(name string) {
	b.changed = true
	b.add = slices.DeleteFunc(b.add, func(l labels.Label) bool { return l.Name == name })
	b.dropped = append(b.dropped, name)
}

// all returns the current labels, sorted, empty values dropped.
func (b *builder) all() labels.Labels {
	out := make(labels.Labels, 0, len(b.base)+len(b.add))
	for _, l := range b.base {
		if !slices.Contains(b.dropped, l.Name) && !b.overridden(l.Name) {
			out = append(out, l)
		}
	}
	for i, l := range b.add {
		if l.Value == "" || b.lastIndex(l.Name) != i {
			continue
		}
		out = append(out, l)
	}
	return labels.New(out...)
}

func (b *builder) overridden(name string) bool { return b.lastIndex(name) >= 0 }

func (b *builder) lastIndex(name string) int {
	for i := len(b.add) - 1; i >= 0; i-- {
		if b.add[i].Name == name {
			return i
		}
	}
	return -1
}

func (b *builder) labels() labels.Labels {
	if !b.changed {
		return b.base
	}
	return b.all()
}

// RawLineFilter returns a function reporting whether a raw line passes
// every line filter of q's pipeline that sees the line as stored (each one
// before the first line_format; parsers and label filters do not change
// the line), or nil when there is none. A store runs it on each decoded
// line before copying it, so the lines a filter drops cost no allocation;
// the pipeline applies the same filters again, which is cheap and keeps it
// correct on its own.
func (q *LogQuery) RawLineFilter() func(line string) bool {
	var fs []*LineFilter
	for _, s := range q.Pipeline {
		if _, ok := s.(*LineFormat); ok {
			break
		}
		if f, ok := s.(*LineFilter); ok {
			fs = append(fs, f)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	// Substring filters search with a prepared needle (substring.go); the
	// regex ones as the pipeline does.
	subs := make([]substring, len(fs))
	for i, f := range fs {
		if f.Op == LineContains || f.Op == LineNotContains {
			subs[i] = newSubstring(f.Value)
		}
	}
	return func(line string) bool {
		for i, f := range fs {
			switch f.Op {
			case LineContains:
				if !subs[i].in(line) {
					return false
				}
			case LineNotContains:
				if subs[i].in(line) {
					return false
				}
			default:
				if !f.keep(line) {
					return false
				}
			}
		}
		return true
	}
}

// BlockFilter returns a function reporting whether a block of stored
// entries (any bytes holding whole raw lines back to back, with other bytes
// between them) may hold a line that passes RawLineFilter, or nil when it
// cannot tell. A line that passes holds every `|=` substring of the raw
// filters, and so does any block holding that line: a block missing one of
// them is skipped whole (chunk.FilteredIterator), which for a rare
// substring replaces a search per line with one scan per block. Other
// filters (`!=`, regexes) say nothing about a block and are left to
// RawLineFilter.
func (q *LogQuery) BlockFilter() func(block []byte) bool {
	var needles []substring
	for _, s := range q.Pipeline {
		if _, ok := s.(*LineFormat); ok {
			break
		}
		if f, ok := s.(*LineFilter); ok && f.Op == LineContains && f.Value != "" {
			needles = append(needles, newSubstring(f.Value))
		}
	}
	if len(needles) == 0 {
		return nil
	}
	return func(block []byte) bool {
		for i := range needles {
			if !needles[i].inBytes(block) {
				return false
			}
		}
		return true
	}
}

// KeepsAllAfterRawFilter reports whether an entry that passes
// RawLineFilter always passes the whole pipeline: no label filter, and no
// line filter after a line_format. Then a source may stop at the first n
// lines the raw filter keeps, for a query that returns n.
func (q *LogQuery) KeepsAllAfterRawFilter() bool {
	formatted := false
	for _, s := range q.Pipeline {
		switch s.(type) {
		case *LabelFilter:
			return false
		case *LineFormat:
			formatted = true
		case *LineFilter:
			if formatted {
				return false
			}
		}
	}
	return true
}
