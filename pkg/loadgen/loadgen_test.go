package loadgen

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/labels"
)

func TestPushesDecodeAndCarryIdentities(t *testing.T) {
	tests := []struct {
		name        string
		mutate      func(*Config)
		contentType string
		tenants     []string
	}{
		{"protobuf, one tenant", func(c *Config) {}, "application/x-protobuf", []string{"tenant-1"}},
		{"json, three tenants", func(c *Config) { c.Encoding = "json"; c.Tenants = 3; c.TenantPrefix = "team-" },
			"application/json", []string{"team-1", "team-2", "team-3"}},
		{"no tenant header", func(c *Config) { c.Tenants = 0 }, "application/x-protobuf", []string{""}},
		{"large lines, one stream per push", func(c *Config) { c.LineSize = 4096; c.StreamsPerPush = 1; c.BatchLines = 7 },
			"application/x-protobuf", []string{"tenant-1"}},
		{"more streams per push than streams", func(c *Config) { c.StreamsPerTenant = 2; c.StreamsPerPush = 5 },
			"application/x-protobuf", []string{"tenant-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeLoki{t: t, latency: 5 * time.Millisecond}
				cfg := testConfig(t, tt.mutate)
				cfg.LinesPerSecond = 2000
				sum := run(t, context.Background(), cfg, f, Deps{})
				pushes := f.received()
				if len(pushes) == 0 || int64(len(pushes)) != sum.Sent.Pushes || sum.Accepted.Pushes != sum.Sent.Pushes {
					t.Fatalf("the endpoint got %d pushes; the summary says %d sent, %d accepted", len(pushes), sum.Sent.Pushes, sum.Accepted.Pushes)
				}
				seenTenants := map[string]bool{}
				streamsPerTenant := map[string]map[string]bool{}
				for _, p := range pushes {
					if p.contentType != tt.contentType {
						t.Fatalf("Content-Type %q, want %q", p.contentType, tt.contentType)
					}
					seenTenants[p.tenant] = true
					if n := p.req.Entries(); n != cfg.BatchLines {
						t.Fatalf("a push of %d lines, want %d", n, cfg.BatchLines)
					}
					if want := min(cfg.StreamsPerPush, cfg.StreamsPerTenant); len(p.req.Streams) != want {
						t.Fatalf("a push of %d streams, want %d", len(p.req.Streams), want)
					}
					for _, s := range p.req.Streams {
						ls, err := labels.Parse(s.Labels)
						if err != nil || ls.Get("job") != "lokilab-load" || ls.String() != s.Labels {
							t.Fatalf("stream labels %q: %v (want canonical, with job=lokilab-load)", s.Labels, err)
						}
						if streamsPerTenant[p.tenant] == nil {
							streamsPerTenant[p.tenant] = map[string]bool{}
						}
						streamsPerTenant[p.tenant][s.Labels] = true
						for i := 1; i < len(s.Entries); i++ {
							if s.Entries[i].Timestamp <= s.Entries[i-1].Timestamp {
								t.Fatalf("timestamps not increasing within a stream of a push")
							}
						}
					}
				}
				if len(seenTenants) != len(tt.tenants) {
					t.Errorf("tenants %v, want %v", seenTenants, tt.tenants)
				}
				for _, want := range tt.tenants {
					if !seenTenants[want] {
						t.Errorf("no push as tenant %q (got %v)", want, seenTenants)
					}
					if n := len(streamsPerTenant[want]); n > cfg.StreamsPerTenant {
						t.Errorf("tenant %q pushed %d streams, more than -streams %d", want, n, cfg.StreamsPerTenant)
					}
				}
				ids := map[string]bool{}
				for _, l := range lines(pushes) {
					s, ok := FindLineID(l.line)
					if !ok {
						t.Fatalf("a line without its identity: %q", l.line)
					}
					id, err := ParseLineID(s)
					if err != nil || id.Run != sum.Run || id.Worker >= cfg.Concurrency {
						t.Fatalf("line identity %q (%v) is not of run %s", s, err, sum.Run)
					}
					if ids[s] {
						t.Fatalf("identity %s on two lines", s)
					}
					ids[s] = true
					if cfg.LineSize > 0 && len(l.line) < int(cfg.LineSize)/2 {
						t.Fatalf("a line of %d bytes, want at least half of -line-size %d", len(l.line), cfg.LineSize)
					}
				}
				if int64(len(ids)) != sum.Sent.Lines {
					t.Errorf("%d distinct identities, %d lines sent", len(ids), sum.Sent.Lines)
				}
			})
		})
	}
}

