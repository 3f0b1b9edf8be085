package scenario

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// The retention scenario's tenants and streams.
const (
	rtA = "ret-a" // a retention_period and one retention_stream rule
	rtB = "ret-b" // no retention: keeps everything (the default)
	// rtRule is the selector the hypothesis is about; the -rule-selector
	// knob is what the overrides file really says.
	rtRule = `{env="dev"}`
)

// rtStreamSet is every tenant's streams: two match rtRule, one does not.
func rtStreamSet() []labels.Labels {
	return []labels.Labels{
		labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "env", Value: "prod"}),
		labels.New(labels.Label{Name: "app", Value: "api"}, labels.Label{Name: "env", Value: "dev"}),
		labels.New(labels.Label{Name: "app", Value: "web"}, labels.Label{Name: "env", Value: "dev"}),
	}
}

// Retention is question 13's scenario: days of data written on an
// accelerated clock, then a tenant's retention_period and a
// retention_stream rule applied by the compactor.
func Retention() *Scenario {
	return &Scenario{
		Name:     "retention",
		Question: 13,
		Title:    "Log retention policy system",
		Hypothesis: "With retention on, the compactor removes from the index, at its next run, exactly the chunks past their retention: for tenant ret-a, the streams matching the retention_stream rule " + rtRule + " after the rule's period, every other stream after the tenant's retention_period. " +
			"After retention_delete_delay its sweep deletes exactly those objects, and lokilab_compactor_bytes_reclaimed_total counts their bytes. " +
			"Nothing outside the rules is touched: ret-a's other lines stay readable, and tenant ret-b, with no retention, keeps every line and object.",
		Knobs: []Knob{
			{Name: "batches", Kind: KnobInt, Default: "10", Usage: "Batches written, one per -step of the accelerated clock: 10 × 10h is 90 hours of data."},
			{Name: "step", Kind: KnobDuration, Default: "10h", Usage: "How far the clock moves (AdvanceClock) between batches."},
			{Name: "lines", Kind: KnobInt, Default: "200", Short: "30", Usage: "Lines per stream per batch; each tenant has 3 streams: {app=\"api\",env=\"prod\"}, {app=\"api\",env=\"dev\"}, {app=\"web\",env=\"dev\"}."},
			{Name: "tenant-period", Kind: KnobDuration, Default: "72h", Usage: "ret-a's retention_period: the streams no rule matches."},
			{Name: "rule-period", Kind: KnobDuration, Default: "24h", Usage: "The period of ret-a's retention_stream rule."},
			{Name: "rule-selector", Kind: KnobString, Default: rtRule, Usage: "The selector ret-a's rule has in the overrides file. The checks expect " + rtRule + "; `{env=~\"dev|prod\"}` is the broken knob, a rule written too broadly: it also expires {app=\"api\",env=\"prod\"} after the rule's period, so the \"nothing outside the rule\" check and the sweep check fail."},
			{Name: "wait", Kind: KnobDuration, Default: "30s", Short: "20s", Usage: "How long to wait for two compactor runs (it runs every second here) after each clock move."},
		},
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			cfg.AuthEnabled = true
			cfg.Ingesters = 2
			cfg.Compactor.RetentionEnabled = true
			// A run every second of real time applies the accelerated
			// clock's hours within seconds; the deletion delay stays
			// Loki's 2h and is crossed with AdvanceClock.
			cfg.Compactor.CompactionInterval = time.Second
			cfg.RuntimeConfig.File = writeOverrides(cfg.DataDir, fmt.Sprintf(
				"overrides:\n  %s:\n    retention_period: %s\n    retention_stream:\n      - selector: '%s'\n        priority: 1\n        period: %s\n",
				rtA, k.Duration("tenant-period"), k.String("rule-selector"), k.Duration("rule-period")))
		},
		Series: []Selector{
			{Name: "lokilab_compactor_chunks_marked_total", Target: "distributor"},
			{Name: "lokilab_compactor_chunks_deleted_total", Target: "distributor"},
			{Name: "lokilab_compactor_bytes_reclaimed_total", Target: "distributor"},
		},
		Plots: []PlotSpec{{
			File: "retention-compactor.png", Title: "The compactor: chunks marked and deleted (cumulative)", YLabel: "chunks",
			Lines: []LineSpec{
				{Select: Selector{Name: "lokilab_compactor_chunks_marked_total", Target: "distributor"}, Legend: "marked (out of the index)"},
				{Select: Selector{Name: "lokilab_compactor_chunks_deleted_total", Target: "distributor"}, Legend: "deleted (swept from the store)"},
			},
		}},
		Look: []string{
			"`lokilab_compactor_chunks_marked_total`, `lokilab_compactor_chunks_deleted_total`, `lokilab_compactor_bytes_reclaimed_total` and `loki_compactor_last_successful_run_timestamp_seconds` on the API port's `/metrics`.",
			"`retention/markers/<tenant>/<unix ms>-<day>.json` in the store (run with -keep-data): what a mark remembers until the sweep.",
			"`index/<day>/<tenant>/compacted-*.idx`: each day's merged segment, without the expired chunks.",
			"`/config?mode=diff` and the overrides file: retention_period and retention_stream of ret-a.",
			"`/loki/api/v1/index/stats` as each tenant: chunks and bytes the index still names.",
		},
		Code: []CodeRef{
			{"pkg/compactor/retention.go", "mark then sweep; periodFor: the highest-priority matching rule, else the tenant's period"},
			{"pkg/compactor/compactor.go", "retention rides on compaction: a day's merged segment leaves the expired chunks out"},
			{"pkg/tenant/limits.go", "retention_period and retention_stream, Loki's names"},
			{"pkg/tenant/overrides.go", "per-tenant overrides, re-read at runtime"},
			{"pkg/index/client.go", "index segments per tenant and day: what the compactor rewrites"},
			{"pkg/scenario/faults.go", "AdvanceClock: the in-process system's clock moved forward"},
			{"pkg/app/allinone.go", "AllInOneHooks.Now: the clock of the distributors, ingesters, querier and compactor"},
			{"pkg/scenario/retention.go", "this scenario"},
			{"docs/questions/13-retention.md", "the question, the design and a reference run"},
		},
		Budget:      4 * time.Minute,
		ShortBudget: 150 * time.Second,
		Run:         runRetention,
	}
}

