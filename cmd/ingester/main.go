// Command ingester runs a lokilab ingester: it owns Kafka partitions (through
// the memberlist partition ring by default), builds chunks from their
// records, flushes them with their index to object storage, and commits
// offsets only for what is durable. See pkg/ingester.
//
//	ingester -ingester.instance-id=ingester-1 -kafka.address=127.0.0.1:9092 \
//	    -memberlist.join=127.0.0.1:7946 -storage.filesystem.dir=lokilab-data/store
//	ingester -config.file=ingester.yaml
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
		fmt.Fprintln(os.Stderr, "ingester:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var cfg, defaults app.IngesterConfig
	defaults.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	fs := flag.NewFlagSet("ingester", flag.ContinueOnError)
	if err := config.Parse(fs, args, &cfg); err != nil {
		return err
	}
	logger, err := server.NewLogger(os.Stderr, cfg.Server.LogLevel, cfg.Server.LogFormat)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return app.RunIngester(ctx, cfg, &cfg, &defaults, logger)
}
