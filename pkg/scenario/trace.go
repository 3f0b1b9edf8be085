package scenario

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// traceHops are the spans one push's trace must hold, in path order: the
// HTTP request, the distributor, the produce whose context the records
// carry, the ingester that consumes them, and the flush that makes them
// durable.
var traceHops = []string{
	"HTTP POST loki_api_v1_push", "distributor.push", "distributor.validate", "kafka.produce",
	"ingester.consume", "ingester.append", "ingester.flush", "store.put_chunk", "index.write", "kafka.commit_offset",
}

// Trace is question 14's scenario: one push followed by its trace from
// the HTTP request through the Kafka record's headers to the ingester and
// the flush, and one query's fan-out.
func Trace() *Scenario {
	return &Scenario{
		Name:     "trace",
		Question: 14,
		Title:    "Distributed tracing context",
		Hypothesis: "A push's W3C trace context crosses every hop — the HTTP request, the distributor, the Kafka record's traceparent header, " +
			"the ingester that consumes the record and the flush that makes it durable — so the spans of all of them form one connected tree, " +
			"with the time each hop took. A query's trace fans out to every ingester (the querier injects traceparent into its requests) and to the chunk fetches. " +
			"Without the record header the tree breaks at Kafka.",
		Knobs: []Knob{
			{Name: "propagate", Kind: KnobBool, Default: "true", Usage: "distributor.kafka-trace-propagation: copy the push's trace context into each record's traceparent header. false is the broken knob: the records carry no context, the ingester has nothing to continue and records no spans for them, and the push's tree ends at kafka.produce."},
			{Name: "streams", Kind: KnobInt, Default: "3", Usage: "Streams in the traced push: each is a record, possibly on another partition and ingester, so the tree shows one consume and one flush per partition."},
			{Name: "lines", Kind: KnobInt, Default: "200", Short: "50", Usage: "Lines per stream."},
			{Name: "idle", Kind: KnobDuration, Default: "2s", Usage: "ingester chunk_idle_period: the push's chunks are flushed by the periodic cycle once idle this long (Loki's 30m; short so the flush is seconds away)."},
			{Name: "wait", Kind: KnobDuration, Default: "30s", Short: "20s", Usage: "How long to wait for every consumed record's flush and offset commit to show up as spans."},
		},
		Configure: func(cfg *app.AllInOneConfig, k Values) {
			cfg.Server.Tracing.RecorderSpans = 50000
			cfg.Server.Tracing.SampleRatio = 1
			cfg.Distributor.TracePropagation = k.Bool("propagate")
			cfg.Ingester.ChunkIdlePeriod = k.Duration("idle")
		},
		Look: []string{
			"`GET /debug/traces` on the API port: the traces the in-process recorder holds; `?trace_id=<id>&format=text` prints one as a tree (`-tracing.recorder-spans` switches the recorder on in `lokilab run`).",
			"`-tracing.otlp-endpoint host:4318` sends the same spans to any OTLP/HTTP collector (Tempo, Jaeger, the OpenTelemetry collector).",
			"`kcat -C -t loki -f '%h %k\\n'`: the traceparent header on every record.",
			"`curl -H 'Accept: application/openmetrics-text' …/metrics | grep trace_id`: exemplars on `loki_request_duration_seconds` point at a trace.",
			"Log lines logged with a request's context carry `trace_id=` (try `-log.level debug` for the per-request lines).",
		},
		Code: []CodeRef{
			{"pkg/tracing/doc.go", "the shape of a push's trace, and why the consume span is a child and the flush links the other pushes"},
			{"pkg/tracing/propagate.go", "W3C traceparent in HTTP headers and Kafka record headers"},
			{"pkg/tracing/recorder.go", "the in-process recorder behind /debug/traces"},
			{"pkg/server/instrument.go", "the server span and the exemplar on loki_request_duration_seconds"},
			{"pkg/distributor/distributor.go", "decode, validate and kafka.produce spans; the traceparent copied into the records"},
			{"pkg/kafka/record.go", "the traceparent record header"},
			{"pkg/ingester/tracing.go", "consume spans per trace in a poll batch, chunks remembered until their flush"},
			{"pkg/ingester/flush.go", "the flush cycle's spans: put_chunk, index.write, commit_offset"},
			{"pkg/querier/ingesters.go", "the query fan-out: one span per ingester, traceparent injected into the request"},
			{"pkg/scenario/trace.go", "this scenario"},
			{"docs/questions/14-tracing.md", "the question, the design and a reference run"},
		},
		Budget:      2 * time.Minute,
		ShortBudget: time.Minute,
		Run:         runTrace,
	}
}

