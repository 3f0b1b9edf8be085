package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/kafka"
)

func TestHealthcheck(t *testing.T) {
	ready := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ready\n"))
	}))
	defer ready.Close()
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "ingester replaying partitions [3]", http.StatusServiceUnavailable)
	}))
	defer notReady.Close()
	// A port with nothing behind it: listen, note the address, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	broker, err := kafka.NewBroker(kafka.BrokerConfig{
		DataDir: t.TempDir(), ListenAddress: "127.0.0.1:0", RetentionPeriod: time.Hour, RetentionCheckInterval: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	httpHost := strings.TrimPrefix(ready.URL, "http://")

	for _, tc := range []struct {
		name, target, wantErr string
	}{
		{"http 200 is healthy", ready.URL + "/ready", ""},
		{"http 503 is not, with the reason", notReady.URL + "/ready", "ingester replaying partitions [3]"},
		{"http nothing listening", "http://" + closed + "/ready", "connection refused"},
		{"kafka broker answers", "kafka://" + broker.Addr(), ""},
		// An HTTP server accepts the connection but does not speak Kafka:
		// a bare connect would call it healthy.
		{"kafka on a non-Kafka port", "kafka://" + httpHost, "unhealthy"},
		{"tcp connect", "tcp://" + httpHost, ""},
		{"tcp nothing listening", "tcp://" + closed, "connection refused"},
		{"unknown scheme", "ftp://" + httpHost, "want http, https, kafka or tcp"},
		{"no host", "http:///ready", "no host:port"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runHealthcheck(t.Context(), []string{"-timeout", "3s", tc.target}, &out, &errOut)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("healthcheck %s: %v", tc.target, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("healthcheck %s: error %v, want one containing %q", tc.target, err, tc.wantErr)
			case tc.wantErr == "" && !strings.HasPrefix(out.String(), "healthy: "):
				t.Fatalf("healthcheck %s printed %q", tc.target, out.String())
			}
		})
	}
}
