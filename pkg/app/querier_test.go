package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/pkg/index"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/storage"
)

func TestQuerierAndCompactorConfigsValidate(t *testing.T) {
	var q QuerierConfig
	if err := parse(t, &q); err != nil {
		t.Fatal(err)
	}
	if err := q.Validate(); err != nil {
		t.Fatalf("the querier's defaults do not validate: %v", err)
	}
	var c CompactorConfig
	if err := parse(t, &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("the compactor's defaults do not validate: %v", err)
	}
	if err := parse(t, &q, "-querier.ingester-addresses", "a:1, b:2,"); err != nil || len(q.IngesterAddresses) != 2 || q.IngesterAddresses[1] != "b:2" {
		t.Fatalf("ingester addresses %q %v", q.IngesterAddresses, err)
	}
}

// TestCompactorProcess: the compactor process merges the segments the
// ingesters left in a filesystem store into one per tenant-day.
func TestCompactorProcess(t *testing.T) {
	dir := t.TempDir()
	var cfg CompactorConfig
	if err := parse(t, &cfg, "-storage.filesystem.dir", dir, "-compactor.compaction-interval", "50ms",
		"-server.http-listen-port", "0", "-log.level", "warn"); err != nil {
		t.Fatal(err)
	}
	// Three flushes' segments for one day, as three ingester cycles write.
	store, err := storage.New(cfg.Storage, "test", prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ic := index.NewClient(store.Bucket)
	day0 := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	ls := labels.New(labels.Label{Name: "app", Value: "api"})
	for f := range 3 {
		from := day0.Add(time.Duration(f) * time.Hour).UnixNano()
		ref := index.ChunkRef{Fingerprint: ls.Hash(), From: from, Through: from + 1, Checksum: uint32(f), Entries: 1}
		if _, err := ic.Write(context.Background(), "a", fmt.Sprintf("flush-%d", f), []index.Series{{Labels: ls, Chunks: []index.ChunkRef{ref}}}); err != nil {
			t.Fatal(err)
		}
	}
	segments := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "index", fmt.Sprint(index.DayOf(day0.UnixNano())), "a", "*"))
		return len(m)
	}
	if n := segments(); n != 3 {
		t.Fatalf("test setup: %d segments", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunCompactor(ctx, cfg, &cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	deadline := time.Now().Add(10 * time.Second)
	for segments() != 1 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the compactor left %d segments after 10s", segments())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunCompactor: %v", err)
	}
	series, err := ic.Series(context.Background(), "a", day0.UnixNano(), day0.Add(24*time.Hour).UnixNano())
	if err != nil || len(series) != 1 || len(series[0].Chunks) != 3 {
		t.Fatalf("after compaction: %v %v", series, err)
	}
}
