package index

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/labels"
)

func fixture(t *testing.T) *Segment {
	return mustSegment(t,
		stream(t, `{app="api", env="prod", instance="a"}`, 100, 199, 300, 399),
		stream(t, `{app="api", env="dev", instance="b"}`, 150, 250),
		stream(t, `{app="web", env="prod", instance="c", team="x"}`, 0, 50),
		stream(t, `{app="web", env="dev"}`, 500, 600),
		stream(t, `{app="db", team="y"}`, 100, 1000),
	)
}

// describe renders series as `{labels} from-through ...`, one string each.
func describe(series []Series) []string {
	var out []string
	for _, s := range series {
		var b strings.Builder
		b.WriteString(s.Labels.String())
		for _, c := range s.Chunks {
			fmt.Fprintf(&b, " %d-%d", c.From, c.Through)
		}
		out = append(out, b.String())
	}
	return out
}

func m(t labels.MatchType, name, value string) *labels.Matcher {
	return labels.MustNewMatcher(t, name, value)
}

const (
	eq  = labels.MatchEqual
	neq = labels.MatchNotEqual
	re  = labels.MatchRegexp
	nre = labels.MatchNotRegexp
)

const (
	apiProd = `{app="api", env="prod", instance="a"} 100-199 300-399`
	apiDev  = `{app="api", env="dev", instance="b"} 150-250`
	webProd = `{app="web", env="prod", instance="c", team="x"} 0-50`
	webDev  = `{app="web", env="dev"} 500-600`
	db      = `{app="db", team="y"} 100-1000`
)

