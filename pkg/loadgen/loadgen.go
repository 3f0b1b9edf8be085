package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/golang/snappy"

	"github.com/lokilab/lokilab/pkg/push"
)

// Deps are what a Loadgen is given rather than configured with.
type Deps struct {
	// Transport, if set, carries every push (tests use an in-memory one).
	// By default each worker has an http.Transport of its own, so workers
	// share no connection, as separate clients would not.
	Transport http.RoundTripper
	// Progress receives the progress line every ProgressInterval; nil for
	// none.
	Progress io.Writer
	// InPlace rewrites the progress line in place with \r (for a
	// terminal) instead of writing one line per interval.
	InPlace bool
}

// Loadgen pushes load as configured. Build one with New; Run it once.
type Loadgen struct {
	cfg   Config
	deps  Deps
	run   string
	seed  uint64
	stats *stats
	acks  *ackWriter // nil without an ack log
}

// New checks cfg and prepares a run. It opens nothing yet.
func New(cfg Config, deps Deps) (*Loadgen, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Loadgen{cfg: cfg, deps: deps, seed: cfg.Seed, stats: newStats()}
	if l.seed == 0 {
		l.seed = rand.Uint64()
	}
	l.run = cfg.RunID
	if l.run == "" {
		l.run = NewRunID(rand.New(rand.NewPCG(l.seed, 0)))
	}
	return l, nil
}

// RunID is the run's ID, part of every line's identity.
func (l *Loadgen) RunID() string { return l.run }

// Run pushes until Duration has passed or ctx ends, then waits for the
// pushes in flight (they are not canceled: their answers decide what is in
// the ack log), flushes the ack log and returns the summary. The error is
// about the run itself (the ack log could not be written), never about
// pushes the target refused: those are in the summary.
func (l *Loadgen) Run(ctx context.Context) (Summary, error) {
	start := time.Now()
	if l.cfg.AckLog != "" {
		a, err := openAckLog(l.cfg.AckLog, runComment(l.run, l.seed, l.cfg.URL, start))
		if err != nil {
			return Summary{}, fmt.Errorf("ack log: %w", err)
		}
		l.acks = a
	}
	pushCtx := ctx
	if l.cfg.Duration > 0 {
		var cancel context.CancelFunc
		pushCtx, cancel = context.WithTimeout(ctx, l.cfg.Duration)
		defer cancel()
	}
	// Answers of pushes in flight when the run ends are still awaited:
	// each is bounded by PushTimeout.
	sendCtx := context.WithoutCancel(ctx)
	pc := newPacer(&l.cfg, start)

	var wg sync.WaitGroup
	for i := range l.cfg.Concurrency {
		w := l.newWorker(i, pc)
		wg.Go(func() {
			w.run(pushCtx, sendCtx)
			if w.ownTransport {
				// Its connections' goroutines would otherwise linger
				// for the idle timeout.
				w.client.CloseIdleConnections()
			}
		})
	}
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		l.progress(start, stopProgress)
	}()
	wg.Wait()
	close(stopProgress)
	<-progressDone

	sum := l.stats.summary(l, time.Since(start))
	if l.acks != nil {
		if err := l.acks.close(); err != nil {
			return sum, fmt.Errorf("ack log %s: %w", l.cfg.AckLog, err)
		}
		sum.AckRecords = l.acks.records
	}
	return sum, nil
}

// progress writes the progress line every interval until stop, flushing
// the ack log with it.
func (l *Loadgen) progress(start time.Time, stop <-chan struct{}) {
	t := time.NewTicker(l.cfg.ProgressInterval)
	defer t.Stop()
	prev := l.stats.point(time.Now())
	for {
		select {
		case <-stop:
			if l.deps.Progress != nil && l.deps.InPlace {
				fmt.Fprint(l.deps.Progress, "\n")
			}
			return
		case now := <-t.C:
			if l.acks != nil {
				_ = l.acks.flush() // an error is kept and returned by close
			}
			cur := l.stats.point(now)
			if l.deps.Progress == nil {
				prev = cur
				continue
			}
			line := progressLine(now.Sub(start), prev, cur)
			if l.deps.InPlace {
				fmt.Fprintf(l.deps.Progress, "\r%s\x1b[K", line)
			} else {
				fmt.Fprintln(l.deps.Progress, line)
			}
			prev = cur
		}
	}
}

