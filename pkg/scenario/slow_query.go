package scenario

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/lokiclient"
)

// sqTenant is the slow-query scenario's tenant.
const sqTenant = "slowq"

// sqDefaults are Loki's default query limits: the baseline every variant
// of slow-query changes one thing of.
var sqDefaults = queryLimits{Split: "1h", Parallelism: 32}

// SlowQuery is question 4's scenario: the same query made slow and fast
// by one thing at a time, with the querier's own stats as the evidence.
func SlowQuery() *Scenario {
	return &Scenario{
		Name:     "slow-query",
		Question: 4,
		Title:    "Debug high latency in log queries",
		Hypothesis: "A query's cost follows the data it must read, and its stats say how much: a wider time range touches more chunks and bytes; " +
			"a regex filter reads exactly the bytes a substring filter reads but spends more time per byte; splitting and parallelism change how the work is cut " +
			"and run, not how much there is; a log query stops at its limit, so a rare needle reads the whole range; recent lines come from the ingesters, older ones from store chunks.",
		Knobs: []Knob{
			{Name: "hours", Kind: KnobInt, Default: "24", Short: "9", Usage: "Hours of logs loaded into the store (flushed) before the queries run; the last 20 minutes stay in the ingesters."},
			{Name: "wide", Kind: KnobDuration, Default: "16h", Short: "4h", Usage: "The wide variants' time range (whole hours), all older than query_ingesters_within so only the store is read; it must fit in -hours minus about 4h."},
			{Name: "streams", Kind: KnobInt, Default: "8", Short: "4", Usage: "Streams {app=\"slowq\", pod=\"pod-N\"}."},
			{Name: "lines-per-hour", Kind: KnobInt, Default: "3000", Short: "1500", Usage: "Lines per stream per hour of log time (about 140 bytes each, 1% of them errors saying \"timeout\")."},
			{Name: "max-chunk-age", Kind: KnobDuration, Default: "30m", Usage: "The ingesters' max_chunk_age: a chunk spans at most this much log time, so the index can skip whole chunks outside a query's range. " +
				"24h is the broken knob: each stream's day fits one chunk, a 1h query must read the same chunks as the wide one, and the \"narrower range touches fewer chunks\" check fails."},
			{Name: "repeats", Kind: KnobInt, Default: "5", Short: "3", Usage: "Timed runs of each variant (after one untimed warm-up); the table shows the median."},
			{Name: "substring", Kind: KnobString, Default: "timeout", Usage: "The substring filter, |= \"…\"."},
			{Name: "regex", Kind: KnobString, Default: "(?i)timeout", Usage: "The regex filter, |~ \"…\", meant to select the same lines as -substring (the generated lines say \"timeout\" only in lower case)."},
			{Name: "chunk-cache", Kind: KnobBool, Default: "false", Usage: "Keep the querier's chunk cache (256MB by default). Off, every run reads its chunks from the store, so each run does the same work."},
		},
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			configureQueryLab(cfg, sqTenant, sqDefaults)
			cfg.Ingester.MaxChunkAge = k.Duration("max-chunk-age")
			if !k.Bool("chunk-cache") {
				cfg.Querier.ChunkCacheSize = 0
			}
		},
		Series: []Selector{
			{Name: "loki_logql_querystats_bytes_processed_total", Target: "distributor"},
			{Name: "lokilab_querier_chunks_read_total", Target: "distributor"},
		},
		Plots: []PlotSpec{
			{
				File: "slow-query-work.png", Title: "Query work per second (counted when each query ends)", YLabel: "per second",
				Lines: []LineSpec{
					{Select: Selector{Name: "loki_logql_querystats_bytes_processed_total", Target: "distributor"}, Rate: true, Sum: true, Legend: "bytes processed / 1000"},
					{Select: Selector{Name: "lokilab_querier_chunks_read_total", Target: "distributor"}, Rate: true, Sum: true, Legend: "chunks read"},
				},
			},
		},
		Look: []string{
			"`data.stats` of every query answer: `summary.totalBytesProcessed`, `summary.execTime`, `summary.splits`, `querier.store.totalChunksRef`, `ingester.totalReached`, `ingester.totalLinesSent` — `lokilab query -stats` prints them.",
			"`loki_logql_querystats_bytes_processed_total{tenant}` and `lokilab_querier_chunks_read_total` on the API's `/metrics`: the same, summed over queries.",
			"`/loki/api/v1/index/stats?query={app=\"slowq\"}&start=…&end=…`: chunks and bytes a selector covers, before running anything.",
			"`/debug/pprof/profile?seconds=10` on the API port while the regex variant runs: `regexp.(*Regexp).MatchString` against `strings.Contains`.",
		},
		Code: []CodeRef{
			{"pkg/querier/querier.go", "SelectLogs (intervals in order, stops at the limit) and SelectSamples (intervals in parallel, max_query_parallelism)"},
			{"pkg/querier/store.go", "Streams: the index names the chunks of a range; fetch, decode, and the raw line filter before a line is copied"},
			{"pkg/querier/http.go", "newStatsJSON: the stats object of every answer"},
			{"pkg/logql/pipeline.go", "LineFilter.keep: strings.Contains for |=, regexp for |~"},
			{"pkg/tenant/limits.go", "split_queries_by_interval and max_query_parallelism, per tenant"},
			{"pkg/ingester/partition.go", "a chunk spans at most max_chunk_age of log time: what lets a query skip chunks"},
			{"pkg/scenario/slow_query.go", "this scenario: the variants and checks"},
			{"docs/questions/04-slow-queries.md", "the question, how to read query stats, and a reference run"},
		},
		Budget:      6 * time.Minute,
		ShortBudget: 2 * time.Minute,
		Run:         runSlowQuery,
	}
}