type traceRun struct {
	e      *Env
	client *http.Client
	id     string
}

func runTrace(ctx context.Context, e *Env) error {
	k := e.Knobs
	t := &traceRun{e: e, client: &http.Client{Timeout: 30 * time.Second}, id: strconv.FormatInt(time.Now().UnixNano(), 36)}
	nStreams, nLines := k.Int("streams"), k.Int("lines")
	if nStreams < 1 || nLines < 1 {
		return errors.New("-streams and -lines must be at least 1")
	}

	// The client starts the trace: its traceparent is what the server
	// span continues, so the scenario knows the trace ID up front.
	traceID, parent := randomHex(16), randomHex(8)
	// A warm-up push of the same streams first, marked not sampled (flags
	// 00) so it records nothing: the first write to each partition pays
	// for connections and the first batch, which is not the hop time the
	// lab asks about.
	warm := time.Now()
	status, err := t.request(ctx, http.MethodPost, e.Sys.API+"/loki/api/v1/push", "00-"+randomHex(16)+"-"+randomHex(8)+"-00",
		tracePushBody(t.id, nStreams, 1, warm.Add(-time.Second)))
	if err != nil {
		return err
	}
	e.Figure("warm-up push (not sampled)", ms(time.Since(warm)), fmt.Sprintf("answered %d; the producer's first writes open connections", status))
	start := time.Now()
	body := tracePushBody(t.id, nStreams, nLines, start)
	pushStart := time.Now()
	status, err = t.request(ctx, http.MethodPost, e.Sys.API+"/loki/api/v1/push", "00-"+traceID+"-"+parent+"-01", body)
	if err != nil {
		return err
	}
	e.Logf("pushed %d streams × %d lines with trace %s: %d in %s", nStreams, nLines, traceID, status, ms(time.Since(pushStart)))
	if !e.Check("the traced push is acknowledged", "204", strconv.Itoa(status), status == http.StatusNoContent) {
		return nil
	}

	// Wait until every consume span has its flush's offset commit — or,
	// when the records carried no trace context (the broken knob), until
	// the ingesters report everything durable, plus a second for spans
	// still ending.
	deadline := time.Now().Add(k.Duration("wait"))
	var consumes, commits int
	var durableSince time.Time
	for {
		all, err := t.spans(ctx, "")
		if err != nil {
			return err
		}
		consumes, commits = countSince(all, "ingester.consume", pushStart), countSince(all, "kafka.commit_offset", pushStart)
		if consumes > 0 && commits >= consumes {
			break
		}
		if ok, err := t.allDurable(ctx); err != nil {
			return err
		} else if !ok {
			durableSince = time.Time{}
		} else if durableSince.IsZero() {
			durableSince = time.Now()
		} else if time.Since(durableSince) > time.Second {
			e.Logf("everything is durable, with %d consume and %d commit spans recorded", consumes, commits)
			break
		}
		if time.Now().After(deadline) {
			e.Logf("waited %s: %d consume spans, %d commit spans", k.Duration("wait"), consumes, commits)
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	durable := time.Since(pushStart)

	spans, err := t.spans(ctx, traceID)
	if err != nil {
		return err
	}
	tree := tracing.BuildTree(spans)
	text := tracing.FormatTree(tree)
	if err := os.WriteFile(filepath.Join(e.Dir, "push-trace.txt"), []byte(text), 0o644); err != nil {
		return err
	}
	e.Report.AddNote("The push's trace (%s), as the in-process recorder kept it (also in `push-trace.txt`); start is the offset from the first span:\n\n```\n%s```", traceID, text)
	e.Logf("the push's trace:\n%s", text)

	e.Check("the push's trace is one connected tree", "1 root", fmt.Sprintf("%d roots, %d spans", len(tree.Roots), len(spans)), tree.Connected() && len(spans) > 0)
	var missing []string
	for _, h := range traceHops {
		if _, ok := tree.Find(h); !ok {
			missing = append(missing, h)
		}
	}
	got := "all " + strconv.Itoa(len(traceHops))
	if len(missing) > 0 {
		got = "missing: " + strings.Join(missing, ", ")
	}
	e.Check("every hop appears in the push's trace", strings.Join(traceHops, " → "), got, len(missing) == 0)
	path := tree.Path("kafka.commit_offset")
	e.Check("the offset commit descends from the push through the Kafka record", "a path HTTP → kafka.produce → ingester.consume → ingester.flush → kafka.commit_offset",
		orNone(strings.Join(path, " → ")), slices.Contains(path, "kafka.produce") && slices.Contains(path, "ingester.consume") && slices.Contains(path, "ingester.flush"))
	e.Check("every record's consume span made it into the push's trace", fmt.Sprintf("%d consume spans (all of them) in the trace", consumes),
		fmt.Sprintf("%d of %d", countSince(spans, "ingester.consume", pushStart), consumes), consumes > 0 && countSince(spans, "ingester.consume", pushStart) == consumes)
	t.hopFigures(tree, spans, durable)

	// The exemplar: the push's latency observation points at its trace.
	ex, err := t.exemplarFor(ctx, traceID)
	if err != nil {
		return err
	}
	e.Check("loki_request_duration_seconds carries the push's trace ID as an exemplar", `an exemplar trace_id="`+traceID+`"`, orNone(ex), ex != "")

	return t.query(ctx, nStreams)
}

// query runs one traced range query for the pushed streams and checks its
// fan-out: a span per ingester, each continued by that ingester's server
// span, and the chunk fetches from the store.
func (t *traceRun) query(ctx context.Context, nStreams int) error {
	e := t.e
	traceID := randomHex(16)
	q := url.Values{"query": {`{app="trace", trace_run="` + t.id + `"}`}, "limit": {"5000"},
		"start": {strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10)}, "end": {strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10)}}
	status, err := t.request(ctx, http.MethodGet, e.Sys.API+"/loki/api/v1/query_range?"+q.Encode(), "00-"+traceID+"-"+randomHex(8)+"-01", nil)
	if err != nil {
		return err
	}
	if !e.Check("the traced query answers", "200", strconv.Itoa(status), status == http.StatusOK) {
		return nil
	}
	spans, err := t.spans(ctx, traceID)
	if err != nil {
		return err
	}
	tree := tracing.BuildTree(spans)
	text := tracing.FormatTree(tree)
	if err := os.WriteFile(filepath.Join(e.Dir, "query-trace.txt"), []byte(text), 0o644); err != nil {
		return err
	}
	e.Report.AddNote("The query's trace (%s), also in `query-trace.txt`:\n\n```\n%s```", traceID, text)
	e.Logf("the query's trace:\n%s", text)
	asked, answered := 0, 0
	reached := map[string]bool{}
	for _, s := range spans {
		if s.Name == "querier.ingester" {
			asked++
			reached[s.Attrs["ingester"]] = true
			if slices.ContainsFunc(spans, func(c tracing.Span) bool {
				return c.ParentID == s.SpanID && c.Name == "HTTP GET ingester_query_recent"
			}) {
				answered++
			}
		}
	}
	// One fan-out per split interval of the query (split_queries_by_interval).
	want := len(e.Sys.Ingesters)
	e.Check("the query's trace fans out to every ingester, each continuing it", fmt.Sprintf("all %d ingesters asked (per split interval), each call continued by the ingester's server span", want),
		fmt.Sprintf("%d ingesters in %d calls, %d continued", len(reached), asked, answered), tree.Connected() && len(reached) == want && asked > 0 && answered == asked)
	fetches := 0
	for _, s := range spans {
		if s.Name == "store.get_chunk" {
			fetches++
		}
	}
	e.Check("the query's trace shows the chunk fetches", fmt.Sprintf("≥ %d store.get_chunk spans (one per flushed stream)", nStreams), strconv.Itoa(fetches), fetches >= nStreams)
	if root, ok := tree.Find("HTTP GET loki_api_v1_query_range"); ok {
		e.Figure("query: total", ms(root.Duration()), fmt.Sprintf("%d spans", len(spans)))
	}
	for _, name := range []string{"querier.ingesters", "querier.store"} {
		if d, n := sumSpans(spans, name); n > 0 {
			e.Figure("query: "+name, ms(d), plural(n, "span"))
		}
	}
	return nil
}

