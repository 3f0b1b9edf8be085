package faultmatrix

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/ingester"
	"github.com/lokilab/lokilab/pkg/loadgen"
	"github.com/lokilab/lokilab/pkg/scenario"
)

// Config is one run of the matrix.
type Config struct {
	// Binary is the lokilab binary the labs run as (`lokilab run
	// -processes`). Default: this process's executable.
	Binary string
	// Dir holds one data directory per fault, Dir/<fault>. Required.
	Dir string
	// Short is the CI form: a small load, short faults.
	Short bool
	// Only runs these faults (by name); empty runs them all.
	Only []string
	// Load is how long the load runs in each lab. Default 11s short, 40s
	// long.
	Load time.Duration
	// Rate is the load's lines per second. Default 600 short, 2000 long.
	Rate float64
	// FaultAt is when, from the load's start, the fault begins. Default
	// 3s short, 10s long.
	FaultAt time.Duration
	// FaultFor is how long a lasting fault lasts (errors, stalls,
	// latency, a cut). Default 3s short, 10s long.
	FaultFor time.Duration
	// VerifyWait bounds how long verify keeps reading while lines are
	// missing or answers are partial. Default 60s.
	VerifyWait time.Duration
	// CgroupRoot is the cgroup v1 memory controller's mount, for the OOM
	// fault. Default app.DefaultCgroupMemoryRoot.
	CgroupRoot string
	// Progress hears what each run does; nil for nothing.
	Progress io.Writer
	// SystemLog receives the labs' own output; nil discards it.
	SystemLog io.Writer
}

