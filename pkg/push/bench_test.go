package push_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/push"
)

// benchBody is a 1000-line push (10 streams × 100 lines) of the realistic
// line mix, the shape FIELD-NOTES.md measured decoders on.
func benchRequest() *push.Request {
	return pushtest.Request(pushtest.Options{Streams: 10, LinesPerStream: 100, Start: time.Unix(1_700_000_000, 0), Seed: 1, StructuredMetadata: true})
}

// benchJSON is the benchmark request and its JSON body.
func benchJSON(b *testing.B) (*push.Request, []byte) {
	req := benchRequest()
	var buf bytes.Buffer
	if err := push.EncodeJSON(&buf, req); err != nil {
		b.Fatal(err)
	}
	return req, buf.Bytes()
}

func lineBytes(r *push.Request) int {
	n := 0
	for _, s := range r.Streams {
		for _, e := range s.Entries {
			n += e.Size()
		}
	}
	return n
}

// BenchmarkDecodeJSON reports MB/s of JSON body decoded and allocations per
// 1000-line body.
func BenchmarkDecodeJSON(b *testing.B) {
	req, body := benchJSON(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var out push.Request
	for b.Loop() {
		if err := push.DecodeJSON(body, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*req.Entries())/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkDecodeJSONStdlib is the baseline for BenchmarkDecodeJSON: the
// same body decoded by encoding/json into the obvious structs.
func BenchmarkDecodeJSONStdlib(b *testing.B) {
	req, body := benchJSON(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var out struct {
			Streams []struct {
				Stream map[string]string `json:"stream"`
				Values [][]any           `json:"values"`
			} `json:"streams"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*req.Entries())/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkDecodeProto reports MB/s of uncompressed protobuf decoded.
func BenchmarkDecodeProto(b *testing.B) {
	req := benchRequest()
	body := push.AppendProto(nil, req)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var out push.Request
	for b.Loop() {
		if err := push.DecodeProto(body, &out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*req.Entries())/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkDecodeSnappyProto includes snappy decompression, what a protobuf
// push costs end to end in the decoder.
func BenchmarkDecodeSnappyProto(b *testing.B) {
	req := benchRequest()
	body := push.EncodeSnappyProto(req)
	b.SetBytes(int64(lineBytes(req)))
	b.ReportAllocs()
	var out push.Request
	for b.Loop() {
		pb, err := push.DecodeSnappy(body, 100<<20)
		if err != nil {
			b.Fatal(err)
		}
		if err := push.DecodeProto(pb, &out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeStream is the distributor's record encoding.
func BenchmarkEncodeStream(b *testing.B) {
	req := benchRequest()
	b.SetBytes(int64(lineBytes(req)))
	b.ReportAllocs()
	buf := make([]byte, 0, 1<<20)
	for b.Loop() {
		for i := range req.Streams {
			buf = push.AppendStream(buf[:0], &req.Streams[i])
		}
	}
}