// rtLine is where one pushed line belongs.
type rtLine struct {
	tenant, stream string
	batch          int
}

// rtChunk is one chunk object the run wrote: its stream and batch, from
// its own lines.
type rtChunk struct {
	storeObject
	tenant, stream string
	batch          int
	expired        bool // by the hypothesis' rules, at the end
}

// rtInventory lists the store and adds the chunks not seen before to
// written, decoding each to learn its batch and stream.
func rtInventory(ctx context.Context, kit *storeKit, lines map[string]rtLine, written map[string]*rtChunk) error {
	objs, err := kit.list(ctx)
	if err != nil {
		return err
	}
	for _, o := range objs {
		if written[o.Key] != nil || !(isChunkKey(o.Key, rtA) || isChunkKey(o.Key, rtB)) {
			continue
		}
		ls, _, _, err := kit.chunkLines(ctx, o.Key)
		if err != nil {
			return err
		}
		if len(ls) == 0 {
			return fmt.Errorf("chunk %s holds no lines", o.Key)
		}
		first, ok := lines[ls[0]]
		if !ok {
			return fmt.Errorf("chunk %s holds a line this run did not push", o.Key)
		}
		for _, l := range ls {
			if lines[l].batch != first.batch || lines[l].stream != first.stream || lines[l].tenant != first.tenant {
				return fmt.Errorf("chunk %s mixes batches, streams or tenants", o.Key)
			}
		}
		written[o.Key] = &rtChunk{storeObject: o, tenant: first.tenant, stream: first.stream, batch: first.batch}
	}
	return nil
}

// rtExpected is the retention the hypothesis states, for a line of
// stream in tenant: 0 keeps forever.
func rtExpected(k Values, tenantID string, ls labels.Labels) time.Duration {
	if tenantID != rtA {
		return 0
	}
	if ls.Get("env") == "dev" { // rtRule
		return k.Duration("rule-period")
	}
	return k.Duration("tenant-period")
}

