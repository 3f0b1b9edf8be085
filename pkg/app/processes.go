package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/ingester"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/netns"
	"github.com/lokilab/lokilab/pkg/server"
)

// ProcessesConfig is `lokilab run -processes`: the all-in-one topology as
// separate OS processes on loopback, started and watched by a supervisor in
// the `lokilab run` process, so that a user can kill -9 one and watch the
// rest of the system cope.
//
// Every other setting is the all-in-one configuration's: the supervisor
// splits it into one config file per process. Ports are fixed (0 is refused)
// because processes find each other by address: the ingesters join the
// distributor's memberlist port, the gateway forwards to the distributor's
// and the querier's HTTP ports, and a restarted process must come back where
// the others expect it.
type ProcessesConfig struct {
	// Enabled runs each component as its own process. Default false: one
	// process, cheaper (one Go runtime instead of seven) and simpler to
	// profile; processes are for crash experiments.
	Enabled bool `yaml:"enabled"`
	// Restart restarts a process that exits on its own, after a backoff
	// that starts at 1s and doubles (to 30s) while it keeps dying within
	// 10s of starting: docker compose's `restart: always`. Default true.
	// False leaves it dead, for experiments about what the others do
	// without it.
	Restart bool `yaml:"restart"`
	// DistributorPort is the distributor's HTTP port. Default 3110: 3100
	// is the gateway's.
	DistributorPort int `yaml:"distributor_port"`
	// QuerierPort is the querier's HTTP port. Default 3200.
	QuerierPort int `yaml:"querier_port"`
	// CompactorPort is the compactor's HTTP port. Default 3300.
	CompactorPort int `yaml:"compactor_port"`
	// StartTimeout bounds how long each step of the startup (the broker,
	// the distributor, the ingesters, the querier and compactor) may take
	// to report ready. Default 2m: ingesters replaying a long backlog are
	// the slow step.
	StartTimeout time.Duration `yaml:"start_timeout"`
	// StopTimeout is how long a process may take to stop after SIGTERM
	// before it is sent SIGKILL. Default 60s: an ingester flushes
	// everything it holds first. A SIGKILL loses nothing acknowledged
	// (Kafka replays it), it only makes the next start replay more.
	StopTimeout time.Duration `yaml:"stop_timeout"`
	// MemoryLimits caps processes' memory by name (ingester-2, distributor,
	// …; "ingesters" for every ingester). Default none. With the cgroup
	// mode each limited process runs in a cgroup v1 memory group of its
	// own whose limit the kernel enforces with the OOM killer — a real
	// SIGKILL, as a container's limit is enforced — and the supervisor
	// reports the kill (last_exit "oom-killed" in /processes,
	// lokilab_supervisor_oom_kills_total) and restarts the process like
	// any other death. Needs root and cgroup v1; it fails at startup
	// otherwise rather than run without the limit.
	MemoryLimits MemoryLimits `yaml:"memory_limits"`
	// MemoryLimitMode is how MemoryLimits are enforced: "cgroup" (default:
	// a real limit, an OOM kill past it) or "gomemlimit" (the child's
	// GOMEMLIMIT only: a soft target for Go's garbage collector, which
	// works harder near it and lets the heap grow past it; nothing is
	// killed). Choose gomemlimit only where cgroups are not writable, and
	// know that it shows GC pressure, not an OOM.
	MemoryLimitMode string `yaml:"memory_limit_mode"`
	// CgroupRoot is where the cgroup v1 memory controller is mounted.
	// Default /sys/fs/cgroup/memory.
	CgroupRoot string `yaml:"cgroup_root"`
	// Netns runs the named ingesters (ingester-2,…) each in a network
	// namespace of its own, joined to the host by a veth pair (pkg/netns),
	// so that POST /processes/{name}/partition can cut it off its peers
	// with a real network fault: packets lost into timeouts, where the
	// in-process cut (pkg/netcut) refuses at once. Default none. It moves
	// the broker's listener and every memberlist node from loopback to the
	// host's address on the namespaces' network (processes_netns.go).
	// Needs root and iproute2; fails at startup, saying why, otherwise.
	Netns config.CommaList `yaml:"netns"`
}

// RegisterFlags registers the processes mode's flags.
func (c *ProcessesConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.BoolVar(&c.Enabled, "processes", false, "Run each component as a separate OS process (kill -9 one); the Loki API stays on -server.http-listen-port.")
	fs.BoolVar(&c.Restart, "processes.restart", true, "Restart a process that dies, after a short backoff (false: leave it dead).")
	fs.IntVar(&c.DistributorPort, "processes.distributor-port", 3110, "HTTP port of the distributor process.")
	fs.IntVar(&c.QuerierPort, "processes.querier-port", 3200, "HTTP port of the querier process.")
	fs.IntVar(&c.CompactorPort, "processes.compactor-port", 3300, "HTTP port of the compactor process.")
	fs.DurationVar(&c.StartTimeout, "processes.start-timeout", 2*time.Minute, "How long each startup step may take to become ready.")
	fs.DurationVar(&c.StopTimeout, "processes.stop-timeout", time.Minute, "How long a process may take to stop after SIGTERM before SIGKILL.")
	fs.Var(&c.MemoryLimits, "processes.memory-limit", "Memory limit of a process, <name>=<size> (e.g. ingester-2=256MiB; \"ingesters\" for all), repeatable or comma-separated: a cgroup v1 memory group per process, OOM-killed past it.")
	fs.StringVar(&c.MemoryLimitMode, "processes.memory-limit-mode", MemoryLimitCgroup, "How -processes.memory-limit is enforced: cgroup (a real OOM kill; root and cgroup v1) or gomemlimit (GOMEMLIMIT only: a soft GC target, never a kill).")
	fs.StringVar(&c.CgroupRoot, "processes.cgroup-root", DefaultCgroupMemoryRoot, "Mount point of the cgroup v1 memory controller.")
	fs.Var(&c.Netns, "processes.netns", "Ingesters to run each in a network namespace of its own (comma-separated, e.g. ingester-2), which POST /processes/{name}/partition cuts off with real packet loss; root and iproute2.")
}

// Process names, as the banner, the output prefixes and /processes show
// them; ingesters are ingester-1…ingester-N.
const (
	procKafka       = "kafka"
	procDistributor = "distributor"
	procQuerier     = "querier"
	procCompactor   = "compactor"
)

