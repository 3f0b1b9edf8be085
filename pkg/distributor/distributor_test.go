package distributor

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ts(d time.Duration) int64 { return testNow.Add(d).UnixNano() }

// TestSameStreamsSameRecordsInEveryFormat: a push means the same thing
// whichever wire format carries it; Kafka sees identical records.
func TestSameStreamsSameRecordsInEveryFormat(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	req := &push.Request{Streams: []push.Stream{
		{Labels: `{env="prod", app="api"}`, Entries: []push.Entry{
			{Timestamp: ts(-time.Minute), Line: `GET /api/v1/orders 200 "quoted" ünïcödé`},
			{Timestamp: ts(-time.Minute + 1), Line: "second\nline", StructuredMetadata: []labels.Label{{Name: "user", Value: "u1"}, {Name: "trace_id", Value: "abc"}}},
		}},
		{Labels: `{app="db"}`, Entries: []push.Entry{{Timestamp: ts(-time.Second), Line: "select 1"}}},
	}}
	r := h.reader()
	var want []*kgo.Record
	for _, enc := range []pushtest.Encoding{pushtest.Protobuf, pushtest.JSON, pushtest.GzipJSON, pushtest.DeflateJSON} {
		t.Run(enc.String(), func(t *testing.T) {
			if resp := h.push("", req, enc); resp.code != http.StatusNoContent {
				t.Fatalf("push = %d %q", resp.code, resp.body)
			}
			got := r.next(2)
			sortRecords(got)
			for _, rec := range got {
				tn, s, err := kafka.DecodeRecord(rec)
				if err != nil {
					t.Fatal(err)
				}
				if tn != tenant.DefaultTenant {
					t.Errorf("record tenant %q, want %q (auth off)", tn, tenant.DefaultTenant)
				}
				if s.Labels != `{app="api", env="prod"}` && s.Labels != `{app="db"}` {
					t.Errorf("labels not canonical: %s", s.Labels)
				}
			}
			if want == nil {
				want = got
				return
			}
			for i := range got {
				if !bytes.Equal(got[i].Key, want[i].Key) || !bytes.Equal(got[i].Value, want[i].Value) || got[i].Partition != want[i].Partition {
					t.Errorf("record %d differs from the protobuf push's:\n got p%d %x\nwant p%d %x", i, got[i].Partition, got[i].Value, want[i].Partition, want[i].Value)
				}
			}
		})
	}
}

func sortRecords(rs []*kgo.Record) {
	slices.SortFunc(rs, func(a, b *kgo.Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return bytes.Compare(a.Value, b.Value)
	})
}