func TestRateControl(t *testing.T) {
	tests := []struct {
		name    string
		latency time.Duration // the endpoint's; default 1ms
		mutate  func(*Config)
		// check gets the lines received in each second of the run.
		check func(t *testing.T, perSecond []int, bytes int)
	}{
		{
			name:   "lines per second",
			mutate: func(c *Config) { c.LinesPerSecond = 1000 },
			check: func(t *testing.T, perSecond []int, _ int) {
				within(t, "lines in 10s", sum(perSecond), 9800, 10100)
				for s, n := range perSecond[:10] {
					within(t, fmt.Sprintf("lines in second %d", s), n, 900, 1100)
				}
			},
		},
		{
			name:   "bytes per second",
			mutate: func(c *Config) { c.BytesPerSecond = 200 << 10 }, // -rate keeps its default: ignored
			check: func(t *testing.T, _ []int, bytes int) {
				within(t, "line bytes in 10s", bytes, 10*200<<10*97/100, 10*200<<10*103/100)
			},
		},
		{
			name: "square wave",
			mutate: func(c *Config) {
				c.LinesPerSecond = 1000
				c.Pattern = PatternConfig{Kind: "square", Period: 2 * time.Second, Duty: 0.5}
			},
			check: func(t *testing.T, perSecond []int, _ int) {
				for s, n := range perSecond {
					if s%2 == 1 && n != 0 {
						t.Errorf("%d lines in second %d, an off phase", n, s)
					}
					if s%2 == 0 && s < 10 {
						// Each on phase starts with the bucket full
						// (a tenth of a second's worth).
						within(t, fmt.Sprintf("lines in second %d, an on phase", s), n, 900, 1200)
					}
				}
			},
		},
		{
			name: "spike",
			mutate: func(c *Config) {
				c.LinesPerSecond = 1000
				c.Pattern = PatternConfig{Kind: "spike", Period: 5 * time.Second, SpikeLength: time.Second, SpikeFactor: 5}
			},
			check: func(t *testing.T, perSecond []int, _ int) {
				for s, n := range perSecond[:10] {
					if s%5 == 0 {
						within(t, fmt.Sprintf("lines in second %d, a spike", s), n, 4500, 5200)
					} else {
						within(t, fmt.Sprintf("lines in second %d", s), n, 800, 1200)
					}
				}
			},
		},
		{
			name:    "unlimited, square wave",
			latency: 20 * time.Millisecond, // 4 workers × 100 lines / 20ms: 20,000 lines/s
			mutate: func(c *Config) {
				c.LinesPerSecond = 0
				c.Pattern = PatternConfig{Kind: "square", Period: 2 * time.Second, Duty: 0.5}
			},
			check: func(t *testing.T, perSecond []int, _ int) {
				for s, n := range perSecond {
					if s%2 == 1 && n != 0 {
						t.Errorf("%d lines in second %d, an off phase", n, s)
					}
					if s%2 == 0 && s < 10 && n < 10000 {
						t.Errorf("only %d lines in second %d, an unlimited on phase", n, s)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Fake time: the rate limiter, the pattern and the endpoint's
			// clock all run on synctest's clock, so the counts below
			// are exact for the code, not for the machine's load.
			synctest.Test(t, func(t *testing.T) {
				f := &fakeLoki{t: t, latency: cmp.Or(tt.latency, time.Millisecond)}
				cfg := testConfig(t, tt.mutate)
				cfg.Duration = 10 * time.Second
				start := time.Now()
				run(t, context.Background(), cfg, f, Deps{})
				// Pushes may still go at the very end: a second 10.
				perSecond := make([]int, 11)
				bytes := 0
				for _, p := range f.received() {
					s := int(p.at.Sub(start) / time.Second)
					perSecond[s] += p.req.Entries()
					for _, st := range p.req.Streams {
						for _, e := range st.Entries {
							bytes += len(e.Line)
						}
					}
				}
				t.Logf("lines per second: %v; %d line bytes", perSecond, bytes)
				tt.check(t, perSecond, bytes)
			})
		})
	}
}

func within(t *testing.T, what string, got, lo, hi int) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s: %d, want %d to %d", what, got, lo, hi)
	}
}

