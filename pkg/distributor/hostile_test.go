package distributor

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// TestHostileTenantIDs: a tenant ID that could climb out of its directory
// in the object store, or that no header should carry, is a 400 before
// anything is decoded or written. NUL and newlines cannot cross a real
// HTTP client, so the handler is called directly with them.
func TestHostileTenantIDs(t *testing.T) {
	h := newHarness(t, harnessOptions{auth: true})
	body := `{"streams":[{"stream":{"app":"x"},"values":[["` + strconv.FormatInt(ts(0), 10) + `","line"]]}]}`
	for _, id := range []string{"../x", "..", ".", "a/b", "/abs", `a\b`, "a\x00b", "a\nb", "a b", "a%2Fb", strings.Repeat("t", 200), "é"} {
		r := httptest.NewRequest(http.MethodPost, "/loki/api/v1/push", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header[http.CanonicalHeaderKey(tenant.Header)] = []string{id} // unchecked, unlike Header.Set
		w := httptest.NewRecorder()
		h.d.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest {
			t.Errorf("tenant %q: %d %q, want 400", id, w.Code, w.Body.String())
		}
	}
	if recs := h.drain(); len(recs) != 0 {
		t.Errorf("%d records written for refused tenants", len(recs))
	}
}

// TestHostileBodies: bodies built to hurt — nesting that would exhaust a
// recursive decoder's stack, a huge number of tiny streams, headers that
// lie — get a 4xx that says why, and the distributor keeps serving.
func TestHostileBodies(t *testing.T) {
	tsNow := strconv.FormatInt(ts(0), 10)
	deepStream := `{"streams":[{"stream":` + strings.Repeat(`{"a":`, 100000) + `"x"` + strings.Repeat(`}`, 100000) + `,"values":[["` + tsNow + `","l"]]}]}`
	deepValues := `{"streams":[{"stream":{"a":"b"},"values":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}]}`
	var many strings.Builder
	many.WriteString(`{"streams":[`)
	for i := range 20000 {
		if i > 0 {
			many.WriteByte(',')
		}
		many.WriteString(`{"stream":{"app":"s` + strconv.Itoa(i) + `"},"values":[["` + tsNow + `","x"]]}`)
	}
	many.WriteString(`]}`)
	cases := []struct {
		name     string
		ct, ce   string
		body     string
		wantCode int
		want     string
		// after is the status of a good push that follows: 204, unless
		// the case used up a limit on purpose.
		after int
	}{
		{"deeply nested stream labels", "application/json", "", deepStream, 400, "error parsing push request", 0},
		{"deeply nested values", "application/json", "", deepValues, 400, "error parsing push request", 0},
		// 20,000 new streams: the stream limit (5000 per tenant) refuses
		// what is over it, the rest is written.
		{"twenty thousand streams", "application/json", "", many.String(), 429, "Maximum active stream limit exceeded", 429},
		{"JSON with a protobuf content type", "application/x-protobuf", "", `{"streams":[]}`, 400, "error parsing push request", 0},
		{"unknown content encoding", "application/json", "br", `{"streams":[]}`, 400, "unsupported Content-Encoding", 0},
		{"gzip header on a plain body", "application/json", "gzip", `{"streams":[]}`, 400, "", 0},
		{"label value not UTF-8", "application/json", "", `{"streams":[{"stream":{"app":"a` + "\xff" + `"},"values":[["` + tsNow + `","l"]]}]}`, 400, "invalid UTF-8 value", 0},
		{"label name not UTF-8", "application/json", "", `{"streams":[{"stream":{"a` + "\xff" + `":"x"},"values":[["` + tsNow + `","l"]]}]}`, 400, "invalid label name", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOptions{cfg: func(c *Config) { c.MaxRecvMsgSize = 8 << 20 }})
			r, err := http.NewRequest(http.MethodPost, h.srv.URL+"/loki/api/v1/push", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Content-Type", tc.ct)
			if tc.ce != "" {
				r.Header.Set("Content-Encoding", tc.ce)
			}
			resp := h.do(r)
			if resp.code != tc.wantCode || !strings.Contains(resp.body, tc.want) {
				t.Errorf("%d %.300q, want %d containing %q", resp.code, resp.body, tc.wantCode, tc.want)
			}
			// The answer quotes what was wrong without echoing bytes that
			// would break a client's JSON or terminal.
			if !utf8.ValidString(resp.body) {
				t.Errorf("answer is not valid UTF-8: %q", resp.body)
			}
			// Still serving (and still holding the stream limit).
			after := cmp.Or(tc.after, http.StatusNoContent)
			if got := h.push("", pushtest.Request(pushtest.Options{Streams: 1, LinesPerStream: 1, Start: testNow}), pushtest.Protobuf); got.code != after {
				t.Errorf("a good push afterwards: %d %q, want %d", got.code, got.body, after)
			}
		})
	}
}

