package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
)

// fakeQuerier plays Loki's query_range for log queries: entries in
// [start, end), oldest first (ties by stream, then line, the same way in
// every answer), at most limit of them, refusing a limit over 5000 as
// Loki does. It ignores the query: the verifier must tell lines apart
// itself.
type fakeQuerier struct {
	t *testing.T
	// sharedTenants answers every tenant with every tenant's lines, as a
	// target with auth off does.
	sharedTenants bool

	mu       sync.Mutex
	lines    []sentLine
	warnings []string
	queries  []string
	// onQuery, if set, runs before each answer (under mu).
	onQuery func(n int)
}

func (q *fakeQuerier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r.URL.Path != "/loki/api/v1/query_range" || r.FormValue("direction") != "forward" {
		q.t.Errorf("asked %s direction %q, want a forward query_range", r.URL.Path, r.FormValue("direction"))
	}
	q.queries = append(q.queries, r.FormValue("query"))
	if q.onQuery != nil {
		q.onQuery(len(q.queries))
	}
	start, _ := strconv.ParseInt(r.FormValue("start"), 10, 64)
	end, _ := strconv.ParseInt(r.FormValue("end"), 10, 64)
	limit, _ := strconv.Atoi(r.FormValue("limit"))
	if limit > 5000 {
		http.Error(w, "max entries limit per query exceeded", http.StatusBadRequest)
		return
	}
	tenantID := r.Header.Get("X-Scope-OrgID")
	var sel []sentLine
	for _, l := range q.lines {
		if l.ts >= start && l.ts < end && (q.sharedTenants || l.tenant == tenantID) {
			sel = append(sel, l)
		}
	}
	slices.SortStableFunc(sel, func(a, b sentLine) int {
		return cmp.Or(cmp.Compare(a.ts, b.ts), strings.Compare(a.stream, b.stream), strings.Compare(a.line, b.line))
	})
	sel = sel[:min(limit, len(sel))]
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][2]string       `json:"values"`
	}
	var result []*stream
	byLabels := map[string]*stream{}
	for _, l := range sel {
		s := byLabels[l.stream]
		if s == nil {
			ls, err := labels.Parse(l.stream)
			if err != nil {
				q.t.Fatal(err)
			}
			s = &stream{Stream: ls.Map()}
			byLabels[l.stream] = s
			result = append(result, s)
		}
		s.Values = append(s.Values, [2]string{strconv.FormatInt(l.ts, 10), l.line})
	}
	resp := map[string]any{
		"status":   "success",
		"data":     map[string]any{"resultType": "streams", "result": result},
		"warnings": q.warnings,
	}
	_ = json.NewEncoder(w).Encode(resp)
}

// pushed runs a short load into a fakeLoki that answers answer, writing
// an ack log, and returns the lines it accepted and refused.
func pushed(t *testing.T, answer func(n int) (int, string)) (ackLog, run string, accepted, refused []sentLine) {
	ackLog = filepath.Join(t.TempDir(), "acks.log")
	synctest.Test(t, func(t *testing.T) {
		f := &fakeLoki{t: t, latency: time.Millisecond, answer: answer}
		cfg := testConfig(t, func(c *Config) {
			c.AckLog, c.Tenants, c.Duration, c.LinesPerSecond, c.BatchLines = ackLog, 2, time.Second, 2000, 50
		})
		run = runOnce(t, cfg, f).Run
		for _, p := range f.received() {
			if p.status == http.StatusNoContent {
				accepted = append(accepted, lines([]received{p})...)
			} else {
				refused = append(refused, lines([]received{p})...)
			}
		}
	})
	return ackLog, run, accepted, refused
}

func runOnce(t *testing.T, cfg Config, f *fakeLoki) Summary {
	return run(t, context.Background(), cfg, f, Deps{})
}