// TestValidation: every discard reason answers Loki's status and message and
// counts the discarded lines and bytes under Loki's reason label.
func TestValidation(t *testing.T) {
	entry := func(line string) push.Entry { return push.Entry{Timestamp: ts(-time.Second), Line: line} }
	manyLabels := make([]string, 16)
	for i := range manyLabels {
		manyLabels[i] = fmt.Sprintf(`l%02d="v"`, i)
	}
	md := func(n int, size int) []labels.Label {
		var ls []labels.Label
		for i := range n {
			ls = append(ls, labels.Label{Name: fmt.Sprintf("k%d", i), Value: strings.Repeat("v", size)})
		}
		return ls
	}
	tests := []struct {
		name    string
		stream  push.Stream
		limits  func(*tenant.Limits)
		reason  string
		message string
	}{
		{
			name:    "line too long",
			stream:  push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{entry(strings.Repeat("x", 262145))}},
			reason:  "line_too_long",
			message: `Max entry size '262144' bytes exceeded for stream '{app="api"}' while adding an entry with length '262145' bytes`,
		},
		{
			name:    "too old",
			stream:  push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(-8 * 24 * time.Hour), Line: "old"}}},
			reason:  "greater_than_max_sample_age",
			message: `entry for stream '{app="api"}' has timestamp too old: 2026-11-20T12:00:00Z, oldest acceptable timestamp is: 2026-11-21T12:00:00Z`,
		},
		{
			name:   "too old is accepted when the check is off",
			stream: push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(-8 * 24 * time.Hour), Line: "old"}}},
			limits: func(l *tenant.Limits) { l.RejectOldSamples = false },
		},
		{
			name:    "too far in the future",
			stream:  push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(11 * time.Minute), Line: "future"}}},
			reason:  "too_far_in_future",
			message: `entry for stream '{app="api"}' has timestamp too new: 2026-11-28T12:11:00Z`,
		},
		{
			name:   "inside the creation grace period",
			stream: push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(9 * time.Minute), Line: "near future"}}},
		},
		{
			name:    "too many label names",
			stream:  push.Stream{Labels: "{" + strings.Join(manyLabels, ", ") + "}", Entries: []push.Entry{entry("x")}},
			reason:  "max_label_names_per_series",
			message: "has 16 label names; limit 15",
		},
		{
			name:    "label name too long",
			stream:  push.Stream{Labels: `{` + strings.Repeat("n", 1025) + `="v"}`, Entries: []push.Entry{entry("x")}},
			reason:  "label_name_too_long",
			message: "has label name too long: '" + strings.Repeat("n", 1025) + "'",
		},
		{
			name:    "label value too long",
			stream:  push.Stream{Labels: `{app="` + strings.Repeat("v", 2049) + `"}`, Entries: []push.Entry{entry("x")}},
			reason:  "label_value_too_long",
			message: "has label value too long: '" + strings.Repeat("v", 2049) + "'",
		},
		{
			name:    "duplicate label names",
			stream:  push.Stream{Labels: `{app="a", app="b"}`, Entries: []push.Entry{entry("x")}},
			reason:  "duplicate_label_names",
			message: `stream '{app="a", app="b"}' has duplicate label name: 'app'`,
		},
		{
			name:    "invalid labels",
			stream:  push.Stream{Labels: `{app=api}`, Entries: []push.Entry{entry("x")}},
			reason:  "invalid_labels",
			message: `Error parsing labels '{app=api}' with error: at position 5: expected a quoted value`,
		},
		{
			name:    "missing labels",
			stream:  push.Stream{Labels: `{}`, Entries: []push.Entry{entry("x")}},
			reason:  "missing_labels",
			message: "error at least one label pair is required per stream",
		},
		{
			name:    "structured metadata disallowed",
			stream:  push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(0), Line: "x", StructuredMetadata: md(1, 1)}}},
			limits:  func(l *tenant.Limits) { l.AllowStructuredMetadata = false },
			reason:  "disallowed_structured_metadata",
			message: "includes structured metadata, but this feature is disallowed",
		},
		{
			name:    "structured metadata too large",
			stream:  push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(0), Line: "x", StructuredMetadata: md(2, 40000)}}},
			reason:  "structured_metadata_too_large",
			message: "has structured metadata too large: '80004' bytes, limit: '65536' bytes",
		},
		{
			name:    "structured metadata too many",
			stream:  push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(0), Line: "x", StructuredMetadata: md(129, 1)}}},
			reason:  "structured_metadata_too_many",
			message: "has too many structured metadata labels: '129', limit: '128'",
		},
		{
			name:    "line that fits no Kafka record",
			stream:  push.Stream{Labels: `{app="api"}`, Entries: []push.Entry{entry(strings.Repeat("x", 2<<20))}},
			limits:  func(l *tenant.Limits) { l.MaxLineSize = 4 << 20 },
			reason:  "record_too_large",
			message: "more than fits in a Kafka record",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{limits: tt.limits, cfg: func(c *Config) { c.MaxRecvMsgSize = 16 << 20 }})
			want := 0
			for _, e := range tt.stream.Entries {
				want += e.Size()
			}
			resp := h.push("", &push.Request{Streams: []push.Stream{tt.stream}}, pushtest.Protobuf)
			if tt.reason == "" {
				if resp.code != http.StatusNoContent {
					t.Fatalf("valid push answered %d %q", resp.code, resp.body)
				}
				return
			}
			if resp.code != http.StatusBadRequest || !strings.Contains(resp.body, tt.message) {
				t.Fatalf("answered %d %q\nwant 400 containing %q", resp.code, resp.body, tt.message)
			}
			lines := metricstest.Value(t, h.reg, "loki_discarded_samples_total", "reason", tt.reason, "tenant", "fake")
			bytes := metricstest.Value(t, h.reg, "loki_discarded_bytes_total", "reason", tt.reason, "tenant", "fake")
			if lines != float64(len(tt.stream.Entries)) || bytes != float64(want) {
				t.Fatalf("discards{reason=%q} = %v lines %v bytes, want %d and %d", tt.reason, lines, bytes, len(tt.stream.Entries), want)
			}
			if n := metricstest.Sum(t, h.reg, "loki_discarded_samples_total"); n != lines {
				t.Fatalf("other reasons counted too: %v lines in all", n)
			}
			if got := h.drain(); len(got) != 0 {
				t.Fatalf("%d records written for a fully invalid push", len(got))
			}
		})
	}
}