// childSpec is one process of the plan: what to run and where it listens.
type childSpec struct {
	name      string
	command   string // the lokilab subcommand
	config    any    // written to <data.dir>/processes/<name>.yaml
	extraArgs []string
	// httpAddr is the HTTP address others reach it at; kafkaAddr the
	// broker's. memberlist is its gossip address, "" without one.
	httpAddr, kafkaAddr, memberlist string
	// ports are the listeners it binds, checked before anything starts,
	// each with the flag that moves it.
	ports []portUse
	// joinOnRestart, for the distributor: it starts the memberlist
	// cluster alone, as its seed; restarted, it joins the others, since
	// the cluster outlived it.
	joinOnRestart []string
}

type portUse struct {
	addr string
	udp  bool // memberlist: UDP too
	flag string
}

// planProcesses splits the all-in-one configuration (validated) into one
// configuration per process. partitions is the topic's partition count,
// which the ring must agree with.
func planProcesses(cfg AllInOneConfig, partitions int) ([]*childSpec, error) {
	return planProcessesIn(cfg, partitions, nil)
}

// planProcessesIn is planProcesses with some ingesters in network
// namespaces (np; nil: none, everything on cfg's addresses).
func planProcessesIn(cfg AllInOneConfig, partitions int, np *netPlan) ([]*childSpec, error) {
	p := cfg.Processes
	if err := p.validate(cfg); err != nil {
		return nil, err
	}
	np.apply(&cfg)
	kafkaHost, kafkaPortStr, _ := net.SplitHostPort(cfg.EmbeddedKafka.ListenAddress)
	kafkaPort, _ := strconv.Atoi(kafkaPortStr)
	kafkaAddr := dialAddr(kafkaHost, kafkaPort)
	if cfg.EmbeddedKafka.AdvertiseAddress != "" {
		kafkaAddr = cfg.EmbeddedKafka.AdvertiseAddress
	}
	mlHost := cfg.Memberlist.BindAddr
	if cfg.Memberlist.AdvertiseAddr != "" {
		mlHost = cfg.Memberlist.AdvertiseAddr
	}
	// Memberlist ports follow the start order from -memberlist.bind-port:
	// the distributor, each ingester, the querier. A namespaced ingester
	// (node n) gossips from its namespace's address.
	mlPort := func(i int) int { return cfg.Memberlist.BindPort + i }
	mlAddr := func(i int) string {
		if a := np.addrOf(fmt.Sprintf("ingester-%d", i)); a != "" && i >= 1 && i <= cfg.Ingesters {
			return dialAddr(a, mlPort(i))
		}
		return dialAddr(mlHost, mlPort(i))
	}
	var everyone []string
	for i := range cfg.Ingesters + 2 {
		everyone = append(everyone, mlAddr(i))
	}
	others := func(i int) []string { // every node but i: a restarted node joins through any live one
		return slices.Concat(everyone[:i], everyone[i+1:])
	}
	serverAt := func(port int) server.Config {
		sc := cfg.Server
		sc.HTTPListenPort = port
		return sc
	}
	httpAddr := func(port int) string { return dialAddr(cfg.Server.HTTPListenAddress, port) }
	httpPort := func(port int, flag string) portUse {
		return portUse{addr: net.JoinHostPort(cfg.Server.HTTPListenAddress, strconv.Itoa(port)), flag: flag}
	}
	gossipPort := func(i int) portUse {
		return portUse{addr: net.JoinHostPort(cfg.Memberlist.BindAddr, strconv.Itoa(mlPort(i))), udp: true, flag: "memberlist.bind-port"}
	}
	memberlist := cfg.Memberlist
	memberlist.NodeName = "" // each node's default: its instance ID
	memberlist.AdvertisePort = 0
	memberlist.Partitions = partitions

	var specs []*childSpec
	broker := BrokerProcessConfig{Broker: cfg.EmbeddedKafka, Topic: cfg.Kafka.Topic, Partitions: cfg.Kafka.AutoCreateTopicDefaultPartitions, LogLevel: cfg.Server.LogLevel}
	specs = append(specs, &childSpec{name: procKafka, command: "kafka", config: &broker, kafkaAddr: kafkaAddr,
		ports: []portUse{{addr: cfg.EmbeddedKafka.ListenAddress, flag: "kafka.broker.listen-address"}}})

	kcfg := cfg.Kafka
	kcfg.Address = kafkaAddr

	dist := cfg.DistributorConfig
	dist.Server = serverAt(p.DistributorPort)
	dist.Kafka = kcfg
	dist.Memberlist = memberlist
	dist.Memberlist.BindPort = mlPort(0)
	dist.Memberlist.JoinMembers = nil
	dist.InstanceID = procDistributor
	specs = append(specs, &childSpec{name: procDistributor, command: "distributor", config: &dist,
		httpAddr: httpAddr(p.DistributorPort), memberlist: mlAddr(0), joinOnRestart: others(0),
		ports: []portUse{httpPort(p.DistributorPort, "processes.distributor-port"), gossipPort(0)}})

	var ingesterAddrs []string
	for n := 1; n <= cfg.Ingesters; n++ {
		port := cfg.IngesterHTTPBasePort + n - 1
		ic := IngesterConfig{AuthEnabled: cfg.AuthEnabled, Server: serverAt(port), Ingester: cfg.Ingester, Kafka: kcfg,
			Reader: cfg.Reader, Storage: cfg.Storage, Memberlist: memberlist}
		ic.Ingester.InstanceID = fmt.Sprintf("ingester-%d", n)
		ic.Memberlist.BindPort = mlPort(n)
		ic.Memberlist.JoinMembers = others(n)
		sp := &childSpec{name: ic.Ingester.InstanceID, command: "ingester", config: &ic,
			httpAddr: httpAddr(port), memberlist: mlAddr(n),
			ports: []portUse{httpPort(port, "ingester.http-base-port"), gossipPort(n)}}
		if a := np.addrOf(sp.name); a != "" {
			// Its own namespace: it listens on the namespace's address,
			// and its fresh namespace holds no other listener to check.
			ic.Server.HTTPListenAddress, ic.Memberlist.BindAddr, ic.Memberlist.AdvertiseAddr = a, a, ""
			sp.httpAddr, sp.ports = dialAddr(a, port), nil
		}
		ingesterAddrs = append(ingesterAddrs, sp.httpAddr)
		specs = append(specs, sp)
	}

	q := QuerierConfig{AuthEnabled: cfg.AuthEnabled, Server: serverAt(p.QuerierPort), Querier: cfg.Querier, Storage: cfg.Storage,
		Limits: cfg.Limits, RuntimeConfig: cfg.RuntimeConfig, Memberlist: memberlist, InstanceID: procQuerier}
	qi := cfg.Ingesters + 1
	q.Memberlist.BindPort = mlPort(qi)
	q.Memberlist.JoinMembers = others(qi)
	if cfg.Ingester.Ownership != ingester.OwnershipRing {
		// Ingesters in a consumer group are not in the ring: ask them all.
		q.IngesterAddresses = ingesterAddrs
	}
	specs = append(specs, &childSpec{name: procQuerier, command: "querier", config: &q,
		httpAddr: httpAddr(p.QuerierPort), memberlist: mlAddr(qi),
		ports: []portUse{httpPort(p.QuerierPort, "processes.querier-port"), gossipPort(qi)}})

	comp := CompactorConfig{Server: serverAt(p.CompactorPort), Compactor: cfg.Compactor, Storage: cfg.Storage,
		Limits: cfg.Limits, RuntimeConfig: cfg.RuntimeConfig}
	specs = append(specs, &childSpec{name: procCompactor, command: "compactor", config: &comp,
		httpAddr: httpAddr(p.CompactorPort), ports: []portUse{httpPort(p.CompactorPort, "processes.compactor-port")}})

	// A secret prints redacted in YAML (and so in /config): it goes on the
	// command line instead, where `ps` shows it to users of this machine
	// (the supervisor's log and /processes show it redacted). Keep S3
	// credentials in the AWS environment, which children inherit.
	if s := cfg.Storage.S3.SecretAccessKey; s != "" {
		for _, sp := range specs {
			if sp.command != "kafka" && sp.command != "distributor" {
				sp.extraArgs = append(sp.extraArgs, secretFlag+string(s))
			}
		}
	}
	return specs, nil
}

