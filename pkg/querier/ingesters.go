package querier

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/push"
	"github.com/lokilab/lokilab/pkg/ring"
	"github.com/lokilab/lokilab/pkg/tenant"
	"github.com/lokilab/lokilab/pkg/tracing"
)

// Ingester is one ingester the querier can ask for recent data.
type Ingester struct {
	ID   string
	Addr string // host:port of its HTTP server
}

// IngesterSet says which ingesters a query must ask, and what the querier
// already knows it will miss: every such gap becomes a warning in the
// answer, so that a partial result is never mistaken for a whole one.
type IngesterSet interface {
	Ingesters() (ingesters []Ingester, warnings []string)
}

// RingIngesters finds ingesters through the ring, for ring ownership: every
// healthy ingester is asked (each holds the partitions it owns). What the
// answer will miss is said in warnings: the partitions no healthy ACTIVE or
// LEAVING ingester owns (lines acknowledged but not yet flushed from them
// are in Kafka, waiting for an owner to replay them), including when no
// partition has an owner at all, as while every ingester restarts at once.
// A JOINING owner is not live: it is still replaying, and its answer would
// lack what it has not read yet. An ingester that died after another took
// its partitions over is no warning: the new owner replayed what the dead
// one held. Ingesters in group or static ownership do not join the ring:
// the querier asks them by address (StaticIngesters).
type RingIngesters struct{ Ring *ring.Ring }

// Ingesters implements IngesterSet.
func (r RingIngesters) Ingesters() ([]Ingester, []string) {
	var (
		out     []Ingester
		healthy = map[string]bool{}
	)
	now := time.Now()
	for _, in := range r.Ring.Instances(ring.RoleIngester) {
		if !r.Ring.IsHealthy(in, now) {
			continue
		}
		healthy[in.ID] = true
		out = append(out, Ingester{ID: in.ID, Addr: in.Addr})
	}
	var (
		orphans []string
		owners  = map[string]bool{}
	)
	for _, p := range r.Ring.Partitions() {
		if p.State != ring.PartitionActive && p.State != ring.PartitionInactive {
			continue
		}
		live := false
		for id, o := range p.Owners {
			if healthy[id] && (o.State == ring.OwnerActive || o.State == ring.OwnerLeaving) {
				live = true
			}
		}
		if !live {
			orphans = append(orphans, strconv.Itoa(int(p.ID)))
			for id, o := range p.Owners {
				why := o.State.String()
				if !healthy[id] {
					why = "unhealthy"
				}
				owners[id+" ("+why+")"] = true
			}
		}
	}
	var warnings []string
	if len(orphans) > 0 {
		last := "none"
		if len(owners) > 0 {
			last = strings.Join(sortedKeys(owners), ",")
		}
		warnings = append(warnings, fmt.Sprintf("partitions %s have no live owner (owners: %s): their lines not yet flushed are missing from this answer until an ingester takes them over",
			strings.Join(orphans, ","), last))
	}
	return out, warnings
}

// StaticIngesters is a fixed list, for tests and for ingesters that are
// not in a ring.
type StaticIngesters []Ingester

// Ingesters implements IngesterSet.
func (s StaticIngesters) Ingesters() ([]Ingester, []string) { return s, nil }

// ingesterClient asks ingesters over their HTTP recent-data API.
type ingesterClient struct {
	http    *http.Client
	timeout time.Duration
}

// IngesterStats says what asking the ingesters cost.
type IngesterStats struct {
	Reached    int // ingesters that answered in full
	LinesSent  int
	Duplicates int // identical entries removed while merging
}

