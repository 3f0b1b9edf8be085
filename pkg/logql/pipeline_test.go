package logql

import (
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
)

func TestPipeline(t *testing.T) {
	stream := labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "level", Value: "info"})
	for _, tc := range []struct {
		name   string
		query  string
		line   string
		keep   bool
		out    string // the line afterwards; "" means unchanged
		labels string // the labels afterwards; "" means the stream's
	}{
		{"contains", `{app="api"} |= "error"`, "an error here", true, "", ""},
		{"contains, no", `{app="api"} |= "error"`, "all fine", false, "", ""},
		{"not contains", `{app="api"} != "health"`, "GET /health", false, "", ""},
		{"empty filter keeps all", "{app=\"api\"} |= ``", "anything", true, "", ""},
		{"regex", `{app="api"} |~ "status=5\\d\\d"`, "status=503 path=/", true, "", ""},
		{"not regex", `{app="api"} !~ "status=5\\d\\d"`, "status=503 path=/", false, "", ""},
		{"chained filters", `{app="api"} |= "GET" != "/health" |~ "\\d{3}"`, "GET /orders 200", true, "", ""},
		{"logfmt", `{app="api"} | logfmt`, `ts=1 msg="request served" status=200 dur=15ms`, true, "",
			`{app="api", dur="15ms", level="info", msg="request served", status="200", ts="1"}`},
		{"logfmt collides with a stream label", `{app="api"} | logfmt`, `level=error`, true, "",
			`{app="api", level="info", level_extracted="error"}`},
		{"json flattened", `{app="api"} | json`, `{"status":503,"req":{"path":"/x","ok":false},"tags":["a"],"user-id":"u1"}`, true, "",
			`{app="api", level="info", req_ok="false", req_path="/x", status="503", user_id="u1"}`},
		{"json error kept with __error__", `{app="api"} | json`, `not json`, true, "",
			`{__error__="JSONParserErr", app="api", level="info"}`},
		{"drop __error__", `{app="api"} | json | drop __error__`, `not json`, true, "", `{app="api", level="info"}`},
		{"numeric filter", `{app="api"} | logfmt | status >= 500`, `status=503`, true, "", `{app="api", level="info", status="503"}`},
		{"numeric filter, no", `{app="api"} | logfmt | status >= 500`, `status=200`, false, "", ""},
		{"duration filter", `{app="api"} | logfmt | dur > 10ms`, `dur=15ms`, true, "", `{app="api", dur="15ms", level="info"}`},
		{"bytes filter", `{app="api"} | logfmt | size < 1KB`, `size=999B`, true, "", `{app="api", level="info", size="999B"}`},
		{"conversion error is kept and marked", `{app="api"} | logfmt | status > 5`, `status=abc`, true, "",
			`{__error__="LabelFilterErr", app="api", level="info", status="abc"}`},
		{"numeric filter on a missing label drops the line", `{app="api"} | logfmt | status >= 500`, `msg=hi`, false, "", ""},
		{"duration filter on a missing label drops the line", `{app="api"} | logfmt | dur > 1s`, `msg=hi`, false, "", ""},
		{"bytes filter on a dropped label drops the line", `{app="api"} | logfmt | drop size | size > 1KB`, `size=2KB`, false, "", ""},
		{"numeric filter on an empty label is a conversion error", `{app="api"} | logfmt | status > 5`, `status=`, true, "",
			`{__error__="LabelFilterErr", app="api", level="info"}`},
		{"missing label in an or", `{app="api"} | logfmt | status >= 500 or msg="hi"`, `msg=hi`, true, "", `{app="api", level="info", msg="hi"}`},
		{"string filter on a stream label", `{app="api"} | level="info"`, `x`, true, "", ""},
		{"and / or", `{app="api"} | logfmt | (a="1" or b="2") and c!="3"`, `b=2 c=4`, true, "", `{app="api", b="2", c="4", level="info"}`},
		{"and / or, no", `{app="api"} | logfmt | (a="1" or b="2") and c!="3"`, `b=2 c=3`, false, "", ""},
		{"line_format", `{app="api"} | logfmt | line_format "{{.status}} {{ToUpper .method}} {{.app}}"`, `status=200 method=get`, true, "200 GET api",
			`{app="api", level="info", method="get", status="200"}`},
		{"line_format with __line__", `{app="api"} | line_format "[{{__line__}}]"`, `raw`, true, "[raw]", ""},
		{"filter after line_format sees the new line", `{app="api"} | logfmt | line_format "{{.status}}" |= "200"`, `status=200 x=y`, true, "200",
			`{app="api", level="info", status="200", x="y"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, err := ParseLogQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			p, err := NewPipeline(q)
			if err != nil {
				t.Fatal(err)
			}
			line, ls, keep := p.Process(tc.line, stream)
			if keep != tc.keep {
				t.Fatalf("keep = %v, want %v", keep, tc.keep)
			}
			if !keep {
				return
			}
			wantLine := tc.out
			if wantLine == "" {
				wantLine = tc.line
			}
			if line != wantLine {
				t.Errorf("line %q, want %q", line, wantLine)
			}
			wantLabels := tc.labels
			if wantLabels == "" {
				wantLabels = stream.String()
			}
			if ls.String() != wantLabels {
				t.Errorf("labels %s, want %s", ls, wantLabels)
			}
		})
	}
}

// TestPipelineReuse: one pipeline processes many entries; what one entry
// extracted never leaks into the next.
func TestPipelineReuse(t *testing.T) {
	q, _ := ParseLogQuery(`{app="api"} | logfmt`)
	p, _ := NewPipeline(q)
	stream := labels.New(labels.Label{Name: "app", Value: "api"})
	p.Process(`a=1 b=2`, stream)
	_, ls, _ := p.Process(`c=3`, stream)
	if ls.String() != `{app="api", c="3"}` {
		t.Fatalf("second entry's labels %s", ls)
	}
}

// BenchmarkLineFilter: a substring filter over realistic lines allocates
// nothing.
func BenchmarkLineFilter(b *testing.B) {
	q, _ := ParseLogQuery(`{app="api"} |= "status=503" != "/health"`)
	p, _ := NewPipeline(q)
	stream := labels.New(labels.Label{Name: "app", Value: "api"})
	line := `ts=2026-11-28T12:00:00Z level=info method=GET path=/api/v1/orders status=200 dur=15ms bytes=5120`
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		p.Process(line, stream)
	}
}

// BenchmarkLogfmtAndFilter: parsing and a numeric label filter, per line.
func BenchmarkLogfmtAndFilter(b *testing.B) {
	q, _ := ParseLogQuery(`{app="api"} | logfmt | status >= 500`)
	p, _ := NewPipeline(q)
	stream := labels.New(labels.Label{Name: "app", Value: "api"})
	line := `ts=2026-11-28T12:00:00Z level=info method=GET path=/api/v1/orders status=503 dur=15ms bytes=5120`
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		p.Process(line, stream)
	}
}

// FuzzParsers: the json and logfmt stages never panic on any line, and
// every label they produce has a valid name.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{`a=1 b="x y" c`, `{"a":{"b":[1,2],"c":null},"d-e":"f"}`, `k="unterminated`, `=x ==`, `{"a":1}`, "\x00=\xff"} {
		f.Add(s)
	}
	stream := labels.New(labels.Label{Name: "app", Value: "api"})
	f.Fuzz(func(t *testing.T, line string) {
		for _, q := range []string{`{app="api"} | json`, `{app="api"} | logfmt`} {
			lq, _ := ParseLogQuery(q)
			p, _ := NewPipeline(lq)
			_, ls, keep := p.Process(line, stream)
			if !keep {
				t.Fatalf("%s dropped a line: parsers never drop", q)
			}
			for _, l := range ls {
				if !labels.IsValidName(l.Name) {
					t.Fatalf("%s produced label name %q from %q", q, l.Name, line)
				}
			}
		}
	})
}