const secretFlag = "-storage.s3.secret-access-key="

// redacted is args as the supervisor shows them: without the secret.
func redacted(args []string) []string {
	out := slices.Clone(args)
	for i, a := range out {
		if strings.HasPrefix(a, secretFlag) {
			out[i] = secretFlag + "<secret>"
		}
	}
	return out
}

// validate checks what the processes mode needs beyond the all-in-one
// configuration: fixed ports, all different.
func (p ProcessesConfig) validate(cfg AllInOneConfig) error {
	var errs []error
	if cfg.Ingesters < 1 {
		errs = append(errs, errors.New("-processes needs at least one ingester"))
	}
	if cfg.Ingester.Ownership == ingester.OwnershipStatic {
		errs = append(errs, errors.New("-processes cannot give each ingester its own static partitions: use ring or group ownership, or start the ingesters by hand"))
	}
	if p.StartTimeout <= 0 || p.StopTimeout <= 0 {
		errs = append(errs, errors.New("processes start and stop timeouts must be positive"))
	}
	switch p.MemoryLimitMode {
	case MemoryLimitCgroup, MemoryLimitGOMEMLIMIT, "":
	default:
		errs = append(errs, fmt.Errorf("-processes.memory-limit-mode %q: want cgroup or gomemlimit", p.MemoryLimitMode))
	}
	for name := range p.MemoryLimits {
		known := name == procKafka || name == procDistributor || name == procQuerier || name == procCompactor || name == "ingesters"
		if n, err := strconv.Atoi(strings.TrimPrefix(name, "ingester-")); err == nil && strings.HasPrefix(name, "ingester-") && n >= 1 && n <= cfg.Ingesters {
			known = true
		}
		if !known {
			errs = append(errs, fmt.Errorf("-processes.memory-limit names %q, which is not a process (kafka, distributor, ingester-1…ingester-%d, ingesters, querier, compactor)", name, cfg.Ingesters))
		}
	}
	errs = append(errs, p.validateNetns(cfg))
	_, kp, err := net.SplitHostPort(cfg.EmbeddedKafka.ListenAddress)
	kafkaPort, _ := strconv.Atoi(kp)
	if err != nil {
		errs = append(errs, fmt.Errorf("kafka.broker.listen-address %q: %w", cfg.EmbeddedKafka.ListenAddress, err))
	}
	owners := map[string]string{}
	claim := func(proto string, port int, who, flag string) {
		if port <= 0 || port > 65535 {
			errs = append(errs, fmt.Errorf("-processes needs a fixed port for %s (-%s), not %d: processes find each other by port", who, flag, port))
			return
		}
		key := proto + "/" + strconv.Itoa(port)
		if prev, ok := owners[key]; ok {
			errs = append(errs, fmt.Errorf("port %d is both %s's and %s's", port, prev, who))
			return
		}
		owners[key] = who
	}
	if cfg.Server.HTTPListenPort != 0 { // the gateway may take a free port: nothing else connects to it
		claim("tcp", cfg.Server.HTTPListenPort, "the gateway", "server.http-listen-port")
	}
	claim("tcp", kafkaPort, "kafka", "kafka.broker.listen-address")
	claim("tcp", p.DistributorPort, "distributor", "processes.distributor-port")
	for n := 1; n <= cfg.Ingesters; n++ {
		claim("tcp", cfg.IngesterHTTPBasePort+n-1, fmt.Sprintf("ingester-%d", n), "ingester.http-base-port")
	}
	claim("tcp", p.QuerierPort, "querier", "processes.querier-port")
	claim("tcp", p.CompactorPort, "compactor", "processes.compactor-port")
	for i := range cfg.Ingesters + 2 {
		// memberlist binds TCP and UDP; its ports must not meet the HTTP
		// ones either.
		claim("tcp", cfg.Memberlist.BindPort+i, fmt.Sprintf("memberlist node %d", i), "memberlist.bind-port")
	}
	return errors.Join(errs...)
}

// Process states, as /processes shows them.
const (
	stateStarting   = "starting"   // launched, startup not finished
	stateRunning    = "running"    // alive (ready or not: see Ready)
	stateRestarting = "restarting" // died; waiting out the backoff
	stateExited     = "exited"     // died; not restarted (-processes.restart=false, or startup failed)
	stateStopping   = "stopping"   // sent SIGTERM
	stateStopped    = "stopped"    // stopped by the supervisor
)

