package scenario

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// leakPhase is what one phase of the leak scenario measured.
type leakPhase struct {
	name                   string
	leaking                bool
	opened, closed, failed int64
	// goroutinesBefore/After are the querier's go_goroutines with no tail
	// open, before the churn and after it.
	goroutinesBefore, goroutinesAfter float64
	before, after                     leakProfiles
	elapsed                           time.Duration
}

func (p leakPhase) growth() float64 { return p.goroutinesAfter - p.goroutinesBefore }

// querierURL is the querier process's base URL (processes mode).
func querierURL(sys *System) (string, error) {
	for _, t := range sys.MetricsTargets() {
		if t.Name == "querier" {
			return strings.TrimSuffix(t.URL, "/metrics"), nil
		}
	}
	return "", errors.New("no querier process: the leak scenario needs processes mode")
}

// quietGoroutines waits until the querier has no tail open and returns
// its goroutine count then: a count taken with tails in flight would move
// with them.
func quietGoroutines(ctx context.Context, base string) (float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		active, err := ScrapeSum(ctx, c, base+"/metrics", "loki_querier_tail_active", nil)
		if err != nil {
			return 0, err
		}
		if active == 0 {
			// One more moment: a closed tail's handler returns just after
			// the gauge drops.
			if err := sleep(ctx, 500*time.Millisecond); err != nil {
				return 0, err
			}
			return ScrapeSum(ctx, c, base+"/metrics", "go_goroutines", nil)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the querier still has %v tails open after 15s", active)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// runLeakPhase drives sys for one phase: steady load, tails opened and
// closed, profiles before and after. record, if set, samples the
// querier's series into the run's sampler under that target (the engine
// samples the first system itself).
func runLeakPhase(ctx context.Context, e *Env, sys *System, name string, leaking bool, record string, pdir string) (leakPhase, error) {
	k := e.Knobs
	ph := leakPhase{name: name, leaking: leaking}
	base, err := querierURL(sys)
	if err != nil {
		return ph, err
	}
	cfg := LoadgenDefaults()
	cfg.LinesPerSecond = k.Float("lines-per-second")
	cfg.Duration = 0
	load := Loadgen(name, cfg)
	load.URL = sys.API + "/loki/api/v1/push"
	if err := e.StartLoad(ctx, load); err != nil {
		return ph, err
	}
	defer func() { _ = load.Stop(context.WithoutCancel(ctx)) }()
	rctx, stopRecording := context.WithCancel(ctx)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		if record != "" {
			recordQuerier(rctx, e.Sampler, base, record)
		}
	}()
	defer func() { stopRecording(); <-recorded }()
	// Lines to tail first, and a few tails so that the connection pools
	// the tails' queries use are warm before the baseline: their growth is
	// bounded, not a leak, and would blur the count.
	if err := sleep(ctx, time.Second); err != nil {
		return ph, err
	}
	warm := startTailChurn(ctx, sys.API, k.Float("tails-per-second"))
	err = sleep(ctx, 2*time.Second)
	warm.stop()
	if err != nil {
		return ph, err
	}
	if ph.goroutinesBefore, err = quietGoroutines(ctx, base); err != nil {
		return ph, err
	}
	if ph.before, err = captureProfiles(ctx, base, pdir, name+"-1"); err != nil {
		return ph, err
	}
	e.Logf("%s: the querier has %.0f goroutines, %s live heap; opening %g tails a second for %s", name, ph.goroutinesBefore, mib1(float64(ph.before.heapAlloc)), k.Float("tails-per-second"), k.Duration("phase"))
	start := time.Now()
	churn := startTailChurn(ctx, sys.API, k.Float("tails-per-second"))
	err = sleep(ctx, k.Duration("phase"))
	churn.stop()
	ph.elapsed = time.Since(start)
	ph.opened, ph.closed, ph.failed = churn.opened.Load(), churn.closed.Load(), churn.failed.Load()
	if err != nil {
		return ph, err
	}
	if ph.goroutinesAfter, err = quietGoroutines(ctx, base); err != nil {
		return ph, err
	}
	if ph.after, err = captureProfiles(ctx, base, pdir, name+"-2"); err != nil {
		return ph, err
	}
	e.Logf("%s: %d tails opened and closed (%d failed to open); the querier now has %.0f goroutines (%+.0f), %s live heap", name, ph.closed, ph.failed, ph.goroutinesAfter, ph.growth(), mib1(float64(ph.after.heapAlloc)))
	return ph, nil
}

// recordQuerier samples the querier's goroutines and heap every half
// second into the sampler under target.
func recordQuerier(ctx context.Context, s *Sampler, base, target string) {
	c := &http.Client{Timeout: 5 * time.Second}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes"} {
			if v, err := ScrapeSum(ctx, c, base+"/metrics", name, nil); err == nil {
				s.Record(target, name, nil, false, Point{T: now, V: v})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func runLeak(ctx context.Context, e *Env) error {
	k := e.Knobs
	if !e.Sys.InProcesses() {
		return errors.New("the leak scenario needs the system in processes mode")
	}
	pdir := filepath.Join(e.Dir, "data", "pprof")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return err
	}

	// Phase 1: the system as configured (the fault on, by default).
	on, err := runLeakPhase(ctx, e, e.Sys, "leak-on", k.Bool("leak"), "", pdir)
	if err != nil {
		return err
	}

	// Phase 2: the fix deployed — the same system restarted, on its own
	// data, with the fault off.
	fixedLeaks := !k.Bool("fixed")
	e.Logf("restarting the system with lab_leak_tail_subscribers=%v (the fix deployed)", fixedLeaks)
	if err := e.Sys.Stop(ctx); err != nil {
		return fmt.Errorf("stopping the first system: %w", err)
	}
	cfg := e.Sys.Config
	cfg.Querier.LabLeakTailSubscribers = fixedLeaks
	logf, err := os.Create(filepath.Join(e.Dir, "data", "system-fixed.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	sys2, err := StartProcesses(ctx, cfg, e.Sys.procs.binary, logf)
	if err != nil {
		return fmt.Errorf("restarting the system: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := sys2.Stop(sctx); err != nil {
			e.Report.AddNote("stopping the restarted system: %v", err)
		}
	}()
	off, err := runLeakPhase(ctx, e, sys2, "fault-off", fixedLeaks, "fixed:querier", pdir)
	if err != nil {
		return err
	}

	reportLeak(e, on, off)
	return nil
}

func reportLeak(e *Env, on, off leakPhase) {
	k := e.Knobs
	rows := [][]string{}
	for _, p := range []leakPhase{on, off} {
		perTail := "n/a"
		if g := p.growth(); g >= 20 {
			perTail = fmt.Sprintf("%.1f KiB heap + %.1f KiB stack", float64(p.after.heapAlloc-p.before.heapAlloc)/g/1024, float64(p.after.stackInuse-p.before.stackInuse)/g/1024)
		}
		rows = append(rows, []string{p.name, fmt.Sprint(p.leaking), fmt.Sprint(p.closed), fmt.Sprintf("%.0f → %.0f (%+.0f)", p.goroutinesBefore, p.goroutinesAfter, p.growth()),
			fmt.Sprintf("%d → %d", countIn(p.before.goroutines, leakFunc), countIn(p.after.goroutines, leakFunc)),
			fmt.Sprintf("%s → %s", mib1(float64(p.before.heapAlloc)), mib1(float64(p.after.heapAlloc))),
			fmt.Sprintf("%s → %s", mib1(float64(p.before.stackInuse)), mib1(float64(p.after.stackInuse))), perTail})
	}
	e.Report.AddTable(Table{Title: "The querier before and after each phase (no tail open at either moment)",
		Header: []string{"phase", "fault on", "tails closed", "goroutines", "goroutines in (*tailer).subscriber", "live heap (after GC)", "goroutine stacks", "per leaked goroutine"}, Rows: rows})

	// The goroutine profile, read as a user would: which stacks grew.
	grown := grownStacks(on.before.goroutines, on.after.goroutines)
	var grows [][]string
	for _, g := range grown[:min(len(grown), 5)] {
		frames := g.Funcs[:min(len(g.Funcs), 4)]
		grows = append(grows, []string{fmt.Sprintf("%d → %d", g.Before, g.Value), "`" + g.Top() + "`", "`" + strings.Join(frames, " ← ") + "`"})
	}
	e.Report.AddTable(Table{Title: "Goroutine profile (leak-on phase): the stacks whose count grew, most first", Header: []string{"goroutines", "pinned in", "innermost frames"}, Rows: grows})
	hgrown := grownStacks(on.before.heap, on.after.heap)
	var hrows [][]string
	for _, g := range hgrown[:min(len(hgrown), 5)] {
		frames := g.Funcs[:min(len(g.Funcs), 4)]
		hrows = append(hrows, []string{fmt.Sprintf("%+d", g.Value-g.Before), "`" + g.Top() + "`", "`" + strings.Join(frames, " ← ") + "`"})
	}
	if len(hrows) == 0 {
		hrows = append(hrows, []string{"0", "no sampled site grew", "a leaked goroutine here holds little heap (its tailer); its cost is its stack — see the table above"})
	}
	e.Report.AddTable(Table{Title: "Heap profile (leak-on phase, in-use after GC): the allocation sites that grew, sampled bytes (every 512 KiB on average)", Header: []string{"sampled in-use bytes", "allocated in", "innermost frames"}, Rows: hrows})

	top := "none grew"
	if len(grown) > 0 {
		top = fmt.Sprintf("`%s` (%d → %d)", grown[0].Top(), grown[0].Before, grown[0].Value)
	}
	e.Figure("the stack that grew most", top, "goroutine?debug=1 before and after the leak-on phase")
	e.Figure("leak-on: querier goroutines", fmt.Sprintf("%+.0f for %d tails closed", on.growth(), on.closed), fmt.Sprintf("%.1f tails/s for %s", float64(on.closed)/on.elapsed.Seconds(), on.elapsed.Round(time.Second)))
	e.Figure("fault-off: querier goroutines", fmt.Sprintf("%+.0f for %d tails closed", off.growth(), off.closed), "the same traffic after the restart")

	minFrac := k.Float("min-fraction")
	want := max(20, minFrac*float64(on.closed))
	e.Check("leak on: the querier's goroutines grow with the tails closed", fmt.Sprintf("growth ≥ %.0f (%.0f%% of %d tails closed, at least 20)", want, 100*minFrac, on.closed),
		fmt.Sprintf("%+.0f", on.growth()), on.growth() >= want)
	before, after := countIn(on.before.goroutines, leakFunc), countIn(on.after.goroutines, leakFunc)
	named := len(grown) > 0 && strings.HasSuffix(grown[0].Top(), leakFunc)
	e.Check("leak on: the goroutine profile names the leaking function", fmt.Sprintf("the stack that grew most is pinned in %s, its count up by ≥ %.0f", leakFunc, want),
		fmt.Sprintf("%s; %s %d → %d", top, leakFunc, before, after), named && float64(after-before) >= want)
	bound := float64(k.Int("flat-bound"))
	e.Check("fault off: the querier's goroutines stay flat under the same traffic", fmt.Sprintf("growth ≤ %.0f for %d tails closed", bound, off.closed),
		fmt.Sprintf("%+.0f; %s: %d", off.growth(), leakFunc, countIn(off.after.goroutines, leakFunc)), off.closed > 0 && off.growth() <= bound)
	e.Report.AddNote("The profiles are saved under `data/pprof/` in the report directory (kept with `-keep-data`): `leak-on-1-goroutine.pb.gz` and `leak-on-2-goroutine.pb.gz` (and the `-heap.pb.gz` pair) are the before and after of `go tool pprof -diff_base`.")
}
