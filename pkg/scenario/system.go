package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/ingester"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/server"
)

// Component is one part of the system under test with an HTTP port.
type Component struct {
	// Name is e.g. "ingester-1".
	Name string
	// URL is its base URL, e.g. http://127.0.0.1:40123.
	URL string
}

// System is the system under test, running; today the all-in-one process
// (app.RunAllInOne) inside the scenario's own process.
type System struct {
	// Config is the configuration it runs with, defaults derived.
	Config app.AllInOneConfig
	// API is the base URL of the Loki API: push and query, the ring, and
	// the /metrics of the distributor, querier and compactor.
	API string
	// Kafka is the embedded broker's address; Topic its topic.
	Kafka, Topic string
	// Partitions is the topic's partition count.
	Partitions int
	// ConsumerGroup holds the ingesters' committed offsets.
	ConsumerGroup string
	// Ingesters are the ingesters' HTTP endpoints, by name.
	Ingesters []Component
	// StoreDir is the filesystem object store's root.
	StoreDir string
	// Distributors are every distributor's HTTP endpoint: the first is
	// the API port's ("distributor"), the others (Config.Distributors > 1)
	// "distributor-2", … on ports of their own, in the same ring.
	Distributors []Component

	// kafkaFaults installs kfake faults on the embedded broker handed out
	// by RunAllInOneWith (setBroker): the Kafka fault hooks. The same
	// injector serves the broker's lab fault endpoint in processes mode.
	kafkaFaults atomic.Pointer[kafka.FaultInjector]
	distAddrs   atomic.Pointer[[]string]
	// ahead is how far the in-process system's clock runs ahead of real
	// time (ns): AdvanceClock adds to it (app.AllInOneHooks.Now).
	ahead atomic.Int64

	client *http.Client
	cancel context.CancelFunc
	done   chan error
	// procs is set in processes mode (StartProcesses, processes.go).
	procs *processesSys

	// viewMu guards Ingesters and Partitions while checkReady rewrites them
	// (a scale or rollout step waits for the ingesters again) and a
	// watcher goroutine reads them: watchers use view, the scenario's own
	// goroutine may read the fields directly.
	viewMu sync.RWMutex
}

// view returns the ingesters and the partition count, for goroutines that
// run beside the scenario's.
func (s *System) view() ([]Component, int) {
	s.viewMu.RLock()
	defer s.viewMu.RUnlock()
	return s.Ingesters, s.Partitions
}

// LabConfig returns the configuration scenarios run the system with: the
// defaults of `lokilab run`, with a data directory of the run's own, free
// ports, and timings shrunk so effects show in seconds:
//
//   - ingester flush_check_period 1s (Loki's 30s): committed offsets
//     follow a flush within a second;
//   - memberlist leave_timeout 1s (5s): a clean stop takes seconds.
//
// Everything else is the default a user gets, so what a scenario measures
// is what `lokilab run` does. Scenario.Configure changes more.
func LabConfig(dataDir string) (app.AllInOneConfig, error) {
	var cfg app.AllInOneConfig
	fs := flag.NewFlagSet("scenario", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if err := config.Parse(fs, nil, &cfg); err != nil {
		return cfg, err
	}
	cfg.DataDir = dataDir
	cfg.IngesterHTTPBasePort = 0
	cfg.DistributorHTTPBasePort = 0
	cfg.Memberlist.BindPort = 0
	cfg.Memberlist.LeaveTimeout = time.Second
	cfg.Ingester.FlushCheckPeriod = time.Second
	return cfg, nil
}

// freePort returns a loopback port nothing listened on a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartInProcess runs app.RunAllInOne with cfg in a goroutine, on free
// ports for the API and the broker, logging to logw, and returns once the
// API and every ingester are ready and every partition has an active
// owner. Stop ends it.
func StartInProcess(ctx context.Context, cfg app.AllInOneConfig, logw io.Writer) (*System, error) {
	logger, err := server.NewLogger(logw, cfg.Server.LogLevel, cfg.Server.LogFormat)
	if err != nil {
		return nil, err
	}
	// A free port can be taken between our probe and the bind: try again
	// with new ones.
	for attempt := 1; ; attempt++ {
		sys, err := startOnce(ctx, cfg, logger)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return sys, err
		}
	}
}