func TestVerify(t *testing.T) {
	everyFifth := func(n int) (int, string) {
		if n%5 == 4 {
			return 503, "timed out after 10s waiting for Kafka to acknowledge the push"
		}
		return 204, ""
	}
	ackLog, runID, accepted, refused := pushed(t, everyFifth)
	if len(accepted) < 1000 || len(refused) == 0 {
		t.Fatalf("%d lines accepted, %d refused: want plenty of both", len(accepted), len(refused))
	}
	lostID, _ := FindLineID(accepted[len(accepted)/2].line)
	dupID, _ := FindLineID(accepted[len(accepted)/3].line)

	tests := []struct {
		name string
		// stored returns what the query API holds.
		stored func() []sentLine
		// setup, if set, adjusts the query API before the check.
		setup    func(q *fakeQuerier)
		ackLog   func(t *testing.T) string
		pageSize int
		wait     time.Duration
		check    func(t *testing.T, r *VerifyReport, q *fakeQuerier)
	}{
		{
			name:   "every acknowledged line once",
			stored: func() []sentLine { return accepted },
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 0, 0)
				if !r.OK(false) || r.Checks != 1 || r.Unacked != 0 || r.OtherTenant != 0 {
					t.Errorf("report %+v", r)
				}
				// One query per tenant: the labels all its streams share,
				// and the run as a line filter.
				want := `{env="prod", job="lokilab-load"} |= "` + runID + `-"`
				for _, got := range q.queries {
					if got != want {
						t.Errorf("query %q, want %q", got, want)
					}
				}
			},
		},
		{
			name:     "small pages",
			stored:   func() []sentLine { return accepted },
			pageSize: 7,
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 0, 0)
				if len(q.queries) < len(accepted)/7 {
					t.Errorf("%d queries for %d lines in pages of 7", len(q.queries), len(accepted))
				}
			},
		},
		{
			name: "every line at one timestamp, across page edges",
			stored: func() []sentLine {
				out := slices.Clone(accepted)
				first := map[string]int64{}
				for _, l := range out {
					if v, ok := first[l.tenant]; !ok || l.ts < v {
						first[l.tenant] = l.ts
					}
				}
				for i := range out {
					out[i].ts = first[out[i].tenant]
				}
				return out
			},
			pageSize: 100,
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 0, 0)
			},
		},
		{
			name: "a line lost",
			stored: func() []sentLine {
				return slices.DeleteFunc(slices.Clone(accepted), func(l sentLine) bool { id, _ := FindLineID(l.line); return id == lostID })
			},
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted))-1, 1, 0)
				if r.OK(true) || len(r.MissingExamples) != 1 || r.MissingExamples[0].ID.String() != lostID {
					t.Fatalf("missing examples %+v, want %s", r.MissingExamples, lostID)
				}
				lost := accepted[len(accepted)/2]
				m := r.MissingExamples[0]
				if m.Tenant != lost.tenant || m.Labels != lost.stream || m.Timestamp.UnixNano() != lost.ts {
					t.Errorf("missing %+v, it was pushed as %+v", m, lost)
				}
				if r.MissingByStream[lost.tenant+" "+lost.stream] != 1 {
					t.Errorf("missing by stream %v", r.MissingByStream)
				}
				var out bytes.Buffer
				r.WriteTo(&out)
				if !strings.Contains(out.String(), "lid="+lostID) {
					t.Errorf("the report does not name %s:\n%s", lostID, out.String())
				}
			},
		},
		{
			name: "a line twice",
			stored: func() []sentLine {
				out := slices.Clone(accepted)
				for _, l := range accepted {
					if id, _ := FindLineID(l.line); id == dupID {
						out = append(out, l)
					}
				}
				return out
			},
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 0, 1)
				if r.OK(false) || !r.OK(true) || !slices.Equal(r.DuplicateExamples, []string{dupID}) {
					t.Errorf("OK %v/%v, duplicate examples %v; want %s", r.OK(false), r.OK(true), r.DuplicateExamples, dupID)
				}
			},
		},
		{
			name:   "refused pushes stored anyway",
			stored: func() []sentLine { return append(slices.Clone(accepted), refused...) },
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 0, 0)
				// Only the acknowledged lines' time range is read.
				lo, hi := map[string]int64{}, map[string]int64{}
				for _, l := range accepted {
					if v, ok := lo[l.tenant]; !ok || l.ts < v {
						lo[l.tenant] = l.ts
					}
					hi[l.tenant] = max(hi[l.tenant], l.ts)
				}
				inRange := 0
				for _, l := range refused {
					if l.ts >= lo[l.tenant] && l.ts <= hi[l.tenant] {
						inRange++
					}
				}
				if r.Unacked != int64(inRange) || inRange == 0 || !r.OK(false) {
					t.Errorf("%d unacknowledged lines found; %d were stored in the range read", r.Unacked, inRange)
				}
			},
		},
		{
			name:   "auth off: every tenant answered with every line",
			stored: func() []sentLine { return accepted },
			setup:  func(q *fakeQuerier) { q.sharedTenants = true },
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 0, 0)
				if r.OtherTenant == 0 || !r.OK(false) {
					t.Errorf("%d lines returned to another tenant, OK %v", r.OtherTenant, r.OK(false))
				}
			},
		},
		{
			name:   "an ack log naming a line never pushed",
			stored: func() []sentLine { return accepted },
			ackLog: func(t *testing.T) string {
				b, err := os.ReadFile(ackLog)
				if err != nil {
					t.Fatal(err)
				}
				b = fmt.Appendf(b, "tenant-1\t{app=\"billing\", env=\"prod\", job=\"lokilab-load\", pod=\"billing-2\"}\t%s-0\t999999\t%d\t\n", runID, accepted[0].ts)
				p := filepath.Join(t.TempDir(), "tampered.log")
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			},
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 1, 0)
				if len(r.MissingExamples) != 1 || r.MissingExamples[0].ID.String() != runID+"-0-999999" {
					t.Errorf("missing %+v", r.MissingExamples)
				}
			},
		},
		{
			name:   "partial answers, then whole",
			stored: func() []sentLine { return accepted[:len(accepted)-10] },
			wait:   time.Minute,
			setup: func(q *fakeQuerier) {
				// The first check's answers are partial and lack lines;
				// then the ingester is back.
				q.warnings = []string{"ingester-1 did not answer"}
				q.onQuery = func(n int) {
					if n > 2 {
						q.warnings, q.lines = nil, accepted
					}
				}
			},
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				expect(t, r, int64(len(accepted)), 0, 0)
				if r.Checks != 2 || len(r.Warnings) != 0 {
					t.Errorf("%d checks, warnings %v: want a second, whole check", r.Checks, r.Warnings)
				}
			},
		},
		{
			name:   "partial answers throughout",
			stored: func() []sentLine { return accepted },
			setup:  func(q *fakeQuerier) { q.warnings = []string{"ingester-1 did not answer"} },
			check: func(t *testing.T, r *VerifyReport, q *fakeQuerier) {
				if !slices.Equal(r.Warnings, []string{"ingester-1 did not answer", "ingester-1 did not answer"}) {
					t.Errorf("warnings %q, want the one of each tenant's answer", r.Warnings)
				}
				var out bytes.Buffer
				r.WriteTo(&out)
				if !strings.Contains(out.String(), "warning: ingester-1 did not answer") {
					t.Errorf("the report does not show the warning:\n%s", out.String())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &fakeQuerier{t: t, lines: tt.stored()}
			if tt.setup != nil {
				tt.setup(q)
			}
			srv := httptest.NewServer(q)
			defer srv.Close()
			cfg := VerifyConfig{URL: srv.URL, AckLog: ackLog, PageSize: cmp.Or(tt.pageSize, 4000), Wait: tt.wait,
				RetryInterval: 10 * time.Millisecond, QueryTimeout: 10 * time.Second, Examples: 10}
			if tt.ackLog != nil {
				cfg.AckLog = tt.ackLog(t)
			}
			r, err := Verify(context.Background(), cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r.Runs[0] != runID || r.Tenants != 2 {
				t.Errorf("runs %v, %d tenants; want %s, 2", r.Runs, r.Tenants, runID)
			}
			tt.check(t, r, q)
		})
	}
}

func expect(t *testing.T, r *VerifyReport, found, missing, duplicated int64) {
	t.Helper()
	if r.Found != found || r.Missing != missing || r.Duplicated != duplicated || r.Acked != found+missing {
		t.Errorf("found %d, missing %d, duplicated %d of %d acknowledged; want %d, %d, %d",
			r.Found, r.Missing, r.Duplicated, r.Acked, found, missing, duplicated)
	}
}

func TestVerifyRefusesABrokenAckLog(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"empty":  ackHeader + "\n",
		"broken": ackHeader + "\nnot a record\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Verify(context.Background(), VerifyConfig{URL: "http://127.0.0.1:1", AckLog: p, PageSize: 10, RetryInterval: time.Second, QueryTimeout: time.Second}, nil)
		if err == nil {
			t.Errorf("%s ack log: no error", name)
		}
	}
}
