package querier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// Loki's wording for the refusals a client may want to recognise.
const (
	errTimeout          = "request timed out, decrease the duration of the request or add more label matchers (prefer exact match over regex match) to reduce the amount of data processed"
	errCanceled         = "the request was cancelled by the client"
	errInstantLogQuery  = "log queries are not supported as an instant query type, please change your query to a range query type"
	errNeedMatcher      = `parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~".*" does not meet this requirement, but app=~".+" will`
	errQueryingDisabled = "querying is disabled, please contact your Loki operator"
)

// StatusClientClosedRequest is nginx's (and Loki's) status for a request
// the client gave up on.
const StatusClientClosedRequest = 499

// httpError is an error with the status it is answered with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// Register adds the query API's routes through handle (a server's Handle).
func (q *Querier) Register(handle func(pattern string, h http.Handler)) {
	for _, m := range []string{"GET", "POST"} {
		handle(m+" /loki/api/v1/query", q.handler(q.serveInstant))
		handle(m+" /loki/api/v1/query_range", q.handler(q.serveRange))
		handle(m+" /loki/api/v1/series", q.handler(q.serveSeries))
	}
	handle("GET /loki/api/v1/labels", q.handler(q.serveLabels))
	handle("GET /loki/api/v1/label/{name}/values", q.handler(q.serveLabelValues))
	handle("GET /loki/api/v1/index/stats", q.handler(q.serveIndexStats))
	handle("GET /loki/api/v1/tail", http.HandlerFunc(q.serveTail))
}

// request is what every query handler starts from.
type request struct {
	*http.Request
	tenants []string
	limits  *tenant.Limits
	st      Stats
	w       warnings
}

// handler wraps a query API handler: tenants, the tenant's timeout, and
// errors turned into Loki's statuses. The handler returns the response's
// data (written as {"status":"success","data":…}) or an error.
func (q *Querier) handler(serve func(ctx context.Context, r *request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, hr *http.Request) {
		start := time.Now()
		tenants, ok := q.requestTenants(w, hr)
		if !ok {
			return
		}
		if err := hr.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r := &request{Request: hr, tenants: tenants, limits: q.queryLimits(tenants)}
		if r.limits.MaxQueryParallelism == 0 {
			http.Error(w, errQueryingDisabled, http.StatusBadRequest)
			return
		}
		ctx := hr.Context()
		if t := time.Duration(r.limits.QueryTimeout); t > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, t)
			defer cancel()
		}
		data, err := serve(ctx, r)
		if err != nil {
			var he *httpError
			switch {
			case errors.As(err, &he):
				http.Error(w, he.msg, he.code)
			case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil && hr.Context().Err() == nil:
				http.Error(w, errTimeout, http.StatusGatewayTimeout)
			case errors.Is(err, context.Canceled) && hr.Context().Err() != nil:
				http.Error(w, errCanceled, StatusClientClosedRequest)
			default:
				q.logger.Error("query failed", "path", hr.URL.Path, "query", hr.Form.Get("query"), "err", err)
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
			return
		}
		r.st.ExecTime = time.Since(start)
		if len(r.w.list) > 0 {
			q.metrics.partial.Inc()
		}
		if qr, ok := data.(*queryData); ok {
			qr.Stats = newStatsJSON(&r.st)
		}
		w.Header().Set("Content-Type", "application/json")
		if is, ok := data.(*indexStatsJSON); ok {
			is.Warnings = r.w.list
			if err := json.NewEncoder(w).Encode(is); err != nil {
				q.logger.Debug("writing query response", "err", err)
			}
			return
		}
		resp := struct {
			Status   string   `json:"status"`
			Data     any      `json:"data"`
			Warnings []string `json:"warnings,omitempty"`
		}{"success", data, r.w.list}
		if err := json.NewEncoder(w).Encode(resp); err != nil {
			q.logger.Debug("writing query response", "err", err)
		}
	})
}

// requestTenants reads the request's tenants, answering 401 (no org id)
// or 400 itself when it cannot.
func (q *Querier) requestTenants(w http.ResponseWriter, r *http.Request) ([]string, bool) {
	tenants, err := q.tenants(r)
	switch {
	case errors.Is(err, tenant.ErrNoOrgID):
		http.Error(w, err.Error(), http.StatusUnauthorized)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	}
	return tenants, err == nil
}

