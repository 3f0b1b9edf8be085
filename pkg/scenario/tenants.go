package scenario

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// The tenants scenario's tenants. They push the very same stream labels,
// so their streams have the same fingerprints: only the tenant keeps them
// apart, which is the point.
const (
	mtA = "team-a" // a small burst and a retention period
	mtB = "team-b" // Loki's defaults: no retention, 6MB burst
)

// Tenants is question 7's scenario: two tenants push identical streams
// into one system; their data, limits and retention stay apart, the store
// keeps each under its own prefix, and no read can cross.
func Tenants() *Scenario {
	return &Scenario{
		Name:     "tenants",
		Question: 7,
		Title:    "Multi-tenant log storage",
		Hypothesis: "Two tenants pushing streams with identical labels share every component but never each other's data: " +
			"each reads back exactly its own lines, from the ingesters' memory and from the store; the store keeps each tenant's chunks under <tenant>/chunks/ and its index under index/<day>/<tenant>/; " +
			"a query reads several tenants only when its X-Scope-OrgID names them (A|B), each line labelled with its tenant; tenant IDs with path tricks are refused (400) before they reach a key. " +
			"Limits are per tenant: a push over team-a's burst gets 429 while the same push as team-b is accepted; " +
			"retention is per tenant: once team-a's retention_period has passed (accelerated clock), its chunks leave the index and the store while team-b's stay.",
		Knobs: []Knob{
			{Name: "lines", Kind: KnobInt, Default: "300", Short: "60", Usage: "Lines per stream per tenant."},
			{Name: "streams", Kind: KnobInt, Default: "4", Short: "2", Usage: "Streams per tenant: {app=\"shop\", pod=\"pod-N\"}, the same label sets in both tenants."},
			{Name: "b-org-id", Kind: KnobString, Default: mtB, Usage: "The X-Scope-OrgID team-b's reads send. `" + mtB + "|" + mtA + "` is the broken knob: a gateway that forwards a multi-tenant header for team-b. Its reads then include team-a's lines and the isolation checks fail — the proof they can."},
			{Name: "a-burst-mb", Kind: KnobFloat, Default: "0.1", Usage: "team-a's ingestion_burst_size_mb (runtime overrides; rate 1 MB/s). team-b keeps the defaults (4 MB/s, 6 MB burst). The limit probe is a push of 2× this, which team-a's bucket can never admit."},
			{Name: "a-retention", Kind: KnobDuration, Default: "24h", Usage: "team-a's retention_period; team-b has none (keep forever, the default). 0 turns team-a's off: the retention checks then fail."},
			{Name: "age", Kind: KnobDuration, Default: "48h", Usage: "How far the system's clock is moved forward (AdvanceClock) before retention is checked: past team-a's retention_period."},
			{Name: "wait", Kind: KnobDuration, Default: "30s", Short: "20s", Usage: "How long to wait for the compactor to mark, then to sweep (it runs every second here)."},
		},
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			cfg.AuthEnabled = true
			cfg.Ingesters = 2
			cfg.Querier.MultiTenantQueriesEnabled = true
			cfg.Compactor.RetentionEnabled = true
			// Every second of real time, so the accelerated clock's days
			// are applied within seconds; the deletion delay stays Loki's
			// 2h, crossed with AdvanceClock.
			cfg.Compactor.CompactionInterval = time.Second
			ret := ""
			if d := k.Duration("a-retention"); d > 0 {
				ret = "    retention_period: " + d.String() + "\n"
			}
			cfg.RuntimeConfig.File = writeOverrides(cfg.DataDir, fmt.Sprintf("overrides:\n  %s:\n    ingestion_rate_mb: 1\n    ingestion_burst_size_mb: %g\n%s",
				mtA, k.Float("a-burst-mb"), ret))
		},
		Series: []Selector{
			{Name: "lokilab_distributor_bytes_acknowledged_total", Target: "distributor"},
			{Name: "loki_discarded_bytes_total", Target: "distributor"},
			{Name: "lokilab_compactor_chunks_deleted_total", Target: "distributor"},
		},
		Plots: []PlotSpec{{
			File: "tenants-bytes.png", Title: "Bytes acknowledged and refused, by tenant (cumulative)", YLabel: "bytes",
			Lines: []LineSpec{
				{Select: Selector{Name: "lokilab_distributor_bytes_acknowledged_total", Target: "distributor", Labels: map[string]string{"tenant": mtA}}, Sum: true, Legend: mtA + " acknowledged"},
				{Select: Selector{Name: "lokilab_distributor_bytes_acknowledged_total", Target: "distributor", Labels: map[string]string{"tenant": mtB}}, Sum: true, Legend: mtB + " acknowledged"},
				{Select: Selector{Name: "loki_discarded_bytes_total", Target: "distributor", Labels: map[string]string{"tenant": mtA}}, Sum: true, Legend: mtA + " refused (rate_limited)"},
			},
		}},
		Look: []string{
			"`find <data>/store -type f` (run with -keep-data): `team-a/chunks/<fp>/…` and `team-b/chunks/<fp>/…` with the same fingerprints; `index/<day>/team-a/` and `index/<day>/team-b/`.",
			"`curl -H 'X-Scope-OrgID: team-a|team-b' <api>/loki/api/v1/query_range?query={app=\"shop\"}`: a multi-tenant read, each stream labelled `__tenant_id__` (querier.multi-tenant-queries-enabled).",
			"`curl -H 'X-Scope-OrgID: ../team-a' …`: 400, \"tenant ID '../team-a' contains unsupported character '/'\".",
			"`loki_discarded_samples_total{reason=\"rate_limited\",tenant=\"team-a\"}` on the API port: team-a's limit, not team-b's.",
			"`lokilab_compactor_chunks_marked_total`, `lokilab_compactor_chunks_deleted_total`, `lokilab_compactor_bytes_reclaimed_total`: team-a's retention at work.",
			"`/config?mode=diff` and the runtime overrides file: the two tenants' limits.",
		},
		Code: []CodeRef{
			{"pkg/tenant/id.go", "the tenant ID from X-Scope-OrgID, and the character rules that keep it out of paths"},
			{"pkg/index/index.go", "ChunkRef.Key: <tenant>/chunks/<fingerprint>/…, the tenant first"},
			{"pkg/index/client.go", "index/<day>/<tenant>/ segments, one tenant's index naming only its chunks; validateKeyParts checks the tenant ID again before any key is written"},
			{"pkg/ingester/partition.go", "streams are kept per tenant, then per labels: the same labels in two tenants are two streams"},
			{"pkg/querier/http.go", "tenants(): one tenant, or A|B only when multi-tenant queries are on"},
			{"pkg/querier/querier.go", "queryLimits: a multi-tenant query gets the strictest of its tenants' limits; __tenant_id__"},
			{"pkg/tenant/limits.go", "per-tenant limits, retention_period among them"},
			{"pkg/tenant/overrides.go", "the runtime overrides file: one tenant's limits changed without touching another's"},
			{"pkg/compactor/retention.go", "retention per tenant: mark, then sweep"},
			{"pkg/scenario/tenants.go", "this scenario"},
			{"docs/questions/07-multi-tenant-storage.md", "the question, the design and a reference run"},
		},
		Budget:      3 * time.Minute,
		ShortBudget: 150 * time.Second,
		Run:         runTenants,
	}
}