// worker is one client: it builds a push, waits for the pacer, sends it
// and waits for the answer, over and over.
type worker struct {
	l      *Loadgen
	id     int
	pacer  *pacer
	client *http.Client
	// ownTransport: the client's transport is the worker's own.
	ownTransport bool
	gen          *generator
	r            *rand.Rand
	seq          uint64
	lastTS       int64
	turn         int

	// Reused between pushes.
	req     push.Request
	entries []push.Entry
	arena   []byte
	offsets []int // where each string of the push starts in arena
	counts  []int // lines per stream
	proto   []byte
	body    []byte
	jbuf    bytes.Buffer
	ackBuf  []byte
	ackRec  AckRecord
	answer  []byte
}

func (l *Loadgen) newWorker(id int, pc *pacer) *worker {
	tr, own := l.deps.Transport, false
	if tr == nil {
		own = true
		tr = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
	}
	seed := l.seed + uint64(id)*0x9e3779b97f4a7c15
	return &worker{
		l:            l,
		id:           id,
		pacer:        pc,
		client:       &http.Client{Transport: tr, Timeout: l.cfg.PushTimeout},
		ownTransport: own,
		gen:          newGenerator(l.cfg.Shapes, int(l.cfg.LineSize), l.run, id, seed),
		r:            rand.New(rand.NewPCG(seed, 1)),
		turn:         id,
		answer:       make([]byte, 1024),
	}
}

func (w *worker) run(pushCtx, sendCtx context.Context) {
	for pushCtx.Err() == nil {
		tenantIdx := 0
		if w.l.cfg.Tenants > 0 {
			tenantIdx = w.turn % w.l.cfg.Tenants
		}
		w.turn++
		lines, size := w.build()
		if err := w.pacer.wait(pushCtx, lines, size); err != nil {
			return
		}
		w.restamp()
		w.send(sendCtx, w.l.cfg.tenantID(tenantIdx), lines, size)
	}
}

// appendStreamLabels appends the canonical label set of a tenant's k-th stream:
// an app, and a pod of it, as a Kubernetes log shipper would label them.
func appendStreamLabels(b []byte, k int) []byte {
	app := streamApps[k%len(streamApps)]
	b = append(b, `{app="`...)
	b = append(b, app...)
	b = append(b, `", env="prod", job="lokilab-load", pod="`...)
	b = append(b, app...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(k), 10)
	return append(b, `"}`...)
}

var streamApps = []string{"ingress-nginx", "checkout", "billing", "search", "auth"}

// build fills w.req with the next push: BatchLines lines over
// StreamsPerPush distinct streams (a run of consecutive stream numbers from
// a random one, wrapping around), in contiguous runs of sequence numbers
// per stream. Every tenant has the same stream names: X-Scope-OrgID tells
// them apart.
//
// Every string of the push is a slice of one string built from one buffer,
// so a push costs one allocation, not some per line.
func (w *worker) build() (lines, size int) {
	cfg := &w.l.cfg
	nStreams := min(cfg.StreamsPerPush, cfg.StreamsPerTenant, cfg.BatchLines)
	first := w.r.IntN(cfg.StreamsPerTenant)

	now := time.Now()
	w.arena = w.arena[:0]
	w.offsets = w.offsets[:0]
	w.counts = w.counts[:0]
	for i := range nStreams {
		n := cfg.BatchLines / nStreams
		if i < cfg.BatchLines%nStreams {
			n++
		}
		w.counts = append(w.counts, n)
		w.offsets = append(w.offsets, len(w.arena))
		w.arena = appendStreamLabels(w.arena, (first+i)%cfg.StreamsPerTenant)
		for range n {
			w.offsets = append(w.offsets, len(w.arena))
			w.arena, _ = w.gen.appendLine(w.arena, now, w.seq)
			w.seq++
		}
	}
	w.offsets = append(w.offsets, len(w.arena))

	all := string(w.arena)
	str := func(o int) string { return all[w.offsets[o]:w.offsets[o+1]] }
	if cap(w.entries) < cfg.BatchLines {
		w.entries = make([]push.Entry, cfg.BatchLines)
	}
	w.req.Streams = w.req.Streams[:0]
	o, e := 0, 0
	for _, n := range w.counts {
		s := push.Stream{Labels: str(o), Entries: w.entries[e : e+n : e+n]}
		o++
		for j := range s.Entries {
			s.Entries[j] = push.Entry{Line: str(o)}
			size += len(s.Entries[j].Line)
			o++
		}
		e += n
		w.req.Streams = append(w.req.Streams, s)
	}
	return cfg.BatchLines, size
}

