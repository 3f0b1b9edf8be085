package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/storage"
)

// Faults are the ways a scenario breaks the system under test. Every
// method either does what it says or returns an error saying why it
// cannot: a hook not built for this system returns a *NotBuiltError
// (errors.Is(err, ErrNotBuilt)), never a silent success. Capabilities
// lists which are built, for the report.
type Faults interface {
	// Capabilities lists every hook and whether this system has it.
	Capabilities() []Capability
	// StopComponent stops a component cleanly (an ingester flushes,
	// commits and hands its partitions over), as a rollout does.
	StopComponent(ctx context.Context, name string) error
	// KillComponent stops a component abruptly, as kill -9 does: nothing
	// flushed, nothing handed over.
	KillComponent(ctx context.Context, name string) error
	// RestartComponent starts a stopped or killed component again.
	RestartComponent(ctx context.Context, name string) error
	// KafkaFault injects broker errors or stalls.
	KafkaFault(ctx context.Context, f KafkaFault) error
	// ClearKafkaFaults removes every injected broker fault.
	ClearKafkaFaults(ctx context.Context) error
	// StoreFault replaces the object-store faults of a component's store
	// ("" for every ingester's).
	StoreFault(ctx context.Context, component string, faults ...storage.Fault) error
	// ClearStoreFaults removes them.
	ClearStoreFaults(ctx context.Context, component string) error
	// MemoryLimit caps a component's memory (GOMEMLIMIT, or a cgroup
	// where the machine allows), so exceeding it is a real OOM.
	MemoryLimit(ctx context.Context, component string, bytes int64) error
	// AdvanceClock moves the system's clock forward (retention, idle and
	// max-age flushes in seconds instead of hours).
	AdvanceClock(ctx context.Context, d time.Duration) error
	// CutOff cuts a component off its peers without stopping it (its
	// Kafka connections, its gossip, its peers' requests to it); Heal
	// reconnects it (faults_partition.go).
	CutOff(ctx context.Context, component string) error
	Heal(ctx context.Context, component string) error
	// AddIngester starts one more ingester and returns its name once it
	// runs and is ready; RemoveComponent stops one for good, gracefully
	// (an ingester flushes, commits, hands its partitions over and leaves
	// the ring), and nothing restarts it. Scaling: faults_scale.go.
	AddIngester(ctx context.Context) (string, error)
	RemoveComponent(ctx context.Context, name string) error
}

// KafkaFault describes a broker fault: requests of one kind answered with
// an error code, or held for a while, a number of times.
type KafkaFault struct {
	// Request is the Kafka request kind: "produce", "fetch", "offset_commit", …
	Request string
	// ErrorCode is the Kafka error code to answer with (kerr), 0 for none.
	ErrorCode int16
	// Delay holds matching requests this long before answering.
	Delay time.Duration
	// Count is how many requests the fault applies to; 0 means until
	// cleared.
	Count int
}

// Capability is one fault hook and whether a system has it.
type Capability struct {
	Hook  string
	Built bool
	// Note says how the hook works here, or what it needs to be built.
	Note string
}

// ErrNotBuilt is matched by every NotBuiltError.
var ErrNotBuilt = errors.New("fault hook not built")

// NotBuiltError is a fault hook this system does not have yet.
type NotBuiltError struct {
	Hook string
	// Why says what is missing.
	Why string
}

func (e *NotBuiltError) Error() string {
	return fmt.Sprintf("fault hook %s is not built for this system: %s", e.Hook, e.Why)
}

// Is makes errors.Is(err, ErrNotBuilt) true.
func (e *NotBuiltError) Is(target error) bool { return target == ErrNotBuilt }

