package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/server"
)

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
