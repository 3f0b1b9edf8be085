package kafka

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFaultInjectorOverHTTP drives the broker's lab fault endpoint as the
// fault matrix does: a produce error refuses writes, a stall holds them,
// and DELETE restores the broker.
func TestFaultInjectorOverHTTP(t *testing.T) {
	b, err := NewBroker(brokerConfig(t, t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.EnsureTopic(ctxT(t), "loki", 1); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(NewFaultInjector(b).Handler())
	defer srv.Close()
	send := func(method, body string, want int) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+FaultPath, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d", method, body, resp.StatusCode, want)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("loki"),
		kgo.RecordRetries(0), kgo.RecordDeliveryTimeout(2*time.Second), kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr()
	}
	if err := produce(10 * time.Second); err != nil {
		t.Fatalf("healthy produce: %v", err)
	}

	send(http.MethodPut, `{"request":"produce","error_code":56}`, http.StatusOK) // KAFKA_STORAGE_ERROR
	if err := produce(10 * time.Second); !errors.Is(err, kerr.KafkaStorageError) {
		t.Errorf("produce with an injected error: %v, want KAFKA_STORAGE_ERROR", err)
	}
	send(http.MethodDelete, "", http.StatusOK)
	if err := produce(10 * time.Second); err != nil {
		t.Fatalf("produce after clearing: %v", err)
	}

	send(http.MethodPut, `{"request":"produce","delay":"1m"}`, http.StatusOK)
	if err := produce(500 * time.Millisecond); err == nil {
		t.Error("a produce went through a stall")
	}
	send(http.MethodDelete, "", http.StatusOK) // releases what is held
	if err := produce(10 * time.Second); err != nil {
		t.Fatalf("produce after clearing the stall: %v", err)
	}

	for _, bad := range []string{`{"request":"nope","error_code":56}`, `{"request":"produce"}`, `{"request":"produce","error_code":9999}`, `{"request":"produce","delay":"soon"}`, `{"extra":1}`} {
		send(http.MethodPut, bad, http.StatusBadRequest)
	}
}
