package storage

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/exthttp"
	"github.com/thanos-io/objstore/providers/s3"
)

// Store is a component's handle on the object store.
type Store struct {
	// Bucket is what the component reads and writes through: metrics
	// around fault injection around the backend, so an injected failure
	// counts in loki_objstore_bucket_operation_failures_total exactly like
	// a real one, and injected latency shows in the duration histogram.
	// It is an InstrumentedBucket so a caller can mark expected errors
	// (bkt.WithExpectedErrs(bkt.IsObjNotFoundErr)) and keep them out of
	// the failure count.
	Bucket objstore.InstrumentedBucket
	// Faults breaks Bucket on purpose. It starts with no faults; serve it
	// over HTTP to break a running process from outside.
	Faults *FaultBucket
}

// Close releases the backend's resources.
func (s *Store) Close() error { return s.Bucket.Close() }

// New builds the configured backend and wraps it with fault injection and
// metrics (see Store.Bucket). component names the user in the metrics'
// bucket label, e.g. bucket="ingester"; reg may be nil.
//
// Metrics are registered under Loki's names, objstore's
// objstore_bucket_* with a loki_ prefix (loki_objstore_bucket_operations_total,
// ..._operation_failures_total, ..._operation_duration_seconds,
// ..._operation_transferred_bytes), so dashboards and alerts written for
// Loki work here. The fault counter is lokilab's own:
// lokilab_objstore_faults_injected_total{bucket,operation}.
//
// Building a bucket makes no network call, for S3 too: a wrong endpoint or
// credentials show up as errors on the first operation. Two Stores with the
// same component on one registry collide (an error): several instances of a
// component in one process (the all-in-one's ingesters) need names of their
// own, such as "ingester-0", or one shared Store.
func New(cfg Config, component string, reg prometheus.Registerer, logger *slog.Logger) (*Store, error) {
	backend, err := newBackend(cfg, component, logger)
	if err != nil {
		return nil, err
	}
	s, err := wrap(backend, component, reg, logger)
	if err != nil {
		return nil, err
	}
	if logger != nil {
		logger.Info("object store ready", "backend", cfg.Backend, "bucket", backend.Name(), "bucket_label", component)
	}
	return s, nil
}

// NewBucket builds the configured backend and wraps it with metrics only:
// for tools that read or write the store but have no reason to be broken
// on purpose. Components use New.
func NewBucket(cfg Config, component string, reg prometheus.Registerer, logger *slog.Logger) (objstore.Bucket, error) {
	backend, err := newBackend(cfg, component, logger)
	if err != nil {
		return nil, err
	}
	return instrument(backend, component, reg)
}

// NewInMemory returns a Store over an empty in-memory bucket, wrapped as New
// wraps every backend. It is for tests, so it panics where New would return
// an error: on a metric name collision in reg, which may be nil.
func NewInMemory(component string, reg prometheus.Registerer) *Store {
	s, err := wrap(objstore.NewInMemBucket(), component, reg, nil)
	if err != nil {
		panic(err)
	}
	return s
}

func wrap(backend objstore.Bucket, component string, reg prometheus.Registerer, logger *slog.Logger) (*Store, error) {
	var faultReg prometheus.Registerer
	if reg != nil {
		faultReg = prometheus.WrapRegistererWith(prometheus.Labels{"bucket": component}, reg)
	}
	if logger != nil {
		logger = logger.With("bucket_label", component)
	}
	faults, err := newFaultBucket(backend, rand.Uint64(), faultReg, logger)
	if err != nil {
		return nil, fmt.Errorf("storage: bucket %q: %w", component, err)
	}
	bkt, err := instrument(faults, component, reg)
	if err != nil {
		return nil, err
	}
	return &Store{Bucket: bkt, Faults: faults}, nil
}

// instrument wraps b with objstore's metrics, turning a registration
// conflict into an error instead of objstore's panic.
func instrument(b objstore.Bucket, component string, reg prometheus.Registerer) (objstore.InstrumentedBucket, error) {
	if reg == nil {
		return objstore.WrapWithMetrics(b, nil, component), nil
	}
	r := &errRegisterer{Registerer: prometheus.WrapRegistererWithPrefix("loki_", reg)}
	bkt := objstore.WrapWithMetrics(b, r, component)
	if r.err != nil {
		return nil, fmt.Errorf("storage: registering metrics for bucket %q: %w", component, r.err)
	}
	return bkt, nil
}

// errRegisterer records the first registration error where MustRegister
// would panic. objstore registers through promauto, which calls
// MustRegister.
type errRegisterer struct {
	prometheus.Registerer
	err error
}

func (r *errRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil && r.err == nil {
			r.err = err
		}
	}
}

func newBackend(cfg Config, component string, logger *slog.Logger) (objstore.Bucket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case BackendFilesystem:
		return newFilesystem(cfg.Filesystem.Dir)
	case BackendMemory:
		return objstore.NewInMemBucket(), nil
	case BackendS3:
		return newS3(cfg.S3, component, logger)
	}
	panic("unreachable: Validate accepted backend " + cfg.Backend)
}

func newS3(cfg S3Config, component string, logger *slog.Logger) (objstore.Bucket, error) {
	endpoint, _ := cfg.hostPort() // validated
	c := s3.Config{
		Bucket:    cfg.BucketName,
		Endpoint:  endpoint,
		Region:    cfg.Region,
		AccessKey: cfg.AccessKeyID,
		SecretKey: cfg.SecretAccessKey.Reveal(),
		Insecure:  cfg.insecure(),
		// objstore's defaults, spelt out because s3.DefaultConfig shares
		// its metadata map with every copy and the bucket edits it.
		PutUserMetadata:  map[string]string{},
		HTTPConfig:       exthttp.DefaultHTTPConfig,
		PartSize:         s3.DefaultConfig.PartSize,
		SendContentMd5:   true,
		BucketLookupType: s3.AutoLookup,
	}
	switch cfg.BucketLookupType {
	case "virtual-hosted":
		c.BucketLookupType = s3.VirtualHostLookup
	case "path":
		c.BucketLookupType = s3.PathLookup
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b, err := s3.NewBucketWithConfig(kitLogger{logger.With("bucket_label", component)}, c, "lokilab-"+component, nil)
	if err != nil {
		return nil, fmt.Errorf("storage: s3 bucket %q at %s: %w", cfg.BucketName, endpoint, err)
	}
	return b, nil
}

// kitLogger adapts slog to the go-kit logger objstore's S3 client logs
// through (warnings about unsized uploads, close errors).
type kitLogger struct{ l *slog.Logger }

func (k kitLogger) Log(keyvals ...any) error {
	lvl, msg := slog.LevelInfo, ""
	attrs := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		switch key {
		case "level":
			switch fmt.Sprint(keyvals[i+1]) {
			case "debug":
				lvl = slog.LevelDebug
			case "warn":
				lvl = slog.LevelWarn
			case "error":
				lvl = slog.LevelError
			}
		case "msg":
			msg = fmt.Sprint(keyvals[i+1])
		default:
			attrs = append(attrs, key, keyvals[i+1])
		}
	}
	k.l.Log(context.Background(), lvl, msg, attrs...)
	return nil
}