func startOnce(ctx context.Context, cfg app.AllInOneConfig, logger *slog.Logger) (*System, error) {
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	kafkaPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg.Server.HTTPListenAddress = "127.0.0.1"
	cfg.Server.HTTPListenPort = apiPort
	cfg.EmbeddedKafka.ListenAddress = "127.0.0.1:" + strconv.Itoa(kafkaPort)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sys := &System{
		Config:        cfg,
		API:           "http://127.0.0.1:" + strconv.Itoa(apiPort),
		Kafka:         cfg.EmbeddedKafka.ListenAddress,
		Topic:         cfg.Kafka.Topic,
		ConsumerGroup: cfg.Reader.ConsumerGroup,
		StoreDir:      cfg.Storage.Filesystem.Dir,
		client:        &http.Client{Timeout: 30 * time.Second},
		cancel:        cancel,
		done:          make(chan error, 1),
	}
	hooks := app.AllInOneHooks{
		Broker:       sys.setBroker,
		Distributors: func(addrs []string) { sys.distAddrs.Store(&addrs) },
		Now:          sys.now,
	}
	go func() { sys.done <- app.RunAllInOneWith(runCtx, cfg, nil, logger, hooks) }()
	if err := sys.waitReady(ctx); err != nil {
		stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer c()
		return nil, errors.Join(err, sys.Stop(stopCtx))
	}
	return sys, nil
}

