// Package pushtest builds push requests for tests and benchmarks: realistic
// line shapes (nginx access logs, logfmt, JSON, stack traces), unique and
// traceable, and the helpers to send them over HTTP in each wire format.
package pushtest

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// Options shape a generated request.
type Options struct {
	Streams        int
	LinesPerStream int
	// Start is the first entry's timestamp; entries are 1ms apart.
	Start time.Time
	// Seed makes the request reproducible.
	Seed uint64
	// ID, if set, is embedded in every line as id=<ID>-<stream>-<line> so a
	// verifier can find each line again.
	ID string
	// StructuredMetadata adds a trace_id to every other entry.
	StructuredMetadata bool
}

// Request returns a push with the given shape.
func Request(o Options) *push.Request {
	if o.Start.IsZero() {
		o.Start = time.Now()
	}
	r := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	req := &push.Request{Streams: make([]push.Stream, o.Streams)}
	apps := []string{"api", "checkout", "search", "auth", "billing"}
	ts := o.Start.UnixNano()
	for s := range o.Streams {
		ls := labels.New(
			labels.Label{Name: "app", Value: apps[s%len(apps)]},
			labels.Label{Name: "env", Value: "prod"},
			labels.Label{Name: "pod", Value: fmt.Sprintf("pod-%d", s)},
		)
		st := push.Stream{Labels: ls.String(), Entries: make([]push.Entry, o.LinesPerStream)}
		for i := range o.LinesPerStream {
			id := ""
			if o.ID != "" {
				id = fmt.Sprintf("%s-%d-%d", o.ID, s, i)
			}
			e := push.Entry{Timestamp: ts, Line: Line(r, id)}
			ts += int64(time.Millisecond)
			if o.StructuredMetadata && i%2 == 0 {
				e.StructuredMetadata = []labels.Label{{Name: "trace_id", Value: fmt.Sprintf("%016x", r.Uint64())}}
			}
			st.Entries[i] = e
		}
		req.Streams[s] = st
	}
	return req
}

var (
	paths   = []string{"/api/v1/orders", "/api/v1/users/42", "/healthz", "/static/app.js", "/api/v1/search?q=shoes&page=2", "/login"}
	methods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	codes   = []int{200, 200, 200, 201, 204, 301, 404, 500, 503}
	levels  = []string{"debug", "info", "info", "info", "warn", "error"}
	msgs    = []string{"request served", "cache miss", "retrying upstream", "connection reset by peer", "user logged in", "payment authorised"}
)

// Line returns one realistic log line; id, if not empty, is embedded in it.
func Line(r *rand.Rand, id string) string {
	tag := ""
	if id != "" {
		tag = " id=" + id
	}
	switch r.IntN(10) {
	case 0, 1, 2, 3: // nginx access log
		return fmt.Sprintf(`10.%d.%d.%d - - [28/Nov/2026:11:47:48 +0000] "%s %s HTTP/1.1" %d %d "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=%.3f%s`,
			r.IntN(256), r.IntN(256), r.IntN(256), methods[r.IntN(len(methods))], paths[r.IntN(len(paths))],
			codes[r.IntN(len(codes))], r.IntN(50000), r.Float64(), tag)
	case 4, 5, 6: // logfmt
		return fmt.Sprintf(`ts=2026-11-28T11:47:48.%03dZ level=%s caller=server.go:%d msg=%q duration=%dms user=%d%s`,
			r.IntN(1000), levels[r.IntN(len(levels))], r.IntN(900), msgs[r.IntN(len(msgs))], r.IntN(2000), r.IntN(100000), tag)
	case 7, 8: // JSON
		return fmt.Sprintf(`{"ts":"2026-11-28T11:47:48Z","level":%q,"msg":%q,"order_id":%d,"amount":%.2f,"id":%q}`,
			levels[r.IntN(len(levels))], msgs[r.IntN(len(msgs))], r.IntN(1<<30), r.Float64()*500, id)
	default: // multi-line stack trace
		var b strings.Builder
		fmt.Fprintf(&b, "panic: runtime error: index out of range [%d] with length %d%s\n\ngoroutine %d [running]:\n", r.IntN(10), r.IntN(10), tag, r.IntN(5000))
		for f := range 3 + r.IntN(5) {
			fmt.Fprintf(&b, "main.handler%d(...)\n\t/src/app/handler.go:%d +0x%x\n", f, r.IntN(500), r.IntN(1<<16))
		}
		return b.String()
	}
}

// Encoding is a wire format for a push body.
type Encoding int

// The encodings a Loki client may use.
const (
	JSON Encoding = iota
	GzipJSON
	DeflateJSON
	Protobuf
)

func (e Encoding) String() string {
	return [...]string{"json", "gzip-json", "deflate-json", "protobuf"}[e]
}

// Body encodes req and returns the body and the headers to send it with.
func Body(req *push.Request, enc Encoding) ([]byte, http.Header, error) {
	h := http.Header{}
	switch enc {
	case Protobuf:
		h.Set("Content-Type", "application/x-protobuf")
		return push.EncodeSnappyProto(req), h, nil
	case JSON, GzipJSON, DeflateJSON:
		var buf bytes.Buffer
		if err := push.EncodeJSON(&buf, req); err != nil {
			return nil, nil, err
		}
		h.Set("Content-Type", "application/json")
		switch enc {
		case GzipJSON:
			h.Set("Content-Encoding", "gzip")
			return Gzip(buf.Bytes()), h, nil
		case DeflateJSON:
			h.Set("Content-Encoding", "deflate")
			return Deflate(buf.Bytes()), h, nil
		}
		return buf.Bytes(), h, nil
	}
	return nil, nil, fmt.Errorf("unknown encoding %d", enc)
}

// NewRequest builds a POST of req to url in the given encoding, as tenant
// (no X-Scope-OrgID when tenant is "").
func NewRequest(url, tenant string, req *push.Request, enc Encoding) (*http.Request, error) {
	body, h, err := Body(req, enc)
	if err != nil {
		return nil, err
	}
	r, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	r.Header = h
	if tenant != "" {
		r.Header.Set("X-Scope-OrgID", tenant)
	}
	return r, nil
}

// Gzip compresses b.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

// LineID returns the ID that Request embedded in a line (Options.ID), or ""
// when there is none: " id=X" in text lines, "id":"X" in JSON lines.
func LineID(line string) string {
	if i := strings.Index(line, `"id":"`); i >= 0 {
		rest := line[i+6:]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			return rest[:j]
		}
		return ""
	}
	if i := strings.Index(line, " id="); i >= 0 {
		rest := line[i+4:]
		if j := strings.IndexAny(rest, " \n"); j >= 0 {
			return rest[:j]
		}
		return rest
	}
	return ""
}
