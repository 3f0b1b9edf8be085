package main

import (
	"context"
	"io"

	"github.com/lokilab/lokilab/pkg/app"
)

// The components as subcommands, with the same flags and config files as
// cmd/distributor, cmd/ingester, cmd/querier and cmd/compactor: one binary
// is enough for the whole lab, which is what `lokilab run -processes`
// starts as its children.

func distributorCommand(ctx context.Context, args []string, _, stderr io.Writer) error {
	return app.Main(ctx, "lokilab distributor", args, stderr, app.RunDistributor)
}

func ingesterCommand(ctx context.Context, args []string, _, stderr io.Writer) error {
	return app.Main(ctx, "lokilab ingester", args, stderr, app.RunIngester)
}

func querierCommand(ctx context.Context, args []string, _, stderr io.Writer) error {
	return app.Main(ctx, "lokilab querier", args, stderr, app.RunQuerier)
}

func compactorCommand(ctx context.Context, args []string, _, stderr io.Writer) error {
	return app.Main(ctx, "lokilab compactor", args, stderr, app.RunCompactor)
}
