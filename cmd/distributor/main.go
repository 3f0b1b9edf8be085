// Command distributor runs a lokilab distributor: the Loki push API in
// front of a Kafka topic. See pkg/distributor for what it does with a push.
//
//	distributor -kafka.address=127.0.0.1:9092 -server.http-listen-port=3100
//	distributor -config.file=distributor.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "distributor:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var cfg, defaults app.DistributorConfig
	defaults.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	fs := flag.NewFlagSet("distributor", flag.ContinueOnError)
	if err := config.Parse(fs, args, &cfg); err != nil {
		return err
	}
	logger, err := server.NewLogger(os.Stderr, cfg.Server.LogLevel, cfg.Server.LogFormat)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.RunDistributor(ctx, cfg, &cfg, &defaults, logger)
}
