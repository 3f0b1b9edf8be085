// Package bench pushes the same load to several Loki push endpoints, one
// after the other in one run, and compares what each accepted.
//
// Why one run: the machines the lab runs on are shared and noisy, and
// absolute figures measured on different days (or minutes) cannot be
// compared. Every target here gets the same loadgen configuration — same
// seed, so the same line mix and the same labels, same workers, same batch
// and same duration — back to back, and the report gives each target's
// figures as a ratio to the first one's. What is compared is what a client
// sees: the line bytes of pushes answered 2xx per second, lines per second,
// and push latency. For lokilab a 2xx means every record of the push is
// acknowledged by Kafka (acks=all), so accepted is durable.
//
// Accepting is not the whole job: the ingesters must keep up with what
// the distributor accepted, or the Kafka lag grows until a restart replays
// for ever. For a target that exposes its ingesters' lag (Target.Lag), the
// run samples it during the load and, after the load, waits for it to
// drain: the report says the lag's peak, whether it grew over the run, and
// how long it took to reach zero. Consuming is not the end of it either:
// for a target that says what reached its object store (Target.Store),
// the run compares the lines flushed during the load with those accepted,
// forces out what is left, times that, and checks that the store holds
// every accepted line.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lokilab/lokilab/pkg/loadgen"
)

// Target is one push endpoint.
type Target struct {
	// Name labels the target in the report.
	Name string
	// URL is the push endpoint, e.g. http://127.0.0.1:3100/loki/api/v1/push
	// or VictoriaLogs' http://127.0.0.1:9428/insert/loki/api/v1/push.
	URL string
	// Lag, if set, returns the target's ingest backlog in records (for
	// lokilab: the sum over partitions of the ingesters' Kafka lag).
	Lag func(ctx context.Context) (float64, error)
	// Store, if set, says what reached the target's object store.
	Store *Store
}

// Config is a benchmark run.
type Config struct {
	// Load is the load every target gets; its URL is replaced by each
	// target's. Its Seed should be set (non-zero), so that every target
	// gets the same lines; Run picks one when it is 0.
	Load loadgen.Config
	// LagInterval is how often Lag is sampled during the load. Default 1s.
	LagInterval time.Duration
	// DrainTimeout bounds the wait for the lag to reach zero after the
	// load. Default 60s.
	DrainTimeout time.Duration
	// Pause is the time between two targets, so that one target's
	// background work (flushes) is not billed to the next. Default 2s.
	Pause time.Duration
}

// Result is what one target did.
type Result struct {
	Target  string
	Summary loadgen.Summary
	// Lag is nil for a target without a Lag function.
	Lag *LagReport
	// Flush is nil for a target without a Store.
	Flush *FlushReport
}

// AcceptedMBps is the line bytes of accepted pushes per second, in MiB.
func (r *Result) AcceptedMBps() float64 {
	return perSecond(r.Summary.Accepted.Bytes, r.Summary.Elapsed) / (1 << 20)
}