// recent asks every ingester in set for tenant's streams matching lq's
// selector in [from, through), limit entries per stream in dir (0: all)
// among those lq's raw line filters keep, and merges what they send per
// stream. An ingester that fails or does not answer in time is a warning,
// not an error: the answer says it is partial. Together they may send at
// most maxBytes of lines (0: no limit); past that the read is refused,
// an error.
func (c *ingesterClient) recent(ctx context.Context, set IngesterSet, tenantID string, lq *logql.LogQuery, from, through int64, backward bool, limit int, maxBytes int64) ([]logql.StreamEntries, IngesterStats, []string, error) {
	ings, warnings := set.Ingesters()
	var (
		mu       sync.Mutex
		st       IngesterStats
		streams  = map[string]*logql.StreamEntries{}
		wg       sync.WaitGroup
		received atomic.Int64
		tooMany  atomic.Bool
	)
	v := url.Values{
		"query": {lq.String()},
		"start": {strconv.FormatInt(from, 10)},
		"end":   {strconv.FormatInt(through, 10)},
		"limit": {strconv.Itoa(limit)},
	}
	if !backward {
		v.Set("direction", "forward")
	}
	for _, ing := range ings {
		wg.Go(func() {
			got := map[string][]push.Entry{}
			lines := 0
			err := c.get(ctx, ing, "/ingester/query_recent", v, tenantID, func(body io.Reader) error {
				sc := bufio.NewScanner(body)
				sc.Buffer(make([]byte, 0, 64<<10), 64<<20)
				for sc.Scan() {
					var line struct {
						Stream string      `json:"stream"`
						Values [][2]string `json:"values"`
						Error  string      `json:"error"`
					}
					if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
						return fmt.Errorf("bad answer line: %w", err)
					}
					if line.Error != "" {
						return errors.New(line.Error)
					}
					for _, kv := range line.Values {
						if n := received.Add(int64(len(kv[1]))); maxBytes > 0 && n > maxBytes {
							tooMany.Store(true)
							return errTooManyBytes(n, maxBytes)
						}
						ts, err := strconv.ParseInt(kv[0], 10, 64)
						if err != nil {
							return fmt.Errorf("bad timestamp %q: %w", kv[0], err)
						}
						got[line.Stream] = append(got[line.Stream], push.Entry{Timestamp: ts, Line: kv[1]})
					}
					lines += len(line.Values)
				}
				return sc.Err()
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("ingester %s (%s) could not be queried: %v: its recent lines are missing from this answer", ing.ID, ing.Addr, errCause(err)))
				return
			}
			st.Reached++
			st.LinesSent += lines
			for s, es := range got {
				se := streams[s]
				if se == nil {
					ls, err := labels.Parse(s)
					if err != nil {
						warnings = append(warnings, fmt.Sprintf("ingester %s sent a stream with bad labels %q: %v", ing.ID, s, err))
						continue
					}
					se = &logql.StreamEntries{Labels: ls}
					streams[s] = se
				}
				se.Entries = append(se.Entries, es...)
			}
		})
	}
	wg.Wait()
	if tooMany.Load() {
		return nil, st, warnings, errTooManyBytes(received.Load(), maxBytes)
	}
	out := make([]logql.StreamEntries, 0, len(streams))
	for _, se := range streams {
		out = append(out, *se)
	}
	out, st.Duplicates = mergeStreams(out)
	return out, st, warnings, nil
}

// series asks every ingester for tenant's in-memory streams matching ms.
func (c *ingesterClient) series(ctx context.Context, set IngesterSet, tenantID string, ms []*labels.Matcher, from, through int64) ([]streamStats, []string) {
	ings, warnings := set.Ingesters()
	var (
		mu  sync.Mutex
		out []streamStats
		wg  sync.WaitGroup
	)
	v := url.Values{"match": {matchersString(ms)}, "start": {strconv.FormatInt(from, 10)}, "end": {strconv.FormatInt(through, 10)}}
	for _, ing := range ings {
		wg.Go(func() {
			var got []streamStats
			err := c.get(ctx, ing, "/ingester/series", v, tenantID, func(body io.Reader) error {
				return json.NewDecoder(body).Decode(&got)
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("ingester %s (%s) could not be queried: %v: its recent streams are missing from this answer", ing.ID, ing.Addr, errCause(err)))
				return
			}
			out = append(out, got...)
		})
	}
	wg.Wait()
	return out, warnings
}

// streamStats is an ingester's /ingester/series item.
type streamStats struct {
	Stream  string `json:"stream"`
	Chunks  int    `json:"chunks"`
	Entries int    `json:"entries"`
	Bytes   int    `json:"bytes"`
}

func (c *ingesterClient) get(ctx context.Context, ing Ingester, path string, v url.Values, tenantID string, read func(io.Reader) error) (err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// One span per ingester asked; its context travels in the request's
	// traceparent, so the ingester's server span joins the query's trace.
	ctx, span := tracing.Child(ctx, "querier.ingester", attribute.String("ingester", ing.ID), attribute.String("path", path))
	defer func() { tracing.End(span, err) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ing.Addr+path+"?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set(tenant.Header, tenantID)
	tracing.Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s answered %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	return read(resp.Body)
}

// errCause drops the request URL from a client error, so that one
// ingester failing for every split interval is one warning, not one per
// interval.
func errCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// matchersString prints matchers as a selector an ingester parses back.
func matchersString(ms []*labels.Matcher) string {
	if len(ms) == 0 {
		return ""
	}
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
