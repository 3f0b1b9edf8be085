package scenario

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/lokiclient"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// ccTenant is the chunk-cost scenario's tenant (auth is off: Loki's
// "fake" would do, but a name says what the objects are).
const ccTenant = "cost"

// ChunkCost is question 11's scenario: the same hour of logs written with
// each combination of codec, chunk target size and idle period, measuring
// what the store holds and what it was asked, and pricing it.
func ChunkCost() *Scenario {
	return &Scenario{
		Name:     "chunk-cost",
		Question: 11,
		Title:    "Optimize chunk storage for cost",
		Hypothesis: "For the same logs, the codec sets the bytes stored (zstd < snappy < none), the target size and the idle period set the number of objects and so the PUTs and the GETs of a full read: " +
			"a smaller chunk_target_size cuts busy streams into more chunks, a shorter chunk_idle_period cuts quiet streams at every pause. " +
			"Every PUT is a chunk or an index segment, and every combination reads back every line.",
		Knobs: []Knob{
			{Name: "codecs", Kind: KnobString, Default: "none,snappy,zstd", Short: "snappy,zstd", Usage: "chunk_encoding values to compare, comma-separated."},
			{Name: "target-sizes", Kind: KnobString, Default: "256KB,1536KB", Short: "1536KB", Usage: "chunk_target_size values to compare (compressed bytes at which a chunk is cut; Loki's default 1536KB)."},
			{Name: "idle-periods", Kind: KnobString, Default: "5m,30m", Short: "30m", Usage: "chunk_idle_period values to compare (Loki's default 30m)."},
			{Name: "streams", Kind: KnobInt, Default: "8", Short: "4", Usage: "Streams; the first half busy (a burst every tick), the others quiet (a burst every -quiet-every ticks)."},
			{Name: "lines", Kind: KnobInt, Default: "1000", Short: "400", Usage: "Lines per burst per stream (realistic shapes: nginx, logfmt, JSON, stack traces; ~200 bytes each)."},
			{Name: "ticks", Kind: KnobInt, Default: "15", Short: "6", Usage: "Bursts per stream of traffic, one per -tick of the accelerated clock."},
			{Name: "tick", Kind: KnobDuration, Default: "4m", Usage: "How far the clock moves between bursts (AdvanceClock). Below 5m so busy streams never go idle; quiet streams pause -quiet-every × -tick."},
			{Name: "quiet-every", Kind: KnobInt, Default: "3", Usage: "Quiet streams write every this many ticks (a 12m pause at the defaults: longer than a 5m idle period, shorter than 30m). 1 is the broken knob: no stream ever pauses, the idle period changes nothing, and the \"shorter idle period\" check fails."},
			{Name: "price-storage", Kind: KnobFloat, Default: "0.023", Usage: "USD per GB-month (GB = 2^30 bytes): S3 Standard, us-east-1, first 50 TB."},
			{Name: "price-put", Kind: KnobFloat, Default: "0.005", Usage: "USD per 1,000 PUT/COPY/POST/LIST requests: S3 Standard, us-east-1."},
			{Name: "price-get", Kind: KnobFloat, Default: "0.0004", Usage: "USD per 1,000 GET/HEAD (and other) requests: S3 Standard, us-east-1."},
			{Name: "price-source", Kind: KnobString, Default: "S3 Standard, US East (N. Virginia): AWS list prices as last known, not re-checked on the run date (see aws.amazon.com/s3/pricing)", Usage: "Where the prices come from and when they were checked: printed beside the cost table."},
			{Name: "daily-tib", Kind: KnobFloat, Default: "1", Usage: "The reference workload the cost table prices: TiB of raw log lines a day, kept 30 days and read in full once a month."},
		},
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			combos, err := ccCombos(k)
			if err != nil || len(combos) == 0 {
				return // Run reports it
			}
			ccApply(cfg, combos[0])
		},
		Look: []string{
			"`loki_objstore_bucket_operations_total{bucket,operation}` on each ingester's and the API port's `/metrics`: upload is a PUT, get and get_range GETs, iter a LIST, attributes and exists HEADs.",
			"`loki_ingester_chunks_flushed_total{reason}`: full (target size), idle, forced; `loki_ingester_chunk_size_bytes` and `loki_ingester_chunk_compression_ratio`.",
			"`/config?mode=diff`: chunk_encoding, chunk_target_size, chunk_idle_period of the run.",
			"`find <data>/combo-*/store -type f -path '*/chunks/*' | wc -l` (run with -keep-data): the objects of each combination.",
		},
		Code: []CodeRef{
			{"pkg/chunk/FORMAT.md", "the chunk object: blocks, codec byte, checksums"},
			{"pkg/chunk/encoding.go", "the codecs: none, snappy, zstd"},
			{"pkg/chunk/chunk.go", "Full: compressed size plus the head's estimate against the target size"},
			{"pkg/ingester/flush.go", "pick: idle, max age, forced; one PUT per chunk, one per index segment"},
			{"pkg/ingester/config.go", "chunk_encoding, chunk_block_size, chunk_target_size, chunk_idle_period and what each costs"},
			{"pkg/storage/storage.go", "the instrumented bucket: loki_objstore_bucket_operations_total"},
			{"pkg/scenario/chunk_cost.go", "this scenario: the workload, the measurements and the price model"},
			{"docs/questions/11-chunk-cost.md", "the question, the design and a reference run"},
		},
		Budget:      10 * time.Minute,
		ShortBudget: 150 * time.Second,
		Run:         runChunkCost,
	}
}

