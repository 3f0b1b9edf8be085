package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeS3 answers the few S3 requests a round trip makes (PUT, GET, HEAD,
// DELETE of one object, path-style), enough to check that Config reaches
// the client as meant: endpoint scheme, bucket addressing, credentials.
type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte // "/bucket/key"
	auth    []string          // Authorization headers seen
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	key := r.URL.Path
	switch r.Method {
	case http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err == nil && strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
			body, err = decodeAWSChunked(body)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.objects[key] = body
		w.Header().Set("ETag", `"etag"`)
	case http.MethodGet, http.MethodHead:
		body, ok := f.objects[key]
		if !ok {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			if r.Method == http.MethodGet {
				io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>`)
			}
			return
		}
		w.Header().Set("ETag", `"etag"`)
		w.Header().Set("Last-Modified", time.Unix(0, 0).UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodGet {
			w.Write(body)
		}
	case http.MethodDelete:
		delete(f.objects, key)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "not implemented by the fake", http.StatusNotImplemented)
	}
}

// decodeAWSChunked undoes the aws-chunked encoding the client uses to sign
// a body it streams over plain HTTP: chunks of
// "<hex size>;chunk-signature=<sig>\r\n<data>\r\n", ending with size 0.
func decodeAWSChunked(b []byte) ([]byte, error) {
	var out []byte
	for {
		header, rest, ok := bytes.Cut(b, []byte("\r\n"))
		if !ok {
			return nil, errors.New("aws-chunked: no chunk header")
		}
		sizeHex, _, _ := bytes.Cut(header, []byte(";"))
		size, err := strconv.ParseInt(string(sizeHex), 16, 64)
		if err != nil || size < 0 || size+2 > int64(len(rest)) {
			return nil, fmt.Errorf("aws-chunked: bad chunk header %q", header)
		}
		if size == 0 {
			return out, nil
		}
		out = append(out, rest[:size]...)
		b = rest[size+2:]
	}
}

func TestS3ConfigReachesTheClient(t *testing.T) {
	fake := &fakeS3{objects: map[string][]byte{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	cfg := Config{Backend: BackendS3, S3: S3Config{
		Endpoint:         srv.URL, // http:// makes the client use plain HTTP
		BucketName:       "loki",
		Region:           "us-east-1",
		AccessKeyID:      "lokilab-id",
		SecretAccessKey:  "lokilab-secret",
		BucketLookupType: "path",
	}}
	s, err := New(cfg, "ingester", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if err := s.Bucket.Upload(ctx, "fake/chunks/1/a", strings.NewReader("chunk bytes")); err != nil {
		t.Fatalf("upload: %v", err)
	}
	fake.mu.Lock()
	stored := string(fake.objects["/loki/fake/chunks/1/a"])
	fake.mu.Unlock()
	if stored != "chunk bytes" {
		t.Fatalf("fake holds %q at /loki/fake/chunks/1/a; objects %v", stored, fake.objects)
	}
	if got := get(t, s.Bucket, "fake/chunks/1/a"); got != "chunk bytes" {
		t.Errorf("get = %q", got)
	}
	if ok, err := s.Bucket.Exists(ctx, "fake/chunks/1/a"); !ok || err != nil {
		t.Errorf("exists = %v, %v", ok, err)
	}
	if ok, err := s.Bucket.Exists(ctx, "fake/chunks/1/missing"); ok || err != nil {
		t.Errorf("exists of a missing object = %v, %v", ok, err)
	}
	if _, err := s.Bucket.Get(ctx, "fake/chunks/1/missing"); !s.Bucket.IsObjNotFoundErr(err) {
		t.Errorf("get of a missing object: %v, want not-found", err)
	}
	if err := s.Bucket.Delete(ctx, "fake/chunks/1/a"); err != nil {
		t.Errorf("delete: %v", err)
	}

	fake.mu.Lock()
	defer fake.mu.Unlock()
	for _, a := range fake.auth {
		if !strings.Contains(a, "Credential=lokilab-id/") {
			t.Errorf("request signed as %q, want with the configured key ID", a)
		}
		if strings.Contains(a, "lokilab-secret") {
			t.Errorf("secret sent in the clear: %q", a)
		}
	}
}