// TestRawLineFilter: the filters a store may run on stored lines are the
// line filters before the first line_format, and a source may stop early
// only when nothing after them can drop an entry.
func TestRawLineFilter(t *testing.T) {
	for _, tc := range []struct {
		query      string
		keep, drop []string // lines the raw filter keeps and drops
		keepsAll   bool
	}{
		{`{a="b"}`, nil, nil, true},
		{`{a="b"} |= "err" != "debug"`, []string{"err x"}, []string{"ok", "err debug"}, true},
		{`{a="b"} | json |~ "5[0-9]{2}"`, []string{"503"}, []string{"200"}, true},
		{`{a="b"} |= "x" | logfmt | status >= 500`, []string{"x"}, []string{"y"}, false},
		{`{a="b"} |= "x" | line_format "{{.a}}" |= "y"`, []string{"x"}, []string{"y"}, false},
		{`{a="b"} | line_format "{{.a}}" |= "y"`, nil, nil, false},
		{`{a="b"} |= "x" | line_format "{{.a}}" | drop a`, []string{"x"}, []string{"z"}, true},
	} {
		lq, err := ParseLogQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		f := lq.RawLineFilter()
		if (f == nil) != (tc.keep == nil && tc.drop == nil) {
			t.Errorf("%s: raw filter present = %v", tc.query, f != nil)
			continue
		}
		for _, l := range tc.keep {
			if !f(l) {
				t.Errorf("%s: raw filter drops %q", tc.query, l)
			}
		}
		for _, l := range tc.drop {
			if f(l) {
				t.Errorf("%s: raw filter keeps %q", tc.query, l)
			}
		}
		if got := lq.KeepsAllAfterRawFilter(); got != tc.keepsAll {
			t.Errorf("%s: KeepsAllAfterRawFilter = %v, want %v", tc.query, got, tc.keepsAll)
		}
	}
}