func (c *Config) defaults() error {
	if c.Dir == "" {
		return errors.New("faultmatrix: Dir is required")
	}
	if c.Binary == "" {
		b, err := scenario.LokilabBinary()
		if err != nil {
			return err
		}
		c.Binary = b
	}
	pick := func(d *time.Duration, short, long time.Duration) {
		if *d <= 0 {
			*d = map[bool]time.Duration{true: short, false: long}[c.Short]
		}
	}
	pick(&c.Load, 11*time.Second, 40*time.Second)
	pick(&c.FaultAt, 3*time.Second, 10*time.Second)
	pick(&c.FaultFor, 3*time.Second, 10*time.Second)
	pick(&c.VerifyWait, 60*time.Second, 60*time.Second)
	if c.Rate <= 0 {
		c.Rate = map[bool]float64{true: 600, false: 2000}[c.Short]
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = app.DefaultCgroupMemoryRoot
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.SystemLog == nil {
		c.SystemLog = io.Discard
	}
	if c.FaultAt+c.FaultFor >= c.Load {
		return fmt.Errorf("faultmatrix: the fault (at %s, for %s) must end before the load does (%s)", c.FaultAt, c.FaultFor, c.Load)
	}
	for _, name := range c.Only {
		if !slices.ContainsFunc(Faults(), func(f Fault) bool { return f.Name == name }) {
			return fmt.Errorf("faultmatrix: no fault %q (have %s)", name, strings.Join(Names(), ", "))
		}
	}
	return nil
}

// Result is one row of the matrix: what one fault's run measured.
type Result struct {
	Fault, What string
	// Skipped says why the fault did not run ("" when it did).
	Skipped string
	// Err is what went wrong with the run itself (the lab did not start,
	// the fault could not be injected, verify could not read): the row's
	// figures are then incomplete.
	Err string
	// AckedLines are the distinct lines acknowledged; Missing those the
	// query API did not return (must be 0).
	AckedLines, Missing int64
	// Duplicated are acknowledged lines returned more than once;
	// DedupeRemoved the copies the querier removed while verify read.
	Duplicated    int64
	DedupeRemoved float64
	// Unacked are lines stored although their push was answered with an
	// error (allowed: a client retries those).
	Unacked int64
	// Pushes counts every push; Rejected those not answered 2xx;
	// RejectedInFault those sent from the fault's start to its end
	// (plus a second for an instant fault's effects), of InFault sent.
	Pushes, Rejected, InFault, RejectedInFault int
	// SlowestInFault is the longest a push sent in the fault's window
	// waited for its answer: a fault the distributor's retries absorb
	// shows here rather than as rejections.
	SlowestInFault time.Duration
	// FaultFor is how long the fault lasted (0: instant, a kill).
	FaultFor time.Duration
	// WriteRecovery is from the fault's end to the first accepted push
	// sent after the last rejected one; 0 when no push was rejected.
	WriteRecovery time.Duration
	// ReadRecovery is from the fault's end until every process was ready
	// and a query came back whole (no partial-result warning); -1 if that
	// never happened within the verify wait.
	ReadRecovery time.Duration
	// Reads are the queries sent every 500ms from the fault's start to
	// its end (3s for an instant fault), by answer.
	Reads ReadProbe
	// Notes are what the fault observed (an OOM kill's exit, a restart).
	Notes []string
	// Elapsed is the whole run, lab start to stop.
	Elapsed time.Duration
}

// Lost reports whether an acknowledged line is missing: the matrix's
// failure.
func (r Result) Lost() bool { return r.Missing > 0 }

// Run runs each fault of cfg in turn (sequentially: they share the
// machine's cores) and returns a row per fault. The labs run with their
// fault endpoints on (scenario.StartProcesses sets app.LabFaultsEnv). The
// error is about the matrix itself (bad config); a fault's run that went
// wrong is a row with Err set.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	var out []Result
	for _, f := range Faults() {
		if len(cfg.Only) > 0 && !slices.Contains(cfg.Only, f.Name) || len(cfg.Only) == 0 && cfg.Short && f.LongOnly {
			continue
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		fmt.Fprintf(cfg.Progress, "== %s: %s\n", f.Name, f.What)
		r := runOne(ctx, cfg, f)
		switch {
		case r.Skipped != "":
			fmt.Fprintf(cfg.Progress, "   SKIPPED: %s\n", r.Skipped)
		case r.Err != "":
			fmt.Fprintf(cfg.Progress, "   ERROR: %s\n", r.Err)
		default:
			fmt.Fprintf(cfg.Progress, "   acked %d lines, missing %d, duplicated %d (dedupe removed %.0f), pushes rejected in the fault %d of %d (slowest %s), writes back after %s, reads whole after %s (%s)\n",
				r.AckedLines, r.Missing, r.Duplicated, r.DedupeRemoved, r.RejectedInFault, r.InFault, fmtDur(r.SlowestInFault),
				fmtDur(r.WriteRecovery), fmtDur(r.ReadRecovery), r.Elapsed.Round(time.Second))
		}
		out = append(out, r)
	}
	return out, nil
}

// env is one fault's running lab, as its hooks see it.
type env struct {
	cfg    Config
	sys    *scenario.System
	faults scenario.Faults
	dir    string
	client *http.Client
	rec    *recorder
	// load, when a fault adds load of its own (the OOM burst), is started
	// by the fault and verified with the main load.
	extra     []*extraLoad
	stopBurst context.CancelFunc
	// extraAcks is appended to the ack log once the load is done: a test
	// forges an acknowledgement with it, to show verify catches a loss.
	extraAcks string
	notes     []string
	mu        sync.Mutex
}

func (e *env) note(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := fmt.Sprintf(format, args...)
	e.notes = append(e.notes, s)
	fmt.Fprintf(e.cfg.Progress, "   %s\n", s)
}

type extraLoad struct {
	ackLog string
	done   chan struct{}
	err    error
}

func runOne(ctx context.Context, cfg Config, f Fault) (res Result) {
	res = Result{Fault: f.Name, What: f.What, ReadRecovery: -1}
	start := time.Now()
	defer func() { res.Elapsed = time.Since(start) }()
	if f.Requires != nil {
		if why := f.Requires(cfg); why != "" {
			res.Skipped = why
			return res
		}
	}
	dir := filepath.Join(cfg.Dir, f.Name)
	if err := os.RemoveAll(dir); err != nil {
		res.Err = err.Error()
		return res
	}
	labCfg, err := labConfig(filepath.Join(dir, "data"), f)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	sys, err := scenario.StartProcesses(ctx, labCfg, cfg.Binary, cfg.SystemLog)
	if err != nil {
		res.Err = "starting the lab: " + err.Error()
		return res
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 90*time.Second)
		defer cancel()
		if err := sys.Stop(stopCtx); err != nil && res.Err == "" && !res.Lost() {
			// A lab that does not stop cleanly after a kill -9 is
			// expected (a child's exit status); only note it.
			res.Notes = append(res.Notes, "stop: "+err.Error())
		}
	}()
	e := &env{cfg: cfg, sys: sys, faults: sys.Faults(), dir: dir, client: &http.Client{Timeout: 10 * time.Second}, rec: newRecorder(), stopBurst: func() {}}
	if err := runFault(ctx, e, f, &res); err != nil {
		res.Err = err.Error()
	}
	res.Notes = append(e.notes, res.Notes...)
	return res
}