// ProcessStatus is one process as GET /processes on the gateway reports it.
type ProcessStatus struct {
	Name string `json:"name"`
	// PID is the running process's, 0 while there is none.
	PID      int    `json:"pid"`
	State    string `json:"state"`
	Ready    bool   `json:"ready"` // its /ready answered 200 (the broker: its port accepted a connection)
	Restarts int    `json:"restarts"`
	// Addr is the HTTP address (the broker's: its Kafka address).
	Addr       string    `json:"addr"`
	Memberlist string    `json:"memberlist,omitempty"`
	Since      time.Time `json:"since"` // when State last changed
	// LastExit is how it last ended: "signal: killed", "exit status 1",
	// or "oom-killed (…)" when its memory cgroup's OOM killer did it.
	LastExit string   `json:"last_exit,omitempty"`
	Command  []string `json:"command"`
	// MemoryLimit is its -processes.memory-limit in bytes (0: none);
	// Cgroup its memory group's directory (cgroup mode); MemoryUsage the
	// group's memory.usage_in_bytes now; OOMKills the kills seen.
	MemoryLimit int64  `json:"memory_limit_bytes,omitempty"`
	Cgroup      string `json:"cgroup,omitempty"`
	MemoryUsage int64  `json:"memory_usage_bytes,omitempty"`
	OOMKills    int    `json:"oom_kills,omitempty"`
	// Netns is the network namespace it runs in (-processes.netns), ""
	// on the host's; Partition whether that namespace is cut off now.
	Netns     string       `json:"netns,omitempty"`
	Partition *netns.State `json:"partition,omitempty"`
}

// ProcessesStatus is GET /processes.
type ProcessesStatus struct {
	SupervisorPID int             `json:"supervisor_pid"`
	Gateway       string          `json:"gateway"`
	Processes     []ProcessStatus `json:"processes"`
}

// child is one supervised process, across its restarts.
type child struct {
	*childSpec
	sup         *supervisor
	configPath  string
	stdout, err *prefixWriter

	mu        sync.Mutex
	cmd       *exec.Cmd
	exited    chan struct{} // closed once cmd has been waited for
	exitErr   error
	state     string
	since     time.Time
	startedAt time.Time
	restarts  int
	lastExit  string
	stopping  bool
	backoff   time.Duration
	// memLimit is the process's memory limit (0: none); cg its memory
	// cgroup in cgroup mode; oomKills the OOM kills seen.
	memLimit int64
	cg       *memCgroup
	oomKills int
	// ns is its network namespace (-processes.netns), nil on the host's;
	// probes then go through the namespace's side door (nsClient).
	ns       *netns.Namespace
	nsClient *http.Client
}

// supervisor starts, watches, restarts and stops the children.
type supervisor struct {
	cfg     ProcessesConfig
	exe     string
	logger  *slog.Logger
	spawn   func(*exec.Cmd) error
	up      atomic.Bool   // startup finished: a death now means restart
	failed  chan error    // deaths during startup
	force   chan struct{} // closed on a second interrupt: SIGKILL at once
	metrics supervisorMetrics
	mu      sync.Mutex
	kids    []*child
	client  *http.Client
	// rmdir removes a cgroup directory (removeCgroupDir).
	rmdir func(string) error
	// spaces are the network namespaces by process name
	// (-processes.netns), made before anything starts.
	spaces map[string]*netns.Namespace
}

type supervisorMetrics struct {
	up       *prometheus.GaugeVec
	restarts *prometheus.CounterVec
	oomKills *prometheus.CounterVec
}

const (
	restartBackoffMin = time.Second
	restartBackoffMax = 30 * time.Second
	// A process that ran at least this long starts over at the minimum
	// backoff when it dies: it was not crash-looping.
	restartBackoffReset = 10 * time.Second
)