// tenants reads X-Scope-OrgID: one tenant, or several separated by '|'
// when multi-tenant queries are enabled.
func (q *Querier) tenants(r *http.Request) ([]string, error) {
	if !q.auth {
		return []string{tenant.DefaultTenant}, nil
	}
	h := r.Header.Get(tenant.Header)
	if !strings.Contains(h, "|") {
		id, err := tenant.FromRequest(r, true)
		return []string{id}, err
	}
	if !q.cfg.MultiTenantQueriesEnabled {
		return nil, errors.New("multiple org IDs present: multi-tenant queries are disabled (querier.multi-tenant-queries-enabled)")
	}
	ids := strings.Split(h, "|")
	for _, id := range ids {
		if id == "" {
			// Malformed, not missing: a 400, not no org id's 401.
			return nil, fmt.Errorf("empty tenant ID in %s %q", tenant.Header, h)
		}
		if err := tenant.ValidateID(id); err != nil {
			return nil, err
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// queryData is /query's and /query_range's data.
type queryData struct {
	ResultType string    `json:"resultType"`
	Result     any       `json:"result"`
	Stats      statsJSON `json:"stats"`
}

type streamJSON struct {
	Stream map[string]string `json:"stream"`
	Values [][2]string       `json:"values"`
}

type matrixJSON struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

type vectorJSON struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (q *Querier) serveInstant(ctx context.Context, r *request) (any, error) {
	expr, err := parseQuery(r.Form.Get("query"))
	if err != nil {
		return nil, err
	}
	if _, ok := expr.(*logql.LogQuery); ok {
		return nil, badRequest(errInstantLogQuery)
	}
	t, err := parseTime(r.Form.Get("time"), q.now())
	if err != nil {
		return nil, badRequest("invalid parameter \"time\": %v", err)
	}
	series, err := q.selectSamples(ctx, r, MetricQuery{Expr: expr, Start: t, End: t})
	if err != nil {
		return nil, err
	}
	result := make([]vectorJSON, 0, len(series))
	for _, s := range series {
		for _, p := range s.Samples {
			result = append(result, vectorJSON{Metric: s.Labels.Map(), Value: [2]any{unixSeconds(p.T), formatValue(p.V)}})
		}
	}
	return &queryData{ResultType: "vector", Result: result}, nil
}

func (q *Querier) serveRange(ctx context.Context, r *request) (any, error) {
	expr, err := parseQuery(r.Form.Get("query"))
	if err != nil {
		return nil, err
	}
	start, end, err := q.rangeParams(r)
	if err != nil {
		return nil, err
	}
	if lq, ok := expr.(*logql.LogQuery); ok {
		limit, backward, err := logParams(r)
		if err != nil {
			return nil, err
		}
		streams, err := q.SelectLogs(ctx, r.tenants, LogQuery{Query: lq, From: start.UnixNano(), Through: end.UnixNano(), Backward: backward, Limit: limit}, &r.st, &r.w)
		q.metrics.observe(r.tenants, "log", &r.st, len(r.w.list) > 0, err)
		if err != nil {
			return nil, err
		}
		result := make([]streamJSON, len(streams))
		for i, s := range streams {
			result[i] = streamJSON{Stream: s.Labels.Map(), Values: make([][2]string, len(s.Entries))}
			for j, e := range s.Entries {
				result[i].Values[j] = [2]string{strconv.FormatInt(e.Timestamp, 10), e.Line}
			}
		}
		return &queryData{ResultType: "streams", Result: result}, nil
	}
	step, err := stepParam(r, start, end)
	if err != nil {
		return nil, err
	}
	series, err := q.selectSamples(ctx, r, MetricQuery{Expr: expr, Start: start, End: end, Step: step})
	if err != nil {
		return nil, err
	}
	result := make([]matrixJSON, len(series))
	for i, s := range series {
		result[i] = matrixJSON{Metric: s.Labels.Map(), Values: make([][2]any, len(s.Samples))}
		for j, p := range s.Samples {
			result[i].Values[j] = [2]any{unixSeconds(p.T), formatValue(p.V)}
		}
	}
	return &queryData{ResultType: "matrix", Result: result}, nil
}

func (q *Querier) selectSamples(ctx context.Context, r *request, mq MetricQuery) ([]logql.Series, error) {
	if err := checkLookback(r.limits, mq); err != nil {
		return nil, err
	}
	series, err := q.SelectSamples(ctx, r.tenants, mq, &r.st, &r.w)
	if err == nil && r.limits.MaxQuerySeries > 0 && len(series) > r.limits.MaxQuerySeries {
		err = badRequest("maximum number of series (%d) reached for a single query; consider reducing query cardinality by adding more specific stream selectors, reducing the time range, or aggregating results with functions like sum(), count() or topk()", r.limits.MaxQuerySeries)
	}
	q.metrics.observe(r.tenants, "metric", &r.st, len(r.w.list) > 0, err)
	return series, err
}

// parseQuery parses a query and checks that each of its selectors narrows
// the streams down: a selector every stream matches would read a tenant's
// whole store.
func parseQuery(s string) (logql.Expr, error) {
	if strings.TrimSpace(s) == "" {
		return nil, badRequest("parse error : query is empty: give a LogQL query in the query parameter")
	}
	expr, err := logql.Parse(s)
	switch {
	case errors.Is(err, logql.ErrEmptyCompatibleSelector):
		return nil, badRequest(errNeedMatcher) // the words Loki's clients know
	case err != nil:
		return nil, badRequest("%v", err)
	}
	return expr, nil
}

func checkMatchers(ms []*labels.Matcher) error {
	for _, m := range ms {
		if !m.Matches("") {
			return nil
		}
	}
	return badRequest(errNeedMatcher)
}

// rangeParams reads start, end and since with Loki's defaults (the last
// hour) and checks the range against max_query_length.
func (q *Querier) rangeParams(r *request) (start, end time.Time, err error) {
	now := q.now()
	if end, err = parseTime(r.Form.Get("end"), now); err != nil {
		return start, end, badRequest("invalid parameter \"end\": %v", err)
	}
	since := time.Hour
	if s := r.Form.Get("since"); s != "" {
		if since, err = parseDuration(s); err != nil {
			return start, end, badRequest("invalid parameter \"since\": %v", err)
		}
	}
	if start, err = parseTime(r.Form.Get("start"), end.Add(-since)); err != nil {
		return start, end, badRequest("invalid parameter \"start\": %v", err)
	}
	return start, end, checkRange(r.limits, start, end)
}

func checkRange(lim *tenant.Limits, start, end time.Time) error {
	if end.Before(start) {
		return badRequest("invalid query, through < from (%s < %s)", end.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano))
	}
	if max := time.Duration(lim.MaxQueryLength); max > 0 && end.Sub(start) > max {
		return badRequest("the query time range exceeds the limit (query length: %s, limit: %s)", end.Sub(start), model.Duration(max))
	}
	return nil
}

// lookbackGrace is how far a metric query's longest range window may take
// the data it reads past max_query_length. Loki (since mid-2026) counts the
// window too, with a day of grace, so that 30 days of [1h] windows — what
// Grafana asks for over a 30-day dashboard — still fit the 721h default.
const lookbackGrace = 24 * time.Hour

// checkLookback refuses a metric query whose data — from start minus its
// longest range window to end — spans more than max_query_length plus
// lookbackGrace: rate({app="api"}[1000000h]) would otherwise read a
// century of index at any time range.
func checkLookback(lim *tenant.Limits, mq MetricQuery) error {
	max := time.Duration(lim.MaxQueryLength)
	if max <= 0 {
		return nil
	}
	if span := mq.End.Sub(mq.Start) + longestRange(mq.Expr); span > max+lookbackGrace {
		return badRequest("the query time range exceeds the limit (query length: %s including the range window, limit: %s)", model.Duration(span), model.Duration(max))
	}
	return nil
}

// longestRange is the longest range window ([5m]) in an expression.
func longestRange(e logql.Expr) time.Duration {
	switch e := e.(type) {
	case *logql.RangeAggregation:
		return e.Range
	case *logql.VectorAggregation:
		return longestRange(e.Inner)
	case *logql.BinaryExpr:
		return max(longestRange(e.Left), longestRange(e.Right))
	}
	return 0
}

// logParams reads limit (default 100) and direction (default backward).
func logParams(r *request) (limit int, backward bool, err error) {
	limit = 100
	if s := r.Form.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit <= 0 {
			return 0, false, badRequest("invalid parameter \"limit\": want a positive integer, got %q", s)
		}
	}
	if max := r.limits.MaxEntriesLimitPerQuery; max > 0 && limit > max {
		return 0, false, badRequest("max entries limit per query exceeded, limit > max_entries_limit_per_query (%d > %d)", limit, max)
	}
	switch strings.ToLower(r.Form.Get("direction")) {
	case "", "backward":
		backward = true
	case "forward":
	default:
		return 0, false, badRequest("invalid parameter \"direction\": want forward or backward, got %q", r.Form.Get("direction"))
	}
	return limit, backward, nil
}

// stepParam reads step, defaulting as Loki does to a resolution of about
// 250 points, and refuses more than 11,000 points.
func stepParam(r *request, start, end time.Time) (time.Duration, error) {
	step := max(time.Duration(end.Sub(start).Seconds()/250)*time.Second, time.Second)
	if s := r.Form.Get("step"); s != "" {
		var err error
		if step, err = parseDuration(s); err != nil {
			return 0, badRequest("invalid parameter \"step\": %v", err)
		}
		if step <= 0 {
			return 0, badRequest("zero or negative query resolution step widths are not accepted. Try a positive integer")
		}
	}
	if end.Sub(start)/step > maxPoints {
		return 0, badRequest("exceeded maximum resolution of %d points per timeseries. Try decreasing the query resolution (?step=XX)", maxPoints)
	}
	return step, nil
}

// parseTime reads a time as Loki does: RFC3339, Unix seconds (up to ten
// digits, or a decimal), or Unix nanoseconds.
func parseTime(s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if strings.ContainsAny(s, ".eE") && !strings.ContainsAny(s, "T") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return time.Time{}, err
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(frac*1e9))), nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if len(strings.TrimPrefix(s, "-")) <= 10 {
			return time.Unix(n, 0), nil
		}
		return time.Unix(0, n), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("cannot parse %q: want RFC3339, Unix seconds or Unix nanoseconds", s)
	}
	return t, nil
}

