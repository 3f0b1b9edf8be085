package scenario

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Check is one expectation tested by a run.
type Check struct {
	Name string
	// Want says what the hypothesis expects; Got what was measured.
	Want, Got string
	Pass      bool
}

// Figure is one measured value for the report's figures table.
type Figure struct {
	Name, Value string
	// Note says where the figure comes from or how to read it.
	Note string
}

// Table is an extra table of the report, e.g. the tour's hops.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
}

// PlotSpec is a time-series figure drawn from the sampler's series: time
// since the run started on x, the lines' values on y.
type PlotSpec struct {
	// File is the PNG's name in the report directory, e.g. "streams.png".
	File   string
	Title  string
	YLabel string
	Lines  []LineSpec
}

// LineSpec is one line, or one line per matched series, of a plot.
type LineSpec struct {
	Select Selector
	// Legend names the line; with Sum false it is a prefix to each
	// series' target and labels.
	Legend string
	// Rate plots the per-second rate (for counters) instead of the value.
	Rate bool
	// Sum adds every matched series into one line.
	Sum bool
}

// Bars is a bar chart with the data given, e.g. per-hop latency.
type Bars struct {
	File   string
	Title  string
	YLabel string
	Labels []string
	Values []float64
}

// FaultCall is a fault hook a run called, and what came of it.
type FaultCall struct {
	At   time.Duration
	Hook string
	Args string
	Err  string
}

// Report is what a run found. It is safe for concurrent use; Write turns
// it into the report directory.
type Report struct {
	mu       sync.Mutex
	scenario *Scenario
	knobs    []KnobValue
	short    bool
	start    time.Time
	end      time.Time
	figures  []Figure
	tables   []Table
	checks   []Check
	plots    []PlotSpec
	bars     []Bars
	notes    []string
	faults   []FaultCall
	caps     []Capability
	errs     []string
	sampling *SamplerStats
	system   []string
}

func newReport(s *Scenario, knobs []KnobValue, short bool, start time.Time) *Report {
	return &Report{scenario: s, knobs: knobs, short: short, start: start, plots: append([]PlotSpec(nil), s.Plots...)}
}

// AddFigure records a figure.
func (r *Report) AddFigure(f Figure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.figures = append(r.figures, f)
}

// AddTable records a table.
func (r *Report) AddTable(t Table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tables = append(r.tables, t)
}

// AddCheck records a check.
func (r *Report) AddCheck(c Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, c)
}

// AddPlot adds a time-series figure to the ones the scenario declared.
func (r *Report) AddPlot(p PlotSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.plots = append(r.plots, p)
}

// AddBars adds a bar chart.
func (r *Report) AddBars(b Bars) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bars = append(r.bars, b)
}

// AddNote adds a paragraph to the report's notes.
func (r *Report) AddNote(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *Report) addError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err.Error())
}

func (r *Report) addFault(c FaultCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, c)
}

// Checks returns the checks recorded so far.
func (r *Report) Checks() []Check {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Check(nil), r.checks...)
}

// Figures returns the figures recorded so far.
func (r *Report) Figures() []Figure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Figure(nil), r.figures...)
}

// Passed reports a run that recorded at least one check, all passing, and
// no error. A run with no checks proves nothing, so it does not pass.
func (r *Report) Passed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) > 0 || len(r.checks) == 0 {
		return false
	}
	for _, c := range r.checks {
		if !c.Pass {
			return false
		}
	}
	return true
}

func (r *Report) failed() int {
	n := 0
	for _, c := range r.checks {
		if !c.Pass {
			n++
		}
	}
	return n
}

