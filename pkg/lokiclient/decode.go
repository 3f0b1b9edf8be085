package lokiclient

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DecodeQueryResponse decodes a /query or /query_range answer:
//
//	{"status":"success","data":{"resultType":"streams"|"matrix"|"vector"|"scalar",
//	  "result":[…],"stats":{…}},"warnings":[…]}
//
// Stream values are ["<ns string>","<line>"] (a third element, structured
// metadata, is accepted and ignored); matrix values and vector values are
// [<unix seconds>,"<value>"], the seconds a JSON number (a string is
// accepted too).
func DecodeQueryResponse(body []byte) (*Result, error) {
	var resp struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
			Stats      json.RawMessage `json:"stats"`
		} `json:"data"`
		Warnings []string `json:"warnings"`
		Error    string   `json:"error"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("decoding answer: %w", err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("answer status %q: %s", resp.Status, resp.Error)
	}
	res := &Result{Type: resp.Data.ResultType, Stats: resp.Data.Stats, Warnings: resp.Warnings}
	raw := resp.Data.Result
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		switch res.Type {
		case "streams", "matrix", "vector":
			return res, nil
		}
	}
	var err error
	switch res.Type {
	case "streams":
		res.Streams, err = decodeStreams(raw)
	case "matrix":
		res.Series, err = decodeMatrix(raw)
	case "vector":
		res.Series, err = decodeVector(raw)
	case "scalar":
		var p [2]json.RawMessage
		if err = json.Unmarshal(raw, &p); err == nil {
			var s Sample
			if s, err = decodePoint(p); err == nil {
				res.Series = []Series{{Metric: map[string]string{}, Samples: []Sample{s}}}
			}
		}
	default:
		return nil, fmt.Errorf("unknown resultType %q", res.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding %s result: %w", res.Type, err)
	}
	return res, nil
}

func decodeStreams(raw json.RawMessage) ([]Stream, error) {
	var in []struct {
		Stream map[string]string   `json:"stream"`
		Values [][]json.RawMessage `json:"values"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	out := make([]Stream, len(in))
	for i, s := range in {
		out[i] = Stream{Labels: s.Stream, Entries: make([]Entry, len(s.Values))}
		if out[i].Labels == nil {
			out[i].Labels = map[string]string{}
		}
		for j, v := range s.Values {
			if len(v) < 2 || len(v) > 3 {
				return nil, fmt.Errorf("stream value with %d elements, want [timestamp, line]", len(v))
			}
			var ts, line string
			if err := json.Unmarshal(v[0], &ts); err != nil {
				return nil, fmt.Errorf("entry timestamp: %w", err)
			}
			ns, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("entry timestamp %q: want Unix nanoseconds", ts)
			}
			if err := json.Unmarshal(v[1], &line); err != nil {
				return nil, fmt.Errorf("entry line: %w", err)
			}
			out[i].Entries[j] = Entry{Timestamp: time.Unix(0, ns).UTC(), Line: line}
		}
	}
	return out, nil
}

func decodeMatrix(raw json.RawMessage) ([]Series, error) {
	var in []struct {
		Metric map[string]string    `json:"metric"`
		Values [][2]json.RawMessage `json:"values"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	out := make([]Series, len(in))
	for i, s := range in {
		out[i] = Series{Metric: s.Metric, Samples: make([]Sample, len(s.Values))}
		if out[i].Metric == nil {
			out[i].Metric = map[string]string{}
		}
		for j, p := range s.Values {
			var err error
			if out[i].Samples[j], err = decodePoint(p); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func decodeVector(raw json.RawMessage) ([]Series, error) {
	var in []struct {
		Metric map[string]string  `json:"metric"`
		Value  [2]json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	out := make([]Series, len(in))
	for i, s := range in {
		p, err := decodePoint(s.Value)
		if err != nil {
			return nil, err
		}
		out[i] = Series{Metric: s.Metric, Samples: []Sample{p}}
		if out[i].Metric == nil {
			out[i].Metric = map[string]string{}
		}
	}
	return out, nil
}

// decodePoint reads [<unix seconds>, "<value>"].
func decodePoint(p [2]json.RawMessage) (Sample, error) {
	secs := strings.Trim(string(bytes.TrimSpace(p[0])), `"`)
	t, err := parseUnixSeconds(secs)
	if err != nil {
		return Sample{}, err
	}
	var vs string
	if err := json.Unmarshal(p[1], &vs); err != nil {
		return Sample{}, fmt.Errorf("sample value: %w", err)
	}
	v, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("sample value %q: %w", vs, err)
	}
	return Sample{Time: t, Value: v}, nil
}

var errBadSeconds = errors.New("want Unix seconds")

// parseUnixSeconds reads "1764410400.123" exactly: through a float64 the
// milliseconds of a 2026 timestamp would come back off by a few hundred
// nanoseconds.
func parseUnixSeconds(s string) (time.Time, error) {
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if strings.ContainsAny(s, "eE") || intPart == "" || intPart == "-" {
		// Exponent notation: rare, a float is precise enough.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e11 {
			return time.Time{}, fmt.Errorf("sample time %q: %w", s, errBadSeconds)
		}
		sec, fr := math.Modf(f)
		return time.Unix(int64(sec), int64(math.Round(fr*1e9))).UTC(), nil
	}
	sec, err := strconv.ParseInt(intPart, 10, 64)
	if err != nil || sec > 1e11 || sec < -1e11 {
		return time.Time{}, fmt.Errorf("sample time %q: %w", s, errBadSeconds)
	}
	var ns int64
	if hasFrac {
		if frac == "" || strings.Trim(frac, "0123456789") != "" {
			return time.Time{}, fmt.Errorf("sample time %q: %w", s, errBadSeconds)
		}
		if len(frac) > 9 {
			frac = frac[:9]
		}
		frac += strings.Repeat("0", 9-len(frac))
		if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("sample time %q: %w", s, errBadSeconds)
		}
		if strings.HasPrefix(intPart, "-") {
			ns = -ns
		}
	}
	return time.Unix(sec, ns).UTC(), nil
}