// mtData is what one tenant pushed.
type mtData struct {
	tenant string
	lines  map[string]bool
	bytes  int
}

// mtBatch builds a tenant's streams: the same labels for every tenant, the
// lines unique (they carry the tenant and a run ID).
func mtBatch(rng *rand.Rand, tenantID, run string, streams, lines int, t0 time.Time) (*push.Request, *mtData) {
	d := &mtData{tenant: tenantID, lines: map[string]bool{}}
	req := &push.Request{}
	for s := range streams {
		ls := labels.New(labels.Label{Name: "app", Value: "shop"}, labels.Label{Name: "pod", Value: "pod-" + strconv.Itoa(s)})
		st := push.Stream{Labels: ls.String()}
		for i := range lines {
			line := pushtest.Line(rng, fmt.Sprintf("%s-%s-s%d-%d", tenantID, run, s, i))
			st.Entries = append(st.Entries, push.Entry{Timestamp: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), Line: line})
			d.lines[line] = true
			d.bytes += len(line)
		}
		req.Streams = append(req.Streams, st)
	}
	return req, d
}

// pushChunked pushes req's streams in pushes of at most per lines each.
func (k *storeKit) pushChunked(ctx context.Context, orgID string, req *push.Request, per int) error {
	for _, st := range req.Streams {
		for i := 0; i < len(st.Entries); i += per {
			part := push.Stream{Labels: st.Labels, Entries: st.Entries[i:min(i+per, len(st.Entries))]}
			if err := k.pushAll(ctx, orgID, &push.Request{Streams: []push.Stream{part}}); err != nil {
				return err
			}
		}
	}
	return nil
}

