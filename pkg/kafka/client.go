// Package kafka connects lokilab to its write-ahead log: a Kafka topic
// whose records are tenants' streams.
//
// The distributor writes each validated stream as one or more records
// (RECORD.md describes the layout byte by byte); ingesters read them back
// with DecodeRecord. Producer settings are chosen for durability first: acks
// from all in-sync replicas, idempotence on (so broker retries never
// duplicate a record), and a delivery timeout tied to the push's write
// timeout so nothing waits forever.
//
// The package also runs an embedded broker (Broker) on franz-go's kfake,
// persisted to a data directory, so the lab needs no Kafka installation; the
// same client code talks to a real Kafka in docker compose and beyond.
package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// NewWriterClient returns a producer client for the distributor. Records
// must carry their partition (the distributor chooses it from the ring), so
// the client uses the manual partitioner. reg receives kprom's metrics as
// loki_kafka_client_*; it may be nil.
func NewWriterClient(cfg Config, reg prometheus.Registerer, logger *slog.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := append(commonOpts(cfg, "distributor", reg, logger),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cfg.ProducerLinger),
		kgo.MaxBufferedBytes(int(cfg.ProducerMaxBufferedBytes)),
		// Bytes are the bound that matters (and the distributor's
		// in-flight budget sits in front of it); franz-go's default cap
		// of 50k records would refuse pushes of many small streams.
		kgo.MaxBufferedRecords(math.MaxInt),
		kgo.ProducerBatchMaxBytes(producerBatchMaxBytes),
		// A record not yet sent is failed after this long (franz-go's
		// minimum is 1s); one already sent waits for the broker's answer,
		// because failing it would break the idempotent sequence.
		kgo.RecordDeliveryTimeout(max(cfg.WriteTimeout, time.Second)),
	)
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: new writer client: %w", err)
	}
	return cl, nil
}

func commonOpts(cfg Config, component string, reg prometheus.Registerer, logger *slog.Logger) []kgo.Opt {
	clientID := cfg.ClientID
	if clientID == "" {
		clientID = "lokilab-" + component
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers()...),
		kgo.ClientID(clientID),
		kgo.DialTimeout(cfg.DialTimeout),
		// A failed request triggers a metadata refresh, but franz-go waits
		// until the last refresh is this old (5s by default): after a
		// broker restart, every produce would stall that long before the
		// client looks for the broker again. Refreshes triggered by errors
		// are the only ones this speeds up; periodic ones stay at
		// MetadataMaxAge (5m).
		kgo.MetadataMinAge(500 * time.Millisecond),
	}
	if logger != nil {
		opts = append(opts, kgo.WithLogger(kgoLogger{logger.With("component", "kafka-client")}))
	}
	if reg != nil {
		m := kprom.NewMetrics("loki",
			kprom.Subsystem("kafka_client"),
			kprom.Registerer(reg),
			kprom.FetchAndProduceDetail(kprom.ByNode, kprom.Batches, kprom.Records, kprom.CompressedBytes, kprom.UncompressedBytes),
		)
		opts = append(opts, kgo.WithHooks(m))
	}
	return opts
}

// Ping checks that a broker answers a metadata request: the readiness
// check of components that need Kafka.
func Ping(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}
