package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Options configure one run of a scenario.
type Options struct {
	// Short runs the CI-sized variant: the knobs' short values and the
	// short budget.
	Short bool
	// Dir is the report directory; it is created, and the system's data
	// directory lives in its data/ subdirectory.
	Dir string
	// Knobs sets knobs by name (values as on the command line).
	Knobs map[string]string
	// Progress receives one line per step while the scenario runs; nil
	// discards them.
	Progress io.Writer
	// KeepData keeps the system's data directory (Kafka's log, the
	// store) after the run; by default it is removed once the report is
	// written, since the report holds what was learned.
	KeepData bool
	// SampleInterval is the /metrics sampling interval; default 250ms in
	// short mode, 500ms otherwise.
	SampleInterval time.Duration
	// Binary is the lokilab binary a scenario in processes mode runs
	// (`lokilab run -processes`); default this process's executable,
	// which is right for `lokilab scenario` and wrong for a test binary.
	Binary string
}

// Result is how a run ended.
type Result struct {
	// Report is the path of report.md.
	Report string
	// Passed is true when every check passed and the run had no error.
	Passed bool
	Checks []Check
	// Err is what stopped the run early, if anything.
	Err error
}

// Failed returns the failed checks.
func (r *Result) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.Pass {
			out = append(out, c)
		}
	}
	return out
}

// Env is what a scenario's Run works with: the running system, its
// knobs, the sampler, the fault hooks and the report.
type Env struct {
	Scenario *Scenario
	Knobs    Values
	Short    bool
	// Dir is the report directory.
	Dir string
	// Sys is the system under test, started and ready.
	Sys *System
	// Faults breaks it; every call is recorded in the report.
	Faults Faults
	// Sampler records the scenario's Series from every component's
	// /metrics while Run runs.
	Sampler *Sampler
	// Report collects figures, tables, checks and plots.
	Report *Report

	start    time.Time
	progress io.Writer
	mu       sync.Mutex
	loads    []Load
}