// parseDuration reads a Prometheus duration (5m, 1h30m) or seconds (15,
// 0.5).
func parseDuration(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("cannot parse %q: want a duration such as 15s or a number of seconds", s)
	}
	return time.Duration(d), nil
}

func unixSeconds(ms int64) json.Number {
	return json.Number(strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64))
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// metadataRange reads start and end for the label and series APIs:
// Loki's default is the last six hours.
func (q *Querier) metadataRange(r *request) (from, through int64, err error) {
	now := q.now()
	end, err := parseTime(r.Form.Get("end"), now)
	if err != nil {
		return 0, 0, badRequest("invalid parameter \"end\": %v", err)
	}
	start, err := parseTime(r.Form.Get("start"), end.Add(-6*time.Hour))
	if err != nil {
		return 0, 0, badRequest("invalid parameter \"start\": %v", err)
	}
	if err := checkRange(r.limits, start, end); err != nil {
		return 0, 0, err
	}
	// end is inclusive for metadata, as in Loki.
	return start.UnixNano(), end.UnixNano() + 1, nil
}

// selectorParam parses an optional stream selector parameter.
func selectorParam(r *request, name string) ([]*labels.Matcher, error) {
	s := r.Form.Get(name)
	if s == "" {
		return nil, nil
	}
	ms, err := labels.ParseMatchers(s)
	if err != nil {
		return nil, badRequest("invalid parameter %q: only label matchers are supported: %v", name, err)
	}
	return ms, nil
}

