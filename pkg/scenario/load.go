package scenario

import "context"

// Load is a load generator a scenario drives the system with. The engine
// depends on this interface only; pkg/loadgen provides the realistic one,
// and a scenario may bring its own (the tour pushes one batch by hand).
type Load interface {
	// Name identifies the load in progress lines and the report.
	Name() string
	// Start begins sending to t and returns once it runs; it sends until
	// Stop or until ctx ends.
	Start(ctx context.Context, t LoadTarget) error
	// Stop ends the load and waits for requests in flight.
	Stop(ctx context.Context) error
	// Summary is what the load measured (pushes, lines, bytes, status
	// codes, latency percentiles), for the report's figures table.
	Summary() []Figure
}

// LoadTarget is where load goes.
type LoadTarget struct {
	// PushURL is the Loki push endpoint, e.g.
	// http://127.0.0.1:3100/loki/api/v1/push.
	PushURL string
	// AuthEnabled says whether X-Scope-OrgID is required; without auth
	// every push is tenant "fake".
	AuthEnabled bool
	// Dir is the report directory: where a load writes its files (an ack
	// log named *.acks). Empty outside a run.
	Dir string
	// Sampler, if set, is the run's sampler: a load may Record what its
	// client saw (pushes by outcome, latency) as series to plot.
	Sampler *Sampler
}