// Logf prints a progress line, stamped with the time since the run began.
func (e *Env) Logf(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.progress, "[%6.2fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

// Check records a check and prints it; it returns pass, so a scenario can
// skip what depends on a failed expectation.
func (e *Env) Check(name, want, got string, pass bool) bool {
	e.Report.AddCheck(Check{Name: name, Want: want, Got: got, Pass: pass})
	mark := "✅"
	if !pass {
		mark = "❌"
	}
	e.Logf("%s %s: got %s (want %s)", mark, name, got, want)
	return pass
}

// Figure records a figure.
func (e *Env) Figure(name, value, note string) {
	e.Report.AddFigure(Figure{Name: name, Value: value, Note: note})
}

// Since is the time since the run began (the x axis of the plots).
func (e *Env) Since() time.Duration { return time.Since(e.start) }

// StartLoad starts l against the system's push API. The engine stops it
// when Run returns, if the scenario has not, and adds its summary to the
// figures.
func (e *Env) StartLoad(ctx context.Context, l Load) error {
	if err := l.Start(ctx, LoadTarget{PushURL: e.Sys.API + "/loki/api/v1/push", AuthEnabled: e.Sys.Config.AuthEnabled, Dir: e.Dir, Sampler: e.Sampler}); err != nil {
		return fmt.Errorf("load %s: %w", l.Name(), err)
	}
	e.mu.Lock()
	e.loads = append(e.loads, l)
	e.mu.Unlock()
	e.Logf("load %s started", l.Name())
	return nil
}

func (e *Env) stopLoads(ctx context.Context) {
	e.mu.Lock()
	loads := e.loads
	e.loads = nil
	e.mu.Unlock()
	for _, l := range loads {
		if err := l.Stop(ctx); err != nil {
			e.Report.addError(fmt.Errorf("stopping load %s: %w", l.Name(), err))
		}
		for _, f := range l.Summary() {
			f.Name = l.Name() + ": " + f.Name
			e.Report.AddFigure(f)
		}
	}
}

// Run runs s: resolve its knobs, start the system under test in this
// process, sample its metrics, run the scenario within its budget, stop
// everything and write the report. The error is for runs that could not
// start (bad knobs, no report directory); a run that started always
// writes its report, and Result says whether it passed.
func Run(ctx context.Context, s *Scenario, opts Options) (*Result, error) {
	knobs, err := Resolve(s, opts.Short, opts.Knobs)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("scenario: no report directory")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := clearReportDir(dir); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	start := time.Now()
	env := &Env{
		Scenario: s, Knobs: knobs, Short: opts.Short, Dir: dir,
		Report: newReport(s, knobs.List(s), opts.Short, start),
		start:  start, progress: progress,
	}
	res := &Result{}
	finish := func(sampler *Sampler) (*Result, error) {
		env.Report.mu.Lock()
		env.Report.end = time.Now()
		env.Report.mu.Unlock()
		path, werr := env.Report.Write(dir, sampler)
		if werr != nil {
			return nil, fmt.Errorf("writing the report: %w", werr)
		}
		if !opts.KeepData {
			_ = os.RemoveAll(dataDir)
		}
		res.Report = path
		res.Checks = env.Report.Checks()
		res.Passed = env.Report.Passed()
		return res, nil
	}
	fail := func(err error) {
		res.Err = errors.Join(res.Err, err)
		env.Report.addError(err)
		env.Logf("error: %v", err)
	}

	env.Logf("scenario %s (%s)%s", s.Name, s.Heading(), map[bool]string{true: ", short mode"}[opts.Short])
	env.Logf("hypothesis: %s", s.Hypothesis)
	cfg, err := LabConfig(dataDir)
	if err != nil {
		fail(err)
		return finish(nil)
	}
	if s.Configure != nil {
		s.Configure(&cfg, knobs)
	}
	logf, err := os.Create(filepath.Join(dir, "system.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	sys, err := startSystem(ctx, s, knobs, cfg, opts.Binary, logf, env.Logf)
	if err != nil {
		fail(fmt.Errorf("starting the system: %w", err))
		return finish(nil)
	}
	env.Sys = sys
	env.Faults = recordingFaults{inner: sys.Faults(), rep: env.Report, start: start}
	env.Report.mu.Lock()
	env.Report.caps = sys.Faults().Capabilities()
	env.Report.system = sys.Describe()
	env.Report.mu.Unlock()
	env.Logf("system ready: API %s, Kafka %s (%d partitions), %d ingesters", sys.API, sys.Kafka, sys.Partitions, len(sys.Ingesters))

	interval := opts.SampleInterval
	if interval <= 0 {
		interval = 500 * time.Millisecond
		if opts.Short {
			interval = 250 * time.Millisecond
		}
	}
	env.Sampler = NewSampler(SamplerConfig{Interval: interval}, sys.MetricsTargets(), s.Series)
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() { defer close(sampled); env.Sampler.Run(sctx) }()

	budget := s.Budget
	if opts.Short {
		budget = s.ShortBudget
	}
	if budget <= 0 {
		budget = map[bool]time.Duration{false: 2 * time.Minute, true: time.Minute}[opts.Short]
	}
	rctx, cancel := context.WithTimeout(ctx, budget)
	runErr := runProtected(rctx, s, env)
	cancel()
	if runErr != nil {
		if errors.Is(runErr, context.DeadlineExceeded) && ctx.Err() == nil {
			runErr = fmt.Errorf("%w (the scenario's budget is %s)", runErr, budget)
		}
		fail(runErr)
	}
	stopCtx, cancelStop := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancelStop()
	env.stopLoads(stopCtx)
	// One last round, so the plots reach the end of the run.
	_ = env.Sampler.Scrape(stopCtx)
	stopSampling()
	<-sampled

	env.Logf("stopping the system")
	if err := sys.Stop(stopCtx); err != nil {
		fail(fmt.Errorf("stopping the system: %w", err))
	}
	r, err := finish(env.Sampler)
	if err != nil {
		return nil, err
	}
	verdict := "PASSED"
	if !r.Passed {
		verdict = fmt.Sprintf("FAILED (%d of %d checks failed)", len(r.Failed()), len(r.Checks))
	}
	env.Logf("%s; report: %s", verdict, r.Report)
	return r, nil
}

// clearReportDir empties a report directory of an earlier run, so two
// runs' plots never mix. It refuses a directory holding anything a report
// does not, rather than delete files it did not write.
func clearReportDir(dir string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		switch n := de.Name(); {
		case n == "report.md", n == "samples.csv", n == "system.log", n == "data", filepath.Ext(n) == ".png", filepath.Ext(n) == ".acks":
		default:
			return fmt.Errorf("scenario: %s holds %s, which no report writes: choose a new or empty report directory", dir, n)
		}
	}
	for _, de := range des {
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return err
		}
	}
	return nil
}

// runProtected runs the scenario, turning a panic into an error so the
// system is still stopped and the report still written.
func runProtected(ctx context.Context, s *Scenario, env *Env) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("scenario %s panicked: %v", s.Name, p)
		}
	}()
	return s.Run(ctx, env)
}
