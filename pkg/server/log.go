package server

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/lokilab/lokilab/pkg/tracing"
)

// NewLogger returns the slog logger a component logs through. logfmt is
// slog's text handler (key=value pairs), which is what Loki and Prometheus
// print too; json suits a log pipeline that ingests the lab's own logs.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	// Lines logged with a context that holds a span carry its trace_id.
	switch format {
	case "", "logfmt":
		return slog.New(tracing.LogHandler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(tracing.LogHandler(slog.NewJSONHandler(w, opts))), nil
	default:
		return nil, fmt.Errorf("log format %q: want logfmt or json", format)
	}
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
}