// compare checks what a read returned against the tenant's own lines and
// the other tenant's: missing, duplicated, foreign (the other tenant's)
// and unknown lines.
func mtCompare(got tenantLines, own, other map[string]bool) (missing, dup, foreign, unknown int) {
	for l := range own {
		switch got.copies[l] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	for l := range got.copies {
		switch {
		case own[l]:
		case other[l]:
			foreign++
		default:
			unknown++
		}
	}
	return
}

func runTenants(ctx context.Context, e *Env) error {
	k := e.Knobs
	kit, err := newStoreKit(e.Sys)
	if err != nil {
		return err
	}
	defer kit.Close()
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t0 := e.Sys.now()
	nStreams, nLines := k.Int("streams"), k.Int("lines")
	if nStreams < 1 || nLines < 1 {
		return errors.New("-streams and -lines must be at least 1")
	}
	reqA, a := mtBatch(rng, mtA, run, nStreams, nLines, t0)
	reqB, b := mtBatch(rng, mtB, run, nStreams, nLines, t0)
	base, err := kit.appended(ctx)
	if err != nil {
		return err
	}
	e.Logf("pushing %d streams × %d lines as %s and as %s (identical labels)", nStreams, nLines, mtA, mtB)
	// 50 lines a push stay well under team-a's small burst.
	if err := kit.pushChunked(ctx, mtA, reqA, 50); err != nil {
		return err
	}
	if err := kit.pushChunked(ctx, mtB, reqB, 50); err != nil {
		return err
	}

	// Limits: one push twice team-a's burst, as team-a and as team-b.
	burst := k.Float("a-burst-mb") * tenant.BytesInMB
	probe := push.Stream{Labels: `{app="shop", pod="probe"}`}
	probeBytes := 0
	for i := 0; float64(probeBytes) < 2*burst; i++ {
		line := fmt.Sprintf("probe %s %d %s", run, i, strings.Repeat("x", 1000))
		probe.Entries = append(probe.Entries, push.Entry{Timestamp: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), Line: line})
		probeBytes += len(line)
	}
	probeReq := &push.Request{Streams: []push.Stream{probe}}
	codeA, msgA, err := kit.pushAs(ctx, mtA, probeReq)
	if err != nil {
		return err
	}
	codeB, msgB, err := kit.pushAs(ctx, mtB, probeReq)
	if err != nil {
		return err
	}
	if codeB == http.StatusNoContent {
		for _, en := range probe.Entries {
			b.lines[en.Line] = true
			b.bytes += len(en.Line)
		}
	}
	e.Check("limits are per tenant", fmt.Sprintf("a %s push: 429 rate_limited as %s (burst %s), 204 as %s (defaults)", mtBytes(probeBytes), mtA, mtBytes(int(burst)), mtB),
		fmt.Sprintf("%s: HTTP %d; %s: HTTP %d %s", mtA, codeA, mtB, codeB, msgB),
		codeA == http.StatusTooManyRequests && strings.HasPrefix(msgA, "Ingestion rate limit exceeded for user "+mtA) && codeB == http.StatusNoContent)
	if msgA != "" {
		e.Figure(mtA+"'s 429", "`"+msgA+"`", "the same push as "+mtB+": HTTP "+strconv.Itoa(codeB))
	}
	want := float64(len(a.lines) + len(b.lines))
	if _, err := kit.waitConsumed(ctx, base, want, 30*time.Second); err != nil {
		return err
	}
	from, to := t0.Add(-time.Minute), e.Sys.now().Add(time.Minute)
	query := `{app="shop"}`

	// Reads, first from the ingesters' memory, then from the store.
	bOrg := k.String("b-org-id")
	readBoth := func(where string) error {
		for _, r := range []struct {
			org        string
			own, other *mtData
			name, oth  string
		}{{mtA, a, b, mtA, mtB}, {bOrg, b, a, mtB, mtA}} {
			got, err := kit.queryAs(ctx, r.org, query, from, to)
			if err != nil {
				return fmt.Errorf("reading as %s: %w", r.org, err)
			}
			missing, dup, foreign, unknown := mtCompare(got, r.own.lines, r.other.lines)
			e.Check(fmt.Sprintf("%s reads exactly its own lines (%s)", r.name, where),
				fmt.Sprintf("%d lines, each once, none of %s's", len(r.own.lines), r.oth),
				fmt.Sprintf("%d lines as X-Scope-OrgID %q: %d missing, %d duplicated, %d of %s's, %d unknown", got.total, r.org, missing, dup, foreign, r.oth, unknown),
				missing == 0 && dup == 0 && foreign == 0 && unknown == 0)
		}
		return nil
	}
	if err := readBoth("ingesters' memory"); err != nil {
		return err
	}
	e.Logf("flushing every ingester")
	if err := kit.flushIngesters(ctx); err != nil {
		return err
	}
	if err := readBoth("object store"); err != nil {
		return err
	}

	// The store's layout, per tenant.
	objs, err := kit.list(ctx)
	if err != nil {
		return err
	}
	prefixes, count, size := byPrefix(objs)
	rows := [][]string{}
	var barL []string
	var barV []float64
	for _, p := range prefixes {
		rows = append(rows, []string{"`" + p + "`", strconv.Itoa(count[p]), mtBytes(int(size[p]))})
		barL = append(barL, strings.TrimSuffix(p, "/"))
		barV = append(barV, float64(size[p])/1024)
	}
	e.Report.AddTable(Table{Title: "The object store by prefix, after the flush", Header: []string{"prefix", "objects", "bytes"}, Rows: rows})
	e.Report.AddBars(Bars{File: "tenants-store.png", Title: "Object store bytes by prefix, after the flush", YLabel: "KiB", Labels: barL, Values: barV})
	chunksOf := map[string][]storeObject{}
	var stray []string
	for _, o := range objs {
		switch {
		case isChunkKey(o.Key, mtA):
			chunksOf[mtA] = append(chunksOf[mtA], o)
		case isChunkKey(o.Key, mtB):
			chunksOf[mtB] = append(chunksOf[mtB], o)
		case strings.HasPrefix(o.Key, "index/") && (strings.Contains(o.Key, "/"+mtA+"/") || strings.Contains(o.Key, "/"+mtB+"/")):
		default:
			stray = append(stray, o.Key)
		}
	}
	fps := map[string][]string{}
	for _, t := range []string{mtA, mtB} {
		for _, o := range chunksOf[t] {
			fp := strings.Split(o.Key, "/")[2]
			if !slices.Contains(fps[t], fp) {
				fps[t] = append(fps[t], fp)
			}
		}
		slices.Sort(fps[t])
	}
	e.Check("each tenant's objects under its own prefixes", "chunks under <tenant>/chunks/, index under index/<day>/<tenant>/, nothing else",
		fmt.Sprintf("%s: %d chunks, %s: %d chunks, %d other objects %v", mtA, len(chunksOf[mtA]), mtB, len(chunksOf[mtB]), len(stray), stray),
		len(chunksOf[mtA]) > 0 && len(chunksOf[mtB]) > 0 && len(stray) == 0)
	e.Figure("stream fingerprints", fmt.Sprintf("%s: %s; %s: %s", mtA, strings.Join(fps[mtA], " "), mtB, strings.Join(fps[mtB], " ")),
		"identical labels, identical fingerprints: the tenant prefix alone keeps the objects apart")
	if len(chunksOf[mtA]) > 0 {
		e.Figure("a chunk key", "`"+chunksOf[mtA][0].Key+"`", "<tenant>/chunks/<fingerprint>/<from ms>-<through ms>-<crc32c>")
	}
	// Every chunk decoded: a tenant's prefix holds its lines only.
	for _, r := range []struct {
		t           string
		own, other  *mtData
		otherTenant string
	}{{mtA, a, b, mtB}, {mtB, b, a, mtA}} {
		seen, foreign, unknown := 0, 0, 0
		for _, o := range chunksOf[r.t] {
			lines, _, _, err := kit.chunkLines(ctx, o.Key)
			if err != nil {
				return err
			}
			for _, l := range lines {
				seen++
				switch {
				case r.own.lines[l]:
				case r.other.lines[l]:
					foreign++
				default:
					unknown++
				}
			}
		}
		e.Check(fmt.Sprintf("%s's chunks hold only %s's lines", r.t, r.t), fmt.Sprintf("%d lines, none of %s's", len(r.own.lines), r.otherTenant),
			fmt.Sprintf("%d lines decoded from %d chunks: %d of %s's, %d unknown", seen, len(chunksOf[r.t]), foreign, r.otherTenant, unknown),
			seen == len(r.own.lines) && foreign == 0 && unknown == 0)
	}

	// A multi-tenant read, asked for explicitly.
	both, err := kit.queryAs(ctx, mtA+"|"+mtB, query, from, to)
	if err != nil {
		return fmt.Errorf("reading as %s|%s: %w", mtA, mtB, err)
	}
	all := map[string]bool{}
	for l := range a.lines {
		all[l] = true
	}
	for l := range b.lines {
		all[l] = true
	}
	missing, dup, _, unknown := mtCompare(both, all, nil)
	mislabelled := 0
	for l, t := range both.byTenant {
		if a.lines[l] && t != mtA || b.lines[l] && t != mtB {
			mislabelled++
		}
	}
	e.Check("a multi-tenant read only when asked, each line labelled", fmt.Sprintf("as %s|%s: %d lines, each once, each with its __tenant_id__", mtA, mtB, len(all)),
		fmt.Sprintf("%d lines: %d missing, %d duplicated, %d unknown, %d mislabelled", both.total, missing, dup, unknown, mislabelled),
		missing == 0 && dup == 0 && unknown == 0 && mislabelled == 0)

	// Tenant IDs with path tricks.
	tricks := []string{"../" + mtA, mtB + "/../" + mtA, "..", ".", mtA + "/chunks", `..\` + mtA, mtB + "|../" + mtA, "%2e%2e%2f" + mtA, strings.Repeat("a", tenant.MaxIDLength+1), ""}
	trickReq := &push.Request{Streams: []push.Stream{{Labels: `{app="shop", pod="trick"}`, Entries: []push.Entry{{Timestamp: t0.UnixNano(), Line: "trick " + run}}}}}
	trickRows := [][]string{}
	refused := 0
	for _, id := range tricks {
		pc, pmsg, err := kit.pushAs(ctx, id, trickReq)
		if err != nil {
			return err
		}
		_, qerr := kit.queryAs(ctx, id, query, from, to)
		qc := apiStatus(qerr)
		wantCode := http.StatusBadRequest
		if id == "" {
			wantCode = http.StatusUnauthorized
		}
		if pc == wantCode && qc == wantCode {
			refused++
		}
		shown := id
		if len(shown) > 24 {
			shown = shown[:12] + "…(" + strconv.Itoa(len(id)) + " chars)"
		}
		trickRows = append(trickRows, []string{"`" + shown + "`", strconv.Itoa(pc), strconv.Itoa(qc), pmsg})
	}
	e.Report.AddTable(Table{Title: "Tenant IDs with path tricks: push and query answers", Header: []string{"X-Scope-OrgID", "push", "query", "push answer"}, Rows: trickRows})
	if err := kit.flushIngesters(ctx); err != nil {
		return err
	}
	after, err := kit.list(ctx)
	if err != nil {
		return err
	}
	var escaped []string
	for _, o := range after {
		if strings.Contains(o.Key, "..") || strings.Contains(o.Key, "trick") || !(strings.HasPrefix(o.Key, mtA+"/") || strings.HasPrefix(o.Key, mtB+"/") || strings.HasPrefix(o.Key, "index/") || strings.HasPrefix(o.Key, "retention/")) {
			escaped = append(escaped, o.Key)
		}
	}
	e.Check("tenant IDs with path tricks are refused", fmt.Sprintf("%d of %d refused on push and query (400; 401 without an ID); no new key", len(tricks), len(tricks)),
		fmt.Sprintf("%d refused; keys outside the tenants' prefixes: %v", refused, escaped), refused == len(tricks) && len(escaped) == 0)

	// Retention: team-a's period passes, team-b keeps everything.
	return tenantsRetention(ctx, e, kit, a, b, chunksOf, query, from, to)
}

// tenantsRetention moves the clock past team-a's retention_period and
// checks the compactor removes team-a's chunks — from the index at once,
// from the store after the deletion delay — and nothing of team-b's.
func tenantsRetention(ctx context.Context, e *Env, kit *storeKit, a, b *mtData, chunksOf map[string][]storeObject, query string, from, to time.Time) error {
	k := e.Knobs
	age, wait := k.Duration("age"), k.Duration("wait")
	e.Logf("AdvanceClock(%s): %s's retention is %s, %s has none", age, mtA, k.Duration("a-retention"), mtB)
	if err := e.Faults.AdvanceClock(ctx, age); err != nil {
		return err
	}
	// The compactor runs every second: poll what team-a can read until its
	// lines are gone from the index, or the wait is over.
	deadline := time.Now().Add(wait)
	var gotA tenantLines
	for {
		var err error
		if gotA, err = kit.queryAs(ctx, mtA, query, from, to); err != nil {
			return err
		}
		if gotA.total == 0 || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	gotB, err := kit.queryAs(ctx, mtB, query, from, to)
	if err != nil {
		return err
	}
	missingB, _, _, _ := mtCompare(gotB, b.lines, a.lines)
	marked, _ := kit.scrapeAPI(ctx, "lokilab_compactor_chunks_marked_total", nil)
	e.Check("retention is per tenant: "+mtA+"'s lines expire", fmt.Sprintf("0 of %d lines readable as %s after %s", len(a.lines), mtA, age),
		fmt.Sprintf("%d readable; %g chunks marked", gotA.total, marked), gotA.total == 0)
	e.Check("retention is per tenant: "+mtB+" keeps everything", fmt.Sprintf("all %d lines readable as %s", len(b.lines), mtB),
		fmt.Sprintf("%d readable, %d missing", gotB.total, missingB), missingB == 0 && gotB.total == len(b.lines))

	// The deletion delay, then the sweep.
	delay := e.Sys.Config.Compactor.RetentionDeleteDelay
	if err := e.Faults.AdvanceClock(ctx, delay+time.Minute); err != nil {
		return err
	}
	deadline = time.Now().Add(wait)
	var left []string
	var objs []storeObject
	for {
		if objs, err = kit.list(ctx); err != nil {
			return err
		}
		left = left[:0]
		for _, o := range objs {
			if isChunkKey(o.Key, mtA) {
				left = append(left, o.Key)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	have := map[string]bool{}
	for _, o := range objs {
		have[o.Key] = true
	}
	keptB := 0
	var sizeA int64
	for _, o := range chunksOf[mtB] {
		if have[o.Key] {
			keptB++
		}
	}
	for _, o := range chunksOf[mtA] {
		sizeA += o.Size
	}
	reclaimed, _ := kit.scrapeAPI(ctx, "lokilab_compactor_bytes_reclaimed_total", nil)
	e.Check("the sweep deletes "+mtA+"'s chunks, and only those", fmt.Sprintf("0 of %d %s chunks left after the %s delay; all %d of %s's kept", len(chunksOf[mtA]), mtA, delay, len(chunksOf[mtB]), mtB),
		fmt.Sprintf("%d of %s's left, %d of %s's kept", len(left), mtA, keptB, mtB),
		len(chunksOf[mtA]) > 0 && len(left) == 0 && keptB == len(chunksOf[mtB]))
	e.Figure("bytes reclaimed", fmt.Sprintf("%.0f bytes", reclaimed), fmt.Sprintf("lokilab_compactor_bytes_reclaimed_total; %s's chunks were %d bytes", mtA, sizeA))
	return nil
}

// kb formats a byte count.
func mtBytes(n int) string {
	if n < 10*1024 {
		return strconv.Itoa(n) + " B"
	}
	return fmt.Sprintf("%.1f KiB", float64(n)/1024)
}
