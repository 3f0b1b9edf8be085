package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// FlushedMetric is the sum of lokilab's histogram of entries per flushed
// chunk: the lines its ingesters have written to the object store, in
// chunks an index segment names.
const FlushedMetric = "loki_ingester_chunk_entries_sum"

// Store is how a target's accepted lines reach its object store, for a
// target that can say (lokilab).
//
// Why the benchmark asks: an acknowledged line is durable in Kafka, but
// Kafka keeps it only for its retention. The ingesters must also turn what
// they consume into chunks in the store at the rate it arrives, or their
// memory fills with chunks waiting for upload until fetching pauses and
// the Kafka lag grows. The lag check sees that only once memory is full,
// which a 30-second run may never reach; this measures the store side
// itself.
type Store struct {
	// Flushed returns the lines written to the store so far.
	Flushed func(ctx context.Context) (float64, error)
	// Flush makes every line still only in memory durable in the store,
	// and returns once it is.
	Flush func(ctx context.Context) error
	// InMemory, if set, returns the lines consumed but not yet flushed:
	// sampled during the load, it must level off (the open chunks full,
	// the full ones leaving at the rate they are cut), not keep growing.
	InMemory func(ctx context.Context) (float64, error)
}

// FlushReport is what reached a target's store.
type FlushReport struct {
	// Accepted is the lines of the pushes the target acknowledged.
	Accepted int64
	// DuringLoad is the lines the ingesters flushed while the load ran
	// (full chunks, cut as they filled, uploaded by the periodic flush).
	DuringLoad float64
	// Backlog is the lines still only in memory once the Kafka lag had
	// drained: the open chunks, and the full ones waiting for the next
	// periodic flush. FinalFlush is how long forcing them out took.
	Backlog    float64
	FinalFlush time.Duration
	// Total is every line flushed in the run. Equal to Accepted when
	// nothing was lost and nothing was stored twice.
	Total float64
	// Err is the first error reading the store's progress or flushing.
	Err error
	// InMemory is the lines consumed but not yet flushed, sampled during
	// the load and judged as the Kafka lag is (nil without
	// Store.InMemory).
	InMemory *LagReport
}

// Missing is the accepted lines the store does not hold (0 when it holds
// them all, or more).
func (f *FlushReport) Missing() float64 { return max(float64(f.Accepted)-f.Total, 0) }

// BacklogRate is the lines per second the forced flush of the backlog
// wrote: what the flush path can do when it is the only work.
func (f *FlushReport) BacklogRate() float64 {
	if f.FinalFlush <= 0 {
		return 0
	}
	return f.Backlog / f.FinalFlush.Seconds()
}

// measureFlush reads what reached the store during the load, then flushes
// the rest and reads again. flushed0 is Flushed before the load.
func measureFlush(ctx context.Context, s *Store, flushed0 float64, accepted int64) *FlushReport {
	r := &FlushReport{Accepted: accepted}
	atEnd, err := s.Flushed(ctx)
	if err != nil {
		r.Err = err
		return r
	}
	r.DuringLoad = atEnd - flushed0
	start := time.Now()
	if err := s.Flush(ctx); err != nil {
		r.Err = fmt.Errorf("flushing: %w", err)
	}
	r.FinalFlush = time.Since(start)
	final, err := s.Flushed(ctx)
	if err != nil {
		r.Err = errors.Join(r.Err, err)
		return r
	}
	r.Total = final - flushed0
	r.Backlog = final - atEnd
	return r
}

// AppendedMetric counts the lines lokilab's ingesters appended to chunks.
const AppendedMetric = "lokilab_ingester_entries_appended_total"

// IngesterStore is the Store of lokilab's ingesters at the base URLs
// given (e.g. http://127.0.0.1:3101): the lines they flushed and hold,
// summed over their /metrics, and a forced flush through each one's
// /flush.
func IngesterStore(client *http.Client, ingesters ...string) *Store {
	var metrics []string
	for _, base := range ingesters {
		metrics = append(metrics, strings.TrimSuffix(base, "/")+"/metrics")
	}
	flushed := GaugeSum(client, FlushedMetric, metrics...)
	appended := GaugeSum(client, AppendedMetric, metrics...)
	return &Store{
		Flushed: flushed,
		InMemory: func(ctx context.Context) (float64, error) {
			a, err := appended(ctx)
			if err != nil {
				return 0, err
			}
			f, err := flushed(ctx)
			return a - f, err
		},
		// A forced flush of a few GB takes longer than a scrape.
		Flush: PostFlush(&http.Client{Timeout: 5 * time.Minute}, ingesters...),
	}
}

// PostFlush returns a Flush that POSTs to each ingester's /flush (base
// URLs, e.g. http://127.0.0.1:3101) one after the other; each answers once
// its flush is done.
func PostFlush(client *http.Client, ingesters ...string) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, base := range ingesters {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(base, "/")+"/flush", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("POST %s/flush: %w", base, err)
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				return fmt.Errorf("POST %s/flush: %s: %s", base, resp.Status, strings.TrimSpace(string(b)))
			}
		}
		return nil
	}
}
