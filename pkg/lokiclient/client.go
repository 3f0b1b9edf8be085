// Package lokiclient is a small client for Loki's HTTP query API: range
// and instant queries, labels, series, tail, and a pager that reads every
// line of a time range. It speaks the API lokilab's querier serves and
// Grafana Loki's, so `lokilab query`, `lokilab verify` and tests read
// through the same public contract a user's tools do — never through
// lokilab's internals.
//
// The wire format in short: start, end and time are sent as Unix
// nanoseconds; log entries come back as ["<ns string>", "<line>"] pairs,
// metric points as [<unix seconds, a JSON number>, "<value string>"];
// tenants go in X-Scope-OrgID; errors are plain text with the status
// (400 bad query or limit, 401 no org id, 504 timeout, …) and come back
// as *APIError. A 200 answer may still be partial: its warnings say so
// (Result.Warnings, WithWarningHandler, and AllLogs' *PartialError).
//
// # Reading everything: the page edge
//
// Loki caps a log query at `limit` entries (max_entries_limit_per_query,
// 5000 by default), so reading a whole range means paging: ask forward
// from start, then again from the newest timestamp of the page. The
// subtle part is that edge. Many entries may share one timestamp (a
// batch pushed with one clock reading, several streams logging in the
// same nanosecond), and a page may end in the middle of such a group:
// starting the next page just after that timestamp loses the rest of the
// group, starting at it repeats the part already read.
//
// AllLogs starts the next page at that timestamp and skips what it has
// already delivered there, by identity (stream labels, timestamp, line)
// and by count: an entry that truly appears twice in the answer — the
// same line in the same stream at the same instant, pushed twice — is
// delivered twice, because the n-th occurrence seen again is skipped only
// if n occurrences were delivered. The next page's limit is the page size
// plus the entries it will skip, so every page brings up to pageSize new
// entries and a group larger than a page is read in growing pages. A
// group larger than the server's max_entries_limit_per_query cannot be
// read by limit alone: AllLogs then fails with the server's refusal
// rather than return less.
package lokiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// TenantHeader carries the tenant (org ID) on every request, as in Loki.
const TenantHeader = "X-Scope-OrgID"

// maxErrorBody bounds how much of an error answer is read for its message.
const maxErrorBody = 64 << 10

// Client calls one Loki (or lokilab) query API. It is safe for concurrent
// use.
type Client struct {
	base      *url.URL
	tenant    string
	http      *http.Client
	onWarning func(path string, warnings []string)
}

// Option configures a Client.
type Option func(*Client)

// WithTenant sends id as X-Scope-OrgID on every request. Without it no
// header is sent: a server with auth off answers as tenant "fake", one
// with auth on refuses with 401 "no org id". Several tenants separated by
// '|' ask a multi-tenant query, where the server allows it.
func WithTenant(id string) Option { return func(c *Client) { c.tenant = id } }

// WithHTTPClient sets the HTTP client of the query calls (not of Tail's
// websocket). The default has no overall timeout: bound calls with their
// context.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithWarningHandler calls fn with the warnings of every answer that has
// any (a partial answer: an ingester down, a partition without a live
// owner), with the API path asked. It is how the warnings of Labels,
// LabelValues, Series and each of AllLogs' pages can be seen as they
// arrive; query results also carry theirs in Result.Warnings.
func WithWarningHandler(fn func(path string, warnings []string)) Option {
	return func(c *Client) { c.onWarning = fn }
}