func sum(ns []int) (n int) {
	for _, v := range ns {
		n += v
	}
	return n
}

func TestClassify(t *testing.T) {
	tests := []struct {
		status int
		body   string
		want   string
	}{
		{204, "", "204 ok"},
		{429, "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest '100' lines totaling '25000' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased", "429 rate_limited"},
		{429, "Maximum active stream limit exceeded when trying to create 3 new streams, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: 'fake' (limit: 5000)", "429 stream_limit"},
		{429, "Per stream rate limit exceeded (limit: 3MB/sec) while attempting to ingest for stream", "429 per_stream_rate_limit"},
		{429, "slow down", "429 too_many_requests"},
		{400, "Max entry size '262144' bytes exceeded for stream '{app=\"a\"}' while adding an entry with length '300000' bytes", "400 line_too_long"},
		{400, "2 errors like: entry for stream '{app=\"a\"}' has timestamp too old: 2020-01-01T00:00:00Z, oldest acceptable timestamp is: 2026-11-21T00:00:00Z", "400 greater_than_max_sample_age"},
		{400, "entry for stream '{app=\"a\"}' has timestamp too new: 2030-01-01T00:00:00Z", "400 too_far_in_future"},
		{400, "error parsing push request: invalid snappy-compressed protobuf body", "400 bad_body"},
		{400, "something else", "400 bad_request"},
		{401, "no org id", "401 unauthorized"},
		{413, "request body too large", "413 too_large"},
		{422, "error at least one valid stream is required for ingestion", "422 no_streams"},
		{503, "Kafka writes are failing; circuit breaker is open, push rejected without trying: circuit breaker is open", "503 breaker_open"},
		{503, "timed out after 10s waiting for Kafka to acknowledge the push", "503 kafka_timeout"},
		{503, "writing to Kafka failed: broker gone", "503 kafka_error"},
		{503, "distributor has too many push bytes in flight (limit 512MB): Kafka or the distributor is not keeping up; retry with backoff", "503 inflight_limit"},
		{500, "boom", "500 server_error"},
		{418, "teapot", "418 other"},
	}
	for _, tt := range tests {
		if got := Classify(tt.status, tt.body).String(); got != tt.want {
			t.Errorf("Classify(%d, %.50q) = %q, want %q", tt.status, tt.body, got, tt.want)
		}
	}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "error timeout"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "error connection_refused"},
		{errors.New("something"), "error transport_error"},
	} {
		if got := ClassifyError(tt.err).String(); got != tt.want {
			t.Errorf("ClassifyError(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestAckLogHoldsExactlyAcceptedPushes: the endpoint answers at random
// 204, 429, 500 or 503; the ack log must name every line of every 204'd
// push, and no other line.
func TestAckLogHoldsExactlyAcceptedPushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		answers := []struct {
			status int
			body   string
		}{
			{204, ""}, {204, ""}, {204, ""},
			{429, "Ingestion rate limit exceeded for user x"},
			{500, "internal"},
			{503, "timed out after 10s waiting for Kafka to acknowledge the push"},
		}
		f := &fakeLoki{t: t, latency: 3 * time.Millisecond, answer: func(int) (int, string) {
			a := answers[r.IntN(len(answers))]
			return a.status, a.body
		}}
		ackLog := filepath.Join(t.TempDir(), "acks.log")
		cfg := testConfig(t, func(c *Config) {
			c.AckLog = ackLog
			c.Tenants = 2
			c.LinesPerSecond = 5000
			c.BatchLines = 30
		})
		sum := run(t, context.Background(), cfg, f, Deps{})

		want := map[string]sentLine{} // line ID → the line as accepted
		byStatus := map[int]int64{}
		for _, p := range f.received() {
			byStatus[p.status]++
			if p.status != http.StatusNoContent {
				continue
			}
			for _, l := range lines([]received{p}) {
				id, _ := FindLineID(l.line)
				want[id] = l
			}
		}
		if byStatus[204] == 0 || byStatus[429] == 0 || byStatus[500] == 0 || byStatus[503] == 0 {
			t.Fatalf("answers %v: want some of each", byStatus)
		}
		fh, err := os.Open(ackLog)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		rd := NewAckReader(fh)
		got := 0
		for {
			rec, ok := rd.Next()
			if !ok {
				break
			}
			for i, ts := range rec.Timestamps {
				id := rec.ID(i).String()
				l, ok := want[id]
				if !ok {
					t.Fatalf("the ack log names %s, which was not accepted", id)
				}
				if l.ts != ts || l.stream != rec.Labels || l.tenant != rec.Tenant {
					t.Fatalf("the ack log has %s at %d in %s %s; it was pushed at %d in %s %s", id, ts, rec.Tenant, rec.Labels, l.ts, l.tenant, l.stream)
				}
				delete(want, id)
				got++
			}
		}
		if err := rd.Err(); err != nil {
			t.Fatal(err)
		}
		if len(want) > 0 {
			t.Fatalf("%d accepted lines are not in the ack log", len(want))
		}
		if int64(got) != sum.Accepted.Lines || sum.AckRecords == 0 {
			t.Errorf("%d lines in the ack log, the summary says %d accepted (%d records)", got, sum.Accepted.Lines, sum.AckRecords)
		}
		// The summary counts the same answers the endpoint gave.
		rejected := map[int]int64{}
		for _, o := range sum.Rejected {
			rejected[o.Code] += o.Pushes
		}
		for _, code := range []int{429, 500, 503} {
			if rejected[code] != byStatus[code] {
				t.Errorf("summary: %d pushes answered %d, the endpoint answered %d", rejected[code], code, byStatus[code])
			}
		}
		var out bytes.Buffer
		sum.WriteTo(&out)
		for _, want := range []string{"429 rate_limited", "500 server_error", "503 kafka_timeout", "p99", ackLog} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("the summary lacks %q:\n%s", want, out.String())
			}
		}
	})
}