// ccCombo is one combination of the knobs compared.
type ccCombo struct {
	codec  string
	target config.ByteSize
	idle   time.Duration
}

func (c ccCombo) String() string {
	return fmt.Sprintf("%s, %s, idle %s", c.codec, c.target, c.idle)
}

// ccCombos parses the lists into every combination, codecs outermost.
func ccCombos(k Values) ([]ccCombo, error) {
	split := func(s string) []string {
		var out []string
		for f := range strings.SplitSeq(s, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
		return out
	}
	var codecs []string
	for _, c := range split(k.String("codecs")) {
		if _, err := chunk.ParseEncoding(c); err != nil {
			return nil, fmt.Errorf("-codecs: %w", err)
		}
		codecs = append(codecs, c)
	}
	var sizes []config.ByteSize
	for _, s := range split(k.String("target-sizes")) {
		var b config.ByteSize
		if err := b.Set(s); err != nil || b == 0 {
			return nil, fmt.Errorf("-target-sizes: %q is not a positive size", s)
		}
		sizes = append(sizes, b)
	}
	var idles []time.Duration
	for _, s := range split(k.String("idle-periods")) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("-idle-periods: %q is not a positive duration", s)
		}
		idles = append(idles, d)
	}
	var out []ccCombo
	for _, c := range codecs {
		for _, s := range sizes {
			for _, i := range idles {
				out = append(out, ccCombo{c, s, i})
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-codecs, -target-sizes and -idle-periods each need a value")
	}
	return out, nil
}

// ccApply sets a combination on the system's configuration, with what
// every combination shares: one ingester (chunks depend on streams, not on
// how many ingesters share them), a quick flush check so idle chunks are
// cut within a fraction of a second of the clock moving, and limits high
// enough that nothing is refused.
func ccApply(cfg *app.AllInOneConfig, c ccCombo) {
	cfg.Ingesters = 1
	cfg.Ingester.ChunkEncoding = c.codec
	cfg.Ingester.ChunkTargetSize = c.target
	cfg.Ingester.ChunkIdlePeriod = c.idle
	cfg.Ingester.FlushCheckPeriod = 250 * time.Millisecond
	cfg.Limits.IngestionRateMB = 1000
	cfg.Limits.IngestionBurstSizeMB = 1000
}

// ccResult is what one combination measured.
type ccResult struct {
	combo                ccCombo
	lines, rawBytes      int
	chunks, indexObjs    int
	chunkBytes, idxBytes int64
	// Object store requests by class while writing (every component):
	// PUT-class (upload, iter = LIST) and GET-class (get, get_range,
	// attributes, exists).
	writePuts, writeGets float64
	// A full read of the hour: the querier's and ingesters' requests, and
	// the lines counted.
	readPuts, readGets float64
	readLines          float64
	chunkPuts          float64 // uploads by the ingester: chunks and index segments
	indexSegments      float64
	reasons            map[string]float64
	took               time.Duration
}

// ccOps sums a system's object store requests by class.
func ccOps(ctx context.Context, kit *storeKit) (puts, gets float64, err error) {
	sum := func(op string) (float64, error) {
		lbl := map[string]string{"operation": op}
		a, err := kit.scrapeAPI(ctx, "loki_objstore_bucket_operations_total", lbl)
		if err != nil {
			return 0, err
		}
		b, err := kit.scrapeIngesters(ctx, "loki_objstore_bucket_operations_total", lbl)
		return a + b, err
	}
	for _, op := range []string{"upload", "iter"} {
		v, err := sum(op)
		if err != nil {
			return 0, 0, err
		}
		puts += v
	}
	for _, op := range []string{"get", "get_range", "attributes", "exists"} {
		v, err := sum(op)
		if err != nil {
			return 0, 0, err
		}
		gets += v
	}
	return puts, gets, nil
}

func runChunkCost(ctx context.Context, e *Env) error {
	k := e.Knobs
	combos, err := ccCombos(k)
	if err != nil {
		return err
	}
	if k.Int("streams") < 2 || k.Int("lines") < 1 || k.Int("ticks") < 1 || k.Int("quiet-every") < 1 || k.Duration("tick") <= 0 {
		return errors.New("-streams must be at least 2, and -lines, -ticks, -quiet-every and -tick positive")
	}
	e.Logf("%d combinations: %d system runs of %d ticks each", len(combos), len(combos), k.Int("ticks"))
	var results []ccResult
	for i, c := range combos {
		sys := e.Sys
		if i > 0 {
			dir := filepath.Join(e.Dir, "data", fmt.Sprintf("combo-%d", i))
			cfg, err := LabConfig(dir)
			if err != nil {
				return err
			}
			ccApply(&cfg, c)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			logf, err := os.Create(filepath.Join(dir, "system.log"))
			if err != nil {
				return err
			}
			sys, err = StartInProcess(ctx, cfg, logf)
			if err != nil {
				logf.Close()
				return fmt.Errorf("starting the system for %s: %w", c, err)
			}
			r, err := ccMeasure(ctx, e, sys, c)
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			serr := sys.Stop(stopCtx)
			cancel()
			logf.Close()
			if err := errors.Join(err, serr); err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			results = append(results, r)
			continue
		}
		r, err := ccMeasure(ctx, e, sys, c)
		if err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
		results = append(results, r)
	}
	ccReport(e, results)
	return nil
}

// ccMeasure writes the workload into sys with combination c, flushes,
// reads everything back once, and measures.
func ccMeasure(ctx context.Context, e *Env, sys *System, c ccCombo) (ccResult, error) {
	k := e.Knobs
	start := time.Now()
	r := ccResult{combo: c, reasons: map[string]float64{}}
	kit, err := newStoreKit(sys)
	if err != nil {
		return r, err
	}
	defer kit.Close()
	faults := sys.Faults()
	nStreams, nLines, ticks, quietEvery := k.Int("streams"), k.Int("lines"), k.Int("ticks"), k.Int("quiet-every")
	busy := (nStreams + 1) / 2
	// The same lines for every combination: one seeded generator per
	// stream.
	rngs := make([]*rand.Rand, nStreams)
	lbls := make([]labels.Labels, nStreams)
	for s := range nStreams {
		rngs[s] = rand.New(rand.NewPCG(11, uint64(s)))
		kind := "busy"
		if s >= busy {
			kind = "quiet"
		}
		lbls[s] = labels.New(labels.Label{Name: "app", Value: "cost"}, labels.Label{Name: "kind", Value: kind}, labels.Label{Name: "stream", Value: "s" + strconv.Itoa(s)})
	}
	puts0, gets0, err := ccOps(ctx, kit)
	if err != nil {
		return r, err
	}
	first := sys.now()
	for tick := range ticks {
		if tick > 0 {
			if err := faults.AdvanceClock(ctx, k.Duration("tick")); err != nil {
				return r, err
			}
			// Let the ingester's flush loop look at every partition
			// twice on the moved clock, so streams that went idle are
			// cut before the next burst appends to them.
			if err := ccWaitFlushCycles(ctx, kit, sys, 2); err != nil {
				return r, err
			}
		}
		base, err := kit.appended(ctx)
		if err != nil {
			return r, err
		}
		t0 := sys.now()
		req := &push.Request{}
		n := 0
		for s := range nStreams {
			if s >= busy && tick%quietEvery != 0 {
				continue
			}
			st := push.Stream{Labels: lbls[s].String()}
			for i := range nLines {
				line := pushtest.Line(rngs[s], "")
				st.Entries = append(st.Entries, push.Entry{Timestamp: t0.Add(time.Duration(i) * time.Microsecond).UnixNano(), Line: line})
				r.rawBytes += len(line)
			}
			n += nLines
			req.Streams = append(req.Streams, st)
		}
		if err := kit.pushChunked(ctx, ccTenantOrg(sys), req, 500); err != nil {
			return r, err
		}
		r.lines += n
		if _, err := kit.waitConsumed(ctx, base, float64(n), 30*time.Second); err != nil {
			return r, err
		}
	}
	// The end of the hour: whatever is still open is cut and flushed.
	if err := kit.flushIngesters(ctx); err != nil {
		return r, err
	}
	last := sys.now()
	puts1, gets1, err := ccOps(ctx, kit)
	if err != nil {
		return r, err
	}
	r.writePuts, r.writeGets = puts1-puts0, gets1-gets0
	if r.chunkPuts, err = kit.scrapeIngesters(ctx, "loki_objstore_bucket_operations_total", map[string]string{"operation": "upload"}); err != nil {
		return r, err
	}
	if r.indexSegments, err = kit.scrapeIngesters(ctx, "lokilab_ingester_index_segments_written_total", nil); err != nil {
		return r, err
	}
	for _, reason := range []string{"full", "idle", "max_age", "forced", "memory"} {
		v, err := kit.scrapeIngesters(ctx, "loki_ingester_chunks_flushed_total", map[string]string{"reason": reason})
		if err != nil {
			return r, err
		}
		if v > 0 {
			r.reasons[reason] = v
		}
	}
	objs, err := kit.list(ctx)
	if err != nil {
		return r, err
	}
	for _, o := range objs {
		switch {
		case isChunkKey(o.Key, ccTenantOrg(sys)):
			r.chunks++
			r.chunkBytes += o.Size
		case strings.HasPrefix(o.Key, "index/"):
			r.indexObjs++
			r.idxBytes += o.Size
		}
	}

	// One full read: every line counted by the querier, from the store.
	qc := lokiclient.New(sys.API, lokiclient.WithHTTPClient(kit.client))
	span := last.Sub(first) + 2*time.Minute
	res, err := qc.Query(ctx, fmt.Sprintf(`sum(count_over_time({app="cost"}[%ds]))`, int(span.Seconds())), last.Add(time.Minute), 0)
	if err != nil {
		return r, fmt.Errorf("the full read: %w", err)
	}
	for _, s := range res.Series {
		for _, p := range s.Samples {
			r.readLines += p.Value
		}
	}
	puts2, gets2, err := ccOps(ctx, kit)
	if err != nil {
		return r, err
	}
	r.readPuts, r.readGets = puts2-puts1, gets2-gets1
	r.took = time.Since(start)
	e.Logf("%s: %d lines, %s raw → %d chunks, %s; %g PUT-class and %g GET-class requests writing, %g GET-class reading it all (%s)",
		c, r.lines, mtBytes(r.rawBytes), r.chunks, mtBytes(int(r.chunkBytes)), r.writePuts, r.writeGets, r.readGets, r.took.Round(100*time.Millisecond))
	return r, nil
}

// ccTenantOrg is the tenant the workload is stored under: auth is off in
// this scenario's systems, so every push is Loki's "fake".
func ccTenantOrg(sys *System) string {
	if sys.Config.AuthEnabled {
		return ccTenant
	}
	return tenant.DefaultTenant
}

// ccWaitFlushCycles waits until the ingesters have run n more flush cycles
// over every partition (loki_ingester_flush_duration_seconds counts one
// observation per partition per cycle).
func ccWaitFlushCycles(ctx context.Context, kit *storeKit, sys *System, n int) error {
	count := func() (float64, error) {
		return kit.scrapeIngesters(ctx, "loki_ingester_flush_duration_seconds_count", nil)
	}
	base, err := count()
	if err != nil {
		return err
	}
	want := base + float64(n*sys.Partitions)
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := count()
		if err != nil {
			return err
		}
		if v >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the ingesters ran %g of %g partition flushes in 20s", v-base, want-base)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// ccReport writes the tables, the checks and the cost model.
func ccReport(e *Env, rs []ccResult) {
	k := e.Knobs
	const gib = 1 << 30
	rows := [][]string{}
	var labelsBars []string
	var bytesBars, putBars []float64
	for _, r := range rs {
		reasons := []string{}
		for _, reason := range []string{"full", "idle", "max_age", "forced", "memory"} {
			if v := r.reasons[reason]; v > 0 {
				reasons = append(reasons, fmt.Sprintf("%s %g", reason, v))
			}
		}
		rows = append(rows, []string{r.combo.codec, r.combo.target.String(), r.combo.idle.String(), strconv.Itoa(r.lines), mtBytes(r.rawBytes),
			strconv.Itoa(r.chunks), mtBytes(int(r.chunkBytes)), fmt.Sprintf("%.2f", float64(r.rawBytes)/float64(max(r.chunkBytes, 1))),
			fmt.Sprintf("%d (%s)", r.indexObjs, mtBytes(int(r.idxBytes))), fmt.Sprintf("%g", r.writePuts), fmt.Sprintf("%g", r.writeGets), fmt.Sprintf("%g", r.readGets),
			strings.Join(reasons, ", ")})
		labelsBars = append(labelsBars, fmt.Sprintf("%s/%s/%s", r.combo.codec, r.combo.target, r.combo.idle))
		bytesBars = append(bytesBars, float64(r.chunkBytes)/1024)
		putBars = append(putBars, r.writePuts)
	}
	e.Report.AddTable(Table{Title: "The same traffic, per combination: what the store holds and what it was asked",
		Header: []string{"codec", "target size", "idle period", "lines", "raw line bytes", "chunk objects", "chunk bytes", "compression ratio", "index objects", "PUT-class writing", "GET-class writing", "GET-class, one full read", "chunks cut by"}, Rows: rows})
	e.Report.AddBars(Bars{File: "chunk-cost-bytes.png", Title: "Chunk bytes stored, per combination", YLabel: "KiB", Labels: labelsBars, Values: bytesBars})
	e.Report.AddBars(Bars{File: "chunk-cost-puts.png", Title: "PUT-class requests writing the same traffic, per combination", YLabel: "requests", Labels: labelsBars, Values: putBars})

	// The price model.
	daily := k.Float("daily-tib") * (1 << 40)
	month := 30 * daily
	pStore, pPut, pGet := k.Float("price-storage"), k.Float("price-put"), k.Float("price-get")
	cost := [][]string{}
	for _, r := range rs {
		perRaw := func(v float64) float64 { return v / float64(r.rawBytes) }
		storeGB := month * perRaw(float64(r.chunkBytes+r.idxBytes)) / gib
		// A read's LISTs are billed as PUT-class requests.
		puts := month * perRaw(r.writePuts+r.readPuts)
		gets := month * perRaw(r.readGets)
		cs, cp, cg := storeGB*pStore, puts/1000*pPut, gets/1000*pGet
		cost = append(cost, []string{r.combo.codec, r.combo.target.String(), r.combo.idle.String(),
			fmt.Sprintf("%.0f GB", storeGB), fmt.Sprintf("$%.2f", cs), fmt.Sprintf("%.3gM", puts/1e6), fmt.Sprintf("$%.2f", cp), fmt.Sprintf("%.3gM", gets/1e6), fmt.Sprintf("$%.2f", cg), fmt.Sprintf("$%.2f", cs+cp+cg)})
	}
	e.Report.AddTable(Table{Title: fmt.Sprintf("Monthly cost of %g TiB of raw lines a day, kept 30 days, read in full once a month — prices: %s; run on %s",
		k.Float("daily-tib"), k.String("price-source"), time.Now().UTC().Format("2006-01-02")),
		Header: []string{"codec", "target size", "idle period", "stored (steady state)", "storage $/month", "PUT-class/month (writes, and the read's LISTs)", "PUT $/month", "GET-class/month (the read)", "GET $/month", "total $/month"}, Rows: cost})
	e.Report.AddNote("Prices used: storage $%g per GB-month (GB = 2^30 bytes), PUT-class $%g and GET-class $%g per 1,000 requests — %s. "+
		"The lab's traffic is scaled to the reference workload by adding streams like these, not by making these streams faster: requests per raw byte stay as measured. "+
		"A faster stream fills its chunks sooner, so real PUTs per byte are lower at the same settings for busy streams and the same for quiet ones.",
		pStore, pPut, pGet, k.String("price-source"))
	e.Report.AddNote("The traffic ends with a forced flush (POST /flush), so every stream's last chunk is cut at the end of the run. In a steady state those chunks would grow on, until full, idle or max_chunk_age (2h): the object counts of the long-idle rows are up to twice what a steady state writes per hour for streams that never pause long enough to go idle.")
	e.Report.AddNote("Each combination ran on a system of its own (the first on the scenario's, the others started by the scenario under data/combo-N), each moving its own clock with AdvanceClock %d times by %s: those calls are not in the fault table.",
		k.Int("ticks")-1, k.Duration("tick"))

	// The checks.
	allRead := true
	accounted := true
	var readDetail, putDetail []string
	for _, r := range rs {
		if r.readLines != float64(r.lines) {
			allRead = false
			readDetail = append(readDetail, fmt.Sprintf("%s: %g of %d", r.combo, r.readLines, r.lines))
		}
		if r.chunkPuts != float64(r.chunks)+r.indexSegments {
			accounted = false
			putDetail = append(putDetail, fmt.Sprintf("%s: %g uploads, %d chunks + %g segments", r.combo, r.chunkPuts, r.chunks, r.indexSegments))
		}
	}
	e.Check("every combination reads back every line", "the full read counts every line pushed, in each combination",
		fmt.Sprintf("%d combinations; wrong: %v", len(rs), readDetail), len(rs) > 0 && allRead)
	e.Check("every ingester PUT is a chunk or an index segment", "uploads = chunk objects listed + index segments written, in each combination",
		fmt.Sprintf("%d combinations; wrong: %v", len(rs), putDetail), len(rs) > 0 && accounted)
	find := func(c ccCombo) *ccResult {
		for i := range rs {
			if rs[i].combo == c {
				return &rs[i]
			}
		}
		return nil
	}
	// Codecs: zstd < snappy < none in bytes, for every size and idle.
	order := []string{"zstd", "snappy", "none"}
	var codecPairs, codecBad []string
	for _, r := range rs {
		i := slices.Index(order, r.combo.codec)
		if i < 0 || i+1 >= len(order) {
			continue
		}
		for _, worse := range order[i+1:] {
			o := find(ccCombo{worse, r.combo.target, r.combo.idle})
			if o == nil {
				continue
			}
			pair := fmt.Sprintf("%s %s < %s %s", r.combo.codec, mtBytes(int(r.chunkBytes)), worse, mtBytes(int(o.chunkBytes)))
			codecPairs = append(codecPairs, pair)
			if r.chunkBytes >= o.chunkBytes {
				codecBad = append(codecBad, pair)
			}
		}
	}
	if len(codecPairs) > 0 {
		e.Check("the codec sets the bytes stored: zstd < snappy < none", "each pair measured with the same target size and idle period",
			fmt.Sprintf("%d pairs, %d not in order %v", len(codecPairs), len(codecBad), codecBad), len(codecBad) == 0)
	}
	// Target size: smaller → at least as many objects, and more for none.
	var sizePairs, sizeBad []string
	for _, r := range rs {
		for _, o := range rs {
			if o.combo.codec != r.combo.codec || o.combo.idle != r.combo.idle || o.combo.target <= r.combo.target {
				continue
			}
			pair := fmt.Sprintf("%s: %d chunks at %s, %d at %s", r.combo.codec+"/"+r.combo.idle.String(), r.chunks, r.combo.target, o.chunks, o.combo.target)
			sizePairs = append(sizePairs, pair)
			if r.chunks < o.chunks {
				sizeBad = append(sizeBad, pair)
			}
		}
	}
	if len(sizePairs) > 0 {
		e.Check("a smaller target size writes no fewer chunk objects", "each pair measured with the same codec and idle period",
			fmt.Sprintf("%d pairs, %d with fewer %v", len(sizePairs), len(sizeBad), sizeBad), len(sizeBad) == 0)
	}
	// Idle period: shorter → more objects, when streams pause.
	var idlePairs, idleBad []string
	for _, r := range rs {
		for _, o := range rs {
			if o.combo.codec != r.combo.codec || o.combo.target != r.combo.target || o.combo.idle <= r.combo.idle {
				continue
			}
			pair := fmt.Sprintf("%s/%s: %d chunks at idle %s, %d at %s", r.combo.codec, r.combo.target, r.chunks, r.combo.idle, o.chunks, o.combo.idle)
			idlePairs = append(idlePairs, pair)
			if r.chunks <= o.chunks {
				idleBad = append(idleBad, pair)
			}
		}
	}
	if len(idlePairs) > 0 {
		e.Check("a shorter idle period writes more chunk objects (quiet streams are cut at every pause)", "each pair measured with the same codec and target size",
			fmt.Sprintf("%d pairs, %d not more %v", len(idlePairs), len(idleBad), idleBad), len(idleBad) == 0)
	}
	if len(rs) > 0 {
		best, worst := rs[0], rs[0]
		for _, r := range rs {
			if r.chunkBytes < best.chunkBytes {
				best = r
			}
			if r.chunkBytes > worst.chunkBytes {
				worst = r
			}
		}
		e.Figure("fewest bytes stored", fmt.Sprintf("%s: %s for %s raw (ratio %.2f)", best.combo, mtBytes(int(best.chunkBytes)), mtBytes(best.rawBytes), float64(best.rawBytes)/float64(max(best.chunkBytes, 1))), "")
		e.Figure("most bytes stored", fmt.Sprintf("%s: %s (ratio %.2f)", worst.combo, mtBytes(int(worst.chunkBytes)), float64(worst.rawBytes)/float64(max(worst.chunkBytes, 1))), "")
	}
}
