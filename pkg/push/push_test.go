package push

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/golang/snappy"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lokilab/lokilab/pkg/labels"
)

func TestDecodeJSON(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    *Request
		wantErr string
	}{
		{
			name: "one stream",
			body: `{"streams":[{"stream":{"env":"prod","app":"api"},"values":[["1700000000000000001","first"],["1700000000000000002","second"]]}]}`,
			want: &Request{Streams: []Stream{{Labels: `{app="api", env="prod"}`, Entries: []Entry{
				{Timestamp: 1700000000000000001, Line: "first"},
				{Timestamp: 1700000000000000002, Line: "second"},
			}}}},
		},
		{
			name: "structured metadata and escapes",
			body: `{"streams":[{"stream":{"app":"a\"pi"},"values":[["5","line \u00e9\n\ttab",{"trace_id":"abc","user":"u1"}]]}]}`,
			want: &Request{Streams: []Stream{{Labels: `{app="a\"pi"}`, Entries: []Entry{
				{Timestamp: 5, Line: "line é\n\ttab", StructuredMetadata: []labels.Label{{Name: "trace_id", Value: "abc"}, {Name: "user", Value: "u1"}}},
			}}}},
		},
		{
			name: "unknown keys ignored, null metadata",
			body: `{"extra":1,"streams":[{"stream":{"a":"b"},"other":[1],"values":[["1","x",null]]}]}`,
			want: &Request{Streams: []Stream{{Labels: `{a="b"}`, Entries: []Entry{{Timestamp: 1, Line: "x"}}}}},
		},
		{name: "no streams key", body: `{}`, want: &Request{Streams: []Stream{}}},
		{name: "stream without values", body: `{"streams":[{"stream":{"a":"b"}}]}`, want: &Request{Streams: []Stream{{Labels: `{a="b"}`}}}},
		{name: "empty stream labels", body: `{"streams":[{"values":[["1","x"]]}]}`, want: &Request{Streams: []Stream{{Labels: `{}`, Entries: []Entry{{Timestamp: 1, Line: "x"}}}}}},
		{name: "not JSON", body: `{"streams":`, wantErr: "invalid JSON"},
		{name: "not an object", body: `[1,2]`, wantErr: "must be a JSON object"},
		{name: "streams not an array", body: `{"streams":{}}`, wantErr: "streams:"},
		{name: "stream not an object", body: `{"streams":[1]}`, wantErr: "streams[0]: want an object"},
		{name: "label name that would inject a label", body: `{"streams":[{"stream":{"app=\"x\", evil":"v"},"values":[["1","x"]]}]}`, wantErr: `streams[0]: stream: invalid label name "app=\"x\", evil"`},
		{name: "label name with a dash", body: `{"streams":[{"stream":{"a-b":"v"},"values":[["1","x"]]}]}`, wantErr: `invalid label name "a-b"`},
		{name: "label value not a string", body: `{"streams":[{"stream":{"a":1},"values":[]}]}`, wantErr: `streams[0]: stream: value of "a"`},
		{name: "numeric timestamp", body: `{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}`, wantErr: "streams[0]: values[0]: timestamp must be a string"},
		{name: "timestamp not a number", body: `{"streams":[{"stream":{"a":"b"},"values":[["2024-01-01","x"]]}]}`, wantErr: `timestamp "2024-01-01" is not an integer`},
		{name: "timestamp overflows", body: `{"streams":[{"stream":{"a":"b"},"values":[["99999999999999999999","x"]]}]}`, wantErr: "not an integer"},
		{name: "one element", body: `{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}`, wantErr: "want 2 or 3 elements"},
		{name: "four elements", body: `{"streams":[{"stream":{"a":"b"},"values":[["1","x",{},1]]}]}`, wantErr: "want 2 or 3 elements"},
		{name: "line not a string", body: `{"streams":[{"stream":{"a":"b"},"values":[["1",2]]}]}`, wantErr: "line:"},
		{name: "metadata not strings", body: `{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"k":1}]]}]}`, wantErr: "structured metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Request
			err := DecodeJSON([]byte(tt.body), &got)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalRequests(&got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, *tt.want)
			}
		})
	}
}