// Why each hook is missing from the in-process system. They name the hook
// each needs from pkg/app, so the gap is visible in every report.
const (
	whyKill    = "RunAllInOne runs every component in one errgroup with one context; one ingester cannot be killed without flushing, or started again. Needs the processes mode (one OS process per component) or a per-ingester context from pkg/app."
	whyKafka   = "this system has no embedded broker handed out: the in-process system gets it from app.AllInOneHooks.Broker (RunAllInOneWith); a system with an external broker cannot install kfake faults."
	whyMemory  = "all components share one process here, so GOMEMLIMIT or a cgroup would limit them all at once. Needs the processes mode (per-process GOMEMLIMIT, cgroup v1 memory.limit_in_bytes where root)."
	whyClock   = "each process reads its own clock here; only the in-process system (app.AllInOneHooks.Now) can be moved forward."
	whyRestart = "no component of RunAllInOne can be started again once stopped. Needs the processes mode or a per-ingester lifecycle in pkg/app."
)

// inProcessFaults are the hooks of a System started with StartInProcess.
type inProcessFaults struct{ sys *System }

func (f inProcessFaults) Capabilities() []Capability {
	kafkaCap := Capability{"KafkaFault", false, whyKafka}
	if f.sys.kafkaFaults.Load() != nil {
		kafkaCap = Capability{"KafkaFault", true, "kfake on the embedded broker (app.AllInOneHooks.Broker): an error code via Cluster.Fault (rejected before the broker stores anything), a delay via ControlKey + SleepControl (the request is held, then handled normally); per request kind, a count or until cleared"}
	}
	return append([]Capability{
		{"StopComponent", true, "ingester-N: POST /ingester/shutdown on its HTTP port (flush, commit, hand over, leave the ring)"},
		{"KillComponent", false, whyKill},
		{"RestartComponent", false, whyRestart},
		kafkaCap,
		{"StoreFault", true, "PUT /ingester/faults/store on each ingester (pkg/storage FaultBucket): errors, latency, per operation and key prefix"},
		{"MemoryLimit", false, whyMemory},
		{"AdvanceClock", true, "the distributors', ingesters', querier's and compactor's clock (app.AllInOneHooks.Now) moves forward; memberlist and Kafka keep real time"},
	}, append(cutCapabilities(false), scaleCapabilities(false)...)...)
}

func (f inProcessFaults) StopComponent(ctx context.Context, name string) error {
	ing, err := f.sys.Ingester(name)
	if err != nil {
		return err
	}
	return f.sys.post(ctx, ing.URL+"/ingester/shutdown", "", nil, http.StatusNoContent)
}

func (f inProcessFaults) KillComponent(context.Context, string) error {
	return &NotBuiltError{"KillComponent", whyKill}
}

func (f inProcessFaults) RestartComponent(context.Context, string) error {
	return &NotBuiltError{"RestartComponent", whyRestart}
}

func (f inProcessFaults) KafkaFault(_ context.Context, kf KafkaFault) error {
	fi := f.sys.kafkaFaults.Load()
	if fi == nil {
		return &NotBuiltError{"KafkaFault", whyKafka}
	}
	if err := fi.Add(kf.spec()); err != nil {
		return fmt.Errorf("KafkaFault: %w", err)
	}
	return nil
}

func (f inProcessFaults) ClearKafkaFaults(context.Context) error {
	fi := f.sys.kafkaFaults.Load()
	if fi == nil {
		return &NotBuiltError{"ClearKafkaFaults", whyKafka}
	}
	fi.Clear()
	return nil
}

// setBroker hands the system its embedded broker: the Kafka fault hooks
// install their faults through it.
func (s *System) setBroker(b *kafka.Broker) { s.kafkaFaults.Store(kafka.NewFaultInjector(b)) }

// spec is the broker's form of the fault (kafka.FaultSpec, also what its
// lab fault endpoint takes as JSON).
func (kf KafkaFault) spec() kafka.FaultSpec {
	s := kafka.FaultSpec{Request: kf.Request, ErrorCode: kf.ErrorCode, Count: kf.Count}
	if kf.Delay != 0 {
		// A negative delay reaches the injector, which refuses it.
		s.Delay = kf.Delay.String()
	}
	return s
}

func (f inProcessFaults) MemoryLimit(context.Context, string, int64) error {
	return &NotBuiltError{"MemoryLimit", whyMemory}
}