// Write renders the plots from sampler (nil: no sampled series) and writes
// report.md, the PNGs and samples.csv into dir. A plot that would be empty
// is a failed check: a report whose figure shows nothing has not shown
// what it claims. Write returns the report.md path.
func (r *Report) Write(dir string, sampler *Sampler) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	r.mu.Lock()
	plots := append([]PlotSpec(nil), r.plots...)
	bars := append([]Bars(nil), r.bars...)
	r.mu.Unlock()

	type img struct{ title, file, err string }
	var imgs []img
	for _, p := range plots {
		n, err := renderTimeSeries(filepath.Join(dir, p.File), p, sampler, r.start)
		check := Check{Name: "plot " + p.File + " shows sampled data", Want: "≥ 1 point", Got: fmt.Sprintf("%d points", n), Pass: err == nil && n > 0}
		im := img{title: p.Title, file: p.File}
		if err != nil {
			check.Got = err.Error()
			im.err = err.Error()
		}
		r.AddCheck(check)
		imgs = append(imgs, im)
	}
	for _, b := range bars {
		n, err := renderBars(filepath.Join(dir, b.File), b)
		check := Check{Name: "plot " + b.File + " shows data", Want: "≥ 1 non-zero bar", Got: fmt.Sprintf("%d non-zero bars", n), Pass: err == nil && n > 0}
		im := img{title: b.Title, file: b.File}
		if err != nil {
			check.Got = err.Error()
			im.err = err.Error()
		}
		r.AddCheck(check)
		imgs = append(imgs, im)
	}
	if sampler != nil {
		st := sampler.Stats()
		r.mu.Lock()
		r.sampling = &st
		r.mu.Unlock()
		if err := writeSamples(filepath.Join(dir, "samples.csv"), sampler); err != nil {
			return "", err
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.scenario
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Scenario `%s` — %s\n\n", s.Name, s.Heading())
	verdict := "✅ **passed**"
	if len(r.errs) > 0 || len(r.checks) == 0 || r.failed() > 0 {
		verdict = fmt.Sprintf("❌ **failed** (%d of %d checks failed", r.failed(), len(r.checks))
		if len(r.errs) > 0 {
			verdict += fmt.Sprintf(", %d errors", len(r.errs))
		}
		verdict += ")"
	}
	mode := "full"
	if r.short {
		mode = "short"
	}
	end := r.end
	if end.IsZero() {
		end = time.Now()
	}
	w("%s — %s mode, started %s, took %s. Run again with `%s%s`.\n\n",
		verdict, mode, r.start.Format(time.RFC3339), end.Sub(r.start).Round(100*time.Millisecond), s.RunCommand(), map[bool]string{true: " -short"}[r.short])

	w("## Hypothesis\n\n%s\n\n", s.Hypothesis)

	if len(r.knobs) > 0 {
		w("## Knobs\n\n| knob | value | default (short) | what it does |\n|---|---|---|---|\n")
		for _, k := range r.knobs {
			val := "`" + k.Value + "`"
			if k.Value == "" {
				val = "(empty)"
			}
			if k.Set {
				val += " (set)"
			}
			def := "`" + k.Default + "`"
			if k.Default == "" {
				def = "(empty)"
			}
			if k.Short != "" {
				def += " (`" + k.Short + "`)"
			}
			w("| `-%s` | %s | %s | %s |\n", k.Name, val, def, cell(k.Usage))
		}
		w("\n")
	}

	w("## Figures\n\n")
	if len(r.figures) == 0 {
		w("No figures were recorded.\n\n")
	} else {
		w("| figure | value | note |\n|---|---|---|\n")
		for _, f := range r.figures {
			w("| %s | %s | %s |\n", cell(f.Name), cell(f.Value), cell(f.Note))
		}
		w("\n")
	}
	for _, t := range r.tables {
		w("### %s\n\n", t.Title)
		w("| %s |\n|%s\n", strings.Join(t.Header, " | "), strings.Repeat("---|", len(t.Header)))
		for _, row := range t.Rows {
			cells := make([]string, len(row))
			for i, c := range row {
				cells[i] = cell(c)
			}
			w("| %s |\n", strings.Join(cells, " | "))
		}
		w("\n")
	}

	w("## Checks\n\n")
	if len(r.checks) == 0 {
		w("❌ No checks were recorded: the run proves nothing.\n\n")
	} else {
		w("| | check | want | got |\n|---|---|---|---|\n")
		for _, c := range r.checks {
			mark := "✅"
			if !c.Pass {
				mark = "❌"
			}
			w("| %s | %s | %s | %s |\n", mark, cell(c.Name), cell(c.Want), cell(c.Got))
		}
		w("\n")
	}
	if len(r.errs) > 0 {
		w("## Errors\n\nThe run could not complete:\n\n")
		for _, e := range r.errs {
			w("- %s\n", e)
		}
		w("\n")
	}

	if len(imgs) > 0 {
		w("## Plots\n\n")
		for _, im := range imgs {
			if im.err != "" {
				w("- %s: not drawn: %s\n\n", im.title, im.err)
				continue
			}
			w("![%s](%s)\n\n", im.title, im.file)
		}
	}

	if len(r.notes) > 0 {
		w("## Notes\n\n")
		for _, n := range r.notes {
			w("%s\n\n", n)
		}
	}

	w("## What to look at\n\n")
	for _, l := range s.Look {
		w("- %s\n", l)
	}
	if len(r.system) > 0 {
		w("\nWhile the scenario ran, the system under test was at:\n\n")
		for _, l := range r.system {
			w("- %s\n", l)
		}
	}
	w("\n## Code to read\n\n")
	for _, c := range s.Code {
		w("- `%s` — %s\n", c.Path, c.Why)
	}
	w("\n")

	if len(r.caps) > 0 || len(r.faults) > 0 {
		w("## Fault hooks\n\n")
		if len(r.faults) > 0 {
			w("Called by this run:\n\n| at | hook | arguments | result |\n|---|---|---|---|\n")
			for _, f := range r.faults {
				res := "ok"
				if f.Err != "" {
					res = "❌ " + f.Err
				}
				w("| %s | %s | %s | %s |\n", f.At.Round(time.Millisecond), f.Hook, cell(f.Args), cell(res))
			}
			w("\n")
		}
		if len(r.caps) > 0 {
			w("Available against this system:\n\n| hook | built | how, or what it needs |\n|---|---|---|\n")
			for _, c := range r.caps {
				mark := "✅"
				if !c.Built {
					mark = "❌ not built"
				}
				w("| %s | %s | %s |\n", c.Hook, mark, cell(c.Note))
			}
			w("\n")
		}
	}

	if r.sampling != nil {
		st := r.sampling
		w("## Sampling\n\n%d scrape rounds every %s, %d scrapes, %d failed; %d series recorded (`samples.csv`), %d dropped past the series bound, %d resolution halvings.\n",
			st.Rounds, sampler.Interval(), st.Scrapes, st.Failures, st.Series, st.DroppedSeries, st.Halvings)
		for t, e := range st.LastErrors {
			w("Last error from %s: %s\n", t, e)
		}
		w("\nThe system's own log is `system.log` beside this report.\n")
	}

	path := filepath.Join(dir, "report.md")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func writeSamples(path string, sampler *Sampler) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	fmt.Fprintln(bw, "target,name,labels,unix_ms,value")
	for _, s := range sampler.all() {
		ls := strings.ReplaceAll(labelString(s.Labels), `"`, `""`)
		for _, p := range s.Points {
			fmt.Fprintf(bw, "%s,%s,\"%s\",%d,%g\n", s.Target, s.Name, ls, p.T.UnixMilli(), p.V)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
