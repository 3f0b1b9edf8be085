package logql

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// Sample is one point of a series: a time (unix ms) and a value.
type Sample struct {
	T int64
	V float64
}

// Series is a metric query's result for one label set.
type Series struct {
	Labels  labels.Labels
	Samples []Sample
}

// StreamEntries are one stream's entries, as a store returns them for a log
// query's selector: time-ordered, not yet through the pipeline.
type StreamEntries struct {
	Labels  labels.Labels
	Entries []push.Entry
}

// Source fetches the streams matching q's selector with entries in
// [from, through) (ns). The querier's implementation reads ingesters and the
// store; tests pass slices.
type Source func(q *LogQuery, from, through int64) ([]StreamEntries, error)

// EvalRange evaluates a metric query at every step from start to end
// (inclusive), as /query_range does; an instant query is start == end. A
// range aggregation at time t covers entries with t-range < ts <= t, after
// the log query's pipeline; the entry's labels after the pipeline (parsed
// labels included) name its series, as in Loki.
func EvalRange(e Expr, src Source, start, end time.Time, step time.Duration) ([]Series, error) {
	if step <= 0 && !start.Equal(end) {
		return nil, fmt.Errorf("step must be positive")
	}
	var steps []int64
	for t := start; !t.After(end); t = t.Add(step) {
		steps = append(steps, t.UnixNano())
		if step <= 0 {
			break
		}
	}
	ev := &evaluator{src: src, steps: steps}
	v, err := ev.eval(e)
	if err != nil {
		return nil, err
	}
	if v.scalar != nil {
		return nil, fmt.Errorf("a metric query must return a vector, not a number: use vector(%v)", *v.scalar)
	}
	out := make([]Series, 0, len(v.series))
	for _, s := range v.series {
		if len(s.Samples) > 0 {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Series) int { return cmp.Compare(a.Labels.String(), b.Labels.String()) })
	return out, nil
}

type evaluator struct {
	src   Source
	steps []int64 // ns
}

// value is a vector expression's result (series with a sample per step
// where they have one) or a scalar.
type value struct {
	series []Series
	scalar *float64
}

func (ev *evaluator) eval(e Expr) (value, error) {
	switch e := e.(type) {
	case *NumberLiteral:
		v := e.Value
		return value{scalar: &v}, nil
	case *VectorLiteral:
		s := Series{Labels: labels.Labels{}}
		for _, t := range ev.steps {
			s.Samples = append(s.Samples, Sample{T: t / 1e6, V: e.Value})
		}
		return value{series: []Series{s}}, nil
	case *RangeAggregation:
		return ev.rangeAgg(e)
	case *VectorAggregation:
		return ev.vectorAgg(e)
	case *BinaryExpr:
		return ev.binary(e)
	case *LogQuery:
		return value{}, fmt.Errorf("a log query is not a metric query")
	}
	return value{}, fmt.Errorf("unsupported expression %T", e)
}

func (ev *evaluator) rangeAgg(r *RangeAggregation) (value, error) {
	first, last := ev.steps[0], ev.steps[len(ev.steps)-1]
	streams, err := ev.src(r.Query, first-int64(r.Range)+1, last+1)
	if err != nil {
		return value{}, err
	}
	p, err := NewPipeline(r.Query)
	if err != nil {
		return value{}, err
	}
	// Entries per output label set, in time order.
	type point struct {
		ts    int64
		bytes int
	}
	bySeries := map[string]*struct {
		ls  labels.Labels
		pts []point
	}{}
	for _, s := range streams {
		skey := s.Labels.String()
		for _, e := range s.Entries {
			line, ls, keep := p.Process(e.Line, s.Labels)
			if !keep {
				continue
			}
			// The pipeline hands the stream's own labels back when no
			// stage changed them: no need to format them per entry.
			key := skey
			if len(ls) != len(s.Labels) || (len(ls) > 0 && &ls[0] != &s.Labels[0]) {
				key = ls.String()
			}
			g := bySeries[key]
			if g == nil {
				g = &struct {
					ls  labels.Labels
					pts []point
				}{ls: ls}
				bySeries[key] = g
			}
			g.pts = append(g.pts, point{e.Timestamp, len(line)})
		}
	}
	var out []Series
	secs := r.Range.Seconds()
	for _, g := range bySeries {
		slices.SortFunc(g.pts, func(a, b point) int { return cmp.Compare(a.ts, b.ts) })
		s := Series{Labels: g.ls}
		lo, hi := 0, 0 // window (t-range, t] as indexes [lo, hi)
		bytes := 0
		for _, t := range ev.steps {
			for hi < len(g.pts) && g.pts[hi].ts <= t {
				bytes += g.pts[hi].bytes
				hi++
			}
			for lo < hi && g.pts[lo].ts <= t-int64(r.Range) {
				bytes -= g.pts[lo].bytes
				lo++
			}
			n := hi - lo
			if n == 0 {
				continue
			}
			var v float64
			switch r.Op {
			case CountOverTime:
				v = float64(n)
			case Rate:
				v = float64(n) / secs
			case BytesOverTime:
				v = float64(bytes)
			case BytesRate:
				v = float64(bytes) / secs
			}
			s.Samples = append(s.Samples, Sample{T: t / 1e6, V: v})
		}
		out = append(out, s)
	}
	return value{series: out}, nil
}

