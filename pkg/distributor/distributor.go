// Package distributor is the write path's front door: it accepts Loki push
// requests, validates them, rate-limits each tenant, and writes each stream
// to its Kafka partition — answering 204 only once Kafka has acknowledged
// every record of the push.
//
// # The path of one push
//
//  1. Tenant: X-Scope-OrgID (401 "no org id" when auth is on and it is
//     missing; 400 when it is not a valid ID).
//  2. Decode: JSON or snappy protobuf, gzip/deflate undone, every stage
//     bounded by max_recv_msg_size (413 past it) and charged to the
//     in-flight budget before its memory is allocated (503 past it).
//  3. Validate: labels, then entries, in Loki's order with Loki's reasons
//     and messages (validate.go). Invalid entries are dropped and counted in
//     loki_discarded_samples_total{reason}; the rest carry on.
//  4. Streams: streams that would take the tenant past
//     max_global_streams_per_user are dropped (stream_limit, streams.go);
//     the push's active streams carry on.
//  5. Admission: the records' bytes against max_inflight_push_bytes, and the
//     circuit breaker (503 at once while Kafka is known to be down).
//  6. Rate limit: the whole remaining push against the tenant's token
//     bucket (429 rate_limited, nothing written). After admission, so that
//     pushes the system refuses do not spend the tenant's tokens.
//  7. Write: each stream's records to partition ring(hash(tenant, labels)),
//     produced with acks=all and idempotence; wait for every record's
//     acknowledgement, at most kafka write_timeout.
//  8. Answer: 204; or 429 when streams were refused for the stream limit,
//     or 400 with the grouped validation errors when some entries were
//     invalid (the rest is already durable either way); or 5xx when any
//     record failed or the wait timed out.
//
// A 5xx does not mean nothing was written: some records of the push may have
// been acknowledged before another failed or the timeout hit. The client
// retries, and the duplicate lines are removed at query time by
// (timestamp, line) dedupe. That is the price of at-least-once delivery; the
// invariant kept here is the other direction: a 2xx is never sent for a line
// Kafka has not acknowledged.
package distributor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/tenant"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// Producer is the part of *kgo.Client the distributor uses. TryProduce
// fails at once when the producer's buffer is full instead of blocking, so
// a push can never wait past its deadline for buffer space.
type Producer interface {
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Deps are what the distributor needs from the rest of the process.
type Deps struct {
	Limits      tenant.LimitsSource
	RateLimiter *tenant.RateLimiter
	Producer    Producer
	Partitions  PartitionRing
	// Kafka supplies the write timeout and the record size limit.
	Kafka       kafka.Config
	AuthEnabled bool
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
	// Now is the clock for timestamp validation and rate limiting; nil
	// means time.Now.
	Now func() time.Time
	// TracerProvider makes the push's spans (decode, validate, produce);
	// nil means none. Its context is what the records' traceparent
	// header carries (pkg/tracing).
	TracerProvider trace.TracerProvider
}

// Distributor handles pushes. It is safe for concurrent use.
type Distributor struct {
	cfg    Config
	deps   Deps
	now    func() time.Time
	log    *slog.Logger
	tracer trace.Tracer

	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]

	inflightBytes atomic.Int64
	metrics       *metrics
	streams       *streamTracker
}