func sampleRequest() *Request {
	return &Request{Streams: []Stream{
		{Labels: `{app="api", env="prod"}`, Entries: []Entry{
			{Timestamp: 1_700_000_000_123_456_789, Line: "GET /api 200"},
			{Timestamp: 1_700_000_001_000_000_000, Line: "", StructuredMetadata: []labels.Label{{Name: "trace_id", Value: "0af7651916cd43dd"}}},
			{Timestamp: 0, Line: "epoch"},
			{Timestamp: -1, Line: "just before the epoch"},
			{Timestamp: math.MaxInt64, Line: "the end of int64 time"},
			{Timestamp: math.MinInt64, Line: "the start of int64 time"},
			{Timestamp: math.MinInt64 + 1e9 - 1, Line: "just inside the lowest second"},
		}},
		{Labels: `{app="db"}`, Entries: []Entry{{Timestamp: 42, Line: "ünïcödé \x00 binary \xff"}}},
		{Labels: `{app="empty"}`},
	}}
}

func TestProtoRoundTrip(t *testing.T) {
	in := sampleRequest()
	b := AppendProto(nil, in)
	var out Request
	if err := DecodeProto(b, &out); err != nil {
		t.Fatal(err)
	}
	if !equalRequests(in, &out) {
		t.Fatalf("round trip changed the request:\n in %+v\nout %+v", in, out)
	}
	for i := range in.Streams {
		if got, want := len(AppendStream(nil, &in.Streams[i])), StreamSize(&in.Streams[i]); got != want {
			t.Errorf("stream %d: StreamSize = %d, AppendStream wrote %d", i, want, got)
		}
	}
}

// equalRequests treats nil and empty slices alike.
func equalRequests(a, b *Request) bool {
	if len(a.Streams) != len(b.Streams) {
		return false
	}
	for i := range a.Streams {
		sa, sb := a.Streams[i], b.Streams[i]
		if sa.Labels != sb.Labels || len(sa.Entries) != len(sb.Entries) {
			return false
		}
		for j := range sa.Entries {
			ea, eb := sa.Entries[j], sb.Entries[j]
			if ea.Timestamp != eb.Timestamp || ea.Line != eb.Line || len(ea.StructuredMetadata) != len(eb.StructuredMetadata) {
				return false
			}
			for k := range ea.StructuredMetadata {
				if ea.StructuredMetadata[k] != eb.StructuredMetadata[k] {
					return false
				}
			}
		}
	}
	return true
}

func TestDecodeProtoSkipsUnknownFieldsAndHash(t *testing.T) {
	// A stream with the hash field (3) and an unknown varint field (9)
	// and an unknown fixed64 field (10), as newer senders may add.
	var s []byte
	s = protowire.AppendTag(s, 9, protowire.VarintType)
	s = protowire.AppendVarint(s, 12345)
	s = appendStringField(s, fieldStreamLabels, `{a="b"}`)
	s = protowire.AppendTag(s, fieldStreamHash, protowire.VarintType)
	s = protowire.AppendVarint(s, 0xdeadbeef)
	s = AppendEntryField(s, &Entry{Timestamp: 7, Line: "x"})
	s = protowire.AppendTag(s, 10, protowire.Fixed64Type)
	s = protowire.AppendFixed64(s, 1)
	var got Stream
	if err := DecodeStream(s, &got); err != nil {
		t.Fatal(err)
	}
	if got.Labels != `{a="b"}` || len(got.Entries) != 1 || got.Entries[0].Line != "x" || got.Entries[0].Timestamp != 7 {
		t.Fatalf("got %+v", got)
	}
}

