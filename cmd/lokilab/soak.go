package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/lokilab/lokilab/pkg/scenario"
)

// runSoak is `lokilab soak [flags]`: the soak of issue 8 (sustained load
// at half the measured maximum, live queries and a tail, memory and
// goroutines judged flat, no error bursts). It runs on the scenario
// engine, which gives it the sampler, the plots and the report, but it is
// not a lab question, so it is not in `lokilab scenario --list`; its own
// command keeps the fifteen questions the fifteen scenarios.
func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	s := scenario.Soak()
	fs := flag.NewFlagSet("lokilab soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	short := fs.Bool("short", false, "The CI-sized soak: 2 minutes after a 10s probe (the knobs' short values).")
	out := fs.String("out", filepath.Join("lokilab-scenarios", s.Name), "Report directory (report.md, PNG plots, samples.csv, system.log).")
	keep := fs.Bool("keep-data", false, "Keep the system's data directory under <out>/data.")
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
		fmt.Fprintf(stderr, "lokilab soak — %s\n\n%s\n\nFlags:\n", s.Title, s.Hypothesis)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("soak: unexpected arguments %q", fs.Args())
	}
	res, err := scenario.Run(ctx, s, scenario.Options{Short: *short, Dir: *out, Knobs: knobs, Progress: stdout, KeepData: *keep, SampleInterval: *interval})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nreport: %s\n", res.Report)
	if !res.Passed {
		return fmt.Errorf("soak failed: %d of %d checks failed (see %s)", len(res.Failed()), len(res.Checks), res.Report)
	}
	return nil
}
