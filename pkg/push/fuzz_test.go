package push

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"streams":[{"stream":{"app":"api"},"values":[["1700000000000000000","hello"]]}]}`,
		`{"streams":[{"stream":{"a":"b"},"values":[["1","x",{"trace_id":"t"}]]}]}`,
		`{"streams":[]}`, `{}`, `[]`, `{"streams":[{"values":[["1","\u00e9\n"]]}]}`,
		`{"streams":[{"stream":{"a":"b"},"values":[["-5","x",null]]}]}`,
		`{"streams":[{"stream":{"a":"b"},"values":[["-9223372036854775808","min"],["9223372036854775807","max"]]}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r Request
		if err := DecodeJSON(body, &r); err != nil {
			return
		}
		// Whatever is accepted re-encodes as protobuf and decodes equal.
		var back Request
		if err := DecodeProto(AppendProto(nil, &r), &back); err != nil {
			t.Fatalf("accepted JSON does not survive a protobuf round trip: %v", err)
		}
		if !equalRequests(&r, &back) {
			t.Fatalf("protobuf round trip changed the request")
		}
	})
}

func FuzzDecodeProto(f *testing.F) {
	f.Add(AppendProto(nil, sampleRequest()))
	f.Add(AppendProto(nil, compatRequest()))
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if err := DecodeProto(bytes.Clone(b), &r); err != nil {
			return
		}
		// Accepted input has a canonical encoding that decodes to the same
		// request and encodes to itself.
		canon := AppendProto(nil, &r)
		var back Request
		if err := DecodeProto(canon, &back); err != nil {
			t.Fatalf("canonical encoding does not decode: %v", err)
		}
		if !equalRequests(&r, &back) {
			t.Fatal("canonical encoding decodes to a different request")
		}
		if again := AppendProto(nil, &back); !bytes.Equal(again, canon) {
			t.Fatal("canonical encoding is not stable")
		}
	})
}

// FuzzReadRequest drives the whole HTTP decoding path: content type,
// content encoding, size limits. It must never panic, and a body it accepts
// must respect the limit.
func FuzzReadRequest(f *testing.F) {
	json := []byte(`{"streams":[{"stream":{"app":"api"},"values":[["1","hello"]]}]}`)
	f.Add(json, uint8(0))
	f.Add(EncodeSnappyProto(sampleRequest()), uint8(1))
	f.Add(gzipBytes(json), uint8(2))
	f.Add([]byte("\x00\x00"), uint8(3))
	const limit = 4 << 10
	f.Fuzz(func(t *testing.T, body []byte, mode uint8) {
		ct, enc := "application/json", ""
		switch mode % 4 {
		case 1:
			ct = "application/x-protobuf"
		case 2:
			enc = "gzip"
		case 3:
			ct, enc = "application/x-protobuf", "deflate"
		}
		r := httptest.NewRequest(http.MethodPost, "/loki/api/v1/push", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		if enc != "" {
			r.Header.Set("Content-Encoding", enc)
		}
		req, wire, err := ReadRequest(r, ReadOptions{MaxBytes: limit})
		if err != nil {
			return
		}
		if wire > limit {
			t.Fatalf("accepted %d wire bytes over a %d limit", wire, limit)
		}
		// Lines and metadata are copied from the body, so they cannot
		// exceed it. (Labels can: JSON labels are re-rendered quoted, and
		// a quoted \xff is four bytes.)
		size := 0
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				size += e.Size()
			}
		}
		if size > limit {
			t.Fatalf("accepted a body that decodes to %d bytes of lines over a %d limit", size, limit)
		}
	})
}