// AcceptedLinesPerSecond is the lines of accepted pushes per second.
func (r *Result) AcceptedLinesPerSecond() float64 {
	return perSecond(r.Summary.Accepted.Lines, r.Summary.Elapsed)
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// LagReport is a target's ingest backlog over the run.
type LagReport struct {
	// Samples taken during the load, and their peak.
	Samples int
	Max     float64
	// AtEnd is the lag when the load stopped.
	AtEnd float64
	// Growing is set when the lag of the last third of the load was
	// markedly above that of the middle third (more than twice it and by
	// more than GrowthSlack records): the ingesters fell behind.
	Growing bool
	// Drained is set when the lag reached zero within DrainTimeout after
	// the load, after DrainTime.
	Drained   bool
	DrainTime time.Duration
	// Err is the last error reading the lag, if any sample failed.
	Err error
}

// GrowthSlack is the lag, in records, below which a difference between
// thirds of the run is noise (a few fetches in flight).
const GrowthSlack = 5000

// Run pushes cfg.Load to every target in turn and returns their results in
// the targets' order. It stops at the first target whose load could not
// run (a bad configuration, a cancelled context); a target refusing every
// push is a result, not an error.
func Run(ctx context.Context, cfg Config, targets []Target, progress io.Writer) ([]Result, error) {
	if len(targets) == 0 {
		return nil, errors.New("bench: no target")
	}
	if cfg.LagInterval <= 0 {
		cfg.LagInterval = time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = time.Minute
	}
	if cfg.Pause <= 0 {
		cfg.Pause = 2 * time.Second
	}
	if cfg.Load.Seed == 0 {
		cfg.Load.Seed = uint64(time.Now().UnixNano()) | 1
	}
	if progress == nil {
		progress = io.Discard
	}
	var out []Result
	for i, t := range targets {
		if i > 0 {
			select {
			case <-ctx.Done():
				return out, ctx.Err()
			case <-time.After(cfg.Pause):
			}
		}
		fmt.Fprintf(progress, "bench: %s (%s) for %s, %d workers, batches of %d lines\n", t.Name, t.URL, cfg.Load.Duration, cfg.Load.Concurrency, cfg.Load.BatchLines)
		r, err := runOne(ctx, cfg, t)
		if err != nil {
			return out, fmt.Errorf("bench: %s: %w", t.Name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func runOne(ctx context.Context, cfg Config, t Target) (Result, error) {
	lc := cfg.Load
	lc.URL = t.URL
	lc.AckLog = ""
	l, err := loadgen.New(lc, loadgen.Deps{})
	if err != nil {
		return Result{}, err
	}
	var (
		lagSamples, memSamples []float64
		lagErr, memErr         error
		stop                   = make(chan struct{})
		done                   = make(chan struct{})
		flushed0               float64
	)
	if t.Store != nil {
		if flushed0, err = t.Store.Flushed(ctx); err != nil {
			return Result{}, fmt.Errorf("reading what the store holds before the load: %w", err)
		}
	}
	sample := func(f func(context.Context) (float64, error), into *[]float64, errp *error) {
		if v, err := f(ctx); err != nil {
			*errp = err
		} else {
			*into = append(*into, v)
		}
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(cfg.LagInterval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if t.Lag != nil {
					sample(t.Lag, &lagSamples, &lagErr)
				}
				if t.Store != nil && t.Store.InMemory != nil {
					sample(t.Store.InMemory, &memSamples, &memErr)
				}
			}
		}
	}()
	sum, err := l.Run(ctx)
	close(stop)
	<-done
	res := Result{Target: t.Name, Summary: sum}
	if err != nil {
		return res, err
	}
	if t.Lag != nil {
		res.Lag = judgeLag(lagSamples, lagErr)
		end, err := t.Lag(ctx)
		if err != nil {
			res.Lag.Err = err
		}
		res.Lag.AtEnd = end
		res.Lag.Drained, res.Lag.DrainTime = drain(ctx, t.Lag, cfg.DrainTimeout, cfg.LagInterval/4)
	}
	if t.Store != nil {
		var mem *LagReport
		if t.Store.InMemory != nil {
			mem = judgeLag(memSamples, memErr)
			if mem.AtEnd, err = t.Store.InMemory(ctx); err != nil {
				mem.Err = err
			}
		}
		res.Flush = measureFlush(ctx, t.Store, flushed0, sum.Accepted.Lines)
		res.Flush.InMemory = mem
	}
	return res, nil
}

// judgeLag summarises the samples taken during the load.
func judgeLag(samples []float64, err error) *LagReport {
	r := &LagReport{Samples: len(samples), Err: err}
	for _, v := range samples {
		r.Max = max(r.Max, v)
	}
	if n := len(samples); n >= 3 {
		mid, last := mean(samples[n/3:2*n/3]), mean(samples[2*n/3:])
		r.Growing = last > 2*mid && last-mid > GrowthSlack
	}
	return r
}

func mean(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := 0.0
	for _, v := range vs {
		s += v
	}
	return s / float64(len(vs))
}

// drain polls lag every interval until it reads zero or timeout passes.
func drain(ctx context.Context, lag func(context.Context) (float64, error), timeout, interval time.Duration) (bool, time.Duration) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		if v, err := lag(ctx); err == nil && v <= 0 {
			return true, time.Since(start)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false, time.Since(start)
		}
		select {
		case <-ctx.Done():
		case <-time.After(interval):
		}
	}
}