// RunProcesses runs `lokilab run -processes` until ctx is done: the broker,
// the distributor, cfg.Ingesters ingesters, the querier and the compactor,
// each a child process running exe (this binary: `lokilab kafka`,
// `lokilab distributor`, …) with a config file written to
// <data.dir>/processes/, and a gateway on cfg.Server's port that serves
// the Loki API in front of them. Children's output goes to stdout and
// stderr, each line prefixed with the process's name; the banner goes to
// stdout once everything is ready.
//
// Startup is ordered (broker, distributor, ingesters, querier and
// compactor), each step waiting for readiness; a child that exits during
// startup ends RunProcesses with an error naming it. Afterwards a child that
// dies is restarted (cfg.Processes.Restart). Shutdown runs the other way:
// the gateway, then the distributor (no new pushes), the ingesters (they
// flush and commit), the querier, the compactor, and the broker last; each
// gets SIGTERM, then SIGKILL after cfg.Processes.StopTimeout. A second
// interrupt kills what is left at once.
func RunProcesses(ctx context.Context, cfg AllInOneConfig, defaults any, logger *slog.Logger, exe string, stdout, stderr io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := cfg.Processes.validate(cfg); err != nil {
		return err
	}
	// The namespaces first: the plan's addresses depend on them. They go
	// last, after every process has stopped, whatever the way out.
	spaces, np, closeNetns, err := setupNetns(ctx, cfg.Processes.Netns, logger.With("component", "supervisor"))
	if err != nil {
		return err
	}
	defer closeNetns()
	plan, err := planProcessesIn(cfg, cfg.Kafka.AutoCreateTopicDefaultPartitions, np)
	if err != nil {
		return err
	}
	// Check every port before starting anything, so that "port in use"
	// names the process and the flag to change rather than surfacing as a
	// child's crash halfway through the startup.
	check := plan
	if cfg.Server.HTTPListenPort != 0 {
		gwPort := portUse{addr: net.JoinHostPort(cfg.Server.HTTPListenAddress, strconv.Itoa(cfg.Server.HTTPListenPort)), flag: "server.http-listen-port"}
		check = append([]*childSpec{{name: "the gateway", ports: []portUse{gwPort}}}, plan...)
	}
	if err := checkPortsFree(check); err != nil {
		return err
	}
	if len(cfg.Processes.MemoryLimits) > 0 && cfg.Processes.MemoryLimitMode != MemoryLimitGOMEMLIMIT {
		if err := checkCgroupRoot(cfg.Processes.cgroupRoot()); err != nil {
			return err
		}
	}
	reg := server.NewRegistry()
	s := &supervisor{
		cfg: cfg.Processes, exe: exe, logger: logger.With("component", "supervisor"),
		failed: make(chan error, len(plan)), force: make(chan struct{}),
		metrics: newSupervisorMetrics(reg),
		client:  &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		rmdir:   removeCgroupDir,
		spaces:  spaces,
	}
	reg.MustRegister(newMemoryCollector(s))
	// The memory cgroups go when the supervisor does, whatever the way out
	// (their processes are stopped by then: deferred after this).
	defer s.removeCgroups()
	backends := map[string]string{}
	for _, sp := range plan {
		backends[sp.name] = sp.httpAddr
	}
	gw, err := newGateway(cfg.Server, backends, reg, logger.With("component", "gateway"), &cfg, defaults)
	if err != nil {
		return err
	}
	gw.Handle("GET /processes", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(ProcessesStatus{SupervisorPID: os.Getpid(), Gateway: gw.Addr(), Processes: s.status(r.Context())})
	}))
	gw.AddReadinessCheck("processes", s.allReady)

	spawn, stopSpawner := startSpawner()
	defer stopSpawner()
	s.spawn = spawn
	out := &lineWriter{w: stdout}
	errOut := &lineWriter{w: stderr}
	width := 0
	for _, sp := range plan {
		width = max(width, len(sp.name))
	}
	dir := filepath.Join(cfg.DataDir, "processes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	newChild := func(sp *childSpec) (*child, error) {
		c := &child{childSpec: sp, sup: s, configPath: filepath.Join(dir, sp.name+".yaml")}
		s.isolate(c)
		if err := s.limitMemory(c); err != nil {
			return nil, err
		}
		// Counters from 0, so a plot of them starts before the first death.
		s.metrics.restarts.WithLabelValues(sp.name)
		s.metrics.oomKills.WithLabelValues(sp.name)
		prefix := fmt.Sprintf("%-*s | ", width, sp.name)
		c.stdout, c.err = &prefixWriter{out: out, prefix: prefix}, &prefixWriter{out: errOut, prefix: prefix, keep: 5}
		if err := writeConfig(c.configPath, sp); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.kids = append(s.kids, c)
		s.mu.Unlock()
		return c, nil
	}
	s.serveScale(gw, newChild) // POST /processes/ingesters, DELETE /processes/{name}: processes_scale.go
	s.servePartition(gw)       // POST/DELETE /processes/{name}/partition: processes_netns.go

	// The gateway serves from the start (/processes shows the startup) and
	// stops first, before the processes behind it.
	gwCtx, stopGateway := context.WithCancel(context.WithoutCancel(ctx))
	gwDone := make(chan struct{})
	var gwErr error
	go func() { gwErr = gw.Run(gwCtx); close(gwDone) }()
	stopGW := func() error { stopGateway(); <-gwDone; return gwErr }
	defer stopGW()

	// Shutdown, whenever it comes: what started stops in order.
	stopAll := func() error {
		err := stopGW()
		// A second interrupt while stopping kills what is left. Signals in
		// the first second are the first one's echo: `timeout` and some
		// process managers signal the process and then its group.
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		defer signal.Stop(sig)
		done := make(chan struct{})
		defer close(done)
		go func() {
			grace := time.After(time.Second)
			for {
				select {
				case <-sig:
					select {
					case <-grace:
						s.logger.Warn("second interrupt: killing every process now")
						close(s.force)
						return
					default:
					}
				case <-done:
					return
				}
			}
		}()
		return errors.Join(err, s.stopAll())
	}

	startStep := func(what string, specs []*childSpec) error {
		var started []*child
		for _, sp := range specs {
			c, err := newChild(sp)
			if err != nil {
				return err
			}
			if err := c.start(); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			started = append(started, c)
		}
		return s.waitReady(ctx, what, started)
	}
	fail := func(err error) error {
		if ctx.Err() != nil { // interrupted while starting: a clean stop
			return stopAll()
		}
		return errors.Join(err, stopAll())
	}

	// 1. The broker; the topic's partition count decides the ring's.
	if err := startStep("kafka", plan[:1]); err != nil {
		return fail(err)
	}
	partitions, err := s.topicPartitions(ctx, plan[0].kafkaAddr, cfg.Kafka.Topic)
	if err != nil {
		return fail(err)
	}
	if plan, err = planProcessesIn(cfg, partitions, np); err != nil {
		return fail(err)
	}
	// 2. The distributor, whose memberlist node the others join.
	// 3. The ingesters, together: started one by one, the first would
	//    take every partition only to hand most of them over.
	// 4. The querier and the compactor.
	ing := 2 + cfg.Ingesters
	for _, step := range []struct {
		what  string
		specs []*childSpec
	}{{"distributor", plan[1:2]}, {"ingesters", plan[2:ing]}, {"querier and compactor", plan[ing:]}} {
		if err := startStep(step.what, step.specs); err != nil {
			return fail(err)
		}
	}
	s.markUp()
	select {
	case err := <-s.failed: // died just before the startup ended
		return fail(err)
	default:
	}
	printProcessesBanner(stdout, gw.Addr(), cfg, partitions, s.status(ctx), dir)

	select {
	case <-ctx.Done():
	case <-gwDone:
		return fail(fmt.Errorf("gateway stopped: %v", gwErr))
	}
	s.logger.Info("stopping: distributor, ingesters, querier, compactor, kafka")
	return stopAll()
}

// markUp ends the startup: from now on a process that dies is restarted.
func (s *supervisor) markUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.up.Store(true)
	for _, c := range s.kids {
		c.mu.Lock()
		if c.state == stateStarting {
			c.setState(stateRunning)
		}
		c.mu.Unlock()
	}
}

