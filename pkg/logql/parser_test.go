package logql

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{`{app="api"}`, `{app="api"}`},
		{`{app="api", env=~"prod|staging", pod!="x", level!~"debug"}`, `{app="api", env=~"prod|staging", pod!="x", level!~"debug"}`},
		{"{app=`api`} |= `error` != \"timeout\" |~ `5\\d\\d` !~ \"GET /health\"", `{app="api"} |= "error" != "timeout" |~ "5\\d\\d" !~ "GET /health"`},
		{"{service_name=\"x\"} |= ``", `{service_name="x"} |= ""`},
		{`{app="api"} | json | status >= 500 and duration > 250ms or size < 10KB`, `{app="api"} | json | ((status>=500 and duration>250ms) or size<10KB)`},
		{`{app="api"} | logfmt | level="error", method=~"GET|POST"`, `{app="api"} | logfmt | (level="error" and method=~"GET|POST")`},
		{`{app="api"} | logfmt | (a="1" or b="2") and c!="3"`, `{app="api"} | logfmt | ((a="1" or b="2") and c!="3")`},
		{`{app="api"} | json | status == 200`, `{app="api"} | json | status==200`},
		{`{app="api"} | line_format "{{.status}} {{.path}}"`, `{app="api"} | line_format "{{.status}} {{.path}}"`},
		{`{app="api"} | drop __error__, __error_details__`, `{app="api"} | drop __error__, __error_details__`},
		{`count_over_time({app="api"}[5m])`, `count_over_time({app="api"} [5m])`},
		{`rate({app="api"} |= "error" [1m])`, `rate({app="api"} |= "error" [1m])`},
		{`bytes_rate({app="api"}[1h30m])`, `bytes_rate({app="api"} [1h30m])`},
		{`sum by (app, pod) (rate({app="api"}[5m]))`, `sum by (app, pod) (rate({app="api"} [5m]))`},
		{`sum(bytes_over_time({app="api"}[5m])) without (pod)`, `sum without (pod) (bytes_over_time({app="api"} [5m]))`},
		{`topk(3, sum by (path) (count_over_time({app="api"} | json [10m])))`, `topk (3, sum by (path) (count_over_time({app="api"} | json [10m])))`},
		{`sum by (level, detected_level) (count_over_time({app="api"} | drop __error__ [1m]))`, `sum by (level, detected_level) (count_over_time({app="api"} | drop __error__ [1m]))`},
		{`vector(1)+vector(1)`, `(vector(1) + vector(1))`},
		{`sum(rate({a="b"}[1m])) / 2 + 1 * 3`, `((sum (rate({a="b"} [1m])) / 2) + (1 * 3))`},
		{`(1 + 2) * 3`, `((1 + 2) * 3)`},
		{`-1.5`, `-1.5`},
	} {
		e, err := Parse(tc.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := e.String(); got != tc.want {
			t.Errorf("Parse(%q) = %s\n want %s", tc.in, got, tc.want)
			continue
		}
		again, err := Parse(e.String())
		if err != nil || again.String() != e.String() {
			t.Errorf("%q: its printed form %q parses to %v, %v", tc.in, e.String(), again, err)
		}
	}
}