// TestInvalidUTF8Labels: a label value that is not UTF-8 would be stored
// as raw bytes but come back from the query API (JSON) with U+FFFD in
// its place — a stream no query could select by its own labels again. The
// distributor refuses it with the invalid_labels reason (protobuf here;
// raw JSON in TestHostileBodies — a JSON encoder would have replaced the
// bytes already); lines themselves are bytes and are kept as sent.
func TestInvalidUTF8Labels(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	bad := &push.Request{Streams: []push.Stream{
		{Labels: "{app=\"a\xffb\"}", Entries: []push.Entry{{Timestamp: ts(0), Line: "bad label"}}},
		{Labels: `{app="ok"}`, Entries: []push.Entry{{Timestamp: ts(time.Millisecond), Line: "line \xff kept"}}},
	}}
	resp := h.push("", bad, pushtest.Protobuf)
	if resp.code != http.StatusBadRequest || !strings.Contains(resp.body, "invalid UTF-8 value") || !utf8.ValidString(resp.body) {
		t.Errorf("%d %q, want 400 naming invalid UTF-8", resp.code, resp.body)
	}
	if got := metricstest.Value(t, h.reg, "loki_discarded_samples_total", "reason", "invalid_labels", "tenant", "fake"); got != 1 {
		t.Errorf("invalid_labels discards %v, want 1", got)
	}
	var lines []string
	for _, r := range h.drain() {
		_, s, err := kafka.DecodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if !utf8.ValidString(s.Labels) {
			t.Errorf("stream %q written to Kafka", s.Labels)
		}
		for _, e := range s.Entries {
			lines = append(lines, e.Line)
		}
	}
	if len(lines) != 1 || lines[0] != "line \xff kept" {
		t.Errorf("lines written %q, want the valid stream's line, as sent", lines)
	}
}

// TestDecompressionBombs: a small body that expands past
// max_recv_msg_size — gzip over JSON, a snappy block declaring a huge
// length — is a 413, and the distributor allocates about the limit, not
// the bomb: memory is bounded by configuration, not by what a client
// sends.
func TestDecompressionBombs(t *testing.T) {
	const limit = 4 << 20
	// 256 MiB of JSON in about 260 kB: gzip members concatenated (a valid
	// gzip stream), the 1 MiB of zeros compressed once and repeated.
	member := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		return buf.Bytes()
	}
	gz := member([]byte(`{"streams":[{"stream":{"a":"b"},"values":[["1","`))
	gz = append(gz, bytes.Repeat(member(make([]byte, 1<<20)), 256)...)
	gz = append(gz, member([]byte(`"]]}]}`))...)
	// A snappy block whose header claims 3 GiB (the format caps at 4).
	snappyBomb := binary.AppendUvarint(nil, 3<<30)
	snappyBomb = append(snappyBomb, bytes.Repeat([]byte{0}, 64)...)
	cases := []struct {
		name, ct, ce string
		body         []byte
	}{
		{"gzip JSON", "application/json", "gzip", gz},
		{"snappy header claiming 3 GiB", "application/x-protobuf", "", snappyBomb},
	}
	h := newHarness(t, harnessOptions{cfg: func(c *Config) { c.MaxRecvMsgSize = limit }})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := http.NewRequest(http.MethodPost, h.srv.URL+"/loki/api/v1/push", bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			r.Header.Set("Content-Type", tc.ct)
			if tc.ce != "" {
				r.Header.Set("Content-Encoding", tc.ce)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			resp := h.do(r)
			runtime.ReadMemStats(&after)
			if resp.code != http.StatusRequestEntityTooLarge {
				t.Errorf("%d %.200q, want 413", resp.code, resp.body)
			}
			// Everything this process allocated while answering,
			// the test's own request included: a few times the limit,
			// never the GiB the body expands to.
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*limit+uint64(len(tc.body))*4 {
				t.Errorf("answering a %d-byte bomb allocated %d MiB; the limit is %d MiB", len(tc.body), alloc>>20, limit>>20)
			}
		})
	}
}
