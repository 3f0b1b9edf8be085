package distributor

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// The clock the tests run at, so timestamp validation is reproducible.
var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// harness is a distributor writing to a real (embedded, persisted) Kafka
// broker through a real franz-go producer, served over HTTP.
type harness struct {
	t         testing.TB
	broker    *kafka.Broker
	producer  *kgo.Client
	d         *Distributor
	reg       *prometheus.Registry
	srv       *httptest.Server
	overrides *tenant.Overrides
	kcfg      kafka.Config
	overFile  string

	mu  sync.Mutex
	now time.Time
}

type harnessOptions struct {
	auth       bool
	partitions int
	overrides  string // runtime config file content
	cfg        func(*Config)
	kafka      func(*kafka.Config)
	limits     func(*tenant.Limits)
	// serverWriteTimeout, if set, is the HTTP server's WriteTimeout.
	serverWriteTimeout time.Duration
}

func newHarness(t testing.TB, o harnessOptions) *harness {
	t.Helper()
	if o.partitions == 0 {
		o.partitions = 4
	}
	broker := kafkatest.Broker(t, o.partitions)

	var kcfg kafka.Config
	kcfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	kcfg.Address = broker.Addr()
	kcfg.WriteTimeout = 5 * time.Second
	kcfg.ProducerLinger = time.Millisecond
	if o.kafka != nil {
		o.kafka(&kcfg)
	}
	reg := prometheus.NewRegistry()
	producer, err := kafka.NewWriterClient(kcfg, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)

	limits := tenant.DefaultLimits()
	if o.limits != nil {
		o.limits(&limits)
	}
	var rc tenant.RuntimeConfig
	h := &harness{t: t, broker: broker, producer: producer, reg: reg, kcfg: kcfg, now: testNow}
	if o.overrides != "" {
		h.overFile = filepath.Join(t.TempDir(), "overrides.yaml")
		h.writeOverrides(o.overrides)
		rc = tenant.RuntimeConfig{File: h.overFile, Period: time.Hour}
	}
	h.overrides, err = tenant.NewOverrides(limits, rc, reg, nil)
	if err != nil {
		t.Fatal(err)
	}

	var cfg Config
	cfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	h.d, err = New(cfg, Deps{
		Limits:      h.overrides,
		RateLimiter: tenant.NewRateLimiter(h.overrides, tenant.StaticDistributors(1), h.clock),
		Producer:    producer,
		Partitions:  StaticPartitions(o.partitions),
		Kafka:       kcfg,
		AuthEnabled: o.auth,
		Registerer:  reg,
		Now:         h.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewUnstartedServer(h.d)
	h.srv.Config.WriteTimeout = o.serverWriteTimeout
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	return h
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.now = h.now.Add(d)
}

func (h *harness) writeOverrides(content string) {
	h.t.Helper()
	tmp := h.overFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Rename(tmp, h.overFile); err != nil {
		h.t.Fatal(err)
	}
}

type response struct {
	code int
	body string
}

// push sends req in enc as tenant ("" sends no X-Scope-OrgID).
func (h *harness) push(tenantID string, req *push.Request, enc pushtest.Encoding) response {
	h.t.Helper()
	r, err := pushtest.NewRequest(h.srv.URL+"/loki/api/v1/push", tenantID, req, enc)
	if err != nil {
		h.t.Fatal(err)
	}
	return h.do(r)
}

// pushRaw sends a raw body with the given content type.
func (h *harness) pushRaw(tenantID, contentType string, body io.Reader) response {
	h.t.Helper()
	r, err := http.NewRequest(http.MethodPost, h.srv.URL+"/loki/api/v1/push", body)
	if err != nil {
		h.t.Fatal(err)
	}
	r.Header.Set("Content-Type", contentType)
	if tenantID != "" {
		r.Header.Set(tenant.Header, tenantID)
	}
	return h.do(r)
}

func (h *harness) do(r *http.Request) response {
	h.t.Helper()
	client := &http.Client{Timeout: 60 * time.Second}
	resp, err := client.Do(r)
	if err != nil {
		h.t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(b)}
}

// reader consumes the topic from the start with franz-go, as an ingester
// will.
type reader struct {
	t  testing.TB
	cl *kgo.Client
}

func (h *harness) reader() *reader {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.broker.Addr()), kgo.ConsumeTopics("loki"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cl.Close)
	return &reader{t: h.t, cl: cl}
}

// next returns the next n records, failing the test if they do not arrive.
func (r *reader) next(n int) []*kgo.Record {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := r.cl.PollRecords(ctx, n-len(out))
		if ctx.Err() != nil {
			r.t.Fatalf("got %d of %d records from Kafka", len(out), n)
		}
		fs.EachError(func(_ string, _ int32, err error) { r.t.Fatalf("fetch: %v", err) })
		out = append(out, fs.Records()...)
	}
	return out
}

// drain returns every record currently in the topic (those written so far),
// using the high watermarks as the end.
func (h *harness) drain() []*kgo.Record {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.broker.Addr()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := listEnds(ctx, cl)
	if err != nil {
		h.t.Fatal(err)
	}
	total := int64(0)
	for _, e := range ends {
		total += e
	}
	return h.reader().next(int(total))
}