// hopFigures records each hop's time: the longest span of each name (a
// push to three partitions has three consume spans; the slowest is what
// the client waits for).
func (t *traceRun) hopFigures(tree tracing.Tree, spans []tracing.Span, durable time.Duration) {
	e := t.e
	rows := [][]string{}
	for _, h := range traceHops {
		var longest time.Duration
		n := 0
		for _, s := range spans {
			if s.Name == h {
				n++
				longest = max(longest, s.Duration())
			}
		}
		if n == 0 {
			rows = append(rows, []string{h, "0", "—", "—"})
			continue
		}
		first, _ := tree.Find(h)
		rows = append(rows, []string{h, strconv.Itoa(n), ms(longest), "+" + ms(first.Start.Sub(tree.Start))})
	}
	e.Report.AddTable(Table{Title: "Hops of the push's trace", Header: []string{"span", "count", "longest", "first starts at"}, Rows: rows})
	if root, ok := tree.Find("HTTP POST loki_api_v1_push"); ok {
		e.Figure("push: HTTP request (client's 204)", ms(root.Duration()), "the server span: decode, validate, produce and the Kafka acks")
	}
	var lastEnd time.Time
	for _, s := range spans {
		if s.End.After(lastEnd) {
			lastEnd = s.End
		}
	}
	if !tree.Start.IsZero() {
		e.Figure("push: first span to last span", ms(lastEnd.Sub(tree.Start)), "HTTP request to the last offset commit: the trace's whole length")
	}
	e.Figure("push: time until every commit span was seen", ms(durable), "polled; includes chunk_idle_period and the flush check period")
	e.Figure("spans in the push's trace", strconv.Itoa(len(spans)), "")
}

