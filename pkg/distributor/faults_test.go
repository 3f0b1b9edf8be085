package distributor

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
)

func onePush(id string) *push.Request {
	return pushtest.Request(pushtest.Options{Streams: 2, LinesPerStream: 5, Start: testNow.Add(-time.Minute), Seed: 3, ID: id})
}

// stallProduce holds every produce request at the broker until the
// returned release function is called.
func stallProduce(c *kfake.Cluster) (release func()) {
	ch := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-ch })
		return nil, nil, false // then let the broker handle it normally
	})
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// TestBrokerErrorsOpenAndCloseTheBreaker: Kafka rejects writes; pushes fail
// with 503 at once; after three failures the breaker opens and pushes fail
// without reaching Kafka; once Kafka recovers the breaker probes and closes
// by itself.
func TestBrokerErrorsOpenAndCloseTheBreaker(t *testing.T) {
	h := newHarness(t, harnessOptions{cfg: func(c *Config) {
		c.Breaker.ConsecutiveFailures = 3
		// Long enough that the checks of the open breaker below run
		// before it turns half-open, even on a loaded machine.
		c.Breaker.OpenTimeout = 2 * time.Second
	}})
	fault := h.broker.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "loki", Err: kerr.UnknownServerError, Count: -1})

	for i := range 3 {
		resp := h.push("", onePush(fmt.Sprint("fail-", i)), pushtest.Protobuf)
		if resp.code != http.StatusServiceUnavailable || !strings.Contains(resp.body, "writing to Kafka failed") {
			t.Fatalf("push %d during the fault answered %d %q, want 503", i, resp.code, resp.body)
		}
	}
	if got := h.d.BreakerState(); got != "open" {
		t.Fatalf("breaker %s after 3 consecutive failures, want open", got)
	}
	if got := metricstest.Value(t, h.reg, "lokilab_distributor_kafka_breaker_state"); got != 2 {
		t.Fatalf("breaker state gauge %v, want 2 (open)", got)
	}

	hits := fault.Hits()
	resp := h.push("", onePush("while-open"), pushtest.Protobuf)
	if resp.code != http.StatusServiceUnavailable || !strings.Contains(resp.body, "circuit breaker is open") {
		t.Fatalf("push while open answered %d %q", resp.code, resp.body)
	}
	if fault.Hits() != hits {
		t.Fatal("a push reached Kafka while the breaker was open")
	}

	// Kafka recovers; after the open timeout a probe goes through and
	// closes the breaker.
	fault.Remove()
	var ok atomic.Int32
	kafkatest.Eventually(t, "a push to succeed after recovery", func() bool {
		if resp := h.push("", onePush(fmt.Sprint("recover-", ok.Add(1))), pushtest.Protobuf); resp.code == http.StatusNoContent {
			return true
		}
		return false
	})
	if got := h.d.BreakerState(); got != "closed" {
		t.Fatalf("breaker %s after a successful probe, want closed", got)
	}
	for _, state := range []string{"open", "half-open", "closed"} {
		if metricstest.Value(t, h.reg, "lokilab_distributor_kafka_breaker_transitions_total", "state", state) < 1 {
			t.Errorf("no transition to %s counted", state)
		}
	}
	if got := metricstest.Value(t, h.reg, "lokilab_distributor_push_failures_total", "reason", "breaker_open"); got < 1 {
		t.Errorf("breaker_open failures = %v", got)
	}

	// UNKNOWN_SERVER_ERROR is answered before the broker stores anything:
	// the failed pushes left nothing behind, the successful one is there.
	counts := pushtest.CountIDs(t, h.drain())
	for id, n := range counts {
		if strings.HasPrefix(id, "fail-") || strings.HasPrefix(id, "while-open") {
			t.Errorf("line %s of a failed push is in Kafka %d times", id, n)
		}
	}
	if len(counts) != 10 {
		t.Errorf("%d distinct lines in Kafka, want the 10 of the successful push", len(counts))
	}
}

