package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/lokilab/lokilab/pkg/scenario"
)

// runScenario is `lokilab scenario --list` and `lokilab scenario NAME
// [flags]`: the engine and the scenarios live in pkg/scenario.
func runScenario(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		listScenarios(stderr)
		return errors.New("scenario: name a scenario, or --list")
	}
	switch args[0] {
	case "-list", "--list", "list":
		listScenarios(stdout)
		return nil
	case "-h", "-help", "--help", "help":
		listScenarios(stdout)
		return flag.ErrHelp
	}
	s, err := scenario.Lookup(args[0])
	if err != nil {
		listScenarios(stderr)
		return err
	}
	fs := flag.NewFlagSet("lokilab scenario "+s.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "Run the CI-sized variant: knobs' short values, a shorter budget.")
	out := fs.String("out", filepath.Join("lokilab-scenarios", s.Name), "Report directory (report.md, PNG plots, samples.csv, system.log).")
	keep := fs.Bool("keep-data", false, "Keep the system's data directory (Kafka log, object store) under <out>/data.")
	interval := fs.Duration("sample-interval", 0, "Interval of /metrics sampling; default 500ms (250ms with -short).")
	knobs := map[string]string{}
	for _, k := range s.Knobs {
		usage := k.Usage
		if k.Short != "" {
			usage += fmt.Sprintf(" With -short: %s.", k.Short)
		}
		fs.Var(knobFlag{k, knobs}, k.Name, usage)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "lokilab scenario %s — %s\n\n%s\n\nFlags:\n", s.Name, s.Heading(), s.Hypothesis)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("scenario %s: unexpected arguments %q", s.Name, fs.Args())
	}
	res, err := scenario.Run(ctx, s, scenario.Options{
		Short: *short, Dir: *out, Knobs: knobs, Progress: stdout, KeepData: *keep, SampleInterval: *interval,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", res.Report)
	if !res.Passed {
		return fmt.Errorf("scenario %s failed: %d of %d checks failed (see %s)", s.Name, len(res.Failed()), len(res.Checks), res.Report)
	}
	return nil
}

func listScenarios(w io.Writer) {
	fmt.Fprint(w, "Scenarios: lokilab scenario NAME [-short] [-out DIR] [knob flags; NAME -help lists them]\n\n")
	fmt.Fprintf(w, "  %3s  %-16s %-8s %s\n", "Q", "NAME", "BUDGET", "QUESTION")
	for _, s := range scenario.All() {
		budget := s.Budget
		if budget == 0 {
			budget = 2 * time.Minute
		}
		fmt.Fprintf(w, "  %3d  %-16s %-8s %s\n", s.Question, s.Name, budget, s.Title)
	}
	fmt.Fprint(w, "\nEach question is discussed in docs/questions/NN-*.md, with the figures its scenario printed.\n")
}

// knobFlag is one scenario knob as a flag; values land in set by name.
type knobFlag struct {
	k   scenario.Knob
	set map[string]string
}

func (f knobFlag) String() string {
	if f.set == nil {
		return ""
	}
	if v, ok := f.set[f.k.Name]; ok {
		return v
	}
	return f.k.Default
}

func (f knobFlag) Set(v string) error {
	f.set[f.k.Name] = v
	return nil
}

// IsBoolFlag lets a bool knob be given as -name alone.
func (f knobFlag) IsBoolFlag() bool { return f.k.Kind == scenario.KnobBool }
