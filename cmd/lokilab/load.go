package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/loadgen"
)

// runLoad is `lokilab load`: flags → pkg/loadgen.
func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg loadgen.Config
	fs := flag.NewFlagSet("lokilab load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: lokilab load [flags]\n\nPush realistic log lines to a Loki push endpoint and report rates, answers and latency.\nWith -ack-log, record every acknowledged line for lokilab verify.\n\n")
		fs.PrintDefaults()
	}
	if err := config.Parse(fs, args, &cfg); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lokilab load takes no arguments, got %q", fs.Args())
	}
	l, err := loadgen.New(cfg, loadgen.Deps{Progress: stdout, InPlace: isTerminal(stdout)})
	if err != nil {
		return err
	}
	until := "until interrupted"
	if cfg.Duration > 0 {
		until = "for " + cfg.Duration.String()
	}
	fmt.Fprintf(stdout, "lokilab load: run %s, %d workers pushing %s to %s %s (Ctrl-C stops)\n",
		l.RunID(), cfg.Concurrency, cfg.Encoding, cfg.URL, until)
	sum, err := l.Run(ctx)
	if _, werr := sum.WriteTo(stdout); err == nil {
		err = werr
	}
	if err == nil && sum.Sent.Pushes > 0 && sum.Accepted.Pushes == 0 {
		err = errors.New("no push was accepted")
	}
	return err
}

// isTerminal reports whether w is a terminal, where the progress line is
// rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