// TestStalledKafkaFailsThePushAtTheWriteTimeout: a broker that accepts the
// connection but never answers must not hang pushes. The push is answered
// 503 while the broker is still stalled; when it recovers the late write is
// counted, and the bytes it held are released.
func TestStalledKafkaFailsThePushAtTheWriteTimeout(t *testing.T) {
	h := newHarness(t, harnessOptions{
		kafka: func(c *kafka.Config) { c.WriteTimeout = 300 * time.Millisecond },
		cfg: func(c *Config) {
			// Smaller than one push: the first is admitted only because
			// it is alone in flight.
			c.MaxInflightPushBytes = 1000
			c.Breaker.ConsecutiveFailures = 100
		},
	})
	release := stallProduce(h.broker.Cluster())
	defer release()

	resp := h.push("", onePush("stalled"), pushtest.Protobuf)
	if resp.code != http.StatusServiceUnavailable || !strings.Contains(resp.body, "timed out after 300ms waiting for Kafka") {
		t.Fatalf("push to a stalled broker answered %d %q", resp.code, resp.body)
	}
	// Answered while Kafka is still stalled: the push did not hang. Its
	// records are still in the producer, and count as bytes in flight...
	if h.d.InflightBytes() == 0 {
		t.Fatal("the stalled push's records are not counted in flight")
	}
	// ...so a second push exceeds the in-flight limit and is refused at
	// once, before it adds to the producer's buffer.
	resp = h.push("", onePush("refused"), pushtest.Protobuf)
	if resp.code != http.StatusServiceUnavailable || !strings.Contains(resp.body, "too many push bytes in flight") {
		t.Fatalf("push over the in-flight limit answered %d %q", resp.code, resp.body)
	}

	release()
	kafkatest.Eventually(t, "the late write to be counted", func() bool {
		return metricstest.Value(t, h.reg, "lokilab_distributor_kafka_late_writes_total", "result", "success") == 1
	})
	if h.d.InflightBytes() != 0 {
		t.Fatalf("%d bytes still in flight after Kafka answered", h.d.InflightBytes())
	}
	// The late success is in Kafka: a line the client was told failed.
	// That is at-least-once delivery, and why replays are deduplicated.
	if counts := pushtest.CountIDs(t, h.drain()); len(counts) != 10 {
		t.Fatalf("%d lines of the late write in Kafka, want 10", len(counts))
	}
	if resp := h.push("", onePush("after"), pushtest.Protobuf); resp.code != http.StatusNoContent {
		t.Fatalf("push after recovery answered %d %q", resp.code, resp.body)
	}
}

// TestInflightBudgetRefusesBeforeReadingTheBody: while a stalled Kafka
// holds records, a push whose declared body would exceed the budget is
// refused from its Content-Length alone, before a byte of it is read or
// allocated.
func TestInflightBudgetRefusesBeforeReadingTheBody(t *testing.T) {
	h := newHarness(t, harnessOptions{
		kafka: func(c *kafka.Config) { c.WriteTimeout = 300 * time.Millisecond },
		cfg:   func(c *Config) { c.MaxInflightPushBytes = 64 << 10 },
	})
	release := stallProduce(h.broker.Cluster())
	defer release()
	if resp := h.push("", onePush("held"), pushtest.Protobuf); resp.code != http.StatusServiceUnavailable {
		t.Fatalf("push to a stalled broker answered %d %q", resp.code, resp.body)
	}
	held := h.d.InflightBytes()
	if held == 0 || held > 16<<10 {
		t.Fatalf("%d bytes in flight after the stalled push; want its records only", held)
	}

	r := httptest.NewRequest(http.MethodPost, "/loki/api/v1/push", mustNotRead{t})
	r.Header.Set("Content-Type", "application/x-protobuf")
	r.ContentLength = 64<<10 - held + 1
	rec := httptest.NewRecorder()
	h.d.ServeHTTP(rec, r)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "too many push bytes in flight") {
		t.Fatalf("answered %d %q, want 503 before reading", rec.Code, rec.Body.String())
	}
	if h.d.InflightBytes() != held {
		t.Fatalf("the refused push left %d bytes charged", h.d.InflightBytes()-held)
	}
	if got := metricstest.Value(t, h.reg, "lokilab_distributor_push_failures_total", "reason", "inflight_limit"); got != 1 {
		t.Fatalf("inflight_limit failures = %v", got)
	}
}