// restamp gives the push's entries their timestamps once the pacer has let
// it go. Like a shipper's batch, the lines are spread evenly over the time
// since the worker's previous push (at most a second), the streams'
// lines interleaved, the newest at now. Each worker's timestamps strictly
// increase, so no two of its lines share one, and a stream's lines in a
// push are in order.
func (w *worker) restamp() {
	now := time.Now().UnixNano()
	n := int64(w.req.Entries())
	from := max(w.lastTS, now-int64(time.Second))
	step := max((now-from)/n, 1)
	if from+n*step < now {
		from = now - n*step
	}
	from = max(from, w.lastTS)
	ns := int64(len(w.req.Streams))
	for i := range w.req.Streams {
		es := w.req.Streams[i].Entries
		for j := range es {
			es[j].Timestamp = from + (int64(j)*ns+int64(i)+1)*step
		}
	}
	w.lastTS = from + n*step
}

// encode writes the push body with pkg/push's encoders, reusing buffers.
func (w *worker) encode() ([]byte, string, error) {
	if w.l.cfg.Encoding == "json" {
		w.jbuf.Reset()
		if err := push.EncodeJSON(&w.jbuf, &w.req); err != nil {
			return nil, "", err
		}
		return w.jbuf.Bytes(), "application/json", nil
	}
	w.proto = push.AppendProto(w.proto[:0], &w.req)
	if n := snappy.MaxEncodedLen(len(w.proto)); cap(w.body) < n {
		w.body = make([]byte, n)
	}
	w.body = snappy.Encode(w.body[:cap(w.body)], w.proto)
	return w.body, "application/x-protobuf", nil
}

func (w *worker) send(ctx context.Context, tenantID string, lines, size int) {
	body, contentType, err := w.encode()
	if err != nil {
		// Our own labels failed to encode: a bug, loud in the summary.
		w.l.stats.add(Outcome{Reason: "encode_error"}, lines, size, 0, false)
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.l.cfg.URL, bytes.NewReader(body))
	if err != nil {
		w.l.stats.add(Outcome{Reason: "bad_url"}, lines, size, 0, false)
		return
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "lokilab-load")
	if tenantID != "" {
		req.Header.Set("X-Scope-OrgID", tenantID)
	}
	start := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		w.l.stats.add(ClassifyError(err), lines, size, time.Since(start), false)
		return
	}
	n, _ := io.ReadFull(resp.Body, w.answer)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	latency := time.Since(start)
	o := Classify(resp.StatusCode, string(w.answer[:n]))
	if o.Accepted() && w.l.acks != nil {
		w.ack(tenantID)
	}
	w.l.stats.add(o, lines, size, latency, true)
}

// ack appends the push's records to the ack log: one per stream.
func (w *worker) ack(tenantID string) {
	w.ackBuf = w.ackBuf[:0]
	r := &w.ackRec
	r.Tenant, r.Run, r.Worker = tenantID, w.l.run, w.id
	seq := w.seq - uint64(w.req.Entries())
	for i := range w.req.Streams {
		s := &w.req.Streams[i]
		r.Labels, r.FirstSeq = s.Labels, seq
		r.Timestamps = r.Timestamps[:0]
		for j := range s.Entries {
			r.Timestamps = append(r.Timestamps, s.Entries[j].Timestamp)
		}
		seq += uint64(len(s.Entries))
		w.ackBuf = AppendAckRecord(w.ackBuf, r)
	}
	w.l.acks.write(w.ackBuf, len(w.req.Streams))
}