func TestSegmentSeries(t *testing.T) {
	seg := fixture(t)
	const always, never = math.MinInt64, math.MaxInt64
	tests := []struct {
		name          string
		from, through int64
		ms            []*labels.Matcher
		want          []string
	}{
		{"no matchers select every stream", always, never, nil, []string{apiDev, apiProd, db, webDev, webProd}},
		{"equal", always, never, []*labels.Matcher{m(eq, "app", "api")}, []string{apiDev, apiProd}},
		{"equals intersect", always, never, []*labels.Matcher{m(eq, "app", "api"), m(eq, "env", "prod")}, []string{apiProd}},
		{"equal to a value nobody has", always, never, []*labels.Matcher{m(eq, "app", "nope")}, nil},
		{"equal on a name nobody has", always, never, []*labels.Matcher{m(eq, "cluster", "x")}, nil},
		{"equal empty selects streams without the label", always, never, []*labels.Matcher{m(eq, "instance", "")}, []string{db, webDev}},
		{"equal empty on a name nobody has selects all", always, never, []*labels.Matcher{m(eq, "cluster", ""), m(eq, "env", "dev")}, []string{apiDev, webDev}},
		{"not equal includes streams without the label", always, never, []*labels.Matcher{m(neq, "env", "prod")}, []string{apiDev, db, webDev}},
		{"not equal empty requires the label", always, never, []*labels.Matcher{m(neq, "team", "")}, []string{db, webProd}},
		{"regexp alternation", always, never, []*labels.Matcher{m(re, "app", "api|db")}, []string{apiDev, apiProd, db}},
		{"regexp alternation with an empty branch", always, never, []*labels.Matcher{m(re, "team", "x|")}, []string{apiDev, apiProd, webDev, webProd}},
		{"regexp class", always, never, []*labels.Matcher{m(re, "instance", "[ab]")}, []string{apiDev, apiProd}},
		{"regexp dot plus requires the label", always, never, []*labels.Matcher{m(re, "instance", ".+")}, []string{apiDev, apiProd, webProd}},
		{"regexp dot star selects all", always, never, []*labels.Matcher{m(re, "app", ".*")}, []string{apiDev, apiProd, db, webDev, webProd}},
		{"negative regexp", always, never, []*labels.Matcher{m(nre, "app", "api|web")}, []string{db}},
		{"negative regexp includes streams without the label", always, never, []*labels.Matcher{m(nre, "team", "x")}, []string{apiDev, apiProd, db, webDev}},
		{"regexp and equal", always, never, []*labels.Matcher{m(re, "app", "api|web"), m(eq, "env", "dev")}, []string{apiDev, webDev}},
		{"contradictory equals", always, never, []*labels.Matcher{m(eq, "app", "api"), m(eq, "app", "web")}, nil},

		{"time range keeps overlapping chunks only", 350, 550, nil, []string{
			`{app="api", env="prod", instance="a"} 300-399`, db, webDev}},
		{"a stream with chunks on both sides of the range but none within is omitted", 200, 299, nil, []string{apiDev, db}},
		{"range bounds are inclusive", 199, 199, []*labels.Matcher{m(eq, "app", "api")}, []string{
			apiDev, `{app="api", env="prod", instance="a"} 100-199`}},
		{"range touching a chunk's start", 0, 0, nil, []string{webProd}},
		{"range before every chunk", -100, -1, nil, nil},
		{"range after every chunk", 1001, 2000, nil, nil},
		{"empty range", 300, 200, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describe(seg.Series(tt.from, tt.through, tt.ms...))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Series(%d, %d, %v) =\n  %s\nwant\n  %s", tt.from, tt.through, tt.ms, strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestSegmentSeriesResultsDoNotAlias(t *testing.T) {
	seg := fixture(t)
	got := seg.Series(math.MinInt64, math.MaxInt64)
	got[0].Chunks = append(got[0].Chunks, ChunkRef{From: -5}) // must not overwrite got[1]
	if got[1].Chunks[0].From == -5 {
		t.Fatal("appending to one result's chunks overwrote another's")
	}
	if again := describe(seg.Series(math.MinInt64, math.MaxInt64)); !slices.Equal(again, []string{apiDev, apiProd, db, webDev, webProd}) {
		t.Fatalf("the segment changed: %v", again)
	}
}

func TestSegmentLabelNamesAndValues(t *testing.T) {
	seg := fixture(t)
	const always, never = math.MinInt64, math.MaxInt64
	names := []struct {
		name          string
		from, through int64
		ms            []*labels.Matcher
		want          []string
	}{
		{"every name", always, never, nil, []string{"app", "env", "instance", "team"}},
		{"names of matching streams", always, never, []*labels.Matcher{m(eq, "app", "db")}, []string{"app", "team"}},
		{"names of streams in the range", 500, 600, nil, []string{"app", "env", "team"}},
		{"no stream", always, never, []*labels.Matcher{m(eq, "app", "nope")}, nil},
		{"empty range", 1, 0, nil, nil},
	}
	for _, tt := range names {
		t.Run("names/"+tt.name, func(t *testing.T) {
			if got := seg.LabelNames(tt.from, tt.through, tt.ms...); !slices.Equal(got, tt.want) {
				t.Fatalf("LabelNames = %q, want %q", got, tt.want)
			}
		})
	}
	values := []struct {
		name          string
		label         string
		from, through int64
		ms            []*labels.Matcher
		want          []string
	}{
		{"every value", "app", always, never, nil, []string{"api", "db", "web"}},
		{"values among matching streams", "env", always, never, []*labels.Matcher{m(neq, "team", "")}, []string{"prod"}},
		{"values in the range", "instance", 0, 50, nil, []string{"c"}},
		{"values of a name nobody has", "cluster", always, never, nil, nil},
		{"no matching stream has the name", "instance", always, never, []*labels.Matcher{m(eq, "app", "db")}, nil},
	}
	for _, tt := range values {
		t.Run("values/"+tt.name, func(t *testing.T) {
			if got := seg.LabelValues(tt.label, tt.from, tt.through, tt.ms...); !slices.Equal(got, tt.want) {
				t.Fatalf("LabelValues(%q) = %q, want %q", tt.label, got, tt.want)
			}
		})
	}
}

func TestSegmentStats(t *testing.T) {
	seg := fixture(t)
	tests := []struct {
		name          string
		from, through int64
		ms            []*labels.Matcher
		want          Stats
	}{
		{"all", math.MinInt64, math.MaxInt64, nil, Stats{Streams: 5, Chunks: 6, Entries: 100 + 100 + 101 + 51 + 101 + 901, Bytes: 600}},
		{"a selector", math.MinInt64, math.MaxInt64, []*labels.Matcher{m(eq, "app", "api")}, Stats{Streams: 2, Chunks: 3, Entries: 301, Bytes: 300}},
		{"a range counts overlapping chunks whole", 200, 299, nil, Stats{Streams: 2, Chunks: 2, Entries: 101 + 901, Bytes: 200}},
		{"nothing", 2000, 3000, nil, Stats{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := seg.Stats(tt.from, tt.through, tt.ms...)
			if got != tt.want {
				t.Fatalf("Stats = %+v, want %+v", got, tt.want)
			}
			if viaSeries := StatsOf(seg.Series(tt.from, tt.through, tt.ms...)); viaSeries != got {
				t.Fatalf("Stats = %+v, but the stats of Series are %+v", got, viaSeries)
			}
		})
	}
}

// The postings path and the scan must agree: random selectors and ranges
// against a brute-force evaluation of the same series.
func TestSegmentQueriesAgreeWithBruteForce(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	input := genSeries(600, 3, rnd)
	seg := mustSegment(t, input...)
	all := normalize(input)
	lo, hi := all[0].Chunks[0].From, all[0].Chunks[0].Through
	for _, s := range all {
		for _, c := range s.Chunks {
			lo, hi = min(lo, c.From), max(hi, c.Through)
		}
	}
	for i := range 300 {
		ms := randomMatchers(rnd)
		from := lo + rnd.Int64N(hi-lo)
		through := from + rnd.Int64N(hi-from+1)
		if i%10 == 0 {
			from, through = math.MinInt64, math.MaxInt64
		}

		var want []Series
		names := map[string]bool{}
		values := map[string]bool{}
		for _, s := range all {
			if !s.Labels.Matches(ms...) {
				continue
			}
			var chunks []ChunkRef
			for _, c := range s.Chunks {
				if c.From <= through && c.Through >= from {
					chunks = append(chunks, c)
				}
			}
			if len(chunks) > 0 {
				want = append(want, Series{Labels: s.Labels, Chunks: chunks})
				for _, l := range s.Labels {
					names[l.Name] = true
				}
				if v := s.Labels.Get("env"); v != "" {
					values[v] = true
				}
			}
		}
		if got := seg.Series(from, through, ms...); !equalSeries(got, want) {
			t.Fatalf("Series(%d, %d, %v): %d series, brute force %d: %s", from, through, ms, len(got), len(want), firstDiff(got, want))
		}
		if got, want := seg.LabelNames(from, through, ms...), sortedKeys(names); !slices.Equal(got, want) {
			t.Fatalf("LabelNames(%v) = %q, brute force %q", ms, got, want)
		}
		if got, want := seg.LabelValues("env", from, through, ms...), sortedKeys(values); !slices.Equal(got, want) {
			t.Fatalf("LabelValues(env, %v) = %q, brute force %q", ms, got, want)
		}
		if got, want := seg.Stats(from, through, ms...), StatsOf(want); got != want {
			t.Fatalf("Stats(%v) = %+v, brute force %+v", ms, got, want)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// randomMatchers draws one to three matchers over genSeries' label shapes.
func randomMatchers(rnd *rand.Rand) []*labels.Matcher {
	names := []string{"app", "env", "instance", "team", "namespace", "cluster"}
	values := []string{"", "app-1", "app-2", "app-50", "prod", "dev", "kube-system", "10.0.0.1:8080", "nope"}
	regexps := []string{".*", ".+", "app-1|app-2|app-3", "prod|dev", "prod|", "app-[1-3]", "10\\.0\\.0\\..*", "kube-.*"}
	var ms []*labels.Matcher
	for range 1 + rnd.IntN(3) {
		typ := labels.MatchType(rnd.IntN(4))
		name := names[rnd.IntN(len(names))]
		value := values[rnd.IntN(len(values))]
		if typ == re || typ == nre {
			value = regexps[rnd.IntN(len(regexps))]
		}
		ms = append(ms, labels.MustNewMatcher(typ, name, value))
	}
	return ms
}

func TestIntersect(t *testing.T) {
	tests := []struct {
		lists [][]uint32
		want  []uint32
	}{
		{[][]uint32{{1, 2, 3}}, []uint32{1, 2, 3}},
		{[][]uint32{{1, 2, 3, 5, 8}, {2, 3, 4, 8}}, []uint32{2, 3, 8}},
		{[][]uint32{{1, 2, 3}, {4, 5}}, nil},
		{[][]uint32{{1, 2, 3}, nil, {1}}, nil},
		{[][]uint32{{0, 9}, {0, 1, 9}, {0, 2, 9}}, []uint32{0, 9}},
	}
	for _, tt := range tests {
		if got := intersect(tt.lists); !slices.Equal(got, tt.want) {
			t.Errorf("intersect(%v) = %v, want %v", tt.lists, got, tt.want)
		}
	}
}