// mustNotRead is a request body that fails the test when read.
type mustNotRead struct{ t *testing.T }

func (m mustNotRead) Read([]byte) (int, error) {
	m.t.Error("the body was read")
	return 0, io.EOF
}

// TestEveryAcknowledgedPushIsInKafkaExactlyOnce is the write path's core
// promise under fire: eight clients push unique lines while Kafka goes
// through retriable errors (stored, then failed: the idempotent producer's
// retries must not duplicate), hard errors (the breaker opens), and a stall
// past the write timeout. Afterwards every line of every push that got 204
// is in Kafka exactly once.
func TestEveryAcknowledgedPushIsInKafkaExactlyOnce(t *testing.T) {
	h := newHarness(t, harnessOptions{
		// Long enough for the producer to retry a retriable error inside
		// the push's deadline (so retries of acknowledged pushes are
		// exercised), short enough that the stall below outlasts it.
		kafka: func(c *kafka.Config) { c.WriteTimeout = 1500 * time.Millisecond },
		cfg: func(c *Config) {
			c.Breaker.ConsecutiveFailures = 5
			c.Breaker.OpenTimeout = 200 * time.Millisecond
		},
		// The test clock stands still, so the bucket never refills: make it
		// large enough that only Kafka's faults fail pushes.
		limits: func(l *tenant.Limits) { l.IngestionRateMB, l.IngestionBurstSizeMB = 1e6, 1e6 },
	})
	cluster := h.broker.Cluster()

	var (
		mu     sync.Mutex
		acked  = map[string]bool{} // push ID → got 204
		status = map[int]int{}
		stop   atomic.Bool
		wg     sync.WaitGroup
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				r, err := pushtest.NewRequest(h.srv.URL+"/loki/api/v1/push", "", onePush(id), pushtest.Protobuf)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := http.DefaultClient.Do(r)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				mu.Lock()
				acked[id] = resp.StatusCode == http.StatusNoContent
				status[resp.StatusCode]++
				mu.Unlock()
				if resp.StatusCode != http.StatusNoContent {
					time.Sleep(20 * time.Millisecond) // a client backing off
				}
			}
		}()
	}

	// phase runs for d and returns how many pushes were acknowledged in it.
	phase := func(name string, d time.Duration) int {
		count := func() (n int) {
			for _, ok := range acked {
				if ok {
					n++
				}
			}
			return n
		}
		mu.Lock()
		before := count()
		mu.Unlock()
		time.Sleep(d)
		mu.Lock()
		defer mu.Unlock()
		n := count() - before
		t.Logf("phase %-44s %4d pushes acknowledged; 5xx causes so far %v", name+":", n, failureCounts(t, h))
		return n
	}
	phase("healthy", 300*time.Millisecond)

	// REQUEST_TIMED_OUT on every other produce request: kfake stores the
	// batch, then answers with the error, and the producer retries the same
	// records. Without idempotence each retry is a duplicate.
	var produceRequests atomic.Int64
	timeouts := cluster.Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.Produce}, Topic: "loki", Err: kerr.RequestTimedOut, Count: -1,
		When: func(kmsg.Request) bool { return produceRequests.Add(1)%2 == 0 },
	})
	ackedDuringRetries := phase("retriable errors after the write", 600*time.Millisecond)
	timeouts.Remove()

	hard := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "loki", Err: kerr.UnknownServerError, Count: -1})
	phase("hard errors: the breaker opens", 500*time.Millisecond)
	hard.Remove()

	release := stallProduce(cluster)
	phase("broker stalled past the write timeout", 1800*time.Millisecond)
	release()
	ackedAfter := phase("healthy again", 1500*time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if ackedDuringRetries == 0 || timeouts.Hits() == 0 {
		t.Fatalf("retriable-error phase: %d pushes acknowledged, %d errors injected; it proved nothing", ackedDuringRetries, timeouts.Hits())
	}
	if ackedAfter == 0 {
		t.Fatal("no push acknowledged after Kafka recovered: the distributor did not recover by itself")
	}

	// Let the late writes of timed-out pushes settle before reading.
	kafkatest.Eventually(t, "in-flight bytes to drain", func() bool { return h.d.InflightBytes() == 0 })
	counts := pushtest.CountIDs(t, h.drain())

	var ackedPushes, failedPushes, failedButStored, lost, dup int
	for id, ok := range acked {
		inKafka := 0
		for s := range 2 {
			for l := range 5 {
				n := counts[fmt.Sprintf("%s-%d-%d", id, s, l)]
				if ok && n != 1 {
					if n == 0 {
						lost++
					} else {
						dup++
					}
				}
				inKafka += n
			}
		}
		if ok {
			ackedPushes++
		} else {
			failedPushes++
			if inKafka > 0 {
				failedButStored++
			}
		}
	}
	t.Logf("pushes: %d acknowledged, %d failed (%d of them stored anyway: at-least-once); statuses %v; fault hits: %d request-timed-out",
		ackedPushes, failedPushes, failedButStored, status, timeouts.Hits())
	if lost != 0 || dup != 0 {
		t.Fatalf("acknowledged lines: %d missing from Kafka, %d duplicated", lost, dup)
	}
	if failedPushes == 0 {
		t.Fatal("no push failed: the faults were not felt")
	}
}