// startSpawner returns a function that starts commands from one OS thread,
// locked for the supervisor's lifetime, and a function that ends it.
//
// Why a thread of its own: a child's Pdeathsig (processes_linux.go), the
// signal Linux sends it when its parent dies, fires when the *thread* that
// forked it exits, not the process. Go may run a goroutine on any thread
// and ends threads whose goroutine exits while locked to them, so children
// forked from an arbitrary goroutine could be killed while the supervisor
// lives. Forking always from this locked thread ties them to it; when the
// spawner ends (after every child has been stopped, or with the supervisor
// killed by SIGKILL) the thread goes, and any child still alive is killed.
func startSpawner() (spawn func(*exec.Cmd) error, stop func()) {
	type req struct {
		cmd *exec.Cmd
		err chan error
	}
	reqs := make(chan req)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		for {
			select {
			case r := <-reqs:
				r.err <- r.cmd.Start()
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func(cmd *exec.Cmd) error {
			r := req{cmd: cmd, err: make(chan error, 1)}
			select {
			case reqs <- r:
				return <-r.err
			case <-done:
				return errors.New("supervisor is stopping")
			}
		}, func() {
			once.Do(func() { close(done) })
		}
}

// start launches the child's process.
func (c *child) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startLocked()
}

func (c *child) args() []string {
	args := []string{c.command, "-config.file", c.configPath}
	if c.restarts > 0 && len(c.joinOnRestart) > 0 {
		args = append(args, "-memberlist.join", strings.Join(c.joinOnRestart, ","))
	}
	return append(args, c.extraArgs...)
}

func (c *child) startLocked() error {
	cmd := exec.Command(c.sup.exe, c.args()...)
	if c.ns != nil {
		// ip netns exec <namespace> <exe> <args>: ip enters the namespace
		// and execs the binary, which keeps the pid (and so the
		// Pdeathsig, the process group and the cgroup below).
		cmd = c.ns.Command(c.sup.exe, c.args()...)
	}
	cmd.Stdout, cmd.Stderr = c.stdout, c.err
	// Children get no stdin and run in a process group of their own (see
	// childProcAttr): Ctrl-C in the terminal reaches only the supervisor,
	// which stops them in order.
	cmd.SysProcAttr = childProcAttr()
	if c.memLimit > 0 && c.cg == nil { // gomemlimit mode
		cmd.Env = append(os.Environ(), "GOMEMLIMIT="+strconv.FormatInt(c.memLimit, 10))
	}
	if err := c.sup.spawn(cmd); err != nil {
		return err
	}
	if c.cg != nil {
		// Into its memory cgroup at once (and again after every restart:
		// a new process starts in the supervisor's group). What it
		// allocated before the move moves with it
		// (memory.move_charge_at_immigrate).
		if err := c.cg.addPID(cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return err
		}
	}
	exited := make(chan struct{})
	c.cmd, c.exited, c.exitErr = cmd, exited, nil
	c.startedAt = time.Now()
	c.setState(stateStarting)
	if c.sup.up.Load() {
		c.setState(stateRunning)
	}
	c.sup.metrics.up.WithLabelValues(c.name).Set(1)
	c.sup.logger.Info("started", "process", c.name, "pid", cmd.Process.Pid, "command", strings.Join(redacted(cmd.Args[1:]), " "))
	go func() {
		err := cmd.Wait()
		c.stdout.flush()
		c.err.flush()
		c.exitedWith(cmd, err)
		close(exited)
	}()
	return nil
}

func (c *child) setState(s string) {
	if c.state != s {
		c.state, c.since = s, time.Now()
	}
}

// exitedWith records a process's end and decides what follows: nothing if
// the supervisor stopped it, a startup failure before everything was up, a
// restart after a backoff afterwards.
func (c *child) exitedWith(cmd *exec.Cmd, err error) {
	s := c.sup
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != cmd {
		return
	}
	pid, ran := cmd.Process.Pid, time.Since(c.startedAt)
	c.cmd, c.exitErr = nil, err
	c.lastExit = describeExit(cmd.ProcessState, err)
	if c.cg != nil && c.cg.oomKilled(killedBySIGKILL(cmd.ProcessState)) {
		c.oomKills++
		s.metrics.oomKills.WithLabelValues(c.name).Inc()
		limit := config.ByteSize(c.cg.limit)
		if v, err := c.cg.readUint("memory.limit_in_bytes"); err == nil { // changed at runtime, maybe
			limit = config.ByteSize(v)
		}
		c.lastExit = fmt.Sprintf("oom-killed (%s; memory cgroup limit %s, %s)", c.lastExit, limit, c.cg.dir)
		s.logger.Error("process OOM-killed: its memory cgroup hit its limit and the kernel's OOM killer sent SIGKILL",
			"process", c.name, "pid", pid, "limit", limit.String(), "cgroup", c.cg.dir, "oom_kills", c.oomKills)
	}
	s.metrics.up.WithLabelValues(c.name).Set(0)
	switch {
	case c.stopping:
		c.setState(stateStopped)
	case !s.up.Load():
		c.setState(stateExited)
		msg := c.lastExit
		if tail := c.err.tail(); len(tail) > 0 {
			msg += ":\n    " + strings.Join(tail, "\n    ")
		}
		s.failed <- fmt.Errorf("%s (pid %d) failed to start: %s", c.name, pid, msg)
	case !s.cfg.Restart:
		c.setState(stateExited)
		s.logger.Warn("process died; not restarting it (-processes.restart=false)", "process", c.name, "pid", pid, "exit", c.lastExit, "ran", ran.Round(time.Millisecond))
	default:
		c.setState(stateRestarting)
		if ran >= restartBackoffReset || c.backoff == 0 {
			c.backoff = restartBackoffMin
		} else {
			c.backoff = min(2*c.backoff, restartBackoffMax)
		}
		s.logger.Warn("process died; restarting it", "process", c.name, "pid", pid, "exit", c.lastExit,
			"ran", ran.Round(time.Millisecond), "restart_in", c.backoff, "restarts", c.restarts+1)
		time.AfterFunc(c.backoff, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.stopping || c.cmd != nil {
				return
			}
			c.restarts++
			s.metrics.restarts.WithLabelValues(c.name).Inc()
			if err := c.startLocked(); err != nil {
				c.setState(stateExited)
				s.logger.Error("restart failed", "process", c.name, "err", err)
			}
		})
	}
}

// describeExit says how a process ended: "exit status 1", "signal: killed".
func describeExit(ps *os.ProcessState, err error) string {
	if ps != nil {
		return ps.String()
	}
	if err != nil {
		return err.Error()
	}
	return "exited"
}

