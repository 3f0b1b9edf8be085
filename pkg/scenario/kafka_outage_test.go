package scenario

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/pkg/loadgen"
)

func runScenarioForTest(t *testing.T, s *Scenario, knobs map[string]string) (*Result, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	dir := t.TempDir()
	start := time.Now()
	res, err := Run(ctx, s, Options{Short: true, Dir: dir, Knobs: knobs, Progress: &progress})
	t.Logf("%s %v took %s:\n%s", s.Name, knobs, time.Since(start).Round(time.Millisecond), progress.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Err != nil {
		t.Fatalf("the run stopped early: %v", res.Err)
	}
	return res, dir
}

// requirePassed fails the test on every failed check, and unless the run
// recorded checks and passed: a run with no checks must not pass a test.
func requirePassed(t *testing.T, res *Result) {
	t.Helper()
	for _, c := range res.Failed() {
		t.Errorf("check failed: %s: got %s, want %s", c.Name, c.Got, c.Want)
	}
	if len(res.Checks) == 0 || !res.Passed {
		t.Fatalf("the run did not pass (%d checks)", len(res.Checks))
	}
}

// failedChecks names the checks of res that failed.
func failedChecks(res *Result) []string {
	var out []string
	for _, c := range res.Failed() {
		out = append(out, c.Name)
	}
	return out
}

// TestKafkaOutage runs question 8's scenario in short mode: a stalled
// broker opens the breaker, pushes fail fast, a probe closes it after the
// broker recovers, and every acknowledged line is there once.
func TestKafkaOutage(t *testing.T) {
	res, dir := runScenarioForTest(t, KafkaOutage(), nil)
	requirePassed(t, res)
	b, err := os.ReadFile(res.Report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"### Pushes by phase", "breaker opened", "recovery", "| KafkaFault |", "| ClearKafkaFaults |", "push.acks"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, png := range []string{"kafka-outage-pushes.png", "kafka-outage-latency.png", "kafka-outage-breaker.png"} {
		checkPNG(t, filepath.Join(dir, png))
	}
}

// TestKafkaOutageWithoutBreakerFails is the broken knob: with the breaker
// off, every push into the stalled broker waits the whole write timeout,
// so the checks the breaker backs fail — and only those.
func TestKafkaOutageWithoutBreakerFails(t *testing.T) {
	res, _ := runScenarioForTest(t, KafkaOutage(), map[string]string{"breaker": "false"})
	got := failedChecks(res)
	want := []string{"the breaker opened during the fault", "pushes fail fast during the steady fault", "the breaker probed (half-open) and closed again"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("failed checks %q, want %q", got, want)
	}
}

// TestKafkaOutagePhases cuts a made-up run into phases: what counts as
// before, the steady fault and the recovery.
func TestKafkaOutagePhases(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	ok := loadgen.Outcome{Code: 204, Reason: "ok"}
	timeout := loadgen.Outcome{Code: 503, Reason: "kafka_timeout"}
	open := loadgen.Outcome{Code: 503, Reason: "breaker_open"}
	ps := []PushResult{
		{At: at(1), Latency: time.Millisecond, Outcome: ok},
		{At: at(9.5), Latency: 2 * time.Second, Outcome: timeout}, // in flight at the fault
		{At: at(10), Latency: 2 * time.Second, Outcome: timeout},
		{At: at(12.5), Latency: time.Millisecond, Outcome: open}, // the steady fault starts
		{At: at(13), Latency: 2 * time.Second, Outcome: timeout}, // a probe
		{At: at(14), Latency: time.Millisecond, Outcome: open},
		{At: at(20.5), Latency: time.Millisecond, Outcome: open}, // after the clear, still open
		{At: at(23), Latency: time.Millisecond, Outcome: ok},
	}
	o := outageOf(ps, at(10), at(20), 2*time.Second)
	if o.before.Total != 1 || o.fault.Total != 5 || o.after.Total != 2 {
		t.Fatalf("before %d, fault %d, after %d pushes", o.before.Total, o.fault.Total, o.after.Total)
	}
	if !o.steadyFrom.Equal(at(12.5)) || o.steady5xx.Total != 3 {
		t.Fatalf("steady from %v with %d 5xx", o.steadyFrom.Sub(t0), o.steady5xx.Total)
	}
	if want := 501 * time.Millisecond; o.recovery != want {
		t.Fatalf("recovery %s, want %s", o.recovery, want)
	}
	if o.maxAll != 2*time.Second {
		t.Fatalf("max %s", o.maxAll)
	}
}

// TestKafkaOutageFaultHook drives the KafkaFault hook against a real
// embedded broker: an error fault fails produces until cleared, a delay
// fault holds them until cleared, and a system without a broker says the
// hook is not built.
func TestKafkaOutageFaultHook(t *testing.T) {
	b := kafkatest.Broker(t, 1)
	sys := &System{}
	if err := sys.Faults().KafkaFault(context.Background(), KafkaFault{Request: "produce", ErrorCode: 7}); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("KafkaFault without a broker = %v, want ErrNotBuilt", err)
	}
	sys.setBroker(b)
	f := sys.Faults()
	if caps := f.Capabilities(); !slices.ContainsFunc(caps, func(c Capability) bool { return c.Hook == "KafkaFault" && c.Built }) {
		t.Fatalf("capabilities %v", caps)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	produce := func() (time.Duration, error) {
		start := time.Now()
		err := cl.ProduceSync(ctx, &kgo.Record{Topic: "loki", Value: []byte("x")}).FirstErr()
		return time.Since(start), err
	}
	if _, err := produce(); err != nil {
		t.Fatalf("produce before any fault: %v", err)
	}
	for _, bad := range []KafkaFault{{Request: "nonsense", ErrorCode: 1}, {Request: "produce"}, {Request: "produce", ErrorCode: 32000}} {
		if err := f.KafkaFault(ctx, bad); err == nil {
			t.Errorf("KafkaFault(%+v) succeeded", bad)
		}
	}

	if err := f.KafkaFault(ctx, KafkaFault{Request: "produce", ErrorCode: kerr.UnknownServerError.Code}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := produce(); !errors.Is(err, kerr.UnknownServerError) {
			t.Fatalf("produce under an error fault = %v, want UNKNOWN_SERVER_ERROR", err)
		}
	}
	if err := f.ClearKafkaFaults(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := produce(); err != nil {
		t.Fatalf("produce after clearing: %v", err)
	}

	// A stall: held until cleared, then handled normally.
	if err := f.KafkaFault(ctx, KafkaFault{Request: "Produce", Delay: time.Minute}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := produce(); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a produce under a stall answered: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := f.ClearKafkaFaults(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the held produce failed after clearing: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held produce was not released by ClearKafkaFaults")
	}
	if _, err := produce(); err != nil {
		t.Fatalf("produce after clearing the stall: %v", err)
	}
}
