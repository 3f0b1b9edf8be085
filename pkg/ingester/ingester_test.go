package ingester

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/storage"
)

// TestFlushedLinesAreInTheStore: records become chunks and index entries
// that the read path finds, and the committed offsets reach the end of
// every partition once everything is flushed.
func TestFlushedLinesAreInTheStore(t *testing.T) {
	h := newHarness(t, 4)
	for i := range 5 {
		h.produce("tenant-a", "a"+string(rune('0'+i)), 6, 50)
	}
	h.produce("tenant-b", "b", 3, 20)
	r := h.start(h.config("ingester-0"))
	kafkatest.Eventually(t, "all records consumed", h.consumedAll(r.ing))

	rec := httptest.NewRecorder()
	r.ing.FlushHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/flush", nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("/flush answered %d: %s", rec.Code, rec.Body)
	}
	a := h.checkStored("tenant-a")
	h.checkStored("tenant-b")
	if a.Duplicates != 0 {
		t.Errorf("%d duplicates without any replay", a.Duplicates)
	}
	if a.Series != 6 {
		t.Errorf("tenant-a has %d series in the index, want 6", a.Series)
	}
	ends, committed := h.endOffsets(), h.committed()
	for p, end := range ends {
		if committed[p] != end {
			t.Errorf("partition %d: committed %d after a full flush, end is %d", p, committed[p], end)
		}
	}
	if got := metricstest.Value(t, r.reg, "loki_ingester_chunks_flushed_total", "reason", "forced"); got < 1 {
		t.Errorf("loki_ingester_chunks_flushed_total{reason=forced} = %v", got)
	}
	if got := metricstest.Value(t, r.reg, "loki_ingester_memory_chunks"); got != 0 {
		t.Errorf("%v chunks still in memory after a full flush", got)
	}
}

// TestStoreOutage: while every upload fails, chunks stay in memory, flushes
// are retried, and no offset moves; once the store is back, everything
// lands and the offsets catch up. Nothing is lost at any point.
func TestStoreOutage(t *testing.T) {
	h := newHarness(t, 2)
	cfg := h.config("ingester-0")
	cfg.FlushCheckPeriod = 20 * time.Millisecond
	cfg.ChunkIdlePeriod = 10 * time.Millisecond // every cycle flushes what it has
	if err := h.store.Faults.Set(storage.Fault{Ops: []storage.Op{storage.OpUpload}, Rate: 1}); err != nil {
		t.Fatal(err)
	}
	r := h.start(cfg)
	h.produce("t", "outage", 4, 100)
	kafkatest.Eventually(t, "all records consumed", h.consumedAll(r.ing))
	kafkatest.Eventually(t, "several failed flush attempts", func() bool {
		return metricstest.Value(t, r.reg, "loki_ingester_chunks_flush_failures_total", "op", "upload") >= 8
	})
	if c := h.committed(); len(c) != 0 {
		t.Fatalf("offsets committed while the store was failing: %v", c)
	}
	if r.ing.MemoryChunkBytes() == 0 {
		t.Fatal("chunks were dropped from memory although no upload succeeded")
	}
	if got := metricstest.Value(t, r.reg, "loki_ingester_chunks_flushed_total", "reason", "idle"); got != 0 {
		t.Fatalf("%v chunks reported flushed during the outage", got)
	}

	h.store.Faults.Clear()
	ends := h.endOffsets()
	kafkatest.Eventually(t, "offsets committed after the store recovered", func() bool {
		c := h.committed()
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	})
	h.checkStored("t")
	if r.ing.MemoryChunkBytes() != 0 {
		t.Errorf("%d chunk bytes still in memory after recovery", r.ing.MemoryChunkBytes())
	}
}

