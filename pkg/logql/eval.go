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

// Source hands emit the streams matching q's selector with their entries
// in [from, through) (ns). It may hand one stream over in several parts —
// the querier reads a long range in time slices and hands each slice's
// streams over on their own — in any order, as long as no entry is handed
// over twice: removing duplicates (replays, an entry both in an ingester
// and in a chunk it just flushed) is the source's job. emit keeps nothing
// of what it is handed, so a source may reuse or drop it once emit
// returns. The querier's implementation reads ingesters and the store;
// tests pass slices.
type Source func(q *LogQuery, from, through int64, emit func(StreamEntries) error) error

// EvalRange evaluates a metric query at every step from start to end
// (inclusive), as /query_range does; an instant query is start == end. A
// range aggregation at time t covers entries with t-range < ts <= t, after
// the log query's pipeline; the entry's labels after the pipeline (parsed
// labels included) name its series, as in Loki.
//
// Memory: a range aggregation keeps two numbers per step for each series
// it finds (rangeAgg says how), never the entries, so what a query holds
// besides its result is what src holds at once — one time slice of lines
// in the querier.
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
		return ev.rangeAgg(e, nil)
	case *VectorAggregation:
		return ev.vectorAgg(e)
	case *BinaryExpr:
		return ev.binary(e)
	case *LogQuery:
		return value{}, fmt.Errorf("a log query is not a metric query")
	}
	return value{}, fmt.Errorf("unsupported expression %T", e)
}

// rangeAgg evaluates a range aggregation as src hands entries over, in any
// order, without keeping them. With group set, each entry counts under
// groupLabels(its labels, group) instead of its own: vectorAgg asks for
// that when a sum over the groups follows, which is then already done.
//
// The steps are t_i = t_0 + i*step, and an entry at ts counts at every
// step whose window (t_i-range, t_i] holds it: the steps t_i with
// ts <= t_i < ts+range, a run of consecutive indexes [i0, i1]. A series
// therefore needs, per step, only the change in its count and byte sum
// where a run begins and ends (a difference array): an entry adds 1 and
// its bytes at i0 and takes them away at i1+1, in constant time, and a
// running sum over the steps at the end gives each step's window.
// count_over_time, rate, bytes_over_time and bytes_rate are all sums over
// the window, which is what makes this possible; an aggregation over the
// values in a window (quantile_over_time, say) would need them all.
//
// Memory per series is the smaller of its runs and its steps, 16 bytes
// each (seriesAcc): a busy series over a day at 15 s steps is 92 KiB
// however many lines it has, and a series of one line — a query that
// parses an ID into a label makes one per line — is 16 bytes, not a
// day's worth of steps.
func (ev *evaluator) rangeAgg(r *RangeAggregation, group *Grouping) (value, error) {
	p, err := NewPipeline(r.Query)
	if err != nil {
		return value{}, err
	}
	first, last := ev.steps[0], ev.steps[len(ev.steps)-1]
	n := int64(len(ev.steps))
	step := int64(1) // an instant query's single step; any positive value will do
	if n > 1 {
		step = ev.steps[1] - ev.steps[0]
	}
	rng := int64(r.Range)
	bySeries := map[string]*seriesAcc{}
	var order []*seriesAcc
	get := func(ls labels.Labels) *seriesAcc {
		if group != nil {
			ls = groupLabels(ls, group)
		}
		key := ls.String()
		g := bySeries[key]
		if g == nil {
			g = &seriesAcc{ls: ls}
			bySeries[key] = g
			order = append(order, g)
		}
		return g
	}
	emit := func(s StreamEntries) error {
		var own *seriesAcc // the stream's own series, once looked up
		for _, e := range s.Entries {
			// The steps whose window holds ts: t_i >= ts and t_i < ts+range.
			i0 := max(ceilDiv(e.Timestamp-first, step), 0)
			i1 := min(floorDiv(e.Timestamp+rng-1-first, step), n-1)
			if i0 > i1 {
				continue // between windows: step > range
			}
			line, ls, keep := p.Process(e.Line, s.Labels)
			if !keep {
				continue
			}
			var g *seriesAcc
			// The pipeline hands the stream's own labels back when no
			// stage changed them: no need to format them per entry.
			if len(ls) == len(s.Labels) && (len(ls) == 0 || &ls[0] == &s.Labels[0]) {
				if own == nil {
					own = get(ls)
				}
				g = own
			} else {
				g = get(ls)
			}
			g.add(stepRun{int32(i0), int32(i1), int64(len(line))}, int(n))
		}
		return nil
	}
	if err := ev.src(r.Query, first-rng+1, last+1, emit); err != nil {
		return value{}, err
	}
	out := make([]Series, 0, len(order))
	secs := r.Range.Seconds()
	sparseCount, sparseBytes := make([]int64, n+1), make([]int64, n+1)
	for _, g := range order {
		s := Series{Labels: g.ls}
		lo, hi := 0, int(n) // the steps to sum over
		count, bytes := g.count, g.bytes
		if count == nil {
			count, bytes = sparseCount, sparseBytes
			// Sparse: lay the runs out over the steps they touch only.
			lo, hi = int(n), 0
			for _, r := range g.runs {
				r.addTo(count, bytes)
				lo, hi = min(lo, int(r.i0)), max(hi, int(r.i1)+1)
			}
		}
		var c, b int64
		for i := lo; i < hi; i++ {
			c += count[i]
			b += bytes[i]
			if c == 0 {
				continue
			}
			var v float64
			switch r.Op {
			case CountOverTime:
				v = float64(c)
			case Rate:
				v = float64(c) / secs
			case BytesOverTime:
				v = float64(b)
			case BytesRate:
				v = float64(b) / secs
			}
			s.Samples = append(s.Samples, Sample{T: ev.steps[i] / 1e6, V: v})
		}
		if g.count == nil {
			clear(count[lo : hi+1])
			clear(bytes[lo : hi+1])
		}
		out = append(out, s)
	}
	return value{series: out}, nil
}