// New returns a distributor.
func New(cfg Config, deps Deps) (*Distributor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Limits == nil || deps.RateLimiter == nil || deps.Producer == nil || deps.Partitions == nil {
		return nil, errors.New("distributor: Limits, RateLimiter, Producer and Partitions are required")
	}
	if err := deps.Kafka.Validate(); err != nil {
		return nil, err
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Registerer == nil {
		deps.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	d := &Distributor{cfg: cfg, deps: deps, now: deps.Now, log: deps.Logger, metrics: m,
		tracer:  tracing.OrNoop(deps.TracerProvider).Tracer("lokilab/distributor"),
		streams: newStreamTracker(cfg.StreamIdleTimeout, m.activeStreams)}
	m.inflightLimit.Set(float64(cfg.MaxInflightPushBytes))
	m.inflight.Set(0)
	if cfg.Breaker.Enabled {
		d.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        "kafka",
			MaxRequests: uint32(cfg.Breaker.HalfOpenRequests),
			Timeout:     cfg.Breaker.OpenTimeout,
			// A push refused by the rate limiter after the breaker let it
			// through says nothing about Kafka.
			IsExcluded: func(err error) bool { return errors.Is(err, errRateLimited) },
			ReadyToTrip: func(c gobreaker.Counts) bool {
				return c.ConsecutiveFailures >= uint32(cfg.Breaker.ConsecutiveFailures)
			},
			OnStateChange: func(_ string, from, to gobreaker.State) {
				m.breakerState.Set(float64(to))
				m.breakerTransitions.WithLabelValues(to.String()).Inc()
				d.log.Warn("kafka circuit breaker changed state", "from", from.String(), "to", to.String())
			},
		})
	}
	m.breakerState.Set(float64(gobreaker.StateClosed))
	return d, nil
}

// Run removes idle tenants' rate-limit buckets and idle streams from the
// stream limit's count until ctx is done.
func (d *Distributor) Run(ctx context.Context) error {
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.streams.sweep(d.now())
			}
		}
	}()
	return d.deps.RateLimiter.Run(ctx, time.Minute)
}