// sqVariant is one way of asking the same question.
type sqVariant struct {
	name   string
	limits queryLimits
	q      lokiclient.RangeQuery
	// want is the right answer: the value of a metric query, the entries
	// of a log query.
	want float64
}

type sqResult struct {
	sqVariant
	runs []sqAnswer
}

func (r *sqResult) last() sqAnswer { return r.runs[len(r.runs)-1] }

func (r *sqResult) latency() time.Duration {
	ds := make([]time.Duration, len(r.runs))
	for i, a := range r.runs {
		ds[i] = a.latency
	}
	return sqMedian(ds)
}

func (r *sqResult) exec() time.Duration {
	ds := make([]time.Duration, len(r.runs))
	for i, a := range r.runs {
		ds[i] = time.Duration(a.stats.Summary.ExecTime * float64(time.Second))
	}
	return sqMedian(ds)
}

func runSlowQuery(ctx context.Context, e *Env) error {
	k := e.Knobs
	wide := k.Duration("wide")
	w := model.Duration(wide)
	if wide < time.Hour || wide%time.Hour != 0 {
		return fmt.Errorf("-wide %s: want whole hours", wide)
	}
	lab := newQueryLab(e, sqTenant, sqDefaults)
	now := e.Sys.now()
	oldTo := now.Add(-20 * time.Minute)
	oldFrom := oldTo.Add(-time.Duration(k.Int("hours")) * time.Hour)
	// The store-only variants end before now - query_ingesters_within, on
	// an hour, so their split intervals are whole hours.
	storeEnd := now.Add(-e.Sys.Config.Querier.QueryIngestersWithin).Truncate(time.Hour)
	wideStart := storeEnd.Add(-wide)
	if !wideStart.After(oldFrom) {
		return fmt.Errorf("-wide %s does not fit in -hours %d: the wide range starts before the data (%s)", wide, k.Int("hours"), oldFrom.Format(time.RFC3339))
	}
	needle := "order_id=" + strconv.FormatInt(now.UnixNano()%1_000_000_007, 36)
	data := sqData{
		app: "slowq", streams: k.Int("streams"), linesPerHour: k.Int("lines-per-hour"),
		from: oldFrom, to: oldTo, seed: 4, needleAt: wideStart.Add(10 * time.Minute), needle: needle,
	}

	// The store: old lines, flushed.
	e.Logf("pushing %dh of logs (%d streams × %d lines/h), %s … %s", k.Int("hours"), data.streams, data.linesPerHour, oldFrom.Format(time.TimeOnly), oldTo.Format(time.TimeOnly))
	t0 := time.Now()
	old, err := lab.push(ctx, data)
	if err != nil {
		return err
	}
	pushTook := time.Since(t0)
	if err := lab.waitAppended(ctx, old.lines); err != nil {
		return err
	}
	if err := lab.flushAll(ctx); err != nil {
		return err
	}
	e.Logf("stored %d lines (%s) in %s; flushed", old.lines, sqMB(old.bytes), time.Since(t0).Round(time.Millisecond))
	e.Figure("loaded into the store", fmt.Sprintf("%d lines, %s of lines", old.lines, sqMB(old.bytes)),
		fmt.Sprintf("%d streams × %dh; pushed in %s (%.0f lines/s), then POST /flush on every ingester", data.streams, k.Int("hours"), pushTook.Round(time.Millisecond), float64(old.lines)/pushTook.Seconds()))

	// The ingesters: the last 20 minutes, not flushed.
	recentData := sqData{app: "slowq", streams: data.streams, linesPerHour: data.linesPerHour, from: oldTo.Add(time.Millisecond), to: now.Add(-5 * time.Second), seed: 5}
	recent, err := lab.push(ctx, recentData)
	if err != nil {
		return err
	}
	if err := lab.waitAppended(ctx, old.lines+recent.lines); err != nil {
		return err
	}
	e.Figure("in the ingesters only", fmt.Sprintf("%d lines, %s", recent.lines, sqMB(recent.bytes)), "the last 20 minutes, not flushed")

	sub, re := k.String("substring"), k.String("regex")
	metric := func(filter string, rng time.Duration) string {
		return fmt.Sprintf(`sum(count_over_time({app="slowq"} %s [%s]))`, filter, model.Duration(rng))
	}
	subF, reF := fmt.Sprintf("|= %q", sub), fmt.Sprintf("|~ %q", re)
	// count_over_time(…[1h]) at each hour from start+1h to end reads
	// (start, end]: one split interval per step.
	hourly := func(from, to time.Time) lokiclient.RangeQuery {
		return lokiclient.RangeQuery{Start: from.Add(time.Hour), End: to, Step: time.Hour}
	}
	withQ := func(q lokiclient.RangeQuery, s string) lokiclient.RangeQuery { q.Query = s; return q }
	wantWide := float64(old.countIn(wideStart, storeEnd))
	par1 := queryLimits{Split: sqDefaults.Split, Parallelism: 1}
	noSplit := queryLimits{Split: "0s", Parallelism: sqDefaults.Parallelism}
	variants := []sqVariant{
		{name: "baseline: 1h, substring", limits: sqDefaults, q: withQ(hourly(storeEnd.Add(-time.Hour), storeEnd), metric(subF, time.Hour)), want: float64(old.countIn(storeEnd.Add(-time.Hour), storeEnd))},
		{name: fmt.Sprintf("%s range", w), limits: sqDefaults, q: withQ(hourly(wideStart, storeEnd), metric(subF, time.Hour)), want: wantWide},
		{name: fmt.Sprintf("%s, regex", w), limits: sqDefaults, q: withQ(hourly(wideStart, storeEnd), metric(reF, time.Hour)), want: wantWide},
		{name: fmt.Sprintf("%s, no split", w), limits: noSplit, q: withQ(hourly(wideStart, storeEnd), metric(subF, time.Hour)), want: wantWide},
		{name: fmt.Sprintf("%s, parallelism 1", w), limits: par1, q: withQ(hourly(wideStart, storeEnd), metric(subF, time.Hour)), want: wantWide},
		{name: "last 20m (ingesters)", limits: sqDefaults, q: lokiclient.RangeQuery{Query: metric(subF, 20*time.Minute), Start: now, End: now, Step: 20 * time.Minute}, want: float64(recent.countIn(now.Add(-20*time.Minute), now))},
		{name: fmt.Sprintf("log query, %s, common filter", w), limits: sqDefaults, q: lokiclient.RangeQuery{Query: `{app="slowq"} ` + subF, Start: wideStart, End: storeEnd, Limit: 100}, want: 100},
		{name: fmt.Sprintf("log query, %s, rare needle", w), limits: sqDefaults, q: lokiclient.RangeQuery{Query: fmt.Sprintf(`{app="slowq"} |= %q`, needle), Start: wideStart, End: storeEnd, Limit: 100}, want: 1},
	}
	// The runs go round-robin — every variant once, then every variant
	// again — so a slow moment of the machine (a GC, a neighbour's burst)
	// spreads over all variants instead of landing on one. Variants that
	// need other limits get them from the overrides file just before
	// their turn; the first round is an untimed warm-up.
	results := make([]*sqResult, len(variants))
	for i, v := range variants {
		results[i] = &sqResult{sqVariant: v}
	}
	repeats := max(k.Int("repeats"), 1)
	for round := range repeats + 1 {
		for _, lim := range []queryLimits{sqDefaults, noSplit, par1} {
			for i, v := range variants {
				if v.limits != lim {
					continue
				}
				if err := lab.setLimits(ctx, lim); err != nil {
					return err
				}
				a, err := lab.run(ctx, v.q)
				if err != nil {
					return fmt.Errorf("variant %q: %w", v.name, err)
				}
				if round > 0 {
					results[i].runs = append(results[i].runs, a)
				}
			}
		}
	}
	for _, r := range results {
		e.Logf("%-30s median %8s  %s processed, %d chunks, %d subqueries", r.name, ms(r.latency()), sqMB(r.last().stats.Summary.TotalBytesProcessed), r.last().stats.Querier.Store.TotalChunksRef, r.last().stats.Summary.Splits)
	}
	if err := lab.setLimits(ctx, sqDefaults); err != nil {
		return err
	}
	sqReport(e, results, wide)
	sqChecks(e, results, len(e.Sys.Ingesters), needle)
	return nil
}

