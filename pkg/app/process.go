package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/server"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// processConfig is a process's configuration as Parse needs it: flags with
// defaults, and the server block the logger is built from.
type processConfig[T any] interface {
	*T
	config.Registerer
	serverConfig() *server.Config
}

func (c *DistributorConfig) serverConfig() *server.Config { return &c.Server }
func (c *IngesterConfig) serverConfig() *server.Config    { return &c.Server }
func (c *AllInOneConfig) serverConfig() *server.Config    { return &c.Server }

// Parse reads a process's configuration from args (flags, and the YAML
// file -config.file names) and builds its logger. defaults holds the
// untouched defaults, for /config?mode=diff.
func Parse[T any, P processConfig[T]](name string, args []string, stderr io.Writer) (cfg, defaults *T, logger *slog.Logger, err error) {
	cfg, defaults = new(T), new(T)
	P(defaults).RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := config.Parse(fs, args, P(cfg)); err != nil {
		return nil, nil, nil, err
	}
	sc := P(cfg).serverConfig()
	logger, err = server.NewLogger(stderr, sc.LogLevel, sc.LogFormat)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, defaults, logger, nil
}

// Main is a component main: parse, then run until SIGINT or SIGTERM ends
// ctx.
func Main[T any, P processConfig[T]](ctx context.Context, name string, args []string, stderr io.Writer,
	run func(ctx context.Context, cfg T, configView, defaults any, logger *slog.Logger) error) error {
	cfg, defaults, logger, err := Parse[T, P](name, args, stderr)
	if err != nil {
		return err
	}
	return run(ctx, *cfg, cfg, defaults, logger)
}

// Exec is a component process's whole main: Main with os.Args, ended by
// SIGINT or SIGTERM, printing the error and exiting 1 if it fails.
func Exec[T any, P processConfig[T]](name string, run func(ctx context.Context, cfg T, configView, defaults any, logger *slog.Logger) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Main[T, P](ctx, name, os.Args[1:], os.Stderr, run)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// newServer builds a component's HTTP server with a registry of its own:
// one registry per component, so /metrics on each port is that component's.
func newServer(sc server.Config, configView, defaults any, logger *slog.Logger, tp *tracing.Provider) (*server.Server, *prometheus.Registry, error) {
	reg := server.NewRegistry()
	srv, err := server.New(sc, server.Options{
		Registerer: reg, Gatherer: reg, Logger: logger,
		Config: configView, DefaultConfig: defaults, Tracing: tp,
	})
	return srv, reg, err
}