func (ev *evaluator) vectorAgg(a *VectorAggregation) (value, error) {
	in, err := ev.eval(a.Inner)
	if err != nil {
		return value{}, err
	}
	if in.scalar != nil {
		return value{}, fmt.Errorf("%s needs a vector, not a number", a.Op)
	}
	// Per step, per group: the input samples.
	type group struct {
		ls      labels.Labels
		samples map[int64][]float64
		members map[int64][]int // topk/bottomk: indexes into in.series
	}
	groups := map[string]*group{}
	var order []string
	for i, s := range in.series {
		gls := groupLabels(s.Labels, a.Grouping)
		key := gls.String()
		g := groups[key]
		if g == nil {
			g = &group{ls: gls, samples: map[int64][]float64{}, members: map[int64][]int{}}
			groups[key] = g
			order = append(order, key)
		}
		for _, smp := range s.Samples {
			g.samples[smp.T] = append(g.samples[smp.T], smp.V)
			g.members[smp.T] = append(g.members[smp.T], i)
		}
	}
	if a.Op == TopK || a.Op == BottomK {
		// topk keeps the input series (their own labels), k per group and step.
		kept := make([]Series, len(in.series))
		for i, s := range in.series {
			kept[i].Labels = s.Labels
		}
		for _, key := range order {
			g := groups[key]
			for _, t := range ev.steps {
				ms := slices.Clone(g.members[t/1e6])
				if len(ms) == 0 {
					continue
				}
				val := func(i int) float64 { return sampleAt(in.series[i], t/1e6) }
				slices.SortStableFunc(ms, func(x, y int) int {
					c := cmp.Compare(val(y), val(x))
					if a.Op == BottomK {
						c = -c
					}
					if c == 0 {
						c = cmp.Compare(in.series[x].Labels.String(), in.series[y].Labels.String())
					}
					return c
				})
				for _, i := range ms[:min(a.Param, len(ms))] {
					kept[i].Samples = append(kept[i].Samples, Sample{T: t / 1e6, V: val(i)})
				}
			}
		}
		return value{series: kept}, nil
	}
	var out []Series
	for _, key := range order {
		g := groups[key]
		s := Series{Labels: g.ls}
		for _, t := range ev.steps {
			vs := g.samples[t/1e6]
			if len(vs) == 0 {
				continue
			}
			var v float64
			switch a.Op {
			case Sum, Avg:
				for _, x := range vs {
					v += x
				}
				if a.Op == Avg {
					v /= float64(len(vs))
				}
			case Min:
				v = slices.Min(vs)
			case Max:
				v = slices.Max(vs)
			case Count:
				v = float64(len(vs))
			}
			s.Samples = append(s.Samples, Sample{T: t / 1e6, V: v})
		}
		out = append(out, s)
	}
	return value{series: out}, nil
}

func sampleAt(s Series, t int64) float64 {
	i, ok := slices.BinarySearchFunc(s.Samples, t, func(x Sample, t int64) int { return cmp.Compare(x.T, t) })
	if !ok {
		return math.NaN()
	}
	return s.Samples[i].V
}

// groupLabels is the label set a series contributes to under g: by keeps
// the listed labels, without drops them, no grouping keeps none.
func groupLabels(ls labels.Labels, g *Grouping) labels.Labels {
	out := labels.Labels{}
	if g == nil {
		return out
	}
	for _, l := range ls {
		if slices.Contains(g.Labels, l.Name) != g.Without {
			out = append(out, l)
		}
	}
	return out
}

func (ev *evaluator) binary(b *BinaryExpr) (value, error) {
	l, err := ev.eval(b.Left)
	if err != nil {
		return value{}, err
	}
	r, err := ev.eval(b.Right)
	if err != nil {
		return value{}, err
	}
	apply := func(x, y float64) float64 {
		switch b.Op {
		case "+":
			return x + y
		case "-":
			return x - y
		case "*":
			return x * y
		default:
			return x / y
		}
	}
	switch {
	case l.scalar != nil && r.scalar != nil:
		v := apply(*l.scalar, *r.scalar)
		return value{scalar: &v}, nil
	case l.scalar != nil || r.scalar != nil:
		vec, sc, scalarLeft := r.series, l.scalar, true
		if r.scalar != nil {
			vec, sc, scalarLeft = l.series, r.scalar, false
		}
		out := make([]Series, len(vec))
		for i, s := range vec {
			out[i].Labels = s.Labels
			for _, smp := range s.Samples {
				v := apply(smp.V, *sc)
				if scalarLeft {
					v = apply(*sc, smp.V)
				}
				out[i].Samples = append(out[i].Samples, Sample{T: smp.T, V: v})
			}
		}
		return value{series: out}, nil
	}
	// Vector with vector: one-to-one on identical label sets.
	right := make(map[string]Series, len(r.series))
	for _, s := range r.series {
		right[s.Labels.String()] = s
	}
	var out []Series
	for _, s := range l.series {
		rs, ok := right[s.Labels.String()]
		if !ok {
			continue
		}
		o := Series{Labels: s.Labels}
		for _, smp := range s.Samples {
			if v := sampleAt(rs, smp.T); !math.IsNaN(v) {
				o.Samples = append(o.Samples, Sample{T: smp.T, V: apply(smp.V, v)})
			}
		}
		out = append(out, o)
	}
	return value{series: out}, nil
}

// String prints a series for test failures and debugging.
func (s Series) String() string {
	var b strings.Builder
	b.WriteString(s.Labels.String())
	for _, p := range s.Samples {
		fmt.Fprintf(&b, " %d=%g", p.T, p.V)
	}
	return b.String()
}