// allDurable reports whether every ingester has committed every partition
// it holds up to its next offset, with something consumed: the push is
// flushed whether or not its spans were recorded.
func (t *traceRun) allDurable(ctx context.Context) (bool, error) {
	consumed := false
	for _, in := range t.e.Sys.Ingesters {
		var st struct {
			Partitions []struct {
				Next      int64 `json:"next_offset"`
				Committed int64 `json:"committed_offset"`
			} `json:"partitions"`
		}
		if err := t.e.Sys.getJSON(ctx, in.URL+"/ingester/status", &st); err != nil {
			return false, err
		}
		for _, p := range st.Partitions {
			if p.Committed < p.Next {
				return false, nil
			}
			consumed = consumed || p.Next > 0
		}
	}
	return consumed, nil
}

func (t *traceRun) request(ctx context.Context, method, u, traceparent string, body []byte) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("traceparent", traceparent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if t.e.Sys.Config.AuthEnabled {
		req.Header.Set("X-Scope-OrgID", "trace")
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// spans reads the recorder's spans of one trace (all spans, as a summary
// list, when traceID is empty — then only names and starts are used).
func (t *traceRun) spans(ctx context.Context, traceID string) ([]tracing.Span, error) {
	if traceID == "" {
		var sums []tracing.TraceSummary
		if err := t.e.Sys.getJSON(ctx, t.e.Sys.API+"/debug/traces", &sums); err != nil {
			return nil, fmt.Errorf("reading the span recorder: %w", err)
		}
		var out []tracing.Span
		for _, s := range sums {
			var ss []tracing.Span
			if err := t.e.Sys.getJSON(ctx, t.e.Sys.API+"/debug/traces?trace_id="+s.TraceID, &ss); err != nil {
				return nil, fmt.Errorf("reading the span recorder: %w", err)
			}
			out = append(out, ss...)
		}
		return out, nil
	}
	var out []tracing.Span
	if err := t.e.Sys.getJSON(ctx, t.e.Sys.API+"/debug/traces?trace_id="+traceID, &out); err != nil {
		return nil, fmt.Errorf("reading the span recorder: %w", err)
	}
	return out, nil
}

// exemplarFor finds, in an OpenMetrics scrape of the API port, the push
// route's latency exemplar naming traceID.
func (t *traceRun) exemplarFor(ctx context.Context, traceID string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.e.Sys.API+"/metrics", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := t.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("scraping for exemplars: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("scraping for exemplars: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "loki_request_duration_seconds_bucket{") && strings.Contains(line, `route="loki_api_v1_push"`) &&
			strings.Contains(line, `trace_id="`+traceID+`"`) {
			_, ex, _ := strings.Cut(line, " # ")
			return ex, nil
		}
	}
	return "", nil
}

func tracePushBody(run string, streams, lines int, at time.Time) []byte {
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	var req struct {
		Streams []stream `json:"streams"`
	}
	for s := range streams {
		st := stream{Stream: map[string]string{"app": "trace", "trace_run": run, "stream": strconv.Itoa(s)}}
		for i := range lines {
			st.Values = append(st.Values, [2]string{strconv.FormatInt(at.Add(time.Duration(i)*time.Millisecond).UnixNano(), 10),
				fmt.Sprintf("level=info stream=%d line=%d msg=\"traced push %s\"", s, i, run)})
		}
		req.Streams = append(req.Streams, st)
	}
	b, _ := json.Marshal(req) // plain strings and maps: cannot fail
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

func countSince(spans []tracing.Span, name string, since time.Time) int {
	n := 0
	for _, s := range spans {
		if s.Name == name && !s.Start.Before(since) {
			n++
		}
	}
	return n
}

func sumSpans(spans []tracing.Span, name string) (time.Duration, int) {
	var d time.Duration
	n := 0
	for _, s := range spans {
		if s.Name == name {
			d += s.Duration()
			n++
		}
	}
	return d, n
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