// TestPartiallyInvalidPush: the valid entries are written and acknowledged,
// then the push is answered 400 with every distinct error, Loki-style.
func TestPartiallyInvalidPush(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	req := &push.Request{Streams: []push.Stream{
		{Labels: `{app="api"}`, Entries: []push.Entry{
			{Timestamp: ts(0), Line: "good 1"},
			{Timestamp: ts(time.Hour), Line: "future 1"},
			{Timestamp: ts(time.Hour), Line: "future 2"},
			{Timestamp: ts(1), Line: "good 2"},
		}},
		{Labels: `{}`, Entries: []push.Entry{{Timestamp: ts(0), Line: "no labels"}}},
	}}
	resp := h.push("", req, pushtest.JSON)
	want := `2 errors like: entry for stream '{app="api"}' has timestamp too new: 2026-11-28T13:00:00Z; 1 errors like: error at least one label pair is required per stream`
	if resp.code != http.StatusBadRequest || strings.TrimSpace(resp.body) != want {
		t.Fatalf("answered %d %q\nwant 400 %q", resp.code, resp.body, want)
	}
	recs := h.drain()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	_, s, err := kafka.DecodeRecord(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Entries) != 2 || s.Entries[0].Line != "good 1" || s.Entries[1].Line != "good 2" {
		t.Fatalf("written entries %+v, want the two good ones in order", s.Entries)
	}
	if got := metricstest.Value(t, h.reg, "lokilab_distributor_lines_acknowledged_total", "tenant", "fake"); got != 2 {
		t.Fatalf("acknowledged lines = %v, want 2", got)
	}
	if got := metricstest.Value(t, h.reg, "loki_distributor_lines_received_total", "tenant", "fake"); got != 5 {
		t.Fatalf("received lines = %v, want 5 (counted before validation, as Loki)", got)
	}
}