// ServeHTTP is the push endpoint, POST /loki/api/v1/push.
func (d *Distributor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tenantID, err := tenant.FromRequest(r, d.deps.AuthEnabled)
	if err != nil {
		if errors.Is(err, tenant.ErrNoOrgID) {
			http.Error(w, err.Error(), http.StatusUnauthorized)
		} else {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
		return
	}
	// The server span (pkg/server) is the parent; the client's
	// traceparent, if any, is its parent in turn. Served without that
	// middleware, the client's traceparent is read here.
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = tracing.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	ctx, span := d.tracer.Start(ctx, "distributor.push", trace.WithAttributes(attribute.String("tenant", tenantID)))
	defer span.End()
	// The request's memory is charged to the in-flight budget stage by
	// stage, before it is allocated where the size is known, and released
	// when the push is answered.
	b := &budget{d: d}
	defer b.release()
	_, dspan := d.tracer.Start(ctx, "distributor.decode")
	req, wire, err := push.ReadRequest(r, push.ReadOptions{MaxBytes: int(d.cfg.MaxRecvMsgSize), Reserve: b.reserve})
	dspan.SetAttributes(attribute.Int("bytes", wire))
	dspan.End()
	d.metrics.wireBytes.WithLabelValues(tenantID).Add(float64(wire))
	if err != nil {
		var he *Error
		switch {
		case errors.As(err, &he):
			http.Error(w, he.Msg, he.Status)
		case errors.Is(err, push.ErrTooLarge):
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		default:
			http.Error(w, "error parsing push request: "+err.Error(), http.StatusBadRequest)
		}
		return
	}
	// The server's write deadline started when the headers arrived, so a
	// slow upload has eaten into it. Give the answer its own deadline,
	// long enough for the Kafka wait, or a slow client would lose its 204
	// or 503 to a closed connection and retry a push that was stored.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d.deps.Kafka.WriteTimeout + 5*time.Second))
	if err := d.push(ctx, tenantID, req, b); err != nil {
		var he *Error
		if errors.As(err, &he) {
			span.SetAttributes(attribute.Int("http.response.status_code", he.Status))
			http.Error(w, he.Msg, he.Status)
			return
		}
		span.SetStatus(codes.Error, err.Error())
		d.log.ErrorContext(ctx, "push failed", "tenant", tenantID, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Error is a push failure with the HTTP status it is answered with.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Status, e.Msg) }

func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// Push validates, rate-limits and writes one push for tenantID, already
// decoded. A nil error means every valid entry is acknowledged by Kafka and
// nothing was invalid; an *Error carries the status to answer with
// otherwise. Push filters req's entries in place (and sorts their
// structured metadata): req belongs to the distributor from here on.
func (d *Distributor) Push(tenantID string, req *push.Request, traceparent string) error {
	b := &budget{d: d}
	defer b.release()
	return d.push(tracing.ContextWithTraceparent(context.Background(), traceparent), tenantID, req, b)
}

func (d *Distributor) push(ctx context.Context, tenantID string, req *push.Request, b *budget) error {
	if len(req.Streams) == 0 {
		return errorf(http.StatusUnprocessableEntity, "error at least one valid stream is required for ingestion")
	}
	now := d.now()
	d.metrics.countReceived(tenantID, req)
	lim := d.deps.Limits.For(tenantID)
	_, vspan := d.tracer.Start(ctx, "distributor.validate")
	v := validate(req, lim, now, d.deps.Kafka.ProducerMaxRecordSizeBytes)
	vspan.SetAttributes(attribute.Int("streams", len(v.streams)), attribute.Int("lines", v.lines))
	vspan.End()
	d.metrics.countDiscards(tenantID, &v.discards)

	if v.lines == 0 {
		if !v.errs.empty() {
			return errorf(http.StatusBadRequest, "%s", v.errs.String())
		}
		return nil // streams without entries: nothing to store
	}
	refused := d.limitStreams(tenantID, v, lim.MaxGlobalStreamsPerUser, now)
	if v.lines > 0 {
		if err := d.write(ctx, tenantID, v, b, now); err != nil {
			return err
		}
	}
	d.metrics.linesAcked.WithLabelValues(tenantID).Add(float64(v.lines))
	d.metrics.bytesAcked.WithLabelValues(tenantID).Add(float64(v.bytes))
	if refused > 0 {
		// 429, not 400: the same streams succeed once others go idle.
		return errorf(http.StatusTooManyRequests,
			"Maximum active stream limit exceeded when trying to create %d new streams, reduce the number of active streams (reduce labels or reduce label values), or contact your Loki administrator to see if the limit can be increased, user: '%s' (limit: %d)",
			refused, tenantID, lim.MaxGlobalStreamsPerUser)
	}
	if !v.errs.empty() {
		return errorf(http.StatusBadRequest, "%s", v.errs.String())
	}
	return nil
}

// limitStreams removes from v the streams that would take the tenant past
// its active stream limit, counting them as stream_limit discards, and
// returns how many it removed. The rest of the push is still written: its
// streams are already active, and holding them back would only make the
// client retry lines that were fine.
func (d *Distributor) limitStreams(tenantID string, v *validated, limit int, now time.Time) (refused int) {
	if limit <= 0 {
		return 0
	}
	fps := make([]uint64, len(v.streams))
	for i := range v.streams {
		fps[i] = streamFingerprint(v.streams[i].Labels)
	}
	ok := d.streams.admit(tenantID, fps, limit, now, make([]bool, 0, len(fps)))
	var ds discards
	kept := v.streams[:0]
	for i := range v.streams {
		s := v.streams[i]
		if ok[i] {
			kept = append(kept, s)
			continue
		}
		refused++
		bytes := entriesSize(s.Entries)
		ds.add(reasonStreamLimit, len(s.Entries), bytes)
		v.lines -= len(s.Entries)
		v.bytes -= bytes
	}
	v.streams = kept
	d.metrics.countDiscards(tenantID, &ds)
	return refused
}

// errRateLimited tells the breaker that a push was refused before Kafka was
// tried: it is neither a success nor a failure of Kafka.
var errRateLimited = errors.New("rate limited")

// write encodes the validated streams into records, admits them (in-flight
// bytes, breaker), charges the tenant's rate limit, produces them and waits
// for Kafka's answer on every record, at most the write timeout.
//
// Admission comes before the rate limit on purpose: a push refused because
// the distributor or Kafka cannot take it does not spend the tenant's
// tokens, so clients retrying through an outage do not find their buckets
// empty when it ends. (Pushes that pass admission and then fail in Kafka do
// spend them; the breaker bounds how many.)
func (d *Distributor) write(ctx context.Context, tenantID string, v *validated, b *budget, now time.Time) (werr error) {
	// The produce span lasts until Kafka has answered for every record;
	// its context is what the records carry, so the ingester's spans hang
	// under it. One traceparent per push, computed once.
	ctx, span := d.tracer.Start(ctx, "kafka.produce", trace.WithSpanKind(trace.SpanKindProducer))
	defer func() {
		if werr != nil {
			span.SetStatus(codes.Error, werr.Error())
		}
		span.End()
	}()
	traceparent := ""
	if d.cfg.TracePropagation {
		traceparent = tracing.Traceparent(ctx)
	}
	records := make([]*kgo.Record, 0, len(v.streams))
	for i := range v.streams {
		s := &v.streams[i]
		p, err := d.deps.Partitions.PartitionFor(StreamToken(tenantID, s.Labels))
		if err != nil {
			d.metrics.pushFailures.WithLabelValues("no_partition").Inc()
			return errorf(http.StatusServiceUnavailable, "no partition for stream %s: %v", s.Labels, err)
		}
		records, err = kafka.EncodeStream(records, kafka.RecordSpec{
			Tenant:        tenantID,
			Partition:     p,
			Traceparent:   traceparent,
			MaxValueBytes: d.deps.Kafka.ProducerMaxRecordSizeBytes,
		}, s)
		if err != nil {
			// validate() rejected every entry that could not fit.
			return fmt.Errorf("encoding records: %w", err)
		}
	}
	size := 0
	for _, r := range records {
		size += len(r.Value)
	}
	span.SetAttributes(attribute.Int("records", len(records)), attribute.Int("bytes", size))

	// Admission. The records' bytes are charged apart from the request's:
	// they stay in the producer until Kafka answers, which may be after
	// the push has been answered (on timeout).
	if !d.reserve(size, b.held) {
		d.metrics.pushFailures.WithLabelValues("inflight_limit").Inc()
		return errInflightLimit(d.cfg.MaxInflightPushBytes)
	}
	report := func(error) {}
	if d.breaker != nil {
		done, err := d.breaker.Allow()
		if err != nil {
			d.release(size)
			d.metrics.pushFailures.WithLabelValues("breaker_open").Inc()
			return errorf(http.StatusServiceUnavailable, "Kafka writes are failing; circuit breaker is %s, push rejected without trying: %v", d.breaker.State(), err)
		}
		var once sync.Once
		report = func(err error) { once.Do(func() { done(err) }) }
	}

	// The tenant pays.
	if !d.deps.RateLimiter.AllowN(now, tenantID, v.bytes) {
		d.release(size)
		report(errRateLimited)
		var ds discards
		ds.add(reasonRateLimited, v.lines, v.bytes)
		d.metrics.countDiscards(tenantID, &ds)
		limit, _ := d.deps.RateLimiter.Limit(tenantID)
		return errorf(http.StatusTooManyRequests,
			"Ingestion rate limit exceeded for user %s (limit: %d bytes/sec) while attempting to ingest '%d' lines totaling '%d' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
			tenantID, int(limit), v.lines, v.bytes)
	}

	w := &pendingWrite{remaining: len(records), done: make(chan struct{})}
	start := time.Now()
	// Records are produced under a context that no client controls: franz-go
	// fails every record buffered in a partition when the first record's
	// context is canceled, so a request context would let one disconnecting
	// client fail other clients' pushes. The write timeout bounds the wait
	// below. It does not bound the records: once sent, an idempotent
	// producer cannot drop them until the broker answers, however long that
	// takes. Their bytes stay charged to the in-flight budget until then,
	// which is what keeps a stalled Kafka from growing memory (ADR 5).
	for _, r := range records {
		d.deps.Producer.TryProduce(context.Background(), r, func(_ *kgo.Record, err error) {
			last, late := w.finish(err)
			if !last {
				return
			}
			// Every record answered: the bytes have left the producer.
			d.release(size)
			if late {
				// The push was answered 503 on timeout before Kafka
				// answered. A late success is a line the client was told
				// failed and will likely send again: a duplicate for
				// query-time dedupe to remove.
				d.metrics.lateWrites.WithLabelValues(resultLabel(w.firstErr)).Inc()
			}
			report(w.firstErr)
		})
	}

	timer := time.NewTimer(d.deps.Kafka.WriteTimeout)
	defer timer.Stop()
	select {
	case <-w.done:
	case <-timer.C:
		if w.abandon() {
			report(context.DeadlineExceeded)
			d.metrics.writeDuration.WithLabelValues("timeout").Observe(time.Since(start).Seconds())
			d.metrics.pushFailures.WithLabelValues("kafka_timeout").Inc()
			return errorf(http.StatusServiceUnavailable, "timed out after %s waiting for Kafka to acknowledge the push", d.deps.Kafka.WriteTimeout)
		}
		// Kafka answered for the last record as the timer fired.
	}
	err := w.firstErr // safe: written before done was closed
	d.metrics.writeDuration.WithLabelValues(resultLabel(err)).Observe(time.Since(start).Seconds())
	if err != nil {
		label := "kafka_error"
		if errors.Is(err, kgo.ErrMaxBuffered) {
			label = "producer_buffer_full"
		}
		d.metrics.pushFailures.WithLabelValues(label).Inc()
		return errorf(http.StatusServiceUnavailable, "writing to Kafka failed: %v", err)
	}
	return nil
}

// pendingWrite tracks one push's records until Kafka has answered for all of
// them, and whether the push was answered (on timeout) before that.
type pendingWrite struct {
	done chan struct{} // closed when every record is answered

	mu        sync.Mutex
	remaining int
	firstErr  error
	completed bool // every record answered
	abandoned bool // the push was answered before every record was
}

// finish records one record's outcome. It reports whether it was the last
// record, and if so whether the push had already been abandoned.
func (w *pendingWrite) finish(err error) (last, late bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil && w.firstErr == nil {
		w.firstErr = err
	}
	if w.remaining--; w.remaining > 0 {
		return false, false
	}
	w.completed = true
	close(w.done)
	return true, w.abandoned
}

// abandon marks the push as answered before Kafka answered for all its
// records; it returns false if Kafka had in fact answered for all of them.
func (w *pendingWrite) abandon() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.completed {
		return false
	}
	w.abandoned = true
	return true
}

func resultLabel(err error) string {
	if err != nil {
		return "failure"
	}
	return "success"
}

// reserve admits n more bytes for a push already holding own bytes if
// they fit under the in-flight limit, or if the push is alone in flight: a
// push larger than the whole budget must still be able to succeed when
// nothing else is running, or its client would retry it forever
// (max_recv_msg_size is what bounds a single push).
func (d *Distributor) reserve(n, own int) bool {
	limit := int64(d.cfg.MaxInflightPushBytes)
	for {
		cur := d.inflightBytes.Load()
		if limit > 0 && cur+int64(n) > limit && cur > int64(own) {
			return false
		}
		if d.inflightBytes.CompareAndSwap(cur, cur+int64(n)) {
			d.metrics.inflight.Add(float64(n))
			return true
		}
	}
}

func (d *Distributor) release(n int) {
	d.inflightBytes.Add(-int64(n))
	d.metrics.inflight.Sub(float64(n))
}

// budget is one request's share of the in-flight bytes: what its body,
// decompression and decoding hold until it is answered.
type budget struct {
	d    *Distributor
	held int
}

func (b *budget) reserve(n int) error {
	if !b.d.reserve(n, b.held) {
		b.d.metrics.pushFailures.WithLabelValues("inflight_limit").Inc()
		return errInflightLimit(b.d.cfg.MaxInflightPushBytes)
	}
	b.held += n
	return nil
}

func (b *budget) release() {
	b.d.release(b.held)
	b.held = 0
}

func errInflightLimit(limit config.ByteSize) *Error {
	return errorf(http.StatusServiceUnavailable,
		"distributor has too many push bytes in flight (limit %s): Kafka or the distributor is not keeping up; retry with backoff", limit)
}

// InflightBytes is the push bytes currently held: requests being decoded
// and answered, and records awaiting Kafka.
func (d *Distributor) InflightBytes() int64 { return d.inflightBytes.Load() }

// BreakerState is the circuit breaker's state: closed, half-open or open
// ("disabled" without a breaker).
func (d *Distributor) BreakerState() string {
	if d.breaker == nil {
		return "disabled"
	}
	return d.breaker.State().String()
}