func TestDecodeProtoErrors(t *testing.T) {
	valid := AppendProto(nil, sampleRequest())
	badNanos := func() []byte {
		var ts []byte
		ts = protowire.AppendTag(ts, fieldTimestampNanos, protowire.VarintType)
		ts = protowire.AppendVarint(ts, 2e9)
		var e []byte
		e = protowire.AppendTag(e, fieldEntryTimestamp, protowire.BytesType)
		e = protowire.AppendBytes(e, ts)
		var s []byte
		s = protowire.AppendTag(s, fieldStreamEntries, protowire.BytesType)
		s = protowire.AppendBytes(s, e)
		return protowire.AppendBytes(protowire.AppendTag(nil, fieldRequestStreams, protowire.BytesType), s)
	}
	hugeSeconds := func() []byte {
		var ts []byte
		ts = protowire.AppendTag(ts, fieldTimestampSeconds, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(maxSeconds+1))
		var e []byte
		e = protowire.AppendTag(e, fieldEntryTimestamp, protowire.BytesType)
		e = protowire.AppendBytes(e, ts)
		var s []byte
		s = protowire.AppendTag(s, fieldStreamEntries, protowire.BytesType)
		s = protowire.AppendBytes(s, e)
		return protowire.AppendBytes(protowire.AppendTag(nil, fieldRequestStreams, protowire.BytesType), s)
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated", valid[:len(valid)-3], "unexpected EOF"},
		{"streams as varint", protowire.AppendVarint(protowire.AppendTag(nil, fieldRequestStreams, protowire.VarintType), 1), "wire type"},
		{"nanos out of range", badNanos(), "nanos"},
		{"seconds out of range", hugeSeconds(), "outside the range"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "push request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Request
			err := DecodeProto(tt.b, &r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestEncodeJSONDecodesBack(t *testing.T) {
	in := sampleRequest()
	var buf bytes.Buffer
	if err := EncodeJSON(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := DecodeJSON(buf.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	// JSON cannot carry the invalid UTF-8 byte of stream 2; compare the rest.
	if !equalRequests(&Request{Streams: in.Streams[:1]}, &Request{Streams: out.Streams[:1]}) {
		t.Fatalf("JSON round trip changed stream 0:\n in %+v\nout %+v", in.Streams[0], out.Streams[0])
	}
}

func httpRequest(body []byte, contentType, encoding string, contentLength int64) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/loki/api/v1/push", bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if encoding != "" {
		r.Header.Set("Content-Encoding", encoding)
	}
	r.ContentLength = contentLength
	return r
}

func TestReadRequestFormats(t *testing.T) {
	want := &Request{Streams: []Stream{{Labels: `{app="api"}`, Entries: []Entry{{Timestamp: 1, Line: "hello"}}}}}
	jsonBody := []byte(`{"streams":[{"stream":{"app":"api"},"values":[["1","hello"]]}]}`)
	protoBody := EncodeSnappyProto(want)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(jsonBody)
	zw.Close()

	tests := []struct {
		name, contentType, encoding string
		body                        []byte
	}{
		{"json", "application/json", "", jsonBody},
		{"json with charset", "application/json; charset=utf-8", "", jsonBody},
		{"gzip json", "application/json", "gzip", gz.Bytes()},
		{"protobuf", "application/x-protobuf", "", protoBody},
		{"protobuf without content type", "", "", protoBody},
		{"identity encoding", "application/json", "identity", jsonBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, wire, err := ReadRequest(httpRequest(tt.body, tt.contentType, tt.encoding, int64(len(tt.body))), ReadOptions{MaxBytes: 1 << 20})
			if err != nil {
				t.Fatal(err)
			}
			if wire != len(tt.body) {
				t.Errorf("wire bytes = %d, want %d", wire, len(tt.body))
			}
			if !equalRequests(got, want) {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestReadRequestLimits(t *testing.T) {
	const limit = 64 << 10
	big := bytes.Repeat([]byte("a"), 10*limit) // compresses to almost nothing
	bombJSON := append(append([]byte(`{"streams":[{"stream":{"a":"b"},"values":[["1","`), big...), `"]]}]}`...)
	tests := []struct {
		name          string
		r             *http.Request
		wantTooLarge  bool
		wantErrSubstr string
	}{
		{"content-length over limit", httpRequest(make([]byte, limit+1), "application/json", "", limit+1), true, "exceeds the limit"},
		{"unknown length over limit", httpRequest(make([]byte, limit+1), "application/json", "", -1), true, "more than"},
		{"gzip bomb", httpRequest(gzipBytes(bombJSON), "application/json", "gzip", -1), true, "after gzip decompression"},
		{"snappy bomb", httpRequest(snappy.Encode(nil, big), "application/x-protobuf", "", -1), true, "decompresses to"},
		{"bad gzip", httpRequest([]byte("not gzip"), "application/json", "gzip", -1), false, "invalid gzip body"},
		{"bad snappy", httpRequest([]byte("\xff\xff\xff\xff\xffnot snappy"), "application/x-protobuf", "", -1), false, "invalid snappy"},
		{"unsupported encoding", httpRequest([]byte("x"), "application/json", "br", -1), false, `unsupported Content-Encoding "br"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadRequest(tt.r, ReadOptions{MaxBytes: limit})
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrTooLarge) != tt.wantTooLarge || !strings.Contains(err.Error(), tt.wantErrSubstr) {
				t.Fatalf("error = %v; want ErrTooLarge=%v containing %q", err, tt.wantTooLarge, tt.wantErrSubstr)
			}
		})
	}
}

func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// TestDecodedStringsAliasTheBuffer pins the allocation contract of the
// package doc: lines are views into the decoded buffer, not copies.
func TestDecodedStringsAliasTheBuffer(t *testing.T) {
	b := AppendProto(nil, &Request{Streams: []Stream{{Labels: `{a="b"}`, Entries: []Entry{{Timestamp: 1, Line: "hello"}}}}})
	var r Request
	if err := DecodeProto(b, &r); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("hello"))
	b[i] = 'j'
	if r.Streams[0].Entries[0].Line != "jello" {
		t.Fatal("the decoded line does not alias the buffer; the zero-copy contract is broken")
	}
}

func TestReadRequestBodyReadError(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(errReader{}))
	r.Header.Set("Content-Type", "application/json")
	if _, _, err := ReadRequest(r, ReadOptions{MaxBytes: 1 << 20}); err == nil || errors.Is(err, ErrTooLarge) {
		t.Fatalf("error = %v, want a read error", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// TestDecodedJSONSurvivesParserReuse guards the arena: strings of one
// decoded request must not change when the pooled parser decodes the next.
// The bodies have the same length, so the parser reuses its buffer in place
// (a longer body would make it reallocate and hide an aliasing bug).
func TestDecodedJSONSurvivesParserReuse(t *testing.T) {
	first := []byte(`{"streams":[{"stream":{"app":"one"},"values":[["1","first line",{"k":"v1"}]]}]}`)
	other := []byte(`{"streams":[{"stream":{"app":"two"},"values":[["2","XXXXXXXXXX",{"k":"v2"}]]}]}`)
	if len(first) != len(other) {
		t.Fatalf("bodies differ in length (%d, %d): the test would not exercise buffer reuse", len(first), len(other))
	}
	var got Request
	if err := DecodeJSON(first, &got); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		var r Request
		if err := DecodeJSON(other, &r); err != nil {
			t.Fatal(err)
		}
	}
	e := got.Streams[0].Entries[0]
	if got.Streams[0].Labels != `{app="one"}` || e.Line != "first line" || e.StructuredMetadata[0] != (labels.Label{Name: "k", Value: "v1"}) {
		t.Fatalf("a later decode changed an earlier request: %+v", got)
	}
}

// TestReadRequestReservesBeforeAllocating: the caller's budget is charged
// at each stage, before the stage's memory is allocated where its size is
// known, and a refusal stops the read.
func TestReadRequestReservesBeforeAllocating(t *testing.T) {
	req := &Request{Streams: []Stream{{Labels: `{a="b"}`, Entries: []Entry{{Timestamp: 1, Line: strings.Repeat("x", 1000)}}}}}
	proto := EncodeSnappyProto(req)
	protoLen, _ := snappy.DecodedLen(proto)
	var js bytes.Buffer
	if err := EncodeJSON(&js, req); err != nil {
		t.Fatal(err)
	}
	gz := gzipBytes(js.Bytes())
	tests := []struct {
		name          string
		r             *http.Request
		wantCharges   []int
		refuseAtStage int // 1-based; 0 never refuses
	}{
		{"protobuf with content-length", httpRequest(proto, "application/x-protobuf", "", int64(len(proto))), []int{len(proto), protobufDecodeFactor * protoLen}, 0},
		{"protobuf chunked", httpRequest(proto, "application/x-protobuf", "", -1), []int{len(proto), protobufDecodeFactor * protoLen}, 0},
		{"gzip json", httpRequest(gz, "application/json", "gzip", int64(len(gz))), []int{len(gz), js.Len(), jsonDecodeFactor * js.Len()}, 0},
		{"refused before reading the body", httpRequest(proto, "application/x-protobuf", "", int64(len(proto))), []int{len(proto)}, 1},
		{"refused before the JSON parse", httpRequest(gz, "application/json", "gzip", int64(len(gz))), []int{len(gz), js.Len(), jsonDecodeFactor * js.Len()}, 3},
	}
	errRefused := errors.New("over budget")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var charges []int
			got, _, err := ReadRequest(tt.r, ReadOptions{MaxBytes: 1 << 20, Reserve: func(n int) error {
				charges = append(charges, n)
				if len(charges) == tt.refuseAtStage {
					return errRefused
				}
				return nil
			}})
			if tt.refuseAtStage > 0 {
				if !errors.Is(err, errRefused) || got != nil {
					t.Fatalf("refusal not honoured: %v", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(charges, tt.wantCharges) {
				t.Fatalf("charges %v, want %v", charges, tt.wantCharges)
			}
		})
	}
}
