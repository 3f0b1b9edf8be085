package scenario

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lokilab/lokilab/internal/freeport"
	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/netns"
	"github.com/lokilab/lokilab/pkg/storage"
)

// This file is the processes-mode system under test: `lokilab run
// -processes` started as a child of the scenario's process, so that each
// component is an OS process of its own that a scenario can kill -9, give a
// real memory limit (a cgroup, OOM-killed past it) and watch the
// supervisor restart. A scenario asks for it with Scenario.Processes.
//
// The supervisor is this package's child; its children (the broker, the
// distributor, the ingesters, …) are its own, started and restarted by it.
// The scenario reads what it needs from the gateway's GET /processes (pids,
// restarts, last exits, memory cgroups) and samples every process's own
// /metrics.

// processesSys is what a System started by StartProcesses holds beyond the
// in-process one.
type processesSys struct {
	cmd *exec.Cmd
	// targets are the components' /metrics besides the ingesters': the
	// supervisor (gateway), distributor, querier and compactor.
	targets    []Target
	cgroupRoot string
	binary     string
	config     string // the config file `lokilab run` was started with
}

// LokilabBinary returns the lokilab binary processes mode runs: this
// process's own executable when it is `lokilab scenario`. Tests, whose
// executable is the test binary, build one and pass it in Options.Binary.
func LokilabBinary() (string, error) { return os.Executable() }

// StartProcesses runs `binary run -config.file <cfg as YAML>` with
// cfg.Processes enabled, every port fixed to a free block of loopback
// ports, logging to logw, and returns once every process is ready, every
// ingester ACTIVE in the ring and every partition owned. Stop ends it
// (SIGTERM to the supervisor, which stops its children in order).
func StartProcesses(ctx context.Context, cfg app.AllInOneConfig, binary string, logw io.Writer) (*System, error) {
	if binary == "" {
		var err error
		if binary, err = LokilabBinary(); err != nil {
			return nil, err
		}
	}
	for attempt := 1; ; attempt++ {
		sys, err := startProcessesOnce(ctx, cfg, binary, logw)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "already in use") {
			return sys, err
		}
	}
}

func startProcessesOnce(ctx context.Context, cfg app.AllInOneConfig, binary string, logw io.Writer) (*System, error) {
	// One block: gateway, kafka, distributor, querier, compactor, the
	// ingesters' HTTP ports, then memberlist (distributor, ingesters,
	// querier).
	n := cfg.Ingesters
	base, err := freeport.Block(5 + n + n + 2)
	if err != nil {
		return nil, err
	}
	cfg.Processes.Enabled = true
	cfg.Server.HTTPListenAddress = "127.0.0.1"
	cfg.Server.HTTPListenPort = base
	cfg.EmbeddedKafka.ListenAddress = "127.0.0.1:" + strconv.Itoa(base+1)
	cfg.Processes.DistributorPort = base + 2
	cfg.Processes.QuerierPort = base + 3
	cfg.Processes.CompactorPort = base + 4
	cfg.IngesterHTTPBasePort = base + 5
	cfg.Memberlist.BindAddr = "127.0.0.1"
	cfg.Memberlist.BindPort = base + 5 + n
	if cfg.Distributors > 1 {
		return nil, fmt.Errorf("processes mode runs one distributor, not %d", cfg.Distributors)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	y, err := config.YAML(&cfg)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(cfg.DataDir, "lokilab-run.yaml")
	if err := os.WriteFile(path, y, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "run", "-config.file", path)
	cmd.Stdout, cmd.Stderr = logw, logw
	// The lab's fault endpoints on in every process (the broker's Kafka
	// faults, an ingester's network cut: pkg/app/processes_faults.go).
	cmd.Env = append(os.Environ(), app.LabFaultsEnv+"=1")
	cmd.SysProcAttr = supervisorProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s run -processes: %w", binary, err)
	}
	host := func(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }
	sys := &System{
		Config:        cfg,
		API:           host(base),
		Kafka:         cfg.EmbeddedKafka.ListenAddress,
		Topic:         cfg.Kafka.Topic,
		ConsumerGroup: cfg.Reader.ConsumerGroup,
		StoreDir:      cfg.Storage.Filesystem.Dir,
		client:        &http.Client{Timeout: 30 * time.Second},
		done:          make(chan error, 1),
		procs: &processesSys{cmd: cmd, binary: binary, config: path, cgroupRoot: cfg.Processes.CgroupRoot,
			targets: []Target{
				{Name: "supervisor", URL: host(base) + "/metrics"},
				{Name: "distributor", URL: host(base+2) + "/metrics"},
				{Name: "querier", URL: host(base+3) + "/metrics"},
				{Name: "compactor", URL: host(base+4) + "/metrics"},
			}},
	}
	dist := []string{"127.0.0.1:" + strconv.Itoa(base+2)}
	sys.distAddrs.Store(&dist)
	if sys.procs.cgroupRoot == "" {
		sys.procs.cgroupRoot = app.DefaultCgroupMemoryRoot
	}
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		sys.procs.sweepCgroups(cmd.Process.Pid)
		if len(cfg.Processes.Netns) > 0 {
			// Its network namespaces go with it; a supervisor killed
			// with SIGKILL could not remove them itself.
			_, _ = netns.RemoveOwned(context.Background(), cmd.Process.Pid)
		}
		close(exited)
		sys.done <- err
	}()
	// Stop: SIGTERM (the supervisor stops its children in order, the
	// ingesters flush); SIGKILL 50s later if it is still there, which
	// takes its children with it (Pdeathsig).
	sys.cancel = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			select {
			case <-exited:
			case <-time.After(50 * time.Second):
				_ = cmd.Process.Kill()
			}
		}()
	}
	if err := sys.waitReady(ctx); err != nil {
		stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer c()
		return nil, errors.Join(err, sys.Stop(stopCtx))
	}
	if len(cfg.Processes.Netns) > 0 {
		// With network namespaces the broker listens on the host's
		// address on their network, not loopback (pkg/app,
		// processes_netns.go): ask the supervisor where.
		k, err := sys.Process(ctx, "kafka")
		if err != nil {
			stopCtx, c := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer c()
			return nil, errors.Join(err, sys.Stop(stopCtx))
		}
		sys.Kafka = k.Addr
	}
	return sys, nil
}

