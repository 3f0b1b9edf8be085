package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/faultmatrix"
)

// runFaults is `lokilab faults`: the fault matrix (pkg/faultmatrix), one
// fresh multi-process lab per fault, printed as a markdown table. It fails
// when any acknowledged line is missing or a fault's run could not be
// done.
func runFaults(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg faultmatrix.Config
	var only, logFile string
	var keep bool
	fs := flag.NewFlagSet("lokilab faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&cfg.Short, "short", false, "The CI form: a small load and short faults.")
	fs.StringVar(&only, "only", "", "Comma-separated faults to run (default all): "+strings.Join(faultmatrix.Names(), ", "))
	fs.StringVar(&cfg.Dir, "dir", "", "Directory for the labs' data, one subdirectory per fault (default a temporary one, removed unless -keep-data).")
	fs.BoolVar(&keep, "keep-data", false, "Keep the labs' data directories.")
	fs.DurationVar(&cfg.Load, "load", 0, "How long the load runs in each lab (default 11s with -short, 40s without).")
	fs.Float64Var(&cfg.Rate, "rate", 0, "Lines per second of the load (default 600 with -short, 2000 without).")
	fs.DurationVar(&cfg.FaultAt, "fault-at", 0, "When the fault begins, from the load's start (default 3s short, 10s long).")
	fs.DurationVar(&cfg.FaultFor, "fault-for", 0, "How long a lasting fault lasts (default 3s short, 10s long).")
	fs.DurationVar(&cfg.VerifyWait, "verify-wait", 0, "How long verify keeps reading while lines are missing (default 60s).")
	fs.StringVar(&logFile, "log", "", "Write the labs' own output to this file (default discarded).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lokilab faults takes no arguments, got %q", fs.Args())
	}
	if only != "" {
		cfg.Only = strings.Split(only, ",")
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "lokilab-faults-")
		if err != nil {
			return err
		}
		cfg.Dir = d
		if !keep {
			defer os.RemoveAll(d)
		}
	}
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.SystemLog = f
	}
	cfg.Progress = stderr
	began := time.Now()
	results, err := faultmatrix.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nFault matrix (%s form), %s, %s:\n\n", map[bool]string{true: "short", false: "long"}[cfg.Short],
		began.UTC().Format("2006-01-02 15:04 UTC"), time.Since(began).Round(time.Second))
	if err := faultmatrix.WriteTable(stdout, results); err != nil {
		return err
	}
	var errs []error
	for _, r := range results {
		if r.Lost() {
			errs = append(errs, fmt.Errorf("%s: %d acknowledged lines missing", r.Fault, r.Missing))
		}
		if r.Err != "" {
			errs = append(errs, fmt.Errorf("%s: %s", r.Fault, r.Err))
		}
	}
	return errors.Join(errs...)
}
