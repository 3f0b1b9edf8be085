// Package kafkatest starts the embedded broker for tests, and waits for
// asynchronous systems to reach a state.
package kafkatest

import (
	"context"
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/kafka"
)

// Broker starts an embedded broker persisted to a temporary directory, on a
// free loopback port, with topic "loki" of the given partitions. It is
// closed when the test ends.
func Broker(t testing.TB, partitions int) *kafka.Broker {
	t.Helper()
	var cfg kafka.BrokerConfig
	cfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	cfg.DataDir = filepath.Join(t.TempDir(), "kafka")
	cfg.ListenAddress = "127.0.0.1:0"
	b, err := kafka.NewBroker(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if _, err := b.EnsureTopic(context.Background(), "loki", partitions); err != nil {
		t.Fatal(err)
	}
	return b
}

// Eventually polls cond until it holds, failing the test after a generous
// deadline. It waits for the system to reach a state; it asserts nothing
// about how long that took.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