func runRetention(ctx context.Context, e *Env) error {
	k := e.Knobs
	kit, err := newStoreKit(e.Sys)
	if err != nil {
		return err
	}
	defer kit.Close()
	n, step, nLines := k.Int("batches"), k.Duration("step"), k.Int("lines")
	if n < 1 || nLines < 1 || step <= 0 {
		return errors.New("-batches, -lines and -step must be positive")
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	rtStreams := rtStreamSet()
	lines := map[string]rtLine{}
	// Every chunk object the run wrote, as seen after each batch's flush:
	// the compactor runs all along, so chunks that expire while later
	// batches are written are marked and swept before the end.
	written := map[string]*rtChunk{}
	batchAt := make([]time.Time, n)
	tenants := []string{rtA, rtB}
	e.Logf("writing %d batches, one every %s of the accelerated clock", n, step)
	for bi := range n {
		if bi > 0 {
			if err := e.Faults.AdvanceClock(ctx, step); err != nil {
				return err
			}
		}
		base, err := kit.appended(ctx)
		if err != nil {
			return err
		}
		t0 := e.Sys.now()
		batchAt[bi] = t0
		count := 0
		for _, tn := range tenants {
			req := &push.Request{}
			for _, ls := range rtStreams {
				st := push.Stream{Labels: ls.String()}
				for i := range nLines {
					line := pushtest.Line(rng, fmt.Sprintf("%s-%s-b%d-%s-%s-%d", tn, run, bi, ls.Get("app"), ls.Get("env"), i))
					st.Entries = append(st.Entries, push.Entry{Timestamp: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), Line: line})
					lines[line] = rtLine{tn, ls.String(), bi}
					count++
				}
				req.Streams = append(req.Streams, st)
			}
			if err := kit.pushChunked(ctx, tn, req, 200); err != nil {
				return err
			}
		}
		if _, err := kit.waitConsumed(ctx, base, float64(count), 30*time.Second); err != nil {
			return err
		}
		// One chunk per stream per batch: flushed now, rather than by the
		// idle period after the next clock move, so each batch's chunks
		// are its own whatever the timing.
		if err := kit.flushIngesters(ctx); err != nil {
			return err
		}
		if err := rtInventory(ctx, kit, lines, written); err != nil {
			return err
		}
	}
	end := e.Sys.now()
	var chunks []*rtChunk
	for _, c := range written {
		chunks = append(chunks, c)
	}
	slices.SortFunc(chunks, func(a, b *rtChunk) int { return strings.Compare(a.Key, b.Key) })
	from, to := batchAt[0].Add(-time.Minute), end.Add(time.Minute)

	streamOf := map[string]labels.Labels{}
	for _, ls := range rtStreams {
		streamOf[ls.String()] = ls
	}
	// The expectation, from the hypothesis' rules and the clock: a chunk
	// expires when its newest line is older than its period. Every line of
	// a batch is within a second of the batch's time, and batches are
	// -step apart, so no chunk sits on the cutoff unless a period is a
	// multiple of -step; then the real seconds the run takes decide.
	cutoffNote := ""
	for _, p := range []time.Duration{k.Duration("rule-period"), k.Duration("tenant-period")} {
		if p%step == 0 {
			cutoffNote = fmt.Sprintf("a period (%s) is a multiple of -step (%s): one batch sits on its cutoff and expires or not by the seconds the run takes", p, step)
		}
	}
	if cutoffNote != "" {
		e.Report.AddNote("%s", cutoffNote)
	}
	expiredBatch := func(tn, stream string, batch int) bool {
		p := rtExpected(k, tn, streamOf[stream])
		return p > 0 && end.Sub(batchAt[batch]) > p
	}
	for _, c := range chunks {
		c.expired = expiredBatch(c.tenant, c.stream, c.batch)
	}

	// Let the compactor run twice, so one whole run started after the
	// last batch's index was written.
	runsOK := func() (float64, error) {
		return kit.scrapeAPI(ctx, "lokilab_compactor_runs_total", map[string]string{"result": "success"})
	}
	waitRuns := func(what string) error {
		r0, err := runsOK()
		if err != nil {
			return err
		}
		deadline := time.Now().Add(k.Duration("wait"))
		for {
			r, err := runsOK()
			if err != nil {
				return err
			}
			if r >= r0+2 {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the compactor completed %g runs in %s %s", r-r0, k.Duration("wait"), what)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
	if err := waitRuns("after the last batch"); err != nil {
		return err
	}
	marked, err := kit.scrapeAPI(ctx, "lokilab_compactor_chunks_marked_total", nil)
	if err != nil {
		return err
	}

	// What each tenant reads now, by stream and batch.
	readable := map[string]bool{}
	for _, tn := range tenants {
		got, err := kit.queryAs(ctx, tn, `{app=~".+"}`, from, to)
		if err != nil {
			return fmt.Errorf("reading as %s: %w", tn, err)
		}
		for l := range got.copies {
			readable[l] = true
		}
	}
	type tally struct{ pushed, wantKept, readable, expiredReadable, keptMissing int }
	by := map[string]*tally{} // tenant + stream
	var order []string
	for l, where := range lines {
		key := where.tenant + " " + where.stream
		t := by[key]
		if t == nil {
			t = &tally{}
			by[key] = t
			order = append(order, key)
		}
		t.pushed++
		exp := expiredBatch(where.tenant, where.stream, where.batch)
		if !exp {
			t.wantKept++
		}
		if readable[l] {
			t.readable++
			if exp {
				t.expiredReadable++
			}
		} else if !exp {
			t.keptMissing++
		}
	}
	slices.Sort(order)
	rows := [][]string{}
	for _, key := range order {
		t := by[key]
		tn, stream, _ := strings.Cut(key, " ")
		p := rtExpected(k, tn, streamOf[stream])
		ps := "keep forever"
		if p > 0 {
			ps = p.String()
		}
		rows = append(rows, []string{tn, "`" + stream + "`", ps, strconv.Itoa(t.pushed), strconv.Itoa(t.wantKept), strconv.Itoa(t.readable)})
	}
	e.Report.AddTable(Table{Title: fmt.Sprintf("Lines after the compactor's run, %s of data on the accelerated clock", end.Sub(batchAt[0]).Round(time.Hour)),
		Header: []string{"tenant", "stream", "retention (by the hypothesis)", "lines pushed", "lines to keep", "lines readable"}, Rows: rows})
	sum := func(match func(tn string, ls labels.Labels) bool, f func(*tally) int) int {
		n := 0
		for key, t := range by {
			tn, stream, _ := strings.Cut(key, " ")
			if match(tn, streamOf[stream]) {
				n += f(t)
			}
		}
		return n
	}
	inRule := func(tn string, ls labels.Labels) bool { return tn == rtA && ls.Get("env") == "dev" }
	outRule := func(tn string, ls labels.Labels) bool { return tn == rtA && ls.Get("env") != "dev" }
	tenantB := func(tn string, _ labels.Labels) bool { return tn == rtB }
	check := func(name string, match func(string, labels.Labels) bool) {
		pushed := sum(match, func(t *tally) int { return t.pushed })
		keep := sum(match, func(t *tally) int { return t.wantKept })
		got := sum(match, func(t *tally) int { return t.readable })
		bad := sum(match, func(t *tally) int { return t.expiredReadable })
		missing := sum(match, func(t *tally) int { return t.keptMissing })
		e.Check(name, fmt.Sprintf("%d of %d lines readable: every line within its period, none past it", keep, pushed),
			fmt.Sprintf("%d readable: %d past their period still readable, %d within it missing", got, bad, missing),
			pushed > 0 && bad == 0 && missing == 0 && got == keep)
	}
	check(fmt.Sprintf("the rule %s expires %s's matching streams after %s", rtRule, rtA, k.Duration("rule-period")), inRule)
	check(fmt.Sprintf("%s's other streams keep its retention_period (%s): nothing outside the rule touched", rtA, k.Duration("tenant-period")), outRule)
	check(rtB+", without retention, keeps every line", tenantB)
	wantMarked := 0
	for _, c := range chunks {
		if c.expired {
			wantMarked++
		}
	}
	e.Figure("chunks marked", fmt.Sprintf("%.0f", marked), fmt.Sprintf("lokilab_compactor_chunks_marked_total; the hypothesis expires %d of %d chunks", wantMarked, len(chunks)))

	// The deletion delay passes; the sweep deletes.
	delay := e.Sys.Config.Compactor.RetentionDeleteDelay
	e.Logf("AdvanceClock(%s): past retention_delete_delay (%s)", delay+time.Minute, delay)
	if err := e.Faults.AdvanceClock(ctx, delay+time.Minute); err != nil {
		return err
	}
	if err := waitRuns("after the deletion delay"); err != nil {
		return err
	}
	after, err := kit.list(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, o := range after {
		have[o.Key] = true
	}
	type sizes struct {
		chunks, chunksAfter int
		bytes, bytesAfter   int64
	}
	per := map[string]*sizes{rtA: {}, rtB: {}}
	var wrongGone, wrongKept []string
	var wantReclaimed int64
	for _, c := range chunks {
		s := per[c.tenant]
		s.chunks++
		s.bytes += c.Size
		if have[c.Key] {
			s.chunksAfter++
			s.bytesAfter += c.Size
		}
		switch {
		case c.expired && have[c.Key]:
			wrongKept = append(wrongKept, c.Key)
		case !c.expired && !have[c.Key]:
			wrongGone = append(wrongGone, c.Key)
		}
		if c.expired {
			wantReclaimed += c.Size
		}
	}
	srows := [][]string{}
	for _, tn := range tenants {
		s := per[tn]
		srows = append(srows, []string{tn, strconv.Itoa(s.chunks), strconv.Itoa(s.chunksAfter), strconv.FormatInt(s.bytes, 10), strconv.FormatInt(s.bytesAfter, 10), pct(int(s.bytes-s.bytesAfter), int(s.bytes))})
	}
	e.Report.AddTable(Table{Title: "Chunk objects the run wrote, and those left after the last sweep", Header: []string{"tenant", "chunks written", "chunks left", "bytes written", "bytes left", "reclaimed"}, Rows: srows})
	e.Check("the sweep deletes exactly the expired chunks", fmt.Sprintf("%d chunk objects deleted, the other %d kept", wantMarked, len(chunks)-wantMarked),
		fmt.Sprintf("%d expired chunks still in the store, %d chunks deleted that should have been kept", len(wrongKept), len(wrongGone)),
		len(chunks) > 0 && len(wrongKept) == 0 && len(wrongGone) == 0)
	reclaimed, err := kit.scrapeAPI(ctx, "lokilab_compactor_bytes_reclaimed_total", nil)
	if err != nil {
		return err
	}
	if marked2, err := kit.scrapeAPI(ctx, "lokilab_compactor_chunks_marked_total", nil); err == nil && marked2 > marked {
		e.Figure("chunks marked after the delay's clock move", fmt.Sprintf("%.0f more", marked2-marked),
			fmt.Sprintf("the clock moved %s more, so chunks that crossed their period meanwhile were marked; they are still in the store, waiting for their own deletion delay", delay+time.Minute))
	}
	deletedBytes := per[rtA].bytes - per[rtA].bytesAfter + per[rtB].bytes - per[rtB].bytesAfter
	e.Check("bytes reclaimed are the deleted objects' bytes", fmt.Sprintf("lokilab_compactor_bytes_reclaimed_total = the sizes of the objects gone from the store (%d bytes)", deletedBytes),
		fmt.Sprintf("%.0f bytes", reclaimed), reclaimed > 0 && int64(reclaimed) == deletedBytes)
	e.Figure("bytes reclaimed", fmt.Sprintf("%.0f bytes of %d", reclaimed, per[rtA].bytes+per[rtB].bytes), fmt.Sprintf("%s of %s's chunk bytes, 0 of %s's; the hypothesis expires %d bytes", pct(int(per[rtA].bytes-per[rtA].bytesAfter), int(per[rtA].bytes)), rtA, rtB, wantReclaimed))
	e.Report.AddBars(Bars{File: "retention-bytes.png", Title: "Chunk bytes per tenant: before retention, after the sweep", YLabel: "KiB",
		Labels: []string{rtA + " before", rtA + " after", rtB + " before", rtB + " after"},
		Values: []float64{float64(per[rtA].bytes) / 1024, float64(per[rtA].bytesAfter) / 1024, float64(per[rtB].bytes) / 1024, float64(per[rtB].bytesAfter) / 1024}})
	timeline := [][]string{}
	for bi, at := range batchAt {
		row := []string{strconv.Itoa(bi), "+" + at.Sub(batchAt[0]).Round(time.Hour).String(), end.Sub(at).Round(time.Hour).String()}
		for _, ls := range rtStreams {
			row = append(row, map[bool]string{true: "expired", false: "kept"}[expiredBatch(rtA, ls.String(), bi)])
		}
		timeline = append(timeline, row)
	}
	hdr := []string{"batch", "written at", "age at the end"}
	for _, ls := range rtStreams {
		hdr = append(hdr, rtA+" `"+ls.String()+"`")
	}
	e.Report.AddTable(Table{Title: "The batches on the accelerated clock, and what the hypothesis expects of " + rtA + "'s (" + rtB + " keeps all)", Header: hdr, Rows: timeline})
	return nil
}
