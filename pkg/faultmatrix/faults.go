package faultmatrix

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/ingester"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/loadgen"
	"github.com/lokilab/lokilab/pkg/netcut"
	"github.com/lokilab/lokilab/pkg/scenario"
	"github.com/lokilab/lokilab/pkg/storage"
)

// Fault is one row of the matrix: how to break the lab, and how to stop
// breaking it.
type Fault struct {
	Name string
	// What says what the fault does, for the table.
	What string
	// Requires says why the fault cannot run on this machine ("" when it
	// can).
	Requires func(Config) string
	// Configure changes the lab before it starts.
	Configure func(*app.AllInOneConfig)
	// Inject begins the fault.
	Inject func(context.Context, *env) error
	// Heal ends a lasting fault, FaultFor after Inject; nil for an
	// instant one (a kill, which the supervisor's restart ends).
	Heal func(context.Context, *env) error
	// LongOnly leaves the fault out of the short form.
	LongOnly bool
}

// victim is the ingester the single-ingester faults pick on.
const victim = "ingester-2"

// Faults lists the matrix in the order it runs.
func Faults() []Fault {
	return []Fault{
		{
			// The control row: what the columns read when nothing breaks
			// (the dedupe count is not zero: an ingester's recently
			// flushed chunks and the same chunks in the store overlap).
			Name: "baseline", What: "no fault: the same load and verify, for comparison", LongOnly: true,
			Inject: func(context.Context, *env) error { return nil },
			Heal:   func(context.Context, *env) error { return nil },
		},
		{
			Name: "distributor-kill", What: "SIGKILL of the distributor while a push is in flight; the supervisor restarts it",
			Inject: func(ctx context.Context, e *env) error {
				// Mid-request: wait (briefly) until a push is on its way.
				deadline := time.Now().Add(2 * time.Second)
				for !e.rec.busy() && time.Now().Before(deadline) {
					if err := sleepCtx(ctx, time.Millisecond); err != nil {
						return err
					}
				}
				return e.faults.KillComponent(ctx, "distributor")
			},
		},
		{
			Name: "ingester-kill-ring", What: "SIGKILL of " + victim + " (ring ownership); restarted, it replays its partitions from the committed offsets",
			Inject: func(ctx context.Context, e *env) error { return e.faults.KillComponent(ctx, victim) },
		},
		{
			Name: "ingester-kill-group", What: "SIGKILL of " + victim + " (consumer group); the group rebalances, then again when it is back",
			Configure: func(c *app.AllInOneConfig) { c.Ingester.Ownership = ingester.OwnershipGroup },
			Inject:    func(ctx context.Context, e *env) error { return e.faults.KillComponent(ctx, victim) },
		},
		{
			Name: "broker-kill", What: "SIGKILL of the embedded broker; restarted on its data directory",
			Inject: func(ctx context.Context, e *env) error { return e.faults.KillComponent(ctx, "kafka") },
		},
		{
			Name: "kafka-produce-errors", What: "every produce answered NOT_ENOUGH_REPLICAS (a retriable error) for the fault's length",
			Inject: func(ctx context.Context, e *env) error {
				return e.kafkaFault(ctx, http.MethodPut, &kafka.FaultSpec{Request: "produce", ErrorCode: 19})
			},
			Heal: func(ctx context.Context, e *env) error { return e.kafkaFault(ctx, http.MethodDelete, nil) },
		},
		{
			Name: "kafka-stall", What: "every produce held by the broker for the fault's length (a stuck disk), then handled",
			Inject: func(ctx context.Context, e *env) error {
				return e.kafkaFault(ctx, http.MethodPut, &kafka.FaultSpec{Request: "produce", Delay: (e.cfg.FaultFor + 5*time.Second).String()})
			},
			Heal: func(ctx context.Context, e *env) error { return e.kafkaFault(ctx, http.MethodDelete, nil) },
		},
		{
			Name: "store-errors", What: "every object-store operation of every ingester fails (flushes fail, offsets stay uncommitted)",
			Inject: func(ctx context.Context, e *env) error {
				return e.faults.StoreFault(ctx, "", storage.Fault{Rate: 1})
			},
			Heal: func(ctx context.Context, e *env) error { return e.faults.ClearStoreFaults(ctx, "") },
		},
		{
			Name: "store-latency", What: "every object-store operation of every ingester takes 2s longer",
			Inject: func(ctx context.Context, e *env) error {
				return e.faults.StoreFault(ctx, "", storage.Fault{Rate: 1, Latency: 2 * time.Second})
			},
			Heal: func(ctx context.Context, e *env) error { return e.faults.ClearStoreFaults(ctx, "") },
		},
		{
			Name: "ingester-cutoff", What: victim + " cut off its peers (its Kafka connections, memberlist gossip, the querier's requests) while it keeps running; healed",
			Inject: func(ctx context.Context, e *env) error { return e.netcut(ctx, victim, http.MethodPost) },
			Heal:   func(ctx context.Context, e *env) error { return e.netcut(ctx, victim, http.MethodDelete) },
		},
		{
			Name: "ingester-oom", What: victim + " OOM-killed by its cgroup v1 memory limit (lowered to its usage + 16MiB) under a high-cardinality burst, protections off; the limit raised after the kill",
			Requires: func(c Config) string { return cgroupsWritable(c.CgroupRoot) },
			Configure: func(c *app.AllInOneConfig) {
				// Generous at start; Inject lowers it to just above what
				// the victim uses, so a small burst is enough.
				c.Processes.MemoryLimits = app.MemoryLimits{victim: 1 << 30}
				c.Processes.MemoryLimitMode = app.MemoryLimitCgroup
				// Protections off: nothing pushes back before the kernel
				// does (scenario ingester-oom shows them on).
				c.Ingester.MaxMemoryChunkBytes = 0
				c.Limits.MaxGlobalStreamsPerUser = 0
				c.Limits.IngestionRateMB, c.Limits.IngestionBurstSizeMB = 1000, 1000
				// Chunks stay in memory until full: streams pile up, as
				// in production (Loki's idle period is 30m).
				c.Ingester.ChunkIdlePeriod = time.Minute
			},
			Inject: func(ctx context.Context, e *env) error {
				p, err := e.sys.Process(ctx, victim)
				if err != nil {
					return err
				}
				if p.Cgroup == "" || p.MemoryUsage <= 0 {
					return fmt.Errorf("%s has no memory cgroup (cgroup %q, usage %d)", victim, p.Cgroup, p.MemoryUsage)
				}
				limit := p.MemoryUsage + oomHeadroom
				if err := e.faults.MemoryLimit(ctx, victim, limit); err != nil {
					return err
				}
				e.note("%s uses %s: its limit lowered to %s", victim, config.ByteSize(p.MemoryUsage), config.ByteSize(limit))
				return e.startBurst(ctx)
			},
			Heal: func(ctx context.Context, e *env) error { return e.awaitOOM(ctx) },
		},
	}
}