func (q *Querier) serveLabels(ctx context.Context, r *request) (any, error) {
	series, err := q.metadataSeries(ctx, r, "query")
	if err != nil {
		return nil, err
	}
	return labelNames(series), nil
}

func (q *Querier) serveLabelValues(ctx context.Context, r *request) (any, error) {
	name := r.PathValue("name")
	if !labels.IsValidName(name) {
		return nil, badRequest("invalid label name %q", name)
	}
	series, err := q.metadataSeries(ctx, r, "query")
	if err != nil {
		return nil, err
	}
	return labelValues(series, name), nil
}

func (q *Querier) metadataSeries(ctx context.Context, r *request, param string) ([]seriesInfo, error) {
	from, through, err := q.metadataRange(r)
	if err != nil {
		return nil, err
	}
	ms, err := selectorParam(r, param)
	if err != nil {
		return nil, err
	}
	var sets [][]*labels.Matcher
	if ms != nil {
		sets = append(sets, ms)
	}
	return q.series(ctx, r.tenants, sets, from, through, &r.w)
}

func (q *Querier) serveSeries(ctx context.Context, r *request) (any, error) {
	from, through, err := q.metadataRange(r)
	if err != nil {
		return nil, err
	}
	var sets [][]*labels.Matcher
	for _, s := range r.Form["match[]"] {
		ms, err := labels.ParseMatchers(s)
		if err != nil {
			return nil, badRequest("invalid parameter \"match[]\": only label matchers are supported: %v", err)
		}
		if err := checkMatchers(ms); err != nil {
			return nil, err
		}
		sets = append(sets, ms)
	}
	if len(sets) == 0 {
		return nil, badRequest("at least one match[] parameter is required")
	}
	series, err := q.series(ctx, r.tenants, sets, from, through, &r.w)
	if err != nil {
		return nil, err
	}
	if max := r.limits.MaxQuerySeries; max > 0 && len(series) > max {
		return nil, badRequest("maximum number of series (%d) reached for a single query; consider reducing query cardinality by adding more specific stream selectors, reducing the time range, or aggregating results with functions like sum(), count() or topk()", max)
	}
	out := make([]map[string]string, len(series))
	for i, s := range series {
		out[i] = s.labels.Map()
	}
	return out, nil
}