// New returns a client for the API at baseURL, such as
// "http://127.0.0.1:3100" (a path prefix, as behind a gateway, is kept).
// A baseURL that does not parse makes every call fail with that error.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{http: &http.Client{}}
	baseURL = strings.TrimSuffix(baseURL, "/")
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		// "127.0.0.1:3100" and "localhost:3100" mean http.
		u, err = url.Parse("http://" + baseURL)
	}
	if err == nil {
		c.base = u
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// APIError is a non-2xx answer: the status and the server's message
// (Loki answers errors in plain text; a JSON error body's "error" or
// "message" is used when there is one).
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// PartialError is what AllLogs returns when some page's answer carried
// warnings: every page was read and delivered, but the server said the
// answers may lack lines (an ingester could not be asked, a partition had
// no live owner). Warnings are in the order first seen, each once.
type PartialError struct {
	Warnings []string
}

func (e *PartialError) Error() string {
	return "partial result: " + strings.Join(e.Warnings, "; ")
}

// Entry is one log line.
type Entry struct {
	Timestamp time.Time
	Line      string
}

// Stream is a log stream's labels and entries, in the query's direction.
type Stream struct {
	Labels  map[string]string
	Entries []Entry
}

// Sample is one point of a metric series.
type Sample struct {
	Time  time.Time
	Value float64
}

// Series is a metric series: its labels and points, oldest first.
type Series struct {
	Metric  map[string]string
	Samples []Sample
}

// Result is a query's answer. Type is "streams" (Streams is set),
// "matrix" or "vector" (Series is set; a vector's series have one sample
// each) or "scalar" (one series without labels).
type Result struct {
	Type     string
	Streams  []Stream
	Series   []Series
	Stats    json.RawMessage
	Warnings []string
}

// RangeQuery is a query_range request. Zero fields are left to the
// server's defaults: Start an hour before End, End now, Limit 100,
// Direction backward, Step about a 250th of the range.
type RangeQuery struct {
	Query      string
	Start, End time.Time
	Limit      int
	// Direction is "forward" (oldest first) or "backward" (newest first,
	// Loki's default when empty).
	Direction string
	// Step is a metric query's resolution; log queries ignore it.
	Step time.Duration
}

// QueryRange runs a log or metric query over a range.
func (c *Client) QueryRange(ctx context.Context, q RangeQuery) (*Result, error) {
	v := url.Values{"query": {q.Query}}
	setTime(v, "start", q.Start)
	setTime(v, "end", q.End)
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Direction != "" {
		v.Set("direction", q.Direction)
	}
	if q.Step > 0 {
		v.Set("step", formatSeconds(q.Step))
	}
	return c.query(ctx, "/loki/api/v1/query_range", v)
}

// Query runs an instant query at (zero: the server's now). A vector
// answer comes back as Series of one Sample each. limit ≤ 0 leaves the
// server's default.
func (c *Client) Query(ctx context.Context, query string, at time.Time, limit int) (*Result, error) {
	v := url.Values{"query": {query}}
	setTime(v, "time", at)
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	return c.query(ctx, "/loki/api/v1/query", v)
}

func (c *Client) query(ctx context.Context, path string, v url.Values) (*Result, error) {
	body, err := c.get(ctx, path, v)
	if err != nil {
		return nil, err
	}
	res, err := DecodeQueryResponse(body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.warn(path, res.Warnings)
	return res, nil
}

// Labels returns the label names of streams with data in [start, end]
// (zero times: the server's default, the last six hours).
func (c *Client) Labels(ctx context.Context, start, end time.Time) ([]string, error) {
	v := url.Values{}
	setTime(v, "start", start)
	setTime(v, "end", end)
	var out []string
	err := c.getData(ctx, "/loki/api/v1/labels", v, &out)
	return out, err
}

// LabelValues returns the values label name takes in [start, end].
func (c *Client) LabelValues(ctx context.Context, name string, start, end time.Time) ([]string, error) {
	v := url.Values{}
	setTime(v, "start", start)
	setTime(v, "end", end)
	var out []string
	err := c.getData(ctx, "/loki/api/v1/label/"+url.PathEscape(name)+"/values", v, &out)
	return out, err
}

// Series returns the label sets of streams matching any of the selectors
// (such as `{app="api"}`) with data in [start, end].
func (c *Client) Series(ctx context.Context, matchers []string, start, end time.Time) ([]map[string]string, error) {
	v := url.Values{"match[]": matchers}
	setTime(v, "start", start)
	setTime(v, "end", end)
	var out []map[string]string
	err := c.getData(ctx, "/loki/api/v1/series", v, &out)
	return out, err
}

// IndexStats is what /index/stats answers: how much a selector's streams
// hold in [start, end], from the index alone — what a query over them
// would have to read, before running it.
type IndexStats struct {
	Streams uint64 `json:"streams"`
	Chunks  uint64 `json:"chunks"`
	Entries uint64 `json:"entries"`
	Bytes   uint64 `json:"bytes"`
}

// IndexStats asks /index/stats about a stream selector (such as
// `{app="api"}`) in [start, end].
func (c *Client) IndexStats(ctx context.Context, selector string, start, end time.Time) (IndexStats, error) {
	v := url.Values{"query": {selector}}
	setTime(v, "start", start)
	setTime(v, "end", end)
	body, err := c.get(ctx, "/loki/api/v1/index/stats", v)
	if err != nil {
		return IndexStats{}, err
	}
	// Loki answers the object bare; lokilab wraps it in
	// {"status":"success","data":…}. Read either.
	var resp struct {
		Status string      `json:"status"`
		Data   *IndexStats `json:"data"`
		IndexStats
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return IndexStats{}, fmt.Errorf("/loki/api/v1/index/stats: decoding answer: %w", err)
	}
	if resp.Data != nil {
		return *resp.Data, nil
	}
	return resp.IndexStats, nil
}

// getData calls a metadata endpoint ({"status":"success","data":…}) and
// decodes its data into out.
func (c *Client) getData(ctx context.Context, path string, v url.Values, out any) error {
	body, err := c.get(ctx, path, v)
	if err != nil {
		return err
	}
	var resp struct {
		Status   string          `json:"status"`
		Data     json.RawMessage `json:"data"`
		Warnings []string        `json:"warnings"`
		Error    string          `json:"error"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return fmt.Errorf("%s: decoding answer: %w", path, err)
	}
	if resp.Status != "success" {
		return fmt.Errorf("%s: status %q: %s", path, resp.Status, resp.Error)
	}
	if len(resp.Data) > 0 && string(resp.Data) != "null" {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("%s: decoding data: %w", path, err)
		}
	}
	c.warn(path, resp.Warnings)
	return nil
}

func (c *Client) warn(path string, ws []string) {
	if len(ws) > 0 && c.onWarning != nil {
		c.onWarning(path, ws)
	}
}

// url returns the full URL of path with query v.
func (c *Client) url(scheme, path string, v url.Values) (string, error) {
	if c.base == nil {
		return "", errors.New("lokiclient: bad base URL")
	}
	u := *c.base
	if scheme != "" {
		u.Scheme = scheme
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	u.RawQuery = v.Encode()
	return u.String(), nil
}

// get does a GET and returns a 2xx answer's body, or an *APIError.
func (c *Client) get(ctx context.Context, path string, v url.Values) ([]byte, error) {
	u, err := c.url("", path, v)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if c.tenant != "" {
		req.Header.Set(TenantHeader, c.tenant)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// Say where, without the whole query string.
			err = fmt.Errorf("%s %s%s: %w", req.Method, c.base.Host, path, ue.Err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, readAPIError(resp)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: reading answer: %w", path, err)
	}
	return body, nil
}

// readAPIError turns a non-2xx answer into an *APIError.
func readAPIError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(b))
	var j struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if strings.HasPrefix(msg, "{") && json.Unmarshal(b, &j) == nil {
		if j.Error != "" {
			msg = j.Error
		} else if j.Message != "" {
			msg = j.Message
		}
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &APIError{StatusCode: resp.StatusCode, Message: msg}
}

func setTime(v url.Values, name string, t time.Time) {
	if !t.IsZero() {
		v.Set(name, strconv.FormatInt(t.UnixNano(), 10))
	}
}

// formatSeconds writes d as seconds ("15", "0.5"), which Loki and
// Prometheus both read.
func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