// TestAckLogAppends: a second run appends to the same ack log, under its
// own run ID.
func TestAckLogAppends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ackLog := filepath.Join(t.TempDir(), "acks.log")
		var runs []string
		for seed := range uint64(2) {
			f := &fakeLoki{t: t}
			cfg := testConfig(t, func(c *Config) { c.AckLog, c.Seed, c.Duration = ackLog, seed+1, time.Second })
			runs = append(runs, run(t, context.Background(), cfg, f, Deps{}).Run)
		}
		b, err := os.ReadFile(ackLog)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(string(b), ackHeader) != 1 || !strings.Contains(string(b), "# run "+runs[0]) || !strings.Contains(string(b), "# run "+runs[1]) || runs[0] == runs[1] {
			t.Fatalf("ack log of runs %v:\n%.500s", runs, b)
		}
	})
}

func TestProgressLines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeLoki{t: t, latency: 2 * time.Millisecond, answer: func(n int) (int, string) {
			if n%4 == 3 {
				return 429, "Ingestion rate limit exceeded"
			}
			return 204, ""
		}}
		var out bytes.Buffer
		cfg := testConfig(t, func(c *Config) { c.Duration = 3500 * time.Millisecond })
		run(t, context.Background(), cfg, f, Deps{Progress: &out})
		got := strings.Split(strings.TrimSpace(out.String()), "\n")
		if len(got) != 3 {
			t.Fatalf("%d progress lines in 3.5s at 1s intervals, want 3:\n%s", len(got), out.String())
		}
		for i, l := range got {
			wants := []string{"lines/s", "MB/s", "accepted", "429 rate_limited", "p50 2ms p99 2ms"}
			if i > 0 {
				// The first second starts with an empty bucket.
				wants = append(wants, "1,000 lines/s")
			}
			for _, want := range wants {
				if !strings.Contains(l, want) {
					t.Errorf("progress line %q lacks %q", l, want)
				}
			}
		}

		out.Reset()
		run(t, context.Background(), cfg, &fakeLoki{t: t}, Deps{Progress: &out, InPlace: true})
		if s := out.String(); strings.Count(s, "\r") != 3 || strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
			t.Errorf("in place, the progress is %q: want each line after \\r, one newline at the end", s)
		}
	})
}