// RingView is the part of /ring?format=json scenarios read.
type RingView struct {
	Instances []struct {
		ID      string `json:"id"`
		Addr    string `json:"addr"`
		Role    string `json:"role"`
		State   string `json:"state"`
		Healthy bool   `json:"healthy"`
	} `json:"instances"`
	Partitions []struct {
		ID     int32 `json:"id"`
		State  string
		Owners []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"owners"`
		// AssignedTo is the ingester the ring assigns the partition to:
		// its owner once every handover has finished.
		AssignedTo string `json:"assigned_to"`
	} `json:"partitions"`
}

// Owner returns the ACTIVE owner of partition p.
func (v RingView) Owner(p int32) (string, bool) {
	for _, part := range v.Partitions {
		if part.ID != p {
			continue
		}
		for _, o := range part.Owners {
			if o.State == "ACTIVE" {
				return o.ID, true
			}
		}
	}
	return "", false
}

// now is the in-process system's clock: real time plus what AdvanceClock
// added.
func (s *System) now() time.Time { return time.Now().Add(time.Duration(s.ahead.Load())) }

// Ring reads the distributor's view of the ring.
func (s *System) Ring(ctx context.Context) (RingView, error) {
	var v RingView
	err := s.getJSON(ctx, s.API+"/ring?format=json", &v)
	return v, err
}

func (s *System) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (s *System) ready(ctx context.Context, base string) error {
	return s.do(ctx, http.MethodGet, base+"/ready", "", nil, http.StatusOK)
}

// waitReady waits until the API is ready, the ring has every ingester
// healthy and every partition an ACTIVE owner, and every ingester is ready
// (caught up).
func (s *System) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	want := s.Config.Ingesters
	var last error
	for {
		last = s.checkReady(ctx, want)
		if last == nil {
			return nil
		}
		select {
		case err := <-s.done:
			s.done <- err // Stop reads it again
			return fmt.Errorf("the system stopped while starting: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("the system was not ready in time: %w", last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *System) checkReady(ctx context.Context, ingesters int) error {
	if err := s.ready(ctx, s.API); err != nil {
		return err
	}
	if s.procs != nil && s.Config.Ingester.Ownership == ingester.OwnershipGroup {
		return s.checkReadyGroup(ctx, ingesters) // not in the ring: see rebalance.go
	}
	v, err := s.Ring(ctx)
	if err != nil {
		return err
	}
	var ings []Component
	for _, in := range v.Instances {
		if in.Role == "ingester" && in.Healthy && in.State == "ACTIVE" {
			ings = append(ings, Component{Name: in.ID, URL: "http://" + in.Addr})
		}
	}
	if len(ings) != ingesters {
		return fmt.Errorf("%d of %d ingesters ACTIVE in the ring", len(ings), ingesters)
	}
	// Every partition with its assigned owner alone, ACTIVE: an ACTIVE
	// owner is not enough. Ingesters that start together can each take a
	// partition the ring assigns to the other before gossip shows them
	// both; the handover that follows leaves the partition with no live
	// owner for a moment, and a query then is partial. A scenario that
	// starts in that moment sees a warning nothing it did caused.
	if _, why := v.owners(); why != "" {
		return errors.New("the ring has not settled: " + why)
	}
	for _, in := range ings {
		if err := s.ready(ctx, in.URL); err != nil {
			return fmt.Errorf("%s: %w", in.Name, err)
		}
	}
	var dists []Component
	if a := s.distAddrs.Load(); a != nil {
		for i, addr := range *a {
			name := "distributor"
			if i > 0 {
				name = fmt.Sprintf("distributor-%d", i+1)
			}
			dists = append(dists, Component{Name: name, URL: "http://" + addr})
		}
	}
	if want := max(s.Config.Distributors, 1); len(dists) != want {
		return fmt.Errorf("%d of %d distributors listening", len(dists), want)
	}
	healthy := 0
	for _, in := range v.Instances {
		if in.Role == "distributor" && in.Healthy && in.State == "ACTIVE" {
			healthy++
		}
	}
	if healthy != len(dists) {
		return fmt.Errorf("%d of %d distributors ACTIVE in the ring", healthy, len(dists))
	}
	for _, d := range dists[1:] {
		if err := s.ready(ctx, d.URL); err != nil {
			return fmt.Errorf("%s: %w", d.Name, err)
		}
	}
	s.Distributors = dists
	slices.SortFunc(ings, func(a, b Component) int { return strings.Compare(a.Name, b.Name) })
	s.viewMu.Lock()
	s.Ingesters = ings
	s.Partitions = len(v.Partitions)
	s.viewMu.Unlock()
	return nil
}

// Ingester returns the ingester named name.
func (s *System) Ingester(name string) (Component, error) {
	for _, in := range s.Ingesters {
		if in.Name == name {
			return in, nil
		}
	}
	names := make([]string, len(s.Ingesters))
	for i, in := range s.Ingesters {
		names[i] = in.Name
	}
	return Component{}, fmt.Errorf("no ingester %q (have %s)", name, strings.Join(names, ", "))
}

// MetricsTargets are the /metrics endpoints of every component: the API
// port (distributor, querier, compactor) as "distributor", and each
// ingester under its name.
func (s *System) MetricsTargets() []Target {
	ts := []Target{{Name: "distributor", URL: s.API + "/metrics"}}
	for _, d := range s.Distributors[min(1, len(s.Distributors)):] {
		ts = append(ts, Target{Name: d.Name, URL: d.URL + "/metrics"})
	}
	if s.procs != nil { // each process has its own; the API port's are the supervisor's
		ts = append([]Target(nil), s.procs.targets...)
	}
	for _, in := range s.Ingesters {
		ts = append(ts, Target{Name: in.Name, URL: in.URL + "/metrics"})
	}
	return ts
}

// Faults returns the fault hooks of this system.
func (s *System) Faults() Faults {
	if s.procs != nil {
		return processesFaults{s}
	}
	return inProcessFaults{s}
}

// Describe lists where everything runs, for the report.
func (s *System) Describe() []string {
	out := []string{
		fmt.Sprintf("Loki API, `/metrics`, `/ring`, `/config`, `/debug/pprof/`: %s", s.API),
		fmt.Sprintf("Kafka (embedded kfake): %s, topic %q, %d partitions, consumer group %q", s.Kafka, s.Topic, s.Partitions, s.ConsumerGroup),
	}
	for _, d := range s.Distributors[min(1, len(s.Distributors)):] {
		out = append(out, fmt.Sprintf("%s: %s (push, `/metrics`, `/distributor/status`, `/ring`)", d.Name, d.URL))
	}
	for _, in := range s.Ingesters {
		out = append(out, fmt.Sprintf("%s: %s (`/ingester/status`, `/metrics`, `POST /flush`)", in.Name, in.URL))
	}
	if s.procs != nil {
		out = append(out, fmt.Sprintf("processes mode: `%s run -config.file %s`; `GET %s/processes` lists pids, restarts, last exits and memory cgroups; each process's `/metrics` is on its own port: %s",
			filepath.Base(s.procs.binary), filepath.ToSlash(s.procs.config), s.API, targetList(s.procs.targets)))
	}
	out = append(out, fmt.Sprintf("object store (filesystem): `%s` (removed after the run unless -keep-data)", filepath.ToSlash(s.StoreDir)))
	return out
}

// Stop ends the system and waits for it: the ingesters flush and commit,
// the broker closes last.
func (s *System) Stop(ctx context.Context) error {
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		return err
	case <-ctx.Done():
		return fmt.Errorf("the system did not stop in time: %w", ctx.Err())
	}
}

func targetList(ts []Target) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = t.Name + " " + t.URL
	}
	return strings.Join(parts, ", ")
}