// Names lists the faults' names.
func Names() []string {
	var out []string
	for _, f := range Faults() {
		out = append(out, f.Name)
	}
	return out
}

// oomHeadroom is how far above its usage at the fault's start the
// victim's limit is lowered: room for a quiet ingester's garbage, not for
// the burst's streams. (cgroup v1 refuses a limit below the usage, with
// EBUSY, rather than kill: the kill must come from growth.)
const oomHeadroom = 16 << 20

// burstStreams is the burst's cardinality: enough new streams that their
// head chunks outgrow the headroom in seconds, few enough that verify
// reads them back in a few queries.
const burstStreams = 5000

// cgroupsWritable says why memory cgroups cannot be made under root, ""
// when they can.
func cgroupsWritable(root string) string {
	if _, err := os.Stat(filepath.Join(root, "memory.limit_in_bytes")); err != nil {
		return fmt.Sprintf("no cgroup v1 memory controller at %s (%v): the OOM fault needs one, and root", root, err)
	}
	probe := filepath.Join(root, fmt.Sprintf("lokilab-faultmatrix-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return fmt.Sprintf("cannot create a memory cgroup under %s (%v): the OOM fault needs root", root, err)
	}
	_ = os.Remove(probe)
	return ""
}

// kafkaFault sends a fault (PUT) or a clear (DELETE) to the broker's lab
// fault endpoint, whose address the broker wrote to its data directory.
func (e *env) kafkaFault(ctx context.Context, method string, f *kafka.FaultSpec) error {
	url, err := app.BrokerLabFaultsURL(e.sys.Config.EmbeddedKafka.DataDir)
	if err != nil {
		return err
	}
	var body []byte
	if f != nil {
		if body, err = json.Marshal(f); err != nil {
			return err
		}
	}
	return e.send(ctx, method, url, body)
}

// netcut cuts (POST) or heals (DELETE) an ingester through its lab fault
// endpoint.
func (e *env) netcut(ctx context.Context, name, method string) error {
	p, err := e.sys.Process(ctx, name)
	if err != nil {
		return err
	}
	return e.send(ctx, method, "http://"+p.Addr+netcut.Path, nil)
}

func (e *env) send(ctx context.Context, method, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// startBurst starts the OOM fault's burst: one tenant, a new stream for
// nearly every line, as fast as the lab takes it. Its acknowledged lines
// are verified with the main load's.
func (e *env) startBurst(ctx context.Context) error {
	bc := scenario.LoadgenDefaults()
	bc.URL = e.sys.API + "/loki/api/v1/push"
	bc.TenantPrefix, bc.Tenants = "burst-", 1
	bc.StreamsPerTenant, bc.BatchLines, bc.StreamsPerPush = burstStreams, 1000, 1000
	bc.LinesPerSecond, bc.Concurrency = 8000, 3
	bc.Duration = 0 // until the OOM kill, or awaitOOM's limit
	bc.Shapes = loadgen.Mix{4, 3, 2, 0}
	bc.PushTimeout = 5 * time.Second
	bc.ProgressInterval = time.Hour
	bc.Seed = 9
	x := &extraLoad{ackLog: filepath.Join(e.dir, "burst-acks.log"), done: make(chan struct{})}
	bc.AckLog = x.ackLog
	lg, err := loadgen.New(bc, loadgen.Deps{})
	if err != nil {
		return err
	}
	burstCtx, cancel := context.WithCancel(ctx)
	e.stopBurst = cancel
	e.extra = append(e.extra, x)
	go func() {
		defer close(x.done)
		_, x.err = lg.Run(burstCtx)
	}()
	e.note("burst: %d new streams at up to 8000 lines/s", burstStreams)
	return nil
}

// awaitOOM waits (up to 45s) for the kernel to kill the victim, stops the
// burst, and raises the limit so that the restarted ingester's replay of
// the burst fits (otherwise it is killed again at every restart: the
// crash loop of question 9).
func (e *env) awaitOOM(ctx context.Context) error {
	defer e.stopBurst()
	deadline := time.Now().Add(45 * time.Second)
	for {
		p, err := e.sys.Process(ctx, victim)
		if err == nil && p.OOMKills > 0 {
			e.stopBurst()
			e.note("%s OOM-killed (%d kill(s), last exit %q); raising its limit to 2GiB for the replay", victim, p.OOMKills, p.LastExit)
			return e.faults.MemoryLimit(ctx, victim, 2<<30)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s was not OOM-killed within 45s of the burst (usage %s of %s): the fault did not happen", victim,
				config.ByteSize(p.MemoryUsage), config.ByteSize(p.MemoryLimit))
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}
