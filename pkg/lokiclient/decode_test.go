package lokiclient

import (
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDecodeQueryResponse(t *testing.T) {
	ts := time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name, body string
		want       *Result
		wantErr    string
	}{
		{
			name: "streams, with structured metadata ignored",
			body: `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"api"},"values":[["1795946400123456789","a"],["1795946400123456789","b",{"trace_id":"x"}]]}],"stats":{"summary":{"execTime":0.5}}},"warnings":["partial"]}`,
			want: &Result{Type: "streams", Streams: []Stream{{Labels: map[string]string{"app": "api"}, Entries: []Entry{{ts, "a"}, {ts, "b"}}}},
				Stats: json.RawMessage(`{"summary":{"execTime":0.5}}`), Warnings: []string{"partial"}},
		},
		{
			name: "matrix points keep exact milliseconds",
			body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"level":"error"},"values":[[1795946400.123,"1"],[1795946460,"NaN"],["1795946520.5","+Inf"]]}]}}`,
			want: &Result{Type: "matrix", Series: []Series{{Metric: map[string]string{"level": "error"}, Samples: []Sample{
				{time.Date(2026, 11, 29, 10, 0, 0, 123e6, time.UTC), 1},
				{time.Date(2026, 11, 29, 10, 1, 0, 0, time.UTC), math.NaN()},
				{time.Date(2026, 11, 29, 10, 2, 0, 5e8, time.UTC), math.Inf(1)},
			}}}},
		},
		{
			name: "vector: one sample per series, no labels is an empty map",
			body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795946400,"2"]}]}}`,
			want: &Result{Type: "vector", Series: []Series{{Metric: map[string]string{}, Samples: []Sample{{time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), 2}}}}},
		},
		{
			name: "scalar",
			body: `{"status":"success","data":{"resultType":"scalar","result":[1795946400,"3.5"]}}`,
			want: &Result{Type: "scalar", Series: []Series{{Metric: map[string]string{}, Samples: []Sample{{time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), 3.5}}}}},
		},
		{
			name: "empty result",
			body: `{"status":"success","data":{"resultType":"streams","result":[]}}`,
			want: &Result{Type: "streams", Streams: []Stream{}},
		},
		{name: "error status", body: `{"status":"error","error":"boom"}`, wantErr: `status "error": boom`},
		{name: "not JSON", body: `parse error`, wantErr: "decoding answer"},
		{name: "unknown type", body: `{"status":"success","data":{"resultType":"table","result":[]}}`, wantErr: `unknown resultType "table"`},
		{name: "timestamp in seconds", body: `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["1.5","x"]]}]}}`, wantErr: "want Unix nanoseconds"},
		{name: "value not a string", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,2]}]}}`, wantErr: "sample value"},
		{name: "bad seconds", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":["1.+5","2"]}]}}`, wantErr: "want Unix seconds"},
		{name: "one-element value", body: `{"status":"success","data":{"resultType":"streams","result":[{"stream":{},"values":[["1"]]}]}}`, wantErr: "1 elements"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeQueryResponse([]byte(tt.body))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameResult(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// sameResult compares results, NaN equal to NaN.
func sameResult(a, b *Result) bool {
	nan := -12345.678
	fix := func(r *Result) *Result {
		c := *r
		c.Series = nil
		for _, s := range r.Series {
			s2 := Series{Metric: s.Metric}
			for _, p := range s.Samples {
				if math.IsNaN(p.Value) {
					p.Value = nan
				}
				s2.Samples = append(s2.Samples, p)
			}
			c.Series = append(c.Series, s2)
		}
		return &c
	}
	return reflect.DeepEqual(fix(a), fix(b))
}

// encodeResult writes r the way Loki does, for the round trip.
func encodeResult(r *Result) []byte {
	var result any
	point := func(s Sample) [2]any {
		sec := strconv.FormatInt(s.Time.Unix(), 10) + "." + strconv.FormatInt(int64(s.Time.Nanosecond())+1e9, 10)[1:]
		if s.Time.Unix() < 0 && s.Time.Nanosecond() > 0 {
			// Negative times: seconds and the fraction share the sign.
			ns := s.Time.UnixNano()
			sec = "-" + strconv.FormatInt(-ns/1e9, 10) + "." + strconv.FormatInt(-ns%1e9+1e9, 10)[1:]
		}
		return [2]any{json.Number(sec), strconv.FormatFloat(s.Value, 'g', -1, 64)}
	}
	switch r.Type {
	case "streams":
		var out []map[string]any
		for _, s := range r.Streams {
			var vs [][2]string
			for _, e := range s.Entries {
				vs = append(vs, [2]string{strconv.FormatInt(e.Timestamp.UnixNano(), 10), e.Line})
			}
			out = append(out, map[string]any{"stream": s.Labels, "values": vs})
		}
		result = out
	case "matrix":
		var out []map[string]any
		for _, s := range r.Series {
			var vs [][2]any
			for _, p := range s.Samples {
				vs = append(vs, point(p))
			}
			out = append(out, map[string]any{"metric": s.Metric, "values": vs})
		}
		result = out
	case "vector":
		var out []map[string]any
		for _, s := range r.Series {
			out = append(out, map[string]any{"metric": s.Metric, "value": point(s.Samples[0])})
		}
		result = out
	case "scalar":
		result = point(r.Series[0].Samples[0])
	}
	b, _ := json.Marshal(map[string]any{"status": "success", "data": map[string]any{"resultType": r.Type, "result": result}})
	return b
}

// FuzzDecodeQueryResponse: the decoder never panics, and what it accepts
// survives a round trip through Loki's encoding unchanged.
func FuzzDecodeQueryResponse(f *testing.F) {
	for _, s := range []string{
		`{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"api"},"values":[["1795946400123456789","a"],["1","b",{}]]}],"stats":{}},"warnings":["w"]}`,
		`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"l":"e"},"values":[[1795946400.123,"1"],[-1.5,"NaN"],["2","-Inf"],[1e3,"0.1"]]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1795946400,"2"]}]}}`,
		`{"status":"success","data":{"resultType":"scalar","result":[1795946400,"3.5"]}}`,
		`{"status":"success","data":{"resultType":"streams","result":null}}`,
		`{"status":"error","error":"x"}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":["0.0000000001","2"]}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := DecodeQueryResponse(body)
		if err != nil {
			return
		}
		again, err := DecodeQueryResponse(encodeResult(res))
		if err != nil {
			t.Fatalf("re-encoded answer does not decode: %v", err)
		}
		res.Stats, res.Warnings = nil, nil
		if res.Streams == nil && res.Type == "streams" {
			res.Streams = []Stream{}
		}
		if again.Streams == nil && again.Type == "streams" {
			again.Streams = []Stream{}
		}
		if res.Series == nil && (res.Type == "matrix" || res.Type == "vector") {
			res.Series = []Series{}
		}
		if again.Series == nil && (again.Type == "matrix" || again.Type == "vector") {
			again.Series = []Series{}
		}
		if !sameResult(res, again) {
			t.Fatalf("round trip changed the result:\n%+v\n%+v", res, again)
		}
	})
}

func FuzzDecodeTailMessage(f *testing.F) {
	f.Add([]byte(`{"streams":[{"stream":{"app":"x"},"values":[["1","l"]]}],"dropped_entries":null}`))
	f.Add([]byte(`{"streams":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ss, err := DecodeTailMessage(b)
		if err != nil {
			return
		}
		for _, s := range ss {
			if s.Labels == nil {
				t.Fatal("nil labels")
			}
		}
	})
}
