package bench

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/lokilab/lokilab/pkg/scenario"
)

// Lokilab is an in-process `lokilab run` to benchmark: the defaults a user
// gets (embedded Kafka persisted to disk, three ingesters, snappy chunks
// on the filesystem), on free ports, with the per-tenant ingestion limits
// raised so that the benchmark measures the system and not the default
// 4 MB/s rate limit.
type Lokilab struct {
	sys *scenario.System
}

// StartLokilab starts it under dataDir, logging to logw, and returns once
// every component is ready.
func StartLokilab(ctx context.Context, dataDir string, logw io.Writer) (*Lokilab, error) {
	cfg, err := scenario.LabConfig(dataDir)
	if err != nil {
		return nil, err
	}
	cfg.Limits.IngestionRateMB = 100_000
	cfg.Limits.IngestionBurstSizeMB = 100_000
	sys, err := scenario.StartInProcess(ctx, cfg, logw)
	if err != nil {
		return nil, err
	}
	return &Lokilab{sys: sys}, nil
}

// Target is the push endpoint, with the ingesters' summed Kafka lag and
// what they flushed to the store.
func (l *Lokilab) Target(name string) Target {
	var urls, ingesters []string
	for _, t := range l.sys.MetricsTargets() {
		urls = append(urls, t.URL)
	}
	for _, in := range l.sys.Ingesters {
		ingesters = append(ingesters, in.URL)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	return Target{
		Name:  name,
		URL:   l.sys.API + "/loki/api/v1/push",
		Lag:   GaugeSum(client, LagMetric, urls...),
		Store: IngesterStore(client, ingesters...),
	}
}

// Stop stops it.
func (l *Lokilab) Stop(ctx context.Context) error { return l.sys.Stop(ctx) }
