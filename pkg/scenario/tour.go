package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/chunk"
	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/storage"
)

// Tour is question 1's scenario: one batch followed hop by hop through the
// pipeline, with the evidence of each hop and the time it took.
func Tour() *Scenario {
	return &Scenario{
		Name:     "tour",
		Question: 1,
		Title:    "Design a distributed log ingestion pipeline",
		Hypothesis: "A push answered 204 is already a record in Kafka, at one partition and offset. " +
			"Only the ingester that owns that partition in the ring holds its stream in memory. " +
			"A flush writes the stream as a chunk object named by an index segment, and only then " +
			"does that ingester's committed offset pass the record. The querier then answers every line exactly once. " +
			"Every hop takes milliseconds, except the flush, which waits for its trigger.",
		Knobs: []Knob{
			{Name: "lines", Kind: KnobInt, Default: "100", Short: "20", Usage: "Lines in the batch: one stream, so one Kafka record."},
			{Name: "tenant", Kind: KnobString, Default: "tour", Usage: "Tenant (X-Scope-OrgID) the batch is pushed as; auth is on."},
			{Name: "query-tenant", Kind: KnobString, Default: "", Usage: "Tenant to query as; empty: the push tenant. Any other tenant must see nothing, so the \"exactly once\" check fails (tenant isolation)."},
			{Name: "skip-flush", Kind: KnobBool, Default: "false", Usage: "Do not POST /flush. The chunk then waits for its idle (30m) or max-age (2h) flush, so the chunk, index and commit checks fail within -hop-timeout: a broken knob that shows the checks can fail."},
			{Name: "hop-timeout", Kind: KnobDuration, Default: "20s", Short: "8s", Usage: "How long to wait to observe each hop before it counts as not observed."},
			{Name: "dwell", Kind: KnobDuration, Default: "2s", Short: "1s", Usage: "Pause before the push, after the batch is in memory, after the flush and after the query, so the sampled metrics show each stage apart; no hop's latency includes it."},
		},
		Configure: func(cfg *app.AllInOneConfig, _ Values) { cfg.AuthEnabled = true },
		Series: []Selector{
			{Name: "loki_distributor_lines_received_total", Target: "distributor"},
			{Name: "lokilab_distributor_lines_acknowledged_total", Target: "distributor"},
			{Name: "lokilab_querier_lines_processed_total", Target: "distributor"},
			{Name: "lokilab_ingester_entries_appended_total", Target: "ingester"},
			{Name: "loki_ingester_memory_chunks", Target: "ingester"},
			{Name: "loki_ingester_memory_streams", Target: "ingester"},
			{Name: "loki_ingester_chunks_flushed_total", Target: "ingester"},
			{Name: "lokilab_ingester_partition_committed_offset", Target: "ingester"},
		},
		Plots: []PlotSpec{
			{
				File: "tour-lines.png", Title: "The batch's lines at each hop (cumulative)", YLabel: "lines",
				Lines: []LineSpec{
					{Select: Selector{Name: "loki_distributor_lines_received_total", Target: "distributor"}, Sum: true, Legend: "distributor: received"},
					{Select: Selector{Name: "lokilab_distributor_lines_acknowledged_total", Target: "distributor"}, Sum: true, Legend: "distributor: acknowledged by Kafka"},
					{Select: Selector{Name: "lokilab_ingester_entries_appended_total", Target: "ingester"}, Sum: true, Legend: "ingesters: appended to chunks"},
					{Select: Selector{Name: "lokilab_querier_lines_processed_total", Target: "distributor"}, Sum: true, Legend: "querier: lines processed"},
				},
			},
			{
				File: "tour-ingester-memory.png", Title: "Chunks in memory per ingester: the owner's goes 0 → 1 → 0 at the flush", YLabel: "chunks",
				Lines: []LineSpec{
					{Select: Selector{Name: "loki_ingester_memory_chunks", Target: "ingester"}, Legend: "in memory:"},
					{Select: Selector{Name: "loki_ingester_chunks_flushed_total", Target: "ingester"}, Sum: true, Legend: "flushed to the store (all ingesters)"},
				},
			},
		},
		Look: []string{
			"`loki_distributor_lines_received_total` and `lokilab_distributor_lines_acknowledged_total` on the API port's `/metrics`: the push hop.",
			"`lokilab_distributor_kafka_write_duration_seconds`: how long Kafka took to acknowledge (acks=all).",
			"`kcat -b <kafka> -t loki -C -e -f 'partition %p offset %o key %k: %S bytes\\n'`: the record, read by a client that is not Go.",
			"`/ring` on the API port (a browser shows the HTML page): which ingester owns the record's partition.",
			"`/ingester/status` on the owner: `next_offset` past the record, `committed_offset` after the flush.",
			"`loki_ingester_memory_chunks`, `loki_ingester_chunks_flushed_total{reason=\"forced\"}`, `loki_ingester_chunk_compression_ratio`, `lokilab_ingester_partition_committed_offset` on the owner's `/metrics`.",
			"`find <data>/store -type f` (run with -keep-data): the chunk under `<tenant>/chunks/<fingerprint>/` and the segment under `index/<day>/<tenant>/`.",
			"`/loki/api/v1/query_range` with `X-Scope-OrgID`: the answer's `stats` say whether lines came from ingesters or chunks.",
			"`/debug/pprof/` on the API port, e.g. `go tool pprof http://<api>/debug/pprof/profile?seconds=10` under load.",
		},
		Code: []CodeRef{
			{"docs/architecture.md", "the map: every box of the pipeline and the package behind it"},
			{"docs/write-path.md", "the push hop by hop, and every status code"},
			{"pkg/distributor/distributor.go", "validate, rate-limit, pick the partition, produce with acks=all, then 204"},
			{"pkg/distributor/partition.go", "stream → partition: the hash of tenant and labels looked up in the partition ring"},
			{"pkg/kafka/RECORD.md", "the Kafka record: key = tenant, value = the stream in the push API's protobuf"},
			{"pkg/ring/ring.go", "the partition ring: who owns which partition"},
			{"docs/ingest-path.md", "from a record to a chunk object, and why kill -9 loses nothing"},
			{"pkg/ingester/partition.go", "records → streams → chunks; committable(): the oldest offset not yet durable"},
			{"pkg/ingester/flush.go", "cut, upload, index, then commit"},
			{"pkg/chunk/FORMAT.md", "the chunk object byte by byte"},
			{"docs/index-format.md", "the index segment that names the chunk"},
			{"docs/read-path.md", "the query: ingesters for recent data, index and chunks for the rest, merged and deduplicated"},
			{"pkg/querier/querier.go", "the querier's plan, fan-out and merge"},
			{"pkg/scenario/tour.go", "this scenario: how each hop is observed"},
		},
		Budget:      2 * time.Minute,
		ShortBudget: time.Minute,
		Run:         runTour,
	}
}

