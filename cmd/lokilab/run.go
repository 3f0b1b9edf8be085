package main

import (
	"context"
	"io"
	"os"

	"github.com/lokilab/lokilab/pkg/app"
)

// runAllInOne is `lokilab run`: every component in this process, or with
// -processes each in a child process of this binary. -processes is a field
// of the all-in-one configuration (processes.enabled in a config file) so
// that both modes share one flag set and one config layout.
func runAllInOne(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, defaults, logger, err := app.Parse[app.AllInOneConfig]("lokilab run", args, stderr)
	if err != nil {
		return err
	}
	if cfg.Processes.Enabled {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		return app.RunProcesses(ctx, *cfg, defaults, logger, exe, stdout, stderr)
	}
	return app.RunAllInOne(ctx, *cfg, defaults, logger, stdout)
}
