package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/lokilab/lokilab/pkg/server"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// newTracing builds the process's one tracer provider from the server
// block's tracing settings (a no-op provider unless they switch it on).
// All components of the process share it: in `lokilab run` one push's spans
// from the distributor and an ingester land in the same recorder.
func newTracing(ctx context.Context, sc server.Config, service string, logger *slog.Logger) (*tracing.Provider, func(), error) {
	tp, err := tracing.New(ctx, sc.Tracing, tracing.Options{Service: service})
	if err != nil {
		return nil, nil, err
	}
	if sc.Tracing.Enabled() {
		logger.Info("tracing on", "service", service, "otlp_endpoint", sc.Tracing.OTLPEndpoint,
			"sample_ratio", sc.Tracing.SampleRatio, "recorder_spans", sc.Tracing.RecorderSpans)
	}
	stop := func() {
		// Spans still batched are exported before the process ends.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			logger.Warn("tracing shutdown incomplete", "err", err)
		}
	}
	return tp, stop, nil
}