// sweepCgroups removes memory cgroups a supervisor (pid) left behind: it
// removes its own on the way out, but not if it was killed.
func (p *processesSys) sweepCgroups(pid int) {
	prefix := fmt.Sprintf("lokilab-%d-", pid)
	des, err := os.ReadDir(p.cgroupRoot)
	if err != nil {
		return
	}
	for _, de := range des {
		if de.IsDir() && strings.HasPrefix(de.Name(), prefix) {
			dir := filepath.Join(p.cgroupRoot, de.Name())
			for range 20 { // its processes may take a moment to go
				if os.Remove(dir) == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// Processes returns the supervisor's GET /processes: each process's pid,
// state, restarts, last exit and memory cgroup. Only in processes mode.
func (s *System) Processes(ctx context.Context) (app.ProcessesStatus, error) {
	var st app.ProcessesStatus
	if s.procs == nil {
		return st, errors.New("not in processes mode: the system runs in one process")
	}
	err := s.getJSON(ctx, s.API+"/processes", &st)
	return st, err
}

// Process returns one process of /processes.
func (s *System) Process(ctx context.Context, name string) (app.ProcessStatus, error) {
	st, err := s.Processes(ctx)
	if err != nil {
		return app.ProcessStatus{}, err
	}
	var names []string
	for _, p := range st.Processes {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return app.ProcessStatus{}, fmt.Errorf("no process %q (have %s)", name, strings.Join(names, ", "))
}

// InProcesses says whether the system runs as separate processes.
func (s *System) InProcesses() bool { return s.procs != nil }

// processesFaults are the hooks of a System started by StartProcesses.
type processesFaults struct{ sys *System }

func (f processesFaults) Capabilities() []Capability {
	return append([]Capability{
		{"StopComponent", true, "SIGTERM to the process (pid from GET /processes): an ingester flushes, commits and leaves the ring; the supervisor then restarts it (-processes.restart)"},
		{"KillComponent", true, "SIGKILL to the process (pid from GET /processes): nothing flushed; the supervisor restarts it after 1s (doubling while it keeps dying)"},
		{"RestartComponent", true, "SIGTERM if it runs, then waits until the supervisor has it running and ready again"},
		{"KafkaFault", true, "PUT " + kafka.FaultPath + " on the broker process's lab fault endpoint (its address in " + app.LabFaultsAddrFile + " in the broker's data directory): the broker's own kafka.FaultInjector, errors or stalls per request kind; a restarted broker starts without faults"},
		{"StoreFault", true, "PUT /ingester/faults/store on each ingester's HTTP port (pkg/storage FaultBucket)"},
		{"MemoryLimit", true, "writes memory.limit_in_bytes (and memsw) of the process's cgroup v1 memory group, which the supervisor created for it at start (-processes.memory-limit, Configure: cfg.Processes.MemoryLimits); a process started without one has no group to change"},
		{"AdvanceClock", false, whyClock},
	}, append(cutCapabilities(true), scaleCapabilities(true)...)...)
}

func (f processesFaults) signal(ctx context.Context, name string, sig syscall.Signal) (app.ProcessStatus, error) {
	p, err := f.sys.Process(ctx, name)
	if err != nil {
		return p, err
	}
	if p.PID == 0 {
		return p, fmt.Errorf("%s is not running (state %s, last exit %q)", name, p.State, p.LastExit)
	}
	if err := syscall.Kill(p.PID, sig); err != nil {
		return p, fmt.Errorf("%s (pid %d): %w", name, p.PID, err)
	}
	return p, nil
}

func (f processesFaults) StopComponent(ctx context.Context, name string) error {
	_, err := f.signal(ctx, name, syscall.SIGTERM)
	return err
}

func (f processesFaults) KillComponent(ctx context.Context, name string) error {
	_, err := f.signal(ctx, name, syscall.SIGKILL)
	return err
}

// RestartComponent stops the process if it runs and waits (up to 2m, or
// ctx) for the supervisor to have it running and ready under a new pid.
func (f processesFaults) RestartComponent(ctx context.Context, name string) error {
	old, err := f.sys.Process(ctx, name)
	if err != nil {
		return err
	}
	if old.PID != 0 {
		if err := syscall.Kill(old.PID, syscall.SIGTERM); err != nil {
			return fmt.Errorf("%s (pid %d): %w", name, old.PID, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for {
		p, err := f.sys.Process(ctx, name)
		if err == nil && p.PID != 0 && p.PID != old.PID && p.Ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not running and ready again: %w (last: %+v)", name, ctx.Err(), p)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// brokerFaults is the broker process's lab fault endpoint.
func (f processesFaults) brokerFaults() (string, error) {
	return app.BrokerLabFaultsURL(f.sys.Config.EmbeddedKafka.DataDir)
}

func (f processesFaults) KafkaFault(ctx context.Context, kf KafkaFault) error {
	url, err := f.brokerFaults()
	if err != nil {
		return err
	}
	body, err := json.Marshal(kf.spec())
	if err != nil {
		return err
	}
	if err := f.sys.do(ctx, http.MethodPut, url, "application/json", body, http.StatusOK); err != nil {
		return fmt.Errorf("KafkaFault: %w", err)
	}
	return nil
}

func (f processesFaults) ClearKafkaFaults(ctx context.Context) error {
	url, err := f.brokerFaults()
	if err != nil {
		return err
	}
	if err := f.sys.do(ctx, http.MethodDelete, url, "", nil, http.StatusOK); err != nil {
		return fmt.Errorf("ClearKafkaFaults: %w", err)
	}
	return nil
}

func (f processesFaults) StoreFault(ctx context.Context, component string, faults ...storage.Fault) error {
	return inProcessFaults(f).StoreFault(ctx, component, faults...)
}

func (f processesFaults) ClearStoreFaults(ctx context.Context, component string) error {
	return inProcessFaults(f).ClearStoreFaults(ctx, component)
}

// MemoryLimit changes a running process's cgroup limit. Lowered below its
// usage, the kernel reclaims what it can and OOM-kills it otherwise.
func (f processesFaults) MemoryLimit(ctx context.Context, component string, n int64) error {
	p, err := f.sys.Process(ctx, component)
	if err != nil {
		return err
	}
	if p.Cgroup == "" {
		return fmt.Errorf("%s has no memory cgroup: give it a limit at start (cfg.Processes.MemoryLimits, -processes.memory-limit=%s=<size>) and MemoryLimit can change it", component, component)
	}
	return app.SetCgroupMemoryLimit(p.Cgroup, n)
}

func (f processesFaults) AdvanceClock(context.Context, time.Duration) error {
	return &NotBuiltError{"AdvanceClock", whyClock}
}

// startSystem starts the system under test the way s asks: in this
// process, or as separate processes (Scenario.Processes).
func startSystem(ctx context.Context, s *Scenario, knobs Values, cfg app.AllInOneConfig, binary string, logw io.Writer, logf func(string, ...any)) (*System, error) {
	if s.Processes != nil && s.Processes(knobs) {
		logf("starting the system under test (lokilab run -processes: one OS process per component, data in %s)", cfg.DataDir)
		return StartProcesses(ctx, cfg, binary, logw)
	}
	logf("starting the system under test (all in one process, data in %s)", cfg.DataDir)
	return StartInProcess(ctx, cfg, logw)
}