// TestRestartReplaysWhatWasNotFlushed: an ingester that stops without
// flushing (as if killed) leaves its offsets behind; the next one replays
// from there and the lines end up stored.
func TestRestartReplaysWhatWasNotFlushed(t *testing.T) {
	h := newHarness(t, 2)
	h.produce("t", "first", 4, 50)
	cfg := h.config("ingester-0")
	r := h.start(cfg)
	kafkatest.Eventually(t, "first batch consumed", h.consumedAll(r.ing))
	if err := r.ing.flushAll(context.Background(), flushAll, reasonForced); err != nil {
		t.Fatal(err)
	}
	flushed := h.committed()

	h.produce("t", "second", 4, 50)
	kafkatest.Eventually(t, "second batch consumed", h.consumedAll(r.ing))
	cfg.ShutdownFlush = false
	r.ing.cfg.ShutdownFlush = false // die holding the second batch in memory only
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if c := h.committed(); c[0] != flushed[0] || c[1] != flushed[1] {
		t.Fatalf("offsets moved without a flush: %v, then %v", flushed, c)
	}

	cfg.ShutdownFlush = true
	r2 := h.start(cfg)
	kafkatest.Eventually(t, "replay done", h.consumedAll(r2.ing))
	if got := metricstest.Value(t, r2.reg, "lokilab_ingester_replayed_records_total", "partition", "0"); got == 0 {
		t.Error("the restarted ingester replayed nothing on partition 0")
	}
	if err := r2.stop(); err != nil {
		t.Fatal(err)
	}
	res := h.checkStored("t")
	t.Logf("stored %d entries in %d chunks, %d duplicates removed", len(res.Entries), res.Chunks, res.Duplicates)
}

// TestMemoryLimitPausesFetching: with the store down, chunk memory grows to
// the limit and stops there — the ingester stops polling and the records
// wait in Kafka — and everything is consumed and stored once it is back.
func TestMemoryLimitPausesFetching(t *testing.T) {
	h := newHarness(t, 2)
	cfg := h.config("ingester-0")
	cfg.MaxMemoryChunkBytes = 64 << 10
	cfg.FlushCheckPeriod = 20 * time.Millisecond
	h.rcfg.FetchMaxBytes = 16 << 10
	h.rcfg.FetchMaxPartitionBytes = 8 << 10
	if err := h.store.Faults.Set(storage.Fault{Ops: []storage.Op{storage.OpUpload}, Rate: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		h.produce("t", "m"+string(rune('a'+i)), 4, 100) // ~20 x 40KB of lines
	}
	r := h.start(cfg)
	kafkatest.Eventually(t, "fetching paused", func() bool {
		return metricstest.Value(t, r.reg, "lokilab_ingester_fetch_paused") == 1
	})
	// Let it try for a while: memory must stay bounded however long the
	// outage lasts.
	time.Sleep(300 * time.Millisecond)
	// The bound: the limit, plus what one poll can add before the check
	// runs again (a poll returns at most one fetch's records).
	bound := int64(cfg.MaxMemoryChunkBytes) + 4*int64(h.rcfg.FetchMaxBytes)
	if got := r.ing.MemoryChunkBytes(); got > bound {
		t.Fatalf("chunk memory %d bytes, bound %d (limit %d)", got, bound, cfg.MaxMemoryChunkBytes)
	}
	if h.consumedAll(r.ing)() {
		t.Fatal("everything was consumed although memory was over its limit")
	}
	h.store.Faults.Clear()
	kafkatest.Eventually(t, "all consumed after recovery", h.consumedAll(r.ing))
	if err := r.ing.flushAll(context.Background(), flushAll, reasonForced); err != nil {
		t.Fatal(err)
	}
	h.checkStored("t")
	if got := metricstest.Value(t, r.reg, "loki_ingester_chunks_flushed_total", "reason", "memory"); got == 0 {
		t.Error("no chunk was cut for memory pressure")
	}
}

// TestBrokerErrors: the broker fails every offset commit, then every fetch,
// for a while. Commits are retried at the next flush cycle, fetching resumes
// when the broker does, and nothing is lost; the committed offsets catch up
// once the broker answers again.
func TestBrokerErrors(t *testing.T) {
	h := newHarness(t, 2)
	cfg := h.config("ingester-0")
	cfg.FlushCheckPeriod = 20 * time.Millisecond
	cfg.ChunkIdlePeriod = 10 * time.Millisecond
	r := h.start(cfg)
	cluster := h.broker.Cluster()

	commits := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Err: kerr.UnknownServerError, Count: -1})
	h.produce("t", "during-commit-errors", 4, 50)
	kafkatest.Eventually(t, "failed commits", func() bool {
		return metricstest.Sum(t, r.reg, "lokilab_ingester_offset_commit_failures_total") >= 4
	})
	if c := h.committed(); len(c) != 0 {
		t.Fatalf("offsets committed while every commit failed: %v", c)
	}
	commits.Remove()

	fetches := cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Err: kerr.UnknownServerError, Count: -1})
	h.produce("t", "during-fetch-errors", 4, 50)
	if err := fetches.Wait(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	fetches.Remove()

	ends := h.endOffsets()
	kafkatest.Eventually(t, "offsets committed after the broker recovered", func() bool {
		c := h.committed()
		for p, end := range ends {
			if c[p] != end {
				return false
			}
		}
		return true
	})
	res := h.checkStored("t")
	t.Logf("%d commit failures retried; stored %d entries, %d duplicates", int(metricstest.Sum(t, r.reg, "lokilab_ingester_offset_commit_failures_total")), len(res.Entries), res.Duplicates)
}