func sqReport(e *Env, rs []*sqResult, wide time.Duration) {
	base := rs[0]
	bl, bb, bc := float64(base.latency()), float64(base.last().stats.Summary.TotalBytesProcessed), float64(base.last().stats.Querier.Store.TotalChunksRef)
	var rows [][]string
	var labels []string
	var values []float64
	for _, r := range rs {
		st := r.last().stats
		rate := "n/a"
		if ex := r.exec().Seconds(); ex > 0 {
			rate = fmt.Sprintf("%.0f MB/s", float64(st.Summary.TotalBytesProcessed)/ex/1e6)
		}
		rows = append(rows, []string{
			r.name, "`" + r.q.Query + "`", r.limits.String(),
			ms(r.latency()), ms(r.exec()), sqMB(st.Summary.TotalBytesProcessed), rate,
			strconv.FormatInt(st.Summary.TotalLinesProcessed, 10),
			strconv.Itoa(st.Querier.Store.TotalChunksRef),
			fmt.Sprintf("%d / %d", st.Ingester.TotalReached, st.Ingester.TotalLinesSent),
			strconv.Itoa(st.Summary.Splits),
			fmt.Sprintf("%g", r.last().value),
			sqTimes(float64(r.latency()), bl), sqTimes(float64(st.Summary.TotalBytesProcessed), bb), sqTimes(float64(st.Querier.Store.TotalChunksRef), bc),
		})
		labels = append(labels, r.name)
		values = append(values, float64(r.latency())/float64(time.Millisecond))
	}
	e.Report.AddTable(Table{
		Title: "The same question, asked eight ways (median of the timed runs; stats of the last)",
		Header: []string{"variant", "query", "limits", "latency", "execTime", "bytes processed", "bytes/s", "lines processed", "chunks fetched",
			"ingesters reached / lines sent", "subqueries", "answer", "latency × baseline", "bytes × baseline", "chunks × baseline"},
		Rows: rows,
	})
	e.Report.AddBars(Bars{File: "slow-query-latency.png", Title: "Median latency per variant", YLabel: "milliseconds", Labels: labels, Values: values})

	perByte := func(r *sqResult) float64 {
		return float64(r.exec().Nanoseconds()) / float64(max(r.last().stats.Summary.TotalBytesProcessed, 1))
	}
	wideR, regex, noSplit, par1, recent, common, rare := rs[1], rs[2], rs[3], rs[4], rs[5], rs[6], rs[7]
	e.Figure("wide range vs 1h", fmt.Sprintf("%s chunks, %s bytes, %s latency", sqTimes(float64(wideR.last().stats.Querier.Store.TotalChunksRef), bc), sqTimes(float64(wideR.last().stats.Summary.TotalBytesProcessed), bb), sqTimes(float64(wideR.latency()), bl)),
		fmt.Sprintf("%s is %d× the hours of the baseline", model.Duration(wide), int(wide/time.Hour)))
	e.Figure("regex vs substring, per byte", fmt.Sprintf("%.2f vs %.2f ns/byte: %s", perByte(regex), perByte(wideR), sqTimes(perByte(regex), perByte(wideR))),
		"execTime / totalBytesProcessed over the same bytes; the difference is the filter (decompression is the same)")
	e.Figure("no split vs split 1h", fmt.Sprintf("%s latency; %d vs %d subqueries, %d vs %d chunk reads", sqTimes(float64(noSplit.latency()), float64(wideR.latency())),
		noSplit.last().stats.Summary.Splits, wideR.last().stats.Summary.Splits, noSplit.last().stats.Querier.Store.TotalChunksRef, wideR.last().stats.Querier.Store.TotalChunksRef),
		"a chunk that straddles an interval's edge is read by both intervals; running intervals in parallel pays that back only where cores are idle")
	e.Figure("parallelism 1 vs 32", sqTimes(float64(par1.latency()), float64(wideR.latency()))+" latency",
		"the same subqueries one at a time; on 2 cores no more than about 2× can be won back")
	e.Figure("ingesters vs store, per line sent", fmt.Sprintf("%s for %d lines from %d ingesters vs %s for %d lines from %d chunks",
		ms(recent.latency()), recent.last().stats.Ingester.TotalLinesSent, recent.last().stats.Ingester.TotalReached,
		ms(base.latency()), base.last().stats.Summary.TotalLinesProcessed, base.last().stats.Querier.Store.TotalChunksRef),
		"the ingesters filter before they send, so only matching lines cross the wire (and only those are in the querier's stats)")
	e.Figure("log query: common filter vs rare needle", fmt.Sprintf("%s vs %s processed, %s vs %s", sqMB(common.last().stats.Summary.TotalBytesProcessed), sqMB(rare.last().stats.Summary.TotalBytesProcessed), ms(common.latency()), ms(rare.latency())),
		"limit 100, backward: the common filter fills the limit in the newest hour; the needle has to read every hour")
}

