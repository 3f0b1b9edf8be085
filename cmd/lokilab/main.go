// Command lokilab is the lab's front door.
//
//	lokilab run      the whole system in one process (embedded Kafka included)
//	lokilab kafka    the embedded Kafka broker on its own
//
// Every subcommand takes -help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/server"
)

const usage = `lokilab: a miniature Loki-like log ingestion system, built as a lab.

Usage:
  lokilab run [flags]     run everything in one process: embedded Kafka, distributor;
                          the Loki push API on 127.0.0.1:3100
  lokilab kafka [flags]   run the embedded Kafka broker alone (for other processes,
                          containers, kcat)

Run 'lokilab <command> -help' for a command's flags.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "lokilab:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return runAllInOne(ctx, rest, stdout, stderr)
	case "kafka":
		return runKafka(ctx, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

func runAllInOne(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, defaults, logger, err := app.Parse[app.AllInOneConfig]("lokilab run", args, stderr)
	if err != nil {
		return err
	}
	return app.RunAllInOne(ctx, *cfg, defaults, logger, stdout)
}

func runKafka(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg app.BrokerProcessConfig
	fs := flag.NewFlagSet("lokilab kafka", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := config.Parse(fs, args, &cfg); err != nil {
		return err
	}
	logger, err := server.NewLogger(stderr, cfg.LogLevel, "logfmt")
	if err != nil {
		return err
	}
	return app.RunBroker(ctx, cfg, logger, func(addr string, partitions int) {
		fmt.Fprintf(stdout, "kafka broker listening on %s (topic %q, %d partitions, data in %s)\n",
			addr, cfg.Topic, partitions, cfg.Broker.DataDir)
	})
}