// TestShutdownEndpoint: POST /ingester/shutdown flushes everything, commits,
// answers 204 once done, and ends Run.
func TestShutdownEndpoint(t *testing.T) {
	h := newHarness(t, 2)
	r := h.start(h.config("ingester-0"))
	h.produce("t", "before-shutdown", 4, 30)
	kafkatest.Eventually(t, "all consumed", h.consumedAll(r.ing))

	rec := httptest.NewRecorder()
	r.ing.ShutdownHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/ingester/shutdown", nil))
	if rec.Code != http.StatusNoContent {
		t.Fatalf("/ingester/shutdown answered %d: %s", rec.Code, rec.Body)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run returned %v after /ingester/shutdown", err)
		}
		r.done <- nil // for the cleanup's stop
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after /ingester/shutdown")
	}
	h.checkStored("t")
	ends, committed := h.endOffsets(), h.committed()
	for p, end := range ends {
		if committed[p] != end {
			t.Errorf("partition %d: committed %d after shutdown, end %d", p, committed[p], end)
		}
	}
	if err := r.ing.Ready(context.Background()); err == nil {
		t.Error("ready after shutdown")
	}
}

// TestReleaseThenWaitingFlushCommitsNothing: a partition handed over while
// the store fails drops its chunks unflushed; a flush cycle that was
// waiting for the partition must not then commit its offset over streams
// that no longer exist (that would skip the dropped lines for the next
// owner). Found in review.
func TestReleaseThenWaitingFlushCommitsNothing(t *testing.T) {
	h := newHarness(t, 1)
	r := h.start(h.config("ingester-0"))
	h.produce("t", "dropped", 4, 20)
	kafkatest.Eventually(t, "all consumed", h.consumedAll(r.ing))
	if err := h.store.Faults.Set(storage.Fault{Ops: []storage.Op{storage.OpUpload}, Rate: 1}); err != nil {
		t.Fatal(err)
	}
	p := r.ing.partition(0)
	if err := r.ing.release(context.Background(), 0, reasonHandover); err == nil {
		t.Fatal("release flushed although every upload fails")
	}
	if err := p.flush(context.Background(), flushDue, ""); err != nil {
		t.Fatal(err)
	}
	if c := h.committed(); len(c) != 0 {
		t.Fatalf("offsets committed after the partition's unflushed chunks were dropped: %v", c)
	}
	if got := r.ing.MemoryChunkBytes(); got != 0 {
		t.Fatalf("memory account at %d after dropping everything, want 0", got)
	}
}

// TestMemoryPressureAcrossPartitions: chunk memory over the limit, spread
// over several partitions that each hold less than half of it; the
// memory-pressure flush must still cut enough to resume fetching, not wait
// for chunks to go idle. Found in review.
func TestMemoryPressureAcrossPartitions(t *testing.T) {
	h := newHarness(t, 4)
	cfg := h.config("ingester-0")
	cfg.MaxMemoryChunkBytes = 96 << 10
	h.rcfg.FetchMaxBytes = 16 << 10
	h.rcfg.FetchMaxPartitionBytes = 4 << 10
	for i := range 10 {
		h.produce("t", "p"+string(rune('a'+i)), 8, 50) // 8 streams over 4 partitions
	}
	r := h.start(cfg)
	kafkatest.Eventually(t, "everything consumed despite the memory limit", h.consumedAll(r.ing))
	if got := metricstest.Value(t, r.reg, "loki_ingester_chunks_flushed_total", "reason", "memory"); got == 0 {
		t.Fatal("no chunk was cut for memory pressure")
	}
	if err := r.ing.flushAll(context.Background(), flushAll, reasonForced); err != nil {
		t.Fatal(err)
	}
	h.checkStored("t")
}