// stop sends SIGTERM and waits for the process to exit, SIGKILLing it after
// the stop timeout (or at once after a second interrupt). It returns an
// error unless the process exited cleanly.
func (c *child) stop() error {
	c.mu.Lock()
	c.stopping = true
	cmd, exited := c.cmd, c.exited
	if cmd != nil {
		c.setState(stateStopping)
	} else if c.state == stateRestarting {
		c.setState(stateStopped)
	}
	c.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pid := cmd.Process.Pid
	began := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var killed string
	select {
	case <-exited:
	case <-time.After(c.sup.cfg.StopTimeout):
		killed = fmt.Sprintf("did not stop within %s of SIGTERM", c.sup.cfg.StopTimeout)
	case <-c.sup.force:
		killed = "killed on a second interrupt"
	}
	if killed != "" {
		c.sup.logger.Warn("killing", "process", c.name, "pid", pid, "why", killed)
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%s (pid %d) %s: sent SIGKILL", c.name, pid, killed)
	}
	c.mu.Lock()
	err, how := c.exitErr, c.lastExit
	c.mu.Unlock()
	c.sup.logger.Info("stopped", "process", c.name, "pid", pid, "took", time.Since(began).Round(time.Millisecond), "exit", how)
	if err != nil {
		return fmt.Errorf("%s (pid %d) did not stop cleanly: %s", c.name, pid, how)
	}
	return nil
}