// TestRunEndsWithItsContext: Ctrl-C (the context) ends an unbounded run
// once the pushes in flight are answered.
func TestRunEndsWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeLoki{t: t, latency: 50 * time.Millisecond}
		cfg := testConfig(t, func(c *Config) { c.Duration = 0 })
		ctx, cancel := context.WithTimeout(context.Background(), 1234*time.Millisecond)
		defer cancel()
		start := time.Now()
		sum := run(t, ctx, cfg, f, Deps{})
		if d := time.Since(start); d < 1234*time.Millisecond || d > 1234*time.Millisecond+cfg.PushTimeout {
			t.Errorf("ran %s for a context of 1.234s", d)
		}
		if sum.Sent.Pushes == 0 || sum.Accepted.Pushes != sum.Sent.Pushes {
			t.Errorf("pushes in flight at the end were not awaited: %+v", sum)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		mutate  func(*Config)
		wantErr string
	}{
		{func(c *Config) {}, ""},
		{func(c *Config) { c.URL = "localhost:3100" }, "url"},
		{func(c *Config) { c.BytesPerSecond = 1 << 20 }, ""},
		{func(c *Config) { c.LinesPerSecond = -1 }, "rate"},
		{func(c *Config) { c.Encoding = "xml" }, "encoding"},
		{func(c *Config) { c.TenantPrefix = "a/b" }, "tenant-prefix"},
		{func(c *Config) { c.RunID = "Run-1" }, "run-id"},
		{func(c *Config) { c.Pattern.Kind = "sine" }, "pattern"},
		{func(c *Config) { c.Pattern.Kind = "spike"; c.LinesPerSecond = 0 }, "multiplies a rate"},
		{func(c *Config) { c.Pattern.Kind = "square"; c.Pattern.Duty = 0 }, "duty"},
		{func(c *Config) { c.Concurrency = 0 }, "concurrency"},
	}
	for _, tt := range tests {
		cfg := testConfig(t, tt.mutate)
		err := cfg.Validate()
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Validate() = %v, want %q", err, tt.wantErr)
		}
	}
}

// TestOverRealHTTP runs over loopback with the workers' own transports:
// pushes arrive, a closed port is counted as connection_refused, and no
// goroutine outlives Run (TestMain checks).
func TestOverRealHTTP(t *testing.T) {
	f := &fakeLoki{t: t}
	srv := httptest.NewServer(f)
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	for _, tt := range []struct {
		url  string
		want func(s Summary) bool
	}{
		{srv.URL + "/loki/api/v1/push", func(s Summary) bool { return s.Accepted.Pushes > 0 && s.Accepted.Pushes == s.Sent.Pushes }},
		{closedURL + "/loki/api/v1/push", func(s Summary) bool {
			return s.Accepted.Pushes == 0 && len(s.Rejected) == 1 && s.Rejected[0].Outcome.String() == "error connection_refused"
		}},
	} {
		cfg := testConfig(t, func(c *Config) { c.URL, c.Duration = tt.url, 300*time.Millisecond })
		l, err := New(cfg, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := l.Run(context.Background())
		if err != nil || !tt.want(sum) {
			t.Errorf("%s: %v, summary %+v", tt.url, err, sum)
		}
	}
	if len(f.received()) == 0 {
		t.Error("nothing arrived over HTTP")
	}
}

// TestConfigFromYAML: every knob can come from -config.file, in the units
// the flags take.
func TestConfigFromYAML(t *testing.T) {
	cfg := testConfig(t, nil)
	err := config.DecodeYAML([]byte(`
tenants: 3
streams_per_tenant: 500
bytes_per_second: 2MB
line_size: 1KB
shapes: json=1,stacktrace=1
pattern: {kind: spike, period: 30s, spike_length: 2s, spike_factor: 10}
ack_log: /tmp/acks.log
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tenants != 3 || cfg.StreamsPerTenant != 500 || cfg.BytesPerSecond != 2<<20 || cfg.LineSize != 1<<10 ||
		cfg.Shapes != (Mix{JSON: 1, StackTrace: 1}) || cfg.Pattern.Kind != "spike" || cfg.Pattern.SpikeFactor != 10 ||
		cfg.AckLog != "/tmp/acks.log" || cfg.Validate() != nil {
		t.Errorf("decoded %+v (%v)", cfg, cfg.Validate())
	}
	out, err := config.YAML(&cfg)
	if err != nil || !strings.Contains(string(out), "shapes: json=1,stacktrace=1") {
		t.Errorf("as YAML (%v):\n%s", err, out)
	}
}