func (f inProcessFaults) AdvanceClock(_ context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("AdvanceClock(%s): the clock only moves forward", d)
	}
	f.sys.ahead.Add(int64(d))
	return nil
}

func (f inProcessFaults) storeTargets(component string) ([]Component, error) {
	if component == "" {
		return f.sys.Ingesters, nil
	}
	ing, err := f.sys.Ingester(component)
	if err != nil {
		return nil, err
	}
	return []Component{ing}, nil
}

func (f inProcessFaults) StoreFault(ctx context.Context, component string, faults ...storage.Fault) error {
	if len(faults) == 0 {
		return errors.New("StoreFault: no fault given (ClearStoreFaults clears)")
	}
	body, err := json.Marshal(faults)
	if err != nil {
		return err
	}
	targets, err := f.storeTargets(component)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range targets {
		errs = append(errs, f.sys.do(ctx, http.MethodPut, t.URL+"/ingester/faults/store", "application/json", body, http.StatusOK))
	}
	return errors.Join(errs...)
}

func (f inProcessFaults) ClearStoreFaults(ctx context.Context, component string) error {
	targets, err := f.storeTargets(component)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range targets {
		errs = append(errs, f.sys.do(ctx, http.MethodDelete, t.URL+"/ingester/faults/store", "", nil, http.StatusOK))
	}
	return errors.Join(errs...)
}

// recordingFaults records every call in the report, so a run's fault
// history — including hooks that are not built — is in its report.
type recordingFaults struct {
	inner Faults
	rep   *Report
	start time.Time
}

func (r recordingFaults) record(hook, args string, err error) error {
	c := FaultCall{At: time.Since(r.start), Hook: hook, Args: args}
	if err != nil {
		c.Err = err.Error()
	}
	r.rep.addFault(c)
	return err
}

func (r recordingFaults) Capabilities() []Capability { return r.inner.Capabilities() }

func (r recordingFaults) StopComponent(ctx context.Context, name string) error {
	return r.record("StopComponent", name, r.inner.StopComponent(ctx, name))
}

func (r recordingFaults) KillComponent(ctx context.Context, name string) error {
	return r.record("KillComponent", name, r.inner.KillComponent(ctx, name))
}

func (r recordingFaults) RestartComponent(ctx context.Context, name string) error {
	return r.record("RestartComponent", name, r.inner.RestartComponent(ctx, name))
}

func (r recordingFaults) KafkaFault(ctx context.Context, f KafkaFault) error {
	return r.record("KafkaFault", fmt.Sprintf("%+v", f), r.inner.KafkaFault(ctx, f))
}

func (r recordingFaults) ClearKafkaFaults(ctx context.Context) error {
	return r.record("ClearKafkaFaults", "", r.inner.ClearKafkaFaults(ctx))
}

func (r recordingFaults) StoreFault(ctx context.Context, component string, faults ...storage.Fault) error {
	b, _ := json.Marshal(faults)
	return r.record("StoreFault", strings.TrimSpace(component+" "+string(b)), r.inner.StoreFault(ctx, component, faults...))
}

func (r recordingFaults) ClearStoreFaults(ctx context.Context, component string) error {
	return r.record("ClearStoreFaults", component, r.inner.ClearStoreFaults(ctx, component))
}

func (r recordingFaults) MemoryLimit(ctx context.Context, component string, n int64) error {
	return r.record("MemoryLimit", fmt.Sprintf("%s %d bytes", component, n), r.inner.MemoryLimit(ctx, component, n))
}

func (r recordingFaults) AdvanceClock(ctx context.Context, d time.Duration) error {
	return r.record("AdvanceClock", d.String(), r.inner.AdvanceClock(ctx, d))
}

// do sends one request and wants status want.
func (s *System) do(ctx context.Context, method, url, contentType string, body []byte, want int) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

func (s *System) post(ctx context.Context, url, contentType string, body []byte, want int) error {
	return s.do(ctx, http.MethodPost, url, contentType, body, want)
}