// hop is one observed step of the batch's trip.
type hop struct {
	name, short string
	took        time.Duration
	evidence    string
}

// tour is one run's state: the batch and what was seen of it.
type tour struct {
	e       *Env
	client  *http.Client
	tenant  string
	id      string
	lbls    labels.Labels
	req     *push.Request
	lines   int
	from    int64 // the batch's first and last entry timestamps, ns
	to      int64
	timeout time.Duration
	hops    []hop
	// sent is when the push was sent, acked when its 204 arrived.
	sent, acked time.Time
}

func (t *tour) hop(name, short string, took time.Duration, evidence string) {
	t.hops = append(t.hops, hop{name, short, took, evidence})
	t.e.Logf("hop %d %s: %s — %s", len(t.hops), name, ms(took), evidence)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

func runTour(ctx context.Context, e *Env) error {
	k := e.Knobs
	n := k.Int("lines")
	if n < 1 {
		return errors.New("-lines must be at least 1")
	}
	t := &tour{
		e:       e,
		client:  &http.Client{Timeout: 30 * time.Second},
		tenant:  k.String("tenant"),
		id:      strconv.FormatInt(time.Now().UnixNano(), 36),
		lines:   n,
		timeout: k.Duration("hop-timeout"),
	}
	dwell := k.Duration("dwell")
	// One stream, so one record at one partition. The tour_id label makes
	// the stream, so its fingerprint and chunk key, this run's own.
	t.lbls = labels.New(labels.Label{Name: "app", Value: "tour"}, labels.Label{Name: "tour_id", Value: t.id})
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	now := time.Now()
	st := push.Stream{Labels: t.lbls.String(), Entries: make([]push.Entry, n)}
	for i := range st.Entries {
		st.Entries[i] = push.Entry{Timestamp: now.Add(time.Duration(i) * time.Millisecond).UnixNano(), Line: pushtest.Line(rng, fmt.Sprintf("%s-%d", t.id, i))}
	}
	t.req = &push.Request{Streams: []push.Stream{st}}
	t.from, t.to = st.Entries[0].Timestamp, st.Entries[n-1].Timestamp
	e.Logf("the batch: %d lines of stream %s, tenant %q", n, t.lbls, t.tenant)
	if err := sleep(ctx, dwell); err != nil {
		return err
	}

	// Watch every ingester from before the push: the first to hold the
	// batch, and when, is hop 3's evidence.
	wctx, stopWatch := context.WithTimeout(ctx, 2*t.timeout)
	defer stopWatch()
	seen := t.watchIngesters(wctx)
	rec, err := t.pushAndFindRecord(ctx)
	if err != nil || rec == nil {
		return err
	}
	owner, err := t.ingesterHolds(ctx, rec, seen)
	if err != nil {
		return err
	}
	if owner.URL != "" {
		if err := sleep(ctx, dwell); err != nil {
			return err
		}
		if err := t.flush(ctx, rec, owner); err != nil {
			return err
		}
		if err := sleep(ctx, dwell); err != nil {
			return err
		}
	}
	if err := t.query(ctx, k.String("query-tenant")); err != nil {
		return err
	}
	all := []string{"push→204", "Kafka ack", "push→memory", "flush→chunk", "→index", "→commit", "query"}
	var missing []string
	for _, h := range all {
		if !slices.ContainsFunc(t.hops, func(o hop) bool { return o.short == h }) {
			missing = append(missing, h)
		}
	}
	got := fmt.Sprintf("%d hops", len(t.hops))
	if len(missing) > 0 {
		got += "; not seen: " + strings.Join(missing, ", ")
	}
	e.Check("every hop observed", "7 hops: "+strings.Join(all, ", "), got, len(missing) == 0 && len(t.hops) == len(all))
	t.report()
	return sleep(ctx, dwell)
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// endOffsets returns every partition's end offset.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out, errors.Join(errs...)
}

// kafkaWriteSeconds is the distributor's total time waiting for Kafka to
// acknowledge, over every push so far.
func (t *tour) kafkaWriteSeconds(ctx context.Context) (float64, float64, error) {
	url := t.e.Sys.API + "/metrics"
	sum, err := ScrapeSum(ctx, t.client, url, "lokilab_distributor_kafka_write_duration_seconds_sum", nil)
	if err != nil {
		return 0, 0, err
	}
	count, err := ScrapeSum(ctx, t.client, url, "lokilab_distributor_kafka_write_duration_seconds_count", nil)
	return sum, count, err
}

// pushAndFindRecord pushes the batch and finds its record in Kafka: the
// partition whose end offset had moved when the 204 arrived, and the
// record read back from it.
func (t *tour) pushAndFindRecord(ctx context.Context) (*kgo.Record, error) {
	e, sys := t.e, t.e.Sys
	cl, err := kgo.NewClient(kgo.SeedBrokers(sys.Kafka))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	before, err := endOffsets(ctx, adm, sys.Topic)
	if err != nil {
		return nil, fmt.Errorf("reading end offsets: %w", err)
	}
	kafkaSum0, kafkaCount0, err := t.kafkaWriteSeconds(ctx)
	if err != nil {
		return nil, err
	}

	body := push.EncodeSnappyProto(t.req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, sys.API+"/loki/api/v1/push", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/x-protobuf")
	hreq.Header.Set("X-Scope-OrgID", t.tenant)
	t0 := time.Now()
	t.sent = t0
	resp, err := t.client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	t.acked = time.Now()
	if !e.Check("push acknowledged", "HTTP 204", strings.TrimSpace(fmt.Sprintf("HTTP %d %s", resp.StatusCode, msg)), resp.StatusCode == http.StatusNoContent) {
		return nil, nil
	}
	t.hop("client → distributor → 204", "push→204", t.acked.Sub(t0),
		fmt.Sprintf("HTTP 204 for %d lines, %d bytes of protobuf+snappy, sent only after Kafka acknowledged (acks=all): the whole request, hop 2 included", t.lines, len(body)))

	// Durable at the 204: the end offsets right after it already count
	// the record.
	after, err := endOffsets(ctx, adm, sys.Topic)
	if err != nil {
		return nil, fmt.Errorf("reading end offsets: %w", err)
	}
	var moved []int32
	for p, o := range after {
		if o > before[p] {
			moved = append(moved, p)
		}
	}
	e.Check("the record was in Kafka when the 204 arrived", "one partition's end offset moved",
		fmt.Sprintf("partitions moved: %v", moved), len(moved) == 1)
	kafkaSum1, kafkaCount1, err := t.kafkaWriteSeconds(ctx)
	if err != nil {
		return nil, err
	}

	// Read the record back from the partition that moved; from every
	// partition if that is not one, so the record is still found.
	parts := map[int32]kgo.Offset{}
	for p := range after {
		if len(moved) != 1 || moved[0] == p {
			parts[p] = kgo.NewOffset().At(before[p])
		}
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(sys.Kafka), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{sys.Topic: parts}))
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	rctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var found []*kgo.Record
	for rctx.Err() == nil && len(found) == 0 {
		rd.PollFetches(rctx).EachRecord(func(r *kgo.Record) {
			tenant, s, err := kafka.DecodeRecord(r)
			if err == nil && tenant == t.tenant && s.Labels == t.lbls.String() {
				found = append(found, r)
			}
		})
	}
	if !e.Check("the batch is one record at one partition", "1 record", plural(len(found), "record"), len(found) == 1) {
		return nil, nil
	}
	rec := found[0]
	wait := time.Duration((kafkaSum1 - kafkaSum0) * float64(time.Second))
	t.hop("distributor → Kafka acknowledged", "Kafka ack", wait,
		fmt.Sprintf("partition %d offset %d, key %q (the tenant), %d bytes of value, read back with franz-go; the time is the distributor's own (lokilab_distributor_kafka_write_duration_seconds, %g write)",
			rec.Partition, rec.Offset, rec.Key, len(rec.Value), kafkaCount1-kafkaCount0))
	e.Figure("Kafka partition", strconv.Itoa(int(rec.Partition)), fmt.Sprintf("of %d: the hash of tenant and labels, looked up in the partition ring", sys.Partitions))
	e.Figure("Kafka offset", strconv.FormatInt(rec.Offset, 10), "read back with franz-go from the embedded broker")
	e.Figure("Kafka record", fmt.Sprintf("%d bytes", len(rec.Value)), fmt.Sprintf("key %q; value: the stream in the push API's protobuf (pkg/kafka/RECORD.md)", rec.Key))
	return rec, nil
}

// sighting is the first ingester seen holding the whole batch.
type sighting struct {
	name  string
	at    time.Time
	lines int
	err   error
}

// watchIngesters polls every ingester's memory until one holds the whole
// batch, and reports which and when.
func (t *tour) watchIngesters(ctx context.Context) <-chan sighting {
	out := make(chan sighting, 1)
	go func() {
		best := sighting{}
		for ctx.Err() == nil {
			for _, in := range t.e.Sys.Ingesters {
				n, err := t.recentLines(ctx, in)
				if err != nil {
					if ctx.Err() == nil {
						out <- sighting{err: err}
					} else {
						out <- best
					}
					return
				}
				if n > best.lines {
					best = sighting{name: in.Name, at: time.Now(), lines: n}
				}
				if n >= t.lines {
					out <- best
					return
				}
			}
			if sleep(ctx, 2*time.Millisecond) != nil {
				break
			}
		}
		out <- best
	}()
	return out
}

// ingesterHolds checks the ingester that first held the batch is the
// ring's owner of the record's partition, and that no other holds any of
// it.
func (t *tour) ingesterHolds(ctx context.Context, rec *kgo.Record, seen <-chan sighting) (Component, error) {
	e, sys := t.e, t.e.Sys
	ring, err := sys.Ring(ctx)
	if err != nil {
		return Component{}, err
	}
	name, ok := ring.Owner(rec.Partition)
	if !e.Check("the partition has an ACTIVE owner in the ring", "an ingester", name, ok) {
		return Component{}, nil
	}
	owner, err := sys.Ingester(name)
	if err != nil {
		return Component{}, err
	}
	var s sighting
	select {
	case s = <-seen:
	case <-ctx.Done():
		return Component{}, ctx.Err()
	}
	if s.err != nil {
		return Component{}, s.err
	}
	if !e.Check("the partition's owner holds the whole batch in memory", fmt.Sprintf("%d lines in %s's memory", t.lines, name),
		fmt.Sprintf("%d lines in %q's", s.lines, s.name), s.name == name && s.lines == t.lines) {
		return Component{}, nil
	}
	var status struct {
		Partitions []ingesterPartition `json:"partitions"`
	}
	next := int64(-1)
	if err := sys.getJSON(ctx, owner.URL+"/ingester/status", &status); err == nil {
		for _, p := range status.Partitions {
			if p.Partition == rec.Partition {
				next = p.Next
			}
		}
	}
	after := s.at.Sub(t.acked)
	when := ms(after) + " after the 204 arrived"
	if after < 0 {
		when = ms(-after) + " before the 204 arrived: the consumer is as quick as the answer"
	}
	t.hop("Kafka → readable in the owner's memory", "push→memory", s.at.Sub(t.sent),
		fmt.Sprintf("%s, the ring's owner of partition %d, answers /ingester/query_recent with all %d lines (its next_offset: %d), %s; the time counts from sending the push, like hop 1, every ingester polled every ~2 ms",
			name, rec.Partition, t.lines, next, when))
	e.Figure("owner", name, "the partition's ACTIVE owner in /ring")
	var elsewhere []string
	for _, in := range sys.Ingesters {
		if in.Name == name {
			continue
		}
		n, err := t.recentLines(ctx, in)
		if err != nil {
			return owner, err
		}
		if n > 0 {
			elsewhere = append(elsewhere, fmt.Sprintf("%s: %d", in.Name, n))
		}
	}
	e.Check("no other ingester holds it", "0 lines elsewhere", fmt.Sprintf("lines elsewhere: %v", elsewhere), len(elsewhere) == 0)
	return owner, nil
}

type ingesterPartition struct {
	Partition int32 `json:"partition"`
	Next      int64 `json:"next_offset"`
	Committed int64 `json:"committed_offset"`
}

// recentLines counts the batch's lines in an ingester's memory.
func (t *tour) recentLines(ctx context.Context, in Component) (int, error) {
	v := url.Values{
		"query": {fmt.Sprintf(`{tour_id=%q}`, t.id)},
		"start": {strconv.FormatInt(t.from, 10)},
		"end":   {strconv.FormatInt(t.to+1, 10)},
		"limit": {strconv.Itoa(t.lines * 2)},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL+"/ingester/query_recent?"+v.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("X-Scope-OrgID", t.tenant)
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return 0, fmt.Errorf("%s /ingester/query_recent: %s: %s", in.Name, resp.Status, b)
	}
	n := 0
	dec := json.NewDecoder(resp.Body)
	for {
		var line struct {
			Values [][2]string `json:"values"`
			Error  string      `json:"error"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			return n, nil
		} else if err != nil {
			return n, err
		}
		if line.Error != "" {
			return n, fmt.Errorf("%s: %s", in.Name, line.Error)
		}
		n += len(line.Values)
	}
}

// flushSeen is what watching the store and Kafka during a flush saw, and
// when.
type flushSeen struct {
	chunkKey, segKey         string
	chunkAt, segAt, commitAt time.Time
	committed                int64
	chunkObjects             int
	// indexedAtCommit says the segment was listed when the commit was
	// first seen: the commit did not come before the data was durable.
	indexedAtCommit bool
}

// watchFlush watches the store's directories and the group's committed
// offset until the chunk, the owner's index segment and the commit past
// the record have all appeared, or until the deadline: one poller each, so
// a slow Kafka request does not delay seeing a file (the directories are
// listed every 0.2 ms, Kafka asked every ~1 ms). A poll sees an event a
// little after it happened, so the times are made monotone: an event is
// never stamped before the one it follows.
func (t *tour) watchFlush(ctx context.Context, rec *kgo.Record, owner Component, deadline time.Time) (flushSeen, error) {
	sys := t.e.Sys
	cl, err := kgo.NewClient(kgo.SeedBrokers(sys.Kafka))
	if err != nil {
		return flushSeen{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	day := strconv.Itoa(index.DayOf(t.from))
	fp := fmt.Sprintf("%016x", t.lbls.Hash())
	chunkDir := filepath.Join(sys.StoreDir, t.tenant, "chunks", fp)
	segDir := filepath.Join(sys.StoreDir, "index", day, t.tenant)
	segPrefix := fmt.Sprintf("%s-p%d-", owner.Name, rec.Partition)
	objects := func(dir, prefix string) []string {
		des, _ := os.ReadDir(dir)
		var out []string
		for _, de := range des {
			// Uploads are written to a dot-named temporary file and
			// renamed: a visible name is a complete object.
			if !strings.HasPrefix(de.Name(), ".") && strings.HasPrefix(de.Name(), prefix) {
				out = append(out, de.Name())
			}
		}
		return out
	}
	// poll calls look until it reports done or the deadline passes.
	poll := func(every time.Duration, look func() (bool, error)) error {
		for {
			done, err := look()
			if done || err != nil || time.Now().After(deadline) {
				return err
			}
			if err := sleep(ctx, every); err != nil {
				return err
			}
		}
	}
	var (
		s      = flushSeen{committed: -1}
		chunks []string
		segs   []string
		g      errgroup.Group
	)
	g.Go(func() error {
		return poll(200*time.Microsecond, func() (bool, error) {
			if chunks = objects(chunkDir, ""); len(chunks) > 0 {
				s.chunkAt = time.Now()
			}
			return len(chunks) > 0, nil
		})
	})
	g.Go(func() error {
		return poll(200*time.Microsecond, func() (bool, error) {
			if segs = objects(segDir, segPrefix); len(segs) > 0 {
				s.segAt = time.Now()
			}
			return len(segs) > 0, nil
		})
	})
	g.Go(func() error {
		return poll(time.Millisecond, func() (bool, error) {
			o, ok, err := kafka.CommittedOffset(ctx, adm, sys.ConsumerGroup, sys.Topic, rec.Partition)
			if err != nil || !ok {
				return false, err
			}
			s.committed = o
			if o <= rec.Offset {
				return false, nil
			}
			s.commitAt = time.Now()
			// The segment must be there already: look now.
			s.indexedAtCommit = len(objects(segDir, segPrefix)) > 0
			return true, nil
		})
	})
	err = g.Wait()
	s.chunkObjects = len(chunks)
	if len(chunks) > 0 {
		s.chunkKey = path.Join(t.tenant, "chunks", fp, chunks[0])
	}
	if len(segs) > 0 {
		s.segKey = path.Join("index", day, t.tenant, segs[0])
	}
	if !s.segAt.IsZero() {
		s.segAt = later(s.segAt, s.chunkAt)
	}
	if !s.commitAt.IsZero() {
		s.commitAt = later(s.commitAt, s.segAt)
	}
	return s, err
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// flush forces the owner's flush (unless -skip-flush) while watching the
// store and Kafka, then checks the chunk object, the index segment that
// names it and the committed offset.
func (t *tour) flush(ctx context.Context, rec *kgo.Record, owner Component) error {
	e, sys := t.e, t.e.Sys
	type watched struct {
		s   flushSeen
		err error
	}
	uploads := func() (sum, count float64, err error) {
		u := map[string]string{"operation": "upload"}
		if sum, err = ScrapeSum(ctx, t.client, owner.URL+"/metrics", "loki_objstore_bucket_operation_duration_seconds_sum", u); err != nil {
			return 0, 0, err
		}
		count, err = ScrapeSum(ctx, t.client, owner.URL+"/metrics", "loki_objstore_bucket_operation_duration_seconds_count", u)
		return sum, count, err
	}
	upSum0, upCount0, err := uploads()
	if err != nil {
		return err
	}
	f0 := time.Now()
	done := make(chan watched, 1)
	go func() {
		s, err := t.watchFlush(ctx, rec, owner, f0.Add(t.timeout))
		done <- watched{s, err}
	}()
	var f1 time.Time
	if e.Knobs.Bool("skip-flush") {
		e.Logf("-skip-flush: no POST /flush; the chunk waits for its idle (%s) or max-age (%s) flush; watching the store for %s",
			sys.Config.Ingester.ChunkIdlePeriod, sys.Config.Ingester.MaxChunkAge, t.timeout)
	} else {
		e.Logf("POST %s/flush", owner.URL)
		if err := sys.post(ctx, owner.URL+"/flush", "", nil, http.StatusNoContent); err != nil {
			return err
		}
		f1 = time.Now()
	}
	w := <-done
	if w.err != nil {
		return w.err
	}
	s := w.s

	// The chunk object.
	if !e.Check("a chunk object holds the stream", fmt.Sprintf("1 object under %s/chunks/%016x/", t.tenant, t.lbls.Hash()),
		fmt.Sprintf("%s within %s", plural(s.chunkObjects, "object"), t.timeout), s.chunkObjects == 1) {
		return nil
	}
	store, err := storage.New(sys.Config.Storage, "scenario", prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer store.Close()
	rc, err := store.Bucket.Get(ctx, s.chunkKey)
	if err != nil {
		return err
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	c, err := chunk.Decode(raw)
	if err != nil {
		return fmt.Errorf("decoding chunk %s: %w", s.chunkKey, err)
	}
	e.Check("the chunk holds every line", fmt.Sprintf("%d entries", t.lines), fmt.Sprintf("%d entries", c.Entries()), c.Entries() == t.lines)
	t.hop("flush → chunk object in the store", "flush→chunk", s.chunkAt.Sub(f0),
		fmt.Sprintf("%s: %d bytes (%s, %d block), %d entries; the time is from POST /flush until the object was listed (its directory listed every ~0.2 ms)", s.chunkKey, len(raw), c.Encoding(), c.Blocks(), c.Entries()))
	e.Figure("chunk object key", "`"+s.chunkKey+"`", "<tenant>/chunks/<fingerprint>/<from ms>-<through ms>-<crc32c>, all hex (pkg/index ChunkRef.Key)")
	e.Figure("chunk size", fmt.Sprintf("%d bytes compressed, %d uncompressed", len(raw), c.UncompressedSize()), fmt.Sprintf("%s, %d block(s), %d entries", c.Encoding(), c.Blocks(), c.Entries()))
	e.Figure("compression ratio", fmt.Sprintf("%.2f", float64(c.UncompressedSize())/float64(len(raw))), "uncompressed line bytes over object bytes; one small batch compresses worse than a full 1.5MB chunk")

	// The index segment naming it.
	segKey := ""
	segs, segKeys, err := index.NewClient(store.Bucket).Segments(ctx, t.tenant, t.from, t.to)
	if err != nil {
		return err
	}
	m := labels.MustNewMatcher(labels.MatchEqual, "tour_id", t.id)
	for i, seg := range segs {
		for _, ser := range seg.Series(t.from, t.to, m) {
			for _, ref := range ser.Chunks {
				if ref.Key(t.tenant) == s.chunkKey {
					segKey = segKeys[i]
				}
			}
		}
	}
	if !e.Check("an index segment names the chunk", "a segment under index/<day>/"+t.tenant+"/", segKey, segKey != "") {
		return nil
	}
	writer := fmt.Sprintf("%s-p%d-", owner.Name, rec.Partition)
	e.Check("the owner wrote it, for that partition", "segment name starts "+writer, path.Base(segKey), strings.HasPrefix(path.Base(segKey), writer) && segKey == s.segKey)
	t.hop("chunk → index segment", "→index", s.segAt.Sub(s.chunkAt),
		fmt.Sprintf("%s names the chunk; from now on a query can find it; the time is between the two objects being listed", segKey))
	e.Figure("index segment", "`"+segKey+"`", "index/<days since epoch>/<tenant>/<ingester>-p<partition>-<unix ms>-<seq>.idx")

	// The commit.
	if !e.Check("the owner committed past the record", fmt.Sprintf("committed offset ≥ %d (the record's offset + 1)", rec.Offset+1),
		fmt.Sprintf("%d in group %q", s.committed, sys.ConsumerGroup), s.committed > rec.Offset) {
		return nil
	}
	e.Check("the commit came after the index segment", "the segment listed when the commit was first seen",
		map[bool]string{true: "it was", false: "it was not"}[s.indexedAtCommit], s.indexedAtCommit)
	var status struct {
		Partitions []ingesterPartition `json:"partitions"`
	}
	statusCommitted := int64(-1)
	if err := sys.getJSON(ctx, owner.URL+"/ingester/status", &status); err == nil {
		for _, p := range status.Partitions {
			if p.Partition == rec.Partition {
				statusCommitted = p.Committed
			}
		}
	}
	t.hop("index segment → offset committed", "→commit", s.commitAt.Sub(s.segAt),
		fmt.Sprintf("group %q, partition %d: committed offset %d (the owner's /ingester/status: %d); the time is between the segment being listed and Kafka answering with the new offset (polled every ~1 ms)",
			sys.ConsumerGroup, rec.Partition, s.committed, statusCommitted))
	e.Figure("committed offset", strconv.FormatInt(s.committed, 10), "every record before it is durable in the object store")
	e.Figure("POST /flush", ms(f1.Sub(f0)), "upload, index, commit: /flush answers once all are done")
	if upSum1, upCount1, err := uploads(); err == nil {
		e.Figure("object store PUTs in the flush", fmt.Sprintf("%g, %s in all", upCount1-upCount0, ms(time.Duration((upSum1-upSum0)*float64(time.Second)))),
			"the chunk and the index segment; the owner's loki_objstore_bucket_operation_duration_seconds{operation=\"upload\"}")
	}
	return nil
}

// query asks the querier for the batch and checks every line comes back
// exactly once.
func (t *tour) query(ctx context.Context, asTenant string) error {
	e, sys := t.e, t.e.Sys
	if asTenant == "" {
		asTenant = t.tenant
	}
	want := map[string]bool{}
	for _, en := range t.req.Streams[0].Entries {
		want[en.Line] = true
	}
	v := url.Values{
		"query":     {fmt.Sprintf(`{tour_id=%q}`, t.id)},
		"start":     {strconv.FormatInt(t.from, 10)},
		"end":       {strconv.FormatInt(t.to+1, 10)},
		"limit":     {strconv.Itoa(len(want) * 2)},
		"direction": {"forward"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sys.API+"/loki/api/v1/query_range?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Scope-OrgID", asTenant)
	q0 := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	q1 := time.Now()
	if err != nil {
		return err
	}
	if !e.Check("the querier answers", "HTTP 200", fmt.Sprintf("HTTP %d", resp.StatusCode), resp.StatusCode == http.StatusOK) {
		e.Report.AddNote("The query's answer: %s", body)
		return nil
	}
	var out struct {
		Data struct {
			Result []struct {
				Values [][2]string `json:"values"`
			} `json:"result"`
			Stats struct {
				Querier struct {
					Store struct {
						TotalChunksDownloaded int `json:"totalChunksDownloaded"`
						Chunk                 struct {
							TotalDuplicates int `json:"totalDuplicates"`
						} `json:"chunk"`
					} `json:"store"`
				} `json:"querier"`
				Ingester struct {
					TotalReached   int `json:"totalReached"`
					TotalLinesSent int `json:"totalLinesSent"`
				} `json:"ingester"`
			} `json:"stats"`
		} `json:"data"`
		Warnings []string `json:"warnings"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return fmt.Errorf("query answer: %w", err)
	}
	copies := map[string]int{}
	total := 0
	for _, s := range out.Data.Result {
		for _, kv := range s.Values {
			copies[kv[1]]++
			total++
		}
	}
	missing, extra, dup := 0, 0, 0
	for l := range want {
		switch copies[l] {
		case 0:
			missing++
		case 1:
		default:
			dup++
		}
	}
	for l := range copies {
		if !want[l] {
			extra++
		}
	}
	st := out.Data.Stats
	e.Check("every line came back exactly once", fmt.Sprintf("%d lines, each once, for tenant %q", len(want), t.tenant),
		fmt.Sprintf("%d lines for tenant %q: %d missing, %d duplicated, %d unexpected", total, asTenant, missing, dup, extra),
		total == len(want) && missing == 0 && dup == 0 && extra == 0)
	e.Check("the answer is whole", "no warnings", fmt.Sprintf("%d warnings %v", len(out.Warnings), out.Warnings), len(out.Warnings) == 0)
	t.hop("query_range", "query", q1.Sub(q0),
		fmt.Sprintf("%d lines for tenant %q; %s downloaded from the store, %d duplicates removed, %d ingesters asked, %d lines from them",
			total, asTenant, plural(st.Querier.Store.TotalChunksDownloaded, "chunk"), st.Querier.Store.Chunk.TotalDuplicates, st.Ingester.TotalReached, st.Ingester.TotalLinesSent))
	e.Figure("query answer", fmt.Sprintf("%d lines", total), fmt.Sprintf("%s downloaded from the store, %d lines from ingesters", plural(st.Querier.Store.TotalChunksDownloaded, "chunk"), st.Ingester.TotalLinesSent))
	return nil
}

// report adds the hop table, the per-hop figures and the bar chart.
func (t *tour) report() {
	rows := make([][]string, len(t.hops))
	names := make([]string, len(t.hops))
	values := make([]float64, len(t.hops))
	for i, h := range t.hops {
		rows[i] = []string{strconv.Itoa(i + 1), h.name, ms(h.took), h.evidence}
		names[i] = h.short
		values[i] = float64(h.took) / float64(time.Millisecond)
	}
	t.e.Report.AddTable(Table{Title: "The batch, hop by hop", Header: []string{"#", "hop", "took", "evidence"}, Rows: rows})
	if len(t.hops) > 0 {
		t.e.Report.AddBars(Bars{File: "tour-hops.png", Title: "One batch, hop by hop (hops 1 and 3 count from sending the push; hop 2 is part of hop 1)", YLabel: "milliseconds", Labels: names, Values: values})
	}
}