func failureCounts(t *testing.T, h *harness) map[string]float64 {
	out := map[string]float64{}
	for _, r := range []string{"kafka_error", "kafka_timeout", "breaker_open", "inflight_limit", "producer_buffer_full"} {
		if v := metricstest.Value(t, h.reg, "lokilab_distributor_push_failures_total", "reason", r); v > 0 {
			out[r] = v
		}
	}
	return out
}

// TestRefusedPushesDoNotSpendRateLimit: pushes refused because Kafka is
// known to be down (breaker open) do not spend the tenant's tokens, so a
// client retrying through the outage is not rate-limited when it ends.
func TestRefusedPushesDoNotSpendRateLimit(t *testing.T) {
	size := 0
	for _, s := range onePush("x0").Streams {
		for _, e := range s.Entries {
			size += e.Size()
		}
	}
	h := newHarness(t, harnessOptions{
		cfg: func(c *Config) {
			c.Breaker.ConsecutiveFailures = 2
			// Long enough that the 20 pushes below all meet an open
			// breaker even on a loaded machine under -race (at 100ms one
			// of them could become the half-open probe, go to the still
			// failing broker and spend a token); the wait for the probe
			// after the fault costs this much once.
			c.Breaker.OpenTimeout = 3 * time.Second
		},
		// Room for three pushes and no refill (the test clock stands
		// still): two that fail in Kafka and open the breaker, one after
		// recovery.
		limits: func(l *tenant.Limits) {
			l.IngestionRateMB = 0
			l.IngestionBurstSizeMB = float64(3*size+size/2) / tenant.BytesInMB
		},
	})
	fault := h.broker.Cluster().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: "loki", Err: kerr.UnknownServerError, Count: -1})
	for i := range 2 {
		if resp := h.push("", onePush(fmt.Sprint("x", i)), pushtest.Protobuf); resp.code != http.StatusServiceUnavailable {
			t.Fatalf("push %d answered %d %q", i, resp.code, resp.body)
		}
	}
	for i := range 20 {
		resp := h.push("", onePush(fmt.Sprint("open", i)), pushtest.Protobuf)
		if resp.code != http.StatusServiceUnavailable || !strings.Contains(resp.body, "circuit breaker is open") {
			t.Fatalf("push while open answered %d %q", resp.code, resp.body)
		}
	}
	fault.Remove()
	kafkatest.Eventually(t, "the breaker to let a probe through", func() bool { return h.d.BreakerState() != "open" })
	if resp := h.push("", onePush("after"), pushtest.Protobuf); resp.code != http.StatusNoContent {
		t.Fatalf("first push after the outage answered %d %q: the refused pushes spent the tenant's tokens", resp.code, resp.body)
	}
}