func (q *Querier) serveIndexStats(ctx context.Context, r *request) (any, error) {
	if r.Form.Get("query") == "" {
		return nil, badRequest("invalid parameter \"query\": a stream selector is required")
	}
	series, err := q.metadataSeries(ctx, r, "query")
	if err != nil {
		return nil, err
	}
	st := totalStats(series)
	return &indexStatsJSON{Streams: st.Streams, Chunks: st.Chunks, Entries: st.Entries, Bytes: st.Bytes}, nil
}

// indexStatsJSON is /index/stats' answer. Unlike the other endpoints Loki
// answers it bare, not inside {"status","data"}, and Grafana reads it that
// way. Loki's shape has no place for warnings; lokilab adds them as a field
// clients that do not know it ignore, so a partial estimate still says so.
type indexStatsJSON struct {
	Streams  uint64   `json:"streams"`
	Chunks   uint64   `json:"chunks"`
	Entries  uint64   `json:"entries"`
	Bytes    uint64   `json:"bytes"`
	Warnings []string `json:"warnings,omitempty"`
}

// statsJSON is Loki's stats object, in the parts lokilab measures.
type statsJSON struct {
	Summary struct {
		BytesProcessedPerSecond int64   `json:"bytesProcessedPerSecond"`
		LinesProcessedPerSecond int64   `json:"linesProcessedPerSecond"`
		TotalBytesProcessed     int64   `json:"totalBytesProcessed"`
		TotalLinesProcessed     int64   `json:"totalLinesProcessed"`
		ExecTime                float64 `json:"execTime"`
		QueueTime               float64 `json:"queueTime"`
		Subqueries              int     `json:"subqueries"`
		TotalEntriesReturned    int     `json:"totalEntriesReturned"`
		Splits                  int     `json:"splits"`
		Shards                  int     `json:"shards"`
	} `json:"summary"`
	Querier struct {
		Store storeStatsJSON `json:"store"`
	} `json:"querier"`
	Ingester struct {
		TotalReached   int            `json:"totalReached"`
		TotalLinesSent int            `json:"totalLinesSent"`
		Store          storeStatsJSON `json:"store"`
	} `json:"ingester"`
	Cache struct {
		Chunk struct {
			EntriesFound     int `json:"entriesFound"`
			EntriesRequested int `json:"entriesRequested"`
		} `json:"chunk"`
	} `json:"cache"`
}

type storeStatsJSON struct {
	TotalChunksRef        int `json:"totalChunksRef"`
	TotalChunksDownloaded int `json:"totalChunksDownloaded"`
	Chunk                 struct {
		CompressedBytes   int64 `json:"compressedBytes"`
		DecompressedBytes int64 `json:"decompressedBytes"`
		DecompressedLines int   `json:"decompressedLines"`
		TotalDuplicates   int   `json:"totalDuplicates"`
	} `json:"chunk"`
}

func newStatsJSON(st *Stats) statsJSON {
	var j statsJSON
	secs := st.ExecTime.Seconds()
	j.Summary.TotalBytesProcessed = st.BytesProcessed
	j.Summary.TotalLinesProcessed = int64(st.LinesProcessed)
	if secs > 0 {
		j.Summary.BytesProcessedPerSecond = int64(float64(st.BytesProcessed) / secs)
		j.Summary.LinesProcessedPerSecond = int64(float64(st.LinesProcessed) / secs)
	}
	j.Summary.ExecTime = secs
	j.Summary.Subqueries = st.Splits
	j.Summary.Splits = st.Splits
	j.Summary.TotalEntriesReturned = st.EntriesReturned
	s := &j.Querier.Store
	s.TotalChunksRef = st.Store.Chunks
	s.TotalChunksDownloaded = st.Store.Chunks - st.Store.CacheHits
	s.Chunk.CompressedBytes = st.Store.CompressedBytes
	s.Chunk.DecompressedBytes = st.Store.DecompressedBytes
	s.Chunk.DecompressedLines = st.Store.Entries
	s.Chunk.TotalDuplicates = st.Store.Duplicates
	j.Ingester.TotalReached = st.Ingester.Reached
	j.Ingester.TotalLinesSent = st.Ingester.LinesSent
	j.Ingester.Store.Chunk.TotalDuplicates = st.Ingester.Duplicates
	j.Cache.Chunk.EntriesFound = st.Store.CacheHits
	j.Cache.Chunk.EntriesRequested = st.Store.Chunks
	return j
}