func TestParseValues(t *testing.T) {
	e, err := Parse(`{a="b"} | json | d > 1h30m and s <= 1.5KiB and n != 3 and k < 10kb`)
	if err != nil {
		t.Fatal(err)
	}
	var cmps []*LabelCmp
	var walk func(LabelPredicate)
	walk = func(p LabelPredicate) {
		switch p := p.(type) {
		case *BinaryPredicate:
			walk(p.Left)
			walk(p.Right)
		case *LabelCmp:
			cmps = append(cmps, p)
		}
	}
	walk(e.(*LogQuery).Pipeline[1].(*LabelFilter).Pred)
	want := []struct {
		kind ValueKind
		v    float64
	}{{DurationValue, 5400}, {BytesValue, 1536}, {NumberValue, 3}, {BytesValue, 10000}}
	if len(cmps) != len(want) {
		t.Fatalf("%d comparisons, want %d", len(cmps), len(want))
	}
	for i, w := range want {
		if cmps[i].Kind != w.kind || cmps[i].Number != w.v {
			t.Errorf("comparison %d (%s): kind %d value %v, want %d %v", i, cmps[i], cmps[i].Kind, cmps[i].Number, w.kind, w.v)
		}
	}
	r, err := Parse(`count_over_time({a="b"}[1d])`)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.(*RangeAggregation).Range; got != 24*time.Hour {
		t.Errorf("[1d] = %s", got)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // a fragment of the message, with its position
	}{
		{``, "col 1: expected a stream selector"},
		{`app="api"`, "col 1: expected a stream selector"},
		{`{}`, "col 2: expected identifier (a label name), found \"}\""},
		{`{app=~".*"}`, "at least one matcher that cannot match an empty value"},
		{"{app=\"a\xff\"}", "col 8: the query is not valid UTF-8"},
		{`{app="api"`, "col 11: expected ',' or '}' in the stream selector, found end of query"},
		{`{app=api}`, "col 6: expected string (a quoted value), found \"api\""},
		{`{app~"api"}`, "col 5: unexpected character '~'"},
		{`{app="api} |= "x"`, "col 17: unterminated string"},
		{`{app="api"} |= error`, `col 16: expected string (the text to filter on) after |=, found "error"`},
		{`{app="api"} |~ "("`, "col 16: invalid regular expression"},
		{`{app=~"("}`, "col 7: matcher: app=~\"(\": error parsing regexp"},
		{`{app="api"} | jsn`, `col 18: expected a comparison (=, !=, =~, !~, ==, >, >=, <, <=) after "jsn", found end of query`},
		{`{app="api"} | json | status >= "500"`, `compares numbers`},
		{`{app="api"} | json | status > fast`, `expected a value`},
		{`{app="api"} | json | size > 10XB`, `invalid value "10XB"`},
		{`count_over_time({app="api"})`, "col 28: expected '[' with the range"},
		{`count_over_time({app="api"}[0s])`, "invalid range"},
		{`count_over_time({app="api"}[5x])`, "invalid range"},
		{`rate(sum(x))`, "rate needs a log query with a range"},
		{`sum({app="api"})`, "sum aggregates metric expressions"},
		{`topk({app="api"})`, "expected number (k)"},
		{`topk(0, rate({a="b"}[1m]))`, "positive integer k"},
		{`sum by app (rate({a="b"}[1m]))`, `expected '(' after by`},
		{`{a="b"} + 1`, "arithmetic needs metric expressions"},
		{`{a="b"} {c="d"}`, "unexpected \"{\" after the query"},
		{"{a=\"b\"}\n  |= \"x\" | json | a ==", "line 2, col 23: expected a value"},
		{`{a="b\q"}`, "invalid string"},
		{`{a="b`, "unterminated string"},
		{strings.Repeat("(", 100) + "1" + strings.Repeat(")", 100), "nested deeper"},
	} {
		_, err := Parse(tc.in)
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want an error containing %q", tc.in, tc.want)
			continue
		}
		if !strings.HasPrefix(err.Error(), "parse error at line ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q):\n got  %s\n want ...%s...", tc.in, err, tc.want)
		}
	}
}

func TestParseLogQuery(t *testing.T) {
	if _, err := ParseLogQuery(`rate({a="b"}[1m])`); err == nil || !strings.Contains(err.Error(), "log query") {
		t.Fatalf("a metric query where a log query is needed: %v", err)
	}
	q, err := ParseLogQuery(`{a="b"} |= "x"`)
	if err != nil || len(q.Pipeline) != 1 {
		t.Fatalf("ParseLogQuery: %v %v", q, err)
	}
}

// FuzzParse: the parser never panics on any input, and a query it accepts
// prints to a form that parses to the same tree.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{app="api"}`, `{a="b"} |= "x" != "y" |~ "z+" | json | s >= 500 and d > 1s or b < 1KB | line_format "{{.a}}" | drop x`,
		`sum by (a) (rate({a="b"}[5m]))`, `topk(3, count_over_time({a="b"} | logfmt [1h]))`, `vector(1)+vector(1)`,
		"{a=`b`} |= ``", `(1+2)*3-4/5`, `{a="b"} | (x="1" or y!~"2") and z==3`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		e, err := Parse(q)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "parse error") {
				t.Fatalf("error without the parse error prefix: %v", err)
			}
			return
		}
		printed := e.String()
		again, err := Parse(printed)
		if err != nil {
			t.Fatalf("%q parsed, but its printed form %q does not: %v", q, printed, err)
		}
		if again.String() != printed {
			t.Fatalf("%q: printed %q, reprinted %q", q, printed, again.String())
		}
	})
}
