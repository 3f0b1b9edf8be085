package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/loadgen"
)

// runVerify is `lokilab verify`: flags → loadgen.Verify. It fails (exit
// status 2) when an acknowledged line is missing, or found twice unless
// -allow-duplicates.
func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg loadgen.VerifyConfig
	fs := flag.NewFlagSet("lokilab verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: lokilab verify -ack-log FILE [flags]\n\nRead every line in a lokilab load ack log back through the Loki query API and\nreport the acknowledged lines missing or found more than once.\n\n")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args, &cfg); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lokilab verify takes no arguments, got %q", fs.Args())
	}
	rep, err := loadgen.Verify(ctx, cfg, stderr)
	if err != nil {
		return err
	}
	if _, err := rep.WriteTo(stdout); err != nil {
		return err
	}
	switch {
	case rep.Missing > 0:
		return fmt.Errorf("%d of %d acknowledged lines are missing", rep.Missing, rep.Acked)
	case !rep.OK(cfg.AllowDuplicates):
		return fmt.Errorf("%d acknowledged lines were found more than once", rep.Duplicated)
	}
	fmt.Fprintln(stdout, "OK: every acknowledged line was found exactly once")
	return nil
}