// stopAll stops the children in order: the distributor (no new pushes),
// the ingesters together (each flushes and commits), the querier, the
// compactor, the broker last.
func (s *supervisor) stopAll() error {
	s.mu.Lock()
	kids := slices.Clone(s.kids)
	s.mu.Unlock()
	rank := func(c *child) int {
		switch c.name {
		case procDistributor:
			return 0
		case procQuerier:
			return 2
		case procCompactor:
			return 3
		case procKafka:
			return 4
		}
		return 1 // the ingesters
	}
	var errs []error
	for r := range 5 {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, c := range kids {
			if rank(c) != r {
				continue
			}
			wg.Go(func() {
				if err := c.stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// waitReady waits until every child in cs answers ready, one of them dies,
// ctx ends or the start timeout passes.
func (s *supervisor) waitReady(ctx context.Context, what string, cs []*child) error {
	deadline := time.Now().Add(s.cfg.StartTimeout)
	// Polls back off: each 503 from /ready is a warning in that process's
	// log.
	wait := 50 * time.Millisecond
	for {
		var notReady []string
		for _, c := range cs {
			if err := s.probe(ctx, c); err != nil {
				notReady = append(notReady, fmt.Sprintf("%s: %v", c.name, err))
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (-processes.start-timeout): %s", what, s.cfg.StartTimeout, strings.Join(notReady, "; "))
		}
		select {
		case err := <-s.failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// probe asks a child whether it is ready: its /ready, or for the broker
// whether its port takes connections.
func (s *supervisor) probe(ctx context.Context, c *child) error {
	if c.httpAddr == "" {
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", c.kafkaAddr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.httpAddr+"/ready", nil)
	if err != nil {
		return err
	}
	client := s.client
	if c.nsClient != nil {
		client = c.nsClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return errors.New(strings.TrimSpace(string(b)))
	}
	return nil
}

// topicPartitions waits for the broker to serve the topic and returns its
// partition count.
func (s *supervisor) topicPartitions(ctx context.Context, addr, topic string) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTimeout(time.Second))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	deadline := time.Now().Add(s.cfg.StartTimeout)
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := kafka.TopicPartitions(tctx, cl, topic)
		cancel()
		if err == nil {
			return n, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("kafka: topic %q not served within %s: %w", topic, s.cfg.StartTimeout, err)
		}
		select {
		case err := <-s.failed:
			return 0, err
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// status reports every child, probing readiness concurrently.
func (s *supervisor) status(ctx context.Context) []ProcessStatus {
	s.mu.Lock()
	kids := slices.Clone(s.kids)
	s.mu.Unlock()
	out := make([]ProcessStatus, len(kids))
	var wg sync.WaitGroup
	for i, c := range kids {
		c.mu.Lock()
		st := ProcessStatus{Name: c.name, State: c.state, Restarts: c.restarts, Memberlist: c.memberlist,
			Since: c.since, LastExit: c.lastExit, Addr: c.httpAddr, Command: append([]string{"lokilab"}, redacted(c.args())...),
			MemoryLimit: c.memLimit, OOMKills: c.oomKills}
		if c.cg != nil {
			st.Cgroup = c.cg.dir
			cur, _ := c.cg.usage()
			st.MemoryUsage = int64(cur)
			if v, err := c.cg.readUint("memory.limit_in_bytes"); err == nil {
				st.MemoryLimit = int64(v)
			}
		}
		if c.cmd != nil {
			st.PID = c.cmd.Process.Pid
		}
		if c.ns != nil {
			st.Netns = c.ns.Name
			st.Command = append([]string{"ip", "netns", "exec", c.ns.Name}, st.Command...)
			p := c.ns.State()
			st.Partition = &p
		}
		c.mu.Unlock()
		if st.Addr == "" {
			st.Addr = c.kafkaAddr
		}
		out[i] = st
		if st.PID != 0 {
			wg.Go(func() { out[i].Ready = s.probe(ctx, c) == nil })
		}
	}
	wg.Wait()
	return out
}

// allReady is the gateway's readiness: every process running and ready.
func (s *supervisor) allReady(ctx context.Context) error {
	if !s.up.Load() {
		return errors.New("starting the processes")
	}
	var notReady []string
	for _, st := range s.status(ctx) {
		if !st.Ready {
			notReady = append(notReady, st.Name+" ("+st.State+")")
		}
	}
	if len(notReady) > 0 {
		return fmt.Errorf("not ready: %s", strings.Join(notReady, ", "))
	}
	return nil
}

func newSupervisorMetrics(reg prometheus.Registerer) supervisorMetrics {
	m := supervisorMetrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lokilab_supervisor_process_up",
			Help: "1 while the supervised process is running, 0 while it is dead or stopped.",
		}, []string{"process"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_supervisor_process_restarts_total",
			Help: "Times the supervisor restarted a process that had died.",
		}, []string{"process"}),
		oomKills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_supervisor_oom_kills_total",
			Help: "Times a process was killed by its memory cgroup's OOM killer (-processes.memory-limit).",
		}, []string{"process"}),
	}
	reg.MustRegister(m.up, m.restarts, m.oomKills)
	return m
}

// checkPortsFree binds each port the plan needs and releases it at once.
// A port taken in between still fails the child, which startup reports.
func checkPortsFree(plan []*childSpec) error {
	var errs []error
	for _, sp := range plan {
		for _, p := range sp.ports {
			ln, err := net.Listen("tcp", p.addr)
			if err == nil {
				ln.Close()
				if p.udp {
					var pc net.PacketConn
					if pc, err = net.ListenPacket("udp", p.addr); err == nil {
						pc.Close()
					}
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s cannot listen on %s (change -%s): %w", sp.name, p.addr, p.flag, err))
			}
		}
	}
	return errors.Join(errs...)
}

// writeConfig writes a child's configuration where its command line points.
// The file is complete (every field, defaults included) so that `lokilab
// <component> -config.file <it>` runs the same process by hand.
func writeConfig(path string, sp *childSpec) error {
	y, err := config.YAML(sp.config)
	if err != nil {
		return fmt.Errorf("%s config: %w", sp.name, err)
	}
	header := fmt.Sprintf("# %s, written by `lokilab run -processes` at every start, which runs it as:\n#   lokilab %s -config.file %s\n", sp.name, sp.command, path)
	return os.WriteFile(path, append([]byte(header), y...), 0o600)
}

// lineWriter serialises whole lines from many children onto one writer.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// prefixWriter prefixes each line a child writes with its name, docker
// compose style ("ingester-1 | …"), and keeps the last few for error
// messages.
type prefixWriter struct {
	out     *lineWriter
	prefix  string
	keep    int
	mu      sync.Mutex
	partial []byte
	last    []string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			// A child writing megabytes without a newline: pass it on.
			if len(p.partial) > 64<<10 {
				p.emit()
			}
			break
		}
		p.partial = append(p.partial, b[:i]...)
		p.emit()
		b = b[i+1:]
	}
	return n, nil
}

func (p *prefixWriter) emit() {
	line := string(p.partial)
	p.partial = p.partial[:0]
	if p.keep > 0 {
		p.last = append(p.last, line)
		if len(p.last) > p.keep {
			p.last = p.last[1:]
		}
	}
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	_, _ = io.WriteString(p.out.w, p.prefix+line+"\n")
}

// flush writes a last line that had no newline.
func (p *prefixWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.partial) > 0 {
		p.emit()
	}
}

func (p *prefixWriter) tail() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.last)
}

func printProcessesBanner(w io.Writer, gateway string, cfg AllInOneConfig, partitions int, procs []ProcessStatus, configDir string) {
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  process\tpid\tlistens on\tmemberlist\t")
	var ingester ProcessStatus
	for _, p := range procs {
		addr := "http://" + p.Addr
		if p.Name == procKafka {
			addr = "kafka " + p.Addr
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t\n", p.Name, p.PID, addr, p.Memberlist)
		if p.Name == "ingester-2" || (ingester.Name == "" && strings.HasPrefix(p.Name, "ingester-")) {
			ingester = p
		}
	}
	fmt.Fprintf(tw, "  gateway (this process)\t%d\thttp://%s\t\t\n", os.Getpid(), gateway)
	tw.Flush()
	fmt.Fprintf(w, `
lokilab is running as separate processes (lokilab run -processes)

%[1]s
  Loki API        http://%[2]s  (the gateway: /loki/api/v1/push → distributor, other /loki/api/v1/* → querier,
                  /ring → distributor; like Loki's gateway in microservices mode)
  processes       http://%[2]s/processes  (JSON: pid, state, ready, restarts of each)
  metrics         each process on its own port: /metrics, /ready, /config, /debug/pprof/
                  (http://%[2]s/metrics is the supervisor's: process up and restarts)
  Kafka           topic %[3]q, %[4]d partitions; data in %[5]s (broker log in kafka/, chunks and index in store/)
  configs         %[6]s/<process>.yaml: each runs as 'lokilab <component> -config.file <that file>'

Try:
  curl -s -H 'Content-Type: application/json' http://%[2]s/loki/api/v1/push \
    --data-raw '{"streams":[{"stream":{"app":"hello"},"values":[["'$(date +%%s%%N)'","hello, lokilab"]]}]}' -w '%%{http_code}\n'
  curl -s -G http://%[2]s/loki/api/v1/query_range --data-urlencode 'query={app="hello"}'

  %-16[7]s# %[8]s: the supervisor restarts it after 1s; it replays its partitions from Kafka
  curl -s -G http://%[2]s/loki/api/v1/query_range --data-urlencode 'query={app="hello"}'
                  # until it is back, a warning names %[8]s; then the answer is whole again
  curl -s http://%[2]s/processes   # %[8]s: a new pid, "restarts": 1

Ctrl-C stops them in order: distributor, ingesters (flush and commit), querier, compactor, kafka.
`, table.String(), gateway, cfg.Kafka.Topic, partitions, cfg.DataDir, configDir, fmt.Sprint("kill -9 ", ingester.PID), ingester.Name)
}

// cgroupRoot is CgroupRoot or its default.
func (p ProcessesConfig) cgroupRoot() string {
	if p.CgroupRoot == "" {
		return DefaultCgroupMemoryRoot
	}
	return p.CgroupRoot
}

// limitMemory gives c its memory limit, if it has one: a memory cgroup of
// its own in cgroup mode, GOMEMLIMIT in its environment (startLocked)
// otherwise.
func (s *supervisor) limitMemory(c *child) error {
	limit := s.cfg.MemoryLimits.For(c.name)
	if limit <= 0 {
		return nil
	}
	c.memLimit = limit
	if s.cfg.MemoryLimitMode == MemoryLimitGOMEMLIMIT {
		s.logger.Warn("memory limit as GOMEMLIMIT only: a soft target for the garbage collector, not a kill; the process may grow past it",
			"process", c.name, "gomemlimit", config.ByteSize(limit).String())
		return nil
	}
	g, err := newMemCgroup(s.cfg.cgroupRoot(), cgroupName(os.Getpid(), c.name), limit)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.cg = g
	s.logger.Info("memory limit: a cgroup of its own, OOM-killed past it", "process", c.name,
		"limit", config.ByteSize(limit).String(), "cgroup", g.dir)
	return nil
}

// removeCgroups deletes every child's memory cgroup; their processes have
// exited by then.
func (s *supervisor) removeCgroups() {
	s.mu.Lock()
	kids := slices.Clone(s.kids)
	s.mu.Unlock()
	for _, c := range kids {
		c.mu.Lock()
		g := c.cg
		c.mu.Unlock()
		if g == nil {
			continue
		}
		if err := g.remove(s.rmdir); err != nil {
			s.logger.Error("memory cgroup left behind: remove it with rmdir", "process", c.name, "err", err)
		}
	}
}

// killedBySIGKILL says whether a process ended on SIGKILL, as the OOM
// killer ends it.
func killedBySIGKILL(ps *os.ProcessState) bool {
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