// seriesAcc is one series of a range aggregation being evaluated: sparse
// (each entry's run of steps) while it has fewer entries than steps, then
// dense (difference arrays over the steps). Either way 16 bytes per item.
type seriesAcc struct {
	ls           labels.Labels
	runs         []stepRun
	count, bytes []int64 // dense: difference arrays of len(steps)+1
}

// stepRun is one entry's steps [i0, i1] and its line's bytes.
type stepRun struct {
	i0, i1 int32
	bytes  int64
}

// addTo adds r to the difference arrays count and bytes: its entry and
// its line's bytes from step i0 on, taken away again after step i1.
func (r stepRun) addTo(count, bytes []int64) {
	count[r.i0]++
	count[r.i1+1]--
	bytes[r.i0] += r.bytes
	bytes[r.i1+1] -= r.bytes
}

func (g *seriesAcc) add(r stepRun, steps int) {
	if g.count != nil {
		r.addTo(g.count, g.bytes)
		return
	}
	g.runs = append(g.runs, r)
	if len(g.runs) <= steps {
		return
	}
	g.count, g.bytes = make([]int64, steps+1), make([]int64, steps+1)
	for _, r := range g.runs {
		r.addTo(g.count, g.bytes)
	}
	g.runs = nil
}

// floorDiv and ceilDiv divide rounding toward minus and plus infinity; b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a > 0 {
		q++
	}
	return q
}

func (ev *evaluator) vectorAgg(a *VectorAggregation) (value, error) {
	var (
		in  value
		err error
	)
	if r, ok := a.Inner.(*RangeAggregation); ok && a.Op == Sum {
		// A sum of a range aggregation is the range aggregation of the
		// groups: count the entries under their group from the start,
		// and never hold a series per distinct label set (one per line,
		// after a parser that extracts an ID). The sum below then adds
		// one series per group, changing nothing.
		grouping := a.Grouping
		if grouping == nil {
			grouping = &Grouping{} // by (): one group
		}
		in, err = ev.rangeAgg(r, grouping)
	} else {
		in, err = ev.eval(a.Inner)
	}
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
