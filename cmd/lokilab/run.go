package main

import (
	"context"
	"io"

	"github.com/lokilab/lokilab/pkg/app"
)

func runAllInOne(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, defaults, logger, err := app.Parse[app.AllInOneConfig]("lokilab run", args, stderr)
	if err != nil {
		return err
	}
	return app.RunAllInOne(ctx, *cfg, defaults, logger, stdout)
}