// labConfig is the lab a fault runs against: `lokilab run`'s defaults
// (scenario.LabConfig), auth on so the two tenants are really two, and
// flushes every few hundred milliseconds so that a crash finds lines in
// the store, in memory and in Kafka, and a replay re-reads some already
// flushed (the duplicates query-time dedupe removes).
func labConfig(dataDir string, f Fault) (app.AllInOneConfig, error) {
	cfg, err := scenario.LabConfig(dataDir)
	if err != nil {
		return cfg, err
	}
	cfg.AuthEnabled = true
	cfg.Server.LogLevel = "warn"
	cfg.Ingester.FlushCheckPeriod = 300 * time.Millisecond
	cfg.Ingester.ChunkIdlePeriod = 500 * time.Millisecond
	cfg.Ingester.Ownership = ingester.OwnershipRing
	if f.Configure != nil {
		f.Configure(&cfg)
	}
	return cfg, nil
}

// runFault drives one lab through the load, the fault and verify.
func runFault(ctx context.Context, e *env, f Fault, res *Result) error {
	cfg := e.cfg
	ackLog := filepath.Join(e.dir, "acks.log")
	lc := loadConfig(cfg, e.sys.API, ackLog)
	lg, err := loadgen.New(lc, loadgen.Deps{Transport: e.rec})
	if err != nil {
		return err
	}
	loadCtx, cancelLoad := context.WithCancel(ctx)
	defer cancelLoad()
	loadDone := make(chan error, 1)
	loadStart := time.Now()
	go func() { _, err := lg.Run(loadCtx); loadDone <- err }()

	if err := sleepCtx(ctx, time.Until(loadStart.Add(cfg.FaultAt))); err != nil {
		return err
	}
	faultStart := time.Now()
	stopProbe := make(chan struct{})
	probed := make(chan ReadProbe, 1)
	go func() { probed <- e.probeReads(ctx, stopProbe) }()
	if err := f.Inject(ctx, e); err != nil {
		close(stopProbe)
		return fmt.Errorf("injecting %s: %w", f.Name, err)
	}
	faultEnd := time.Now() // a kill is over once dealt; recovery counts from it
	if f.Heal != nil {
		if err := sleepCtx(ctx, time.Until(faultStart.Add(cfg.FaultFor))); err != nil {
			close(stopProbe)
			return err
		}
		if err := f.Heal(ctx, e); err != nil {
			close(stopProbe)
			return fmt.Errorf("ending %s: %w", f.Name, err)
		}
		faultEnd = time.Now()
		res.FaultFor = faultEnd.Sub(faultStart)
		close(stopProbe)
	} else {
		// An instant fault acts after it is dealt: probe reads for a while.
		time.AfterFunc(3*time.Second, func() { close(stopProbe) })
	}
	readBack := make(chan time.Duration, 1)
	go func() { readBack <- e.waitWhole(ctx, faultEnd, cfg.Load+cfg.VerifyWait) }()

	select {
	case err := <-loadDone:
		if err != nil {
			return fmt.Errorf("load: %w", err)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	if e.extraAcks != "" {
		f, err := os.OpenFile(ackLog, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString(e.extraAcks)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	res.Reads = <-probed
	if res.Reads.Partial > 0 {
		e.note("a partial answer during the fault: %q", res.Reads.Warning)
	}
	for _, x := range e.extra {
		<-x.done
		if x.err != nil {
			return fmt.Errorf("extra load: %w", x.err)
		}
	}
	// Pushes: all of them, and those in the fault's window. An instant
	// fault (a kill) acts after it is dealt: its window runs until the
	// writes were back.
	pushes := e.rec.all()
	windowEnd := faultEnd
	res.WriteRecovery = writeRecovery(pushes, faultStart, faultEnd)
	if f.Heal == nil {
		windowEnd = faultEnd.Add(max(res.WriteRecovery, time.Second))
	}
	for _, p := range pushes {
		res.Pushes++
		if !p.ok {
			res.Rejected++
		}
		if !p.start.Before(faultStart) && p.start.Before(windowEnd) {
			res.InFault++
			res.SlowestInFault = max(res.SlowestInFault, p.end.Sub(p.start))
			if !p.ok {
				res.RejectedInFault++
			}
		}
	}
	if res.Pushes == 0 || res.Pushes == res.Rejected {
		return fmt.Errorf("no push was accepted (%d sent): the lab never took load", res.Pushes)
	}

	// Every acknowledged line, once.
	before := e.querierMetric(ctx, "lokilab_querier_duplicates_removed_total")
	logs := []string{ackLog}
	for _, x := range e.extra {
		logs = append(logs, x.ackLog)
	}
	for _, log := range logs {
		rep, err := loadgen.Verify(ctx, loadgen.VerifyConfig{URL: e.sys.API, AckLog: log, PageSize: 4000,
			Wait: cfg.VerifyWait, RetryInterval: time.Second, QueryTimeout: time.Minute, Examples: 5}, nil)
		if err != nil {
			return fmt.Errorf("verify %s: %w", filepath.Base(log), err)
		}
		res.AckedLines += rep.Acked
		res.Missing += rep.Missing
		res.Duplicated += rep.Duplicated
		res.Unacked += rep.Unacked
		if rep.Missing > 0 || rep.Duplicated > 0 {
			var b strings.Builder
			_, _ = rep.WriteTo(&b)
			e.note("verify of %s:\n%s", filepath.Base(log), b.String())
		}
	}
	res.DedupeRemoved = e.querierMetric(ctx, "lokilab_querier_duplicates_removed_total") - before
	select {
	case res.ReadRecovery = <-readBack:
	case <-ctx.Done():
		return ctx.Err()
	}
	if res.AckedLines == 0 {
		return errors.New("no line was acknowledged: nothing was proven")
	}
	return nil
}

// loadConfig is the matrix's load: two tenants, a few streams each, small
// pushes from a few workers, every acknowledged line logged.
func loadConfig(cfg Config, api, ackLog string) loadgen.Config {
	lc := scenario.LoadgenDefaults()
	lc.URL = api + "/loki/api/v1/push"
	lc.Tenants, lc.StreamsPerTenant, lc.BatchLines, lc.Concurrency = 2, 6, 50, 3
	lc.LinesPerSecond = cfg.Rate
	lc.Duration = cfg.Load
	lc.PushTimeout = 5 * time.Second
	lc.AckLog = ackLog
	lc.Seed = 7
	lc.ProgressInterval = time.Hour
	return lc
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "never"
	case d == 0:
		return "0"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