func sqChecks(e *Env, rs []*sqResult, ingesters int, needle string) {
	st := func(r *sqResult) lokiclient.Stats { return r.last().stats }
	base, wideR, regex, noSplit, par1, recent, common, rare := rs[0], rs[1], rs[2], rs[3], rs[4], rs[5], rs[6], rs[7]

	// The answers first: a fast wrong answer proves nothing.
	wrong := ""
	for _, r := range rs {
		for _, a := range r.runs {
			if a.value != r.want || len(a.warnings) > 0 {
				wrong += fmt.Sprintf("%s: %g (want %g, %d warnings); ", r.name, a.value, r.want, len(a.warnings))
				break
			}
		}
	}
	needleBack := len(rare.last().entries) == 1 && len(rare.last().entries[0].Line) > 0 && strings.Contains(rare.last().entries[0].Line, needle)
	e.Check("every variant gives the right answer", "each metric variant counts exactly the lines generated with the substring in its range; the needle comes back once; no warnings",
		map[bool]string{true: "all right", false: wrong + fmt.Sprintf("needle found: %v", needleBack)}[wrong == "" && needleBack], wrong == "" && needleBack)

	// Distinct chunks: the no-split variant reads the wide range in one
	// subquery, so it reads each chunk once (with splitting, a chunk
	// straddling an interval's edge is read by both intervals).
	bc, wc := st(base).Querier.Store.TotalChunksRef, st(noSplit).Querier.Store.TotalChunksRef
	e.Check("a narrower range touches fewer chunks", "1h reads fewer chunks and bytes than the wide range (both in one subquery)",
		fmt.Sprintf("%d vs %d chunks, %s vs %s", bc, wc, sqMB(st(base).Summary.TotalBytesProcessed), sqMB(st(noSplit).Summary.TotalBytesProcessed)),
		bc > 0 && bc < wc && st(base).Summary.TotalBytesProcessed < st(noSplit).Summary.TotalBytesProcessed)

	same := func(a, b lokiclient.Stats) bool {
		return a.Summary.TotalBytesProcessed == b.Summary.TotalBytesProcessed && a.Summary.TotalLinesProcessed == b.Summary.TotalLinesProcessed &&
			a.Querier.Store.TotalChunksRef == b.Querier.Store.TotalChunksRef
	}
	desc := func(s lokiclient.Stats) string {
		return fmt.Sprintf("%d bytes, %d lines, %d chunks, %d subqueries", s.Summary.TotalBytesProcessed, s.Summary.TotalLinesProcessed, s.Querier.Store.TotalChunksRef, s.Summary.Splits)
	}
	e.Check("a regex filter reads exactly what a substring filter reads", "the same bytes, lines and chunks processed",
		desc(st(regex))+" vs "+desc(st(wideR)), same(st(regex), st(wideR)))
	wantSplits := len(rangeSteps(wideR.q))
	e.Check("splitting cuts the work, it does not change it", fmt.Sprintf("split 1h: %d subqueries, no split: 1, the same bytes and lines", wantSplits),
		desc(st(wideR))+" vs "+desc(st(noSplit)),
		st(wideR).Summary.Splits == wantSplits && st(noSplit).Summary.Splits == 1 &&
			st(wideR).Summary.TotalBytesProcessed == st(noSplit).Summary.TotalBytesProcessed && st(wideR).Summary.TotalLinesProcessed == st(noSplit).Summary.TotalLinesProcessed)
	e.Check("parallelism runs the same work", "parallelism 1 processes what parallelism 32 does", desc(st(par1))+" vs "+desc(st(wideR)),
		same(st(par1), st(wideR)) && st(par1).Summary.Splits == st(wideR).Summary.Splits)
	rs5, ws := st(recent), st(wideR)
	e.Check("recent lines come from the ingesters, old ones from the store",
		fmt.Sprintf("last 20m: %d ingesters reached, lines sent, no chunk; the wide range: chunks, no ingester asked", ingesters),
		fmt.Sprintf("last 20m: %d reached, %d lines sent, %d chunks; wide: %d reached, %d chunks", rs5.Ingester.TotalReached, rs5.Ingester.TotalLinesSent, rs5.Querier.Store.TotalChunksRef, ws.Ingester.TotalReached, ws.Querier.Store.TotalChunksRef),
		rs5.Ingester.TotalReached == ingesters && rs5.Ingester.TotalLinesSent > 0 && rs5.Querier.Store.TotalChunksRef == 0 && ws.Ingester.TotalReached == 0 && ws.Querier.Store.TotalChunksRef > 0)
	// The common filter stops once it has its 100 lines: in the newest
	// hour at full size, in the newest two of four in short mode (1% of
	// 6,000 lines an hour). So its bytes are judged against the hours it
	// read, not a fixed half: two hours of four are half of the bytes give
	// or take the lines' random lengths, which made "under half" a coin
	// toss in short mode.
	cb, rb, wb := st(common).Summary.TotalBytesProcessed, st(rare).Summary.TotalBytesProcessed, ws.Summary.TotalBytesProcessed
	cs, wsp := st(common).Summary.Splits, ws.Summary.Splits
	e.Check("a log query stops at its limit; a rare needle reads the whole range",
		"common filter: fewer subqueries than the wide range, and about their share of its bytes (+5%); rare needle: the wide range's bytes (±1%)",
		fmt.Sprintf("%s in %d of %d subqueries and %s, of %s", sqMB(cb), cs, wsp, sqMB(rb), sqMB(wb)),
		cb > 0 && cs < wsp && float64(cb) <= 1.05*float64(wb)*float64(cs)/float64(wsp) && float64(rb) >= 0.99*float64(wb) && float64(rb) <= 1.01*float64(wb))
}

// rangeSteps are the evaluation times of a metric range query.
func rangeSteps(q lokiclient.RangeQuery) []time.Time {
	var out []time.Time
	for t := q.Start; !t.After(q.End); t = t.Add(q.Step) {
		out = append(out, t)
	}
	return out
}