func TestRequestErrors(t *testing.T) {
	tests := []struct {
		name     string
		auth     bool
		tenant   string
		ct       string
		body     string
		wantCode int
		wantBody string
	}{
		{"missing tenant with auth on", true, "", "application/json", `{"streams":[]}`, 401, "no org id"},
		{"invalid tenant", true, "../etc", "application/json", `{"streams":[]}`, 400, "unsupported character '/'"},
		{"empty push", false, "", "application/json", `{"streams":[]}`, 422, "error at least one valid stream is required for ingestion"},
		{"no streams key", false, "", "application/json", `{}`, 422, "error at least one valid stream is required for ingestion"},
		{"streams without entries", false, "", "application/json", `{"streams":[{"stream":{"a":"b"},"values":[]}]}`, 204, ""},
		{"malformed JSON", false, "", "application/json", `{"streams":[`, 400, "error parsing push request: invalid JSON"},
		{"malformed protobuf", false, "", "application/x-protobuf", "not snappy at all", 400, "error parsing push request: invalid snappy"},
		{"oversized body", false, "", "application/json", strings.Repeat(" ", 2<<20), 413, "request body too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{auth: tt.auth, cfg: func(c *Config) { c.MaxRecvMsgSize = 1 << 20 }})
			resp := h.pushRaw(tt.tenant, tt.ct, strings.NewReader(tt.body))
			if resp.code != tt.wantCode || !strings.Contains(resp.body, tt.wantBody) {
				t.Fatalf("answered %d %q, want %d containing %q", resp.code, resp.body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestRateLimitIsolatesTenants: tenant A over its limit gets 429 with Loki's
// message while tenant B is accepted; raising A's limit in the overrides file
// takes effect without a restart.
func TestRateLimitIsolatesTenants(t *testing.T) {
	h := newHarness(t, harnessOptions{
		auth:      true,
		overrides: "overrides:\n  team-a:\n    ingestion_rate_mb: 0.01\n    ingestion_burst_size_mb: 0.02\n",
	})
	batch := func(id string) *push.Request {
		return pushtest.Request(pushtest.Options{Streams: 2, LinesPerStream: 20, Start: testNow.Add(-time.Minute), Seed: 7, ID: id})
	}
	sizeOf := func(r *push.Request) int {
		n := 0
		for _, s := range r.Streams {
			for _, e := range s.Entries {
				n += e.Size()
			}
		}
		return n
	}
	if size := sizeOf(batch("a0")); size > 20_971 { // 0.02 MiB
		t.Fatalf("test batch of %d bytes does not fit team-a's burst", size)
	}

	var a429, aOK, size int
	var last response
	for i := range 10 {
		req := batch(fmt.Sprint("a", i))
		resp := h.push("team-a", req, pushtest.Protobuf)
		switch resp.code {
		case http.StatusNoContent:
			aOK++
		case http.StatusTooManyRequests:
			a429++
			last, size = resp, sizeOf(req)
		default:
			t.Fatalf("team-a push answered %d %q", resp.code, resp.body)
		}
		// Team B pushes at the same moment and is never limited.
		if resp := h.push("team-b", batch(fmt.Sprint("b", i)), pushtest.Protobuf); resp.code != http.StatusNoContent {
			t.Fatalf("team-b push %d answered %d %q while team-a was limited", i, resp.code, resp.body)
		}
	}
	if aOK == 0 || a429 == 0 {
		t.Fatalf("team-a: %d accepted, %d limited; want both", aOK, a429)
	}
	wantMsg := fmt.Sprintf("Ingestion rate limit exceeded for user team-a (limit: 10485 bytes/sec) while attempting to ingest '40' lines totaling '%d' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased", size)
	if strings.TrimSpace(last.body) != wantMsg {
		t.Fatalf("429 body %q\nwant %q", last.body, wantMsg)
	}
	if got := metricstest.Value(t, h.reg, "loki_discarded_samples_total", "reason", "rate_limited", "tenant", "team-a"); got != float64(40*a429) {
		t.Fatalf("rate_limited lines for team-a = %v, want %d", got, 40*a429)
	}
	if got := metricstest.Value(t, h.reg, "loki_discarded_samples_total", "reason", "rate_limited", "tenant", "team-b"); got != 0 {
		t.Fatalf("team-b has %v rate-limited lines", got)
	}

	// Raise team-a's limit in the file: the next reload applies it, no
	// restart.
	h.writeOverrides("overrides:\n  team-a:\n    ingestion_rate_mb: 100\n    ingestion_burst_size_mb: 100\n")
	if err := h.overrides.Reload(); err != nil {
		t.Fatal(err)
	}
	// The bucket refills at the new rate from the first push that sees it;
	// tokens earned before that accrued at the old rate, so that first push
	// may still be refused. From then on (10ms between pushes: 1 MiB of
	// tokens at the new rate, 100 bytes at the old) every push passes.
	h.advance(10 * time.Millisecond)
	h.push("team-a", batch("a-sees-new-limit"), pushtest.Protobuf)
	for i := range 10 {
		h.advance(10 * time.Millisecond)
		if resp := h.push("team-a", batch(fmt.Sprint("a-raised", i)), pushtest.Protobuf); resp.code != http.StatusNoContent {
			t.Fatalf("after raising the limit, team-a push %d answered %d %q", i, resp.code, resp.body)
		}
	}
}

func TestStreamsKeepTheirPartition(t *testing.T) {
	h := newHarness(t, harnessOptions{partitions: 8})
	req := pushtest.Request(pushtest.Options{Streams: 5, LinesPerStream: 3, Start: testNow.Add(-time.Minute), Seed: 1})
	for range 3 {
		if resp := h.push("", req, pushtest.Protobuf); resp.code != http.StatusNoContent {
			t.Fatalf("push: %d %q", resp.code, resp.body)
		}
	}
	partitionOf := map[string]int32{}
	for _, rec := range h.drain() {
		_, s, err := kafka.DecodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := partitionOf[s.Labels]; ok && p != rec.Partition {
			t.Fatalf("stream %s written to partitions %d and %d", s.Labels, p, rec.Partition)
		}
		partitionOf[s.Labels] = rec.Partition
		want, _ := StaticPartitions(8).PartitionFor(StreamToken("fake", s.Labels))
		if rec.Partition != want {
			t.Fatalf("stream %s in partition %d, the ring says %d", s.Labels, rec.Partition, want)
		}
	}
	if len(partitionOf) != 5 {
		t.Fatalf("%d streams seen, want 5", len(partitionOf))
	}
}

func TestStreamTokenSpreadsAndIncludesTenant(t *testing.T) {
	if StreamToken("a", `{app="x"}`) == StreamToken("b", `{app="x"}`) {
		t.Fatal("the tenant is not part of the token")
	}
	if StreamToken("ab", `{}`) == StreamToken("a", `b{}`) {
		t.Fatal("tenant and labels are not separated")
	}
	counts := make([]int, 12)
	for i := range 12000 {
		p, _ := StaticPartitions(12).PartitionFor(StreamToken("fake", fmt.Sprintf(`{pod="pod-%d"}`, i)))
		counts[p]++
	}
	for p, n := range counts {
		// 1000 expected per partition; a hash that puts fewer than 800
		// or more than 1200 in one is not spreading.
		if n < 800 || n > 1200 {
			t.Errorf("partition %d got %d of 12000 streams", p, n)
		}
	}
}

func TestTraceparentIsCarriedToRecords(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	req := &push.Request{Streams: []push.Stream{{Labels: `{app="api"}`, Entries: []push.Entry{{Timestamp: ts(0), Line: "traced"}}}}}
	for _, tp := range []string{"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "not-a-traceparent"} {
		r, err := pushtest.NewRequest(h.srv.URL+"/loki/api/v1/push", "", req, pushtest.JSON)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("traceparent", tp)
		if resp := h.do(r); resp.code != http.StatusNoContent {
			t.Fatalf("push: %d", resp.code)
		}
	}
	recs := h.drain()
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	got := []string{kafka.Traceparent(recs[0]), kafka.Traceparent(recs[1])}
	slices.Sort(got)
	if got[0] != "" || got[1] != "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" {
		t.Fatalf("traceparent headers %q: want the valid one carried and the invalid one dropped", got)
	}
}

// TestSlowUploadStillGetsItsAnswer: the server's write timeout runs from the
// end of the headers, so a body that takes longer than it to arrive would
// leave no time to answer. The push handler gives its answer a deadline of
// its own: the client gets its 204 instead of a dropped connection (and a
// retry of a push that was stored).
func TestSlowUploadStillGetsItsAnswer(t *testing.T) {
	h := newHarness(t, harnessOptions{serverWriteTimeout: 300 * time.Millisecond})
	body, hdr, err := pushtest.Body(onePush("slow"), pushtest.Protobuf)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		// Trickle the body over ~600ms, twice the write timeout.
		for i := range body {
			if _, err := pw.Write(body[i : i+1]); err != nil {
				return
			}
			time.Sleep(600 * time.Millisecond / time.Duration(len(body)))
		}
		pw.Close()
	}()
	r, err := http.NewRequest(http.MethodPost, h.srv.URL+"/loki/api/v1/push", pr)
	if err != nil {
		t.Fatal(err)
	}
	r.Header = hdr
	r.ContentLength = int64(len(body))
	resp := h.do(r)
	if resp.code != http.StatusNoContent {
		t.Fatalf("slow upload answered %d %q", resp.code, resp.body)
	}
}
