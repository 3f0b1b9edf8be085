package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/internal/storetest"
	"github.com/lokilab/lokilab/pkg/storage"
)

// TestIngesterSurvivesKill9: under continuous pushes, the ingester process
// is killed with SIGKILL — twice — and restarted on the same committed
// offsets. Afterwards every line that got a 204 is in object storage, read
// back through the index and chunk code; the duplicates the replays made
// are counted and removed at read.
func TestIngesterSurvivesKill9(t *testing.T) {
	kafkaAddr, distURL := startWritePath(t, 4)
	ingPort := freePort(t)
	storeDir := filepath.Join(t.TempDir(), "store")

	ingArgs := []string{"-kafka.address", kafkaAddr, "-server.http-listen-port", ingPort, "-log.level", "warn",
		"-ingester.ownership", "static", "-ingester.static-partitions", "0,1,2,3",
		"-storage.filesystem.dir", storeDir,
		// Flush often, so kills land between uploads, index writes and
		// commits rather than always before the first flush.
		"-ingester.flush-check-period", "150ms", "-ingester.chunks-idle-period", "100ms",
		"-ingester.chunk-target-size", "8KB", "-ingester.chunks-block-size", "2KB"}
	ing := start(t, "ingester", bin.ingester, ingArgs...)
	waitReady(t, "http://127.0.0.1:"+ingPort+"/ready")

	load := startPushLoad(t, distURL+"/loki/api/v1/push", 4, 6, 3)
	for round := range 2 {
		time.Sleep(1500 * time.Millisecond)
		ing.kill()
		t.Logf("ingester SIGKILLed (round %d); pushes so far: %s", round+1, load.outcomes())
		time.Sleep(300 * time.Millisecond)
		ing = start(t, fmt.Sprintf("ingester (restart %d)", round+1), bin.ingester, ingArgs...)
		restarted := time.Now()
		waitReady(t, "http://127.0.0.1:"+ingPort+"/ready")
		t.Logf("restarted ingester ready (caught up) after %s", time.Since(restarted).Round(time.Millisecond))
	}
	time.Sleep(500 * time.Millisecond)
	load.finish()

	checkStoreHoldsAcked(t, load, kafkaAddr, storeDir, map[string]*proc{"http://127.0.0.1:" + ingPort: ing})
}

// waitConsumed waits until the ingesters at urls have processed every
// record in the topic.
func waitConsumed(t *testing.T, kafkaAddr string, urls ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := timeout(t, 60*time.Second)
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "loki")
	if err != nil {
		t.Fatal(err)
	}
	for {
		next := make(map[int32]int64)
		var err error
		for _, u := range urls {
			st, serr := getStatus(u)
			if serr != nil {
				err = serr
			}
			for _, p := range st.Partitions {
				next[p.Partition] = p.Next
			}
		}
		done := err == nil
		ends.Each(func(o kadm.ListedOffset) {
			if next[o.Partition] < o.Offset {
				done = false
			}
		})
		if done {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("ingesters did not consume the topic within 60s (next offsets %v, err %v)", next, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readStore reads tenant fake's entries from a filesystem store.
func readStore(t *testing.T, dir string) storetest.Result {
	t.Helper()
	var scfg storage.Config
	scfg.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	scfg.Filesystem.Dir = dir
	store, err := storage.New(scfg, "test", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	res, err := storetest.Read(context.Background(), store.Bucket, "fake")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// storedIDs counts the distinct stored lines of tenant fake by line ID.
func storedIDs(t *testing.T, dir string) map[string]int {
	t.Helper()
	ids := make(map[string]int)
	for _, e := range readStore(t, dir).Entries {
		ids[pushtest.LineID(e.Line)]++
	}
	return ids
}

// waitRingOwned waits until the ring page at base shows the given number of
// healthy ingesters and every one of partitions with an ACTIVE owner.
func waitRingOwned(t *testing.T, base string, partitions, ingesters int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		var v struct {
			Instances []struct {
				ID      string `json:"id"`
				Role    string `json:"role"`
				Healthy bool   `json:"healthy"`
			} `json:"instances"`
			Partitions []struct {
				ID     int32 `json:"id"`
				Owners []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"owners"`
			} `json:"partitions"`
		}
		resp, err := http.Get(base + "/ring?format=json")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
		}
		if err != nil {
			last = err.Error()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		healthy, owned := 0, 0
		for _, in := range v.Instances {
			if in.Role == "ingester" && in.Healthy {
				healthy++
			}
		}
		for _, p := range v.Partitions {
			for _, o := range p.Owners {
				if o.State == "ACTIVE" {
					owned++
					break
				}
			}
		}
		last = fmt.Sprintf("%d healthy ingesters, %d of %d partitions with an ACTIVE owner", healthy, owned, len(v.Partitions))
		if healthy == ingesters && owned == partitions && len(v.Partitions) == partitions {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("ring did not settle within 60s: %s", last)
}

// TestGroupModeSurvivesKill9: two ingesters own the partitions through a
// Kafka consumer group. One is SIGKILLed; after the group's session timeout
// the survivor is assigned its partitions; a third joins and takes some.
// No acknowledged line is lost; the rebalance's re-reads show up as
// duplicates removed at read.
func TestGroupModeSurvivesKill9(t *testing.T) {
	kafkaAddr, distURL := startWritePath(t, 4)
	storeDir := filepath.Join(t.TempDir(), "store")

	ingester := func(name string) (*proc, string) {
		port := freePort(t)
		p := start(t, name, bin.ingester, "-kafka.address", kafkaAddr, "-server.http-listen-port", port, "-log.level", "warn",
			"-ingester.instance-id", name, "-ingester.ownership", "group", "-storage.filesystem.dir", storeDir,
			"-ingester.flush-check-period", "150ms", "-ingester.chunks-idle-period", "100ms",
			"-ingester.chunk-target-size", "8KB", "-ingester.chunks-block-size", "2KB")
		return p, "http://127.0.0.1:" + port
	}
	a, aURL := ingester("ingester-a")
	b, bURL := ingester("ingester-b")
	waitOwned(t, 4, aURL, bURL)

	load := startPushLoad(t, distURL+"/loki/api/v1/push", 4, 6, 3)
	time.Sleep(time.Second)
	b.kill()
	killed := time.Now()
	t.Logf("ingester-b SIGKILLed; pushes so far: %s", load.outcomes())
	waitOwned(t, 4, aURL)
	t.Logf("ingester-a was assigned all 4 partitions %s after the kill (session timeout 6s)", time.Since(killed).Round(10*time.Millisecond))
	c, cURL := ingester("ingester-c")
	waitOwned(t, 4, aURL, cURL)
	time.Sleep(time.Second)
	load.finish()

	checkStoreHoldsAcked(t, load, kafkaAddr, storeDir, map[string]*proc{aURL: a, cURL: c})
}

// ingesterStatus is GET /ingester/status.
type ingesterStatus struct {
	Partitions []struct {
		Partition int32 `json:"partition"`
		Next      int64 `json:"next_offset"`
	} `json:"partitions"`
}

func getStatus(url string) (ingesterStatus, error) {
	var st ingesterStatus
	resp, err := http.Get(url + "/ingester/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// waitOwned waits until the ingesters at urls together own partitions
// 0..n-1, each exactly once.
func waitOwned(t *testing.T, n int, urls ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last map[int32]int
	for time.Now().Before(deadline) {
		last = make(map[int32]int)
		for _, u := range urls {
			st, err := getStatus(u)
			if err != nil {
				continue
			}
			for _, p := range st.Partitions {
				last[p.Partition]++
			}
		}
		ok := len(last) == n
		for _, c := range last {
			ok = ok && c == 1
		}
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("partitions not owned exactly once by %v within 60s: %v", urls, last)
}

// TestStreamLimitBoundsIngesterMemory: a tenant pushing far more distinct
// streams than max_global_streams_per_user gets 429 stream_limit for the
// excess, and the ingester's live heap stays under what its configuration
// allows: a process baseline, plus max_memory_chunk_bytes, plus an
// allowance per admitted stream. Measured on the ingester process's own
// /metrics after a forced GC.
func TestStreamLimitBoundsIngesterMemory(t *testing.T) {
	const (
		streamLimit    = 2000
		chunkMemLimit  = 8 << 20
		perStreamAllow = 16 << 10 // a stream's map entry, labels and open chunk, with slack
		baseline       = 16 << 20 // runtime, Kafka client, HTTP server, metrics
		pushes         = 40
		streamsPerPush = 1000
	)
	kafkaAddr, distURL := startWritePath(t, 2, "-ingester.max-global-streams-per-user", fmt.Sprint(streamLimit))
	ingPort := freePort(t)
	dir := t.TempDir()
	ingURL := "http://127.0.0.1:" + ingPort
	start(t, "ingester", bin.ingester, "-kafka.address", kafkaAddr, "-server.http-listen-port", ingPort, "-log.level", "warn",
		"-ingester.ownership", "static", "-ingester.static-partitions", "0,1", "-storage.filesystem.dir", filepath.Join(dir, "store"),
		"-ingester.max-memory-chunk-bytes", fmt.Sprint(chunkMemLimit), "-kafka.fetch-max-bytes", "4MB")
	waitReady(t, ingURL+"/ready")
	runtimeGC(t, ingURL)
	before := metricSum(t, ingURL, "go_memstats_heap_alloc_bytes")

	url := distURL + "/loki/api/v1/push"
	codes := map[int]int{}
	for i := range pushes {
		req := pushtest.Request(pushtest.Options{Streams: streamsPerPush, LinesPerStream: 2, ID: fmt.Sprintf("c%d", i), Seed: uint64(i)})
		for s := range req.Streams {
			// A label with a request ID in it: every stream is new.
			req.Streams[s].Labels = fmt.Sprintf(`{app="api", request_id="%d-%d"}`, i, s)
		}
		code, body, err := pushTo(url, req, pushtest.Protobuf)
		if err != nil {
			t.Fatal(err)
		}
		codes[code]++
		if code == http.StatusTooManyRequests && !strings.Contains(body, "Maximum active stream limit exceeded") {
			t.Fatalf("429 without the stream limit message: %q", body)
		}
	}
	waitConsumed(t, kafkaAddr, ingURL)
	runtimeGC(t, ingURL)
	after := metricSum(t, ingURL, "go_memstats_heap_alloc_bytes")
	streams := metricSum(t, ingURL, "loki_ingester_memory_streams")
	refused := metricSum(t, distURL, `loki_discarded_samples_total{reason="stream_limit",tenant="fake"}`)
	bound := float64(baseline + chunkMemLimit + streamLimit*perStreamAllow)
	t.Logf("%d streams attempted, pushes answered %v; distributor refused %.0f lines (stream_limit); ingester holds %.0f streams; live heap %.1f MiB before, %.1f MiB after (bound %.1f MiB)",
		pushes*streamsPerPush, codes, refused, streams, before/(1<<20), after/(1<<20), bound/(1<<20))
	if codes[http.StatusTooManyRequests] == 0 || refused < float64((pushes*streamsPerPush-streamLimit)*2) {
		t.Fatalf("the stream limit did not refuse the excess: answers %v, %.0f lines refused", codes, refused)
	}
	if streams > streamLimit {
		t.Fatalf("the ingester holds %.0f streams, over the limit of %d", streams, streamLimit)
	}
	if after > bound {
		t.Fatalf("ingester live heap %.1f MiB, over its bound of %.1f MiB", after/(1<<20), bound/(1<<20))
	}
}

// metricSum returns the sum of the samples of a metric (a name, or a name
// with its exact label set) on url/metrics.
func metricSum(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		base, _, _ := strings.Cut(name, "{")
		if name != series && base != series {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(value, &v); err == nil {
			sum += v
		}
	}
	return sum
}

// runtimeGC asks the process for a heap profile with gc=1, which runs a
// garbage collection first, so heap figures read afterwards are live bytes.
func runtimeGC(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// startWritePath starts a broker process (topic "loki" with the given
// partitions, on a temporary data dir) and a distributor process with rate
// limits out of the way, and returns the broker's address and the
// distributor's base URL.
func startWritePath(t *testing.T, partitions int, distArgs ...string) (kafkaAddr, distURL string) {
	t.Helper()
	kafkaAddr = "127.0.0.1:" + freePort(t)
	distPort := freePort(t)
	broker := start(t, "lokilab kafka", bin.lokilab, "kafka", "-kafka.broker.listen-address", kafkaAddr,
		"-kafka.broker.data-dir", filepath.Join(t.TempDir(), "kafka"), "-kafka.auto-create-topic-default-partitions", fmt.Sprint(partitions), "-log.level", "warn")
	broker.waitOutput("kafka broker listening")
	start(t, "distributor", bin.distributor, append([]string{"-kafka.address", kafkaAddr, "-server.http-listen-port", distPort,
		"-log.level", "warn", "-memberlist.bind-port", "0",
		"-distributor.ingestion-rate-limit-mb", "1000", "-distributor.ingestion-burst-size-mb", "1000"}, distArgs...)...)
	distURL = "http://127.0.0.1:" + distPort
	waitReady(t, distURL+"/ready")
	return kafkaAddr, distURL
}

// TestRingModeSurvivesKill9: two ingester processes share the partitions
// through the ring (gossiped with the distributor's memberlist node). One
// is SIGKILLed under load; once its heartbeat is stale the survivor takes
// its partitions and replays them from the last commit. No acknowledged
// line is lost.
func TestRingModeSurvivesKill9(t *testing.T) {
	const partitions = 4
	c := startRingCluster(t, partitions)
	a, aURL := c.ingester("ingester-a", "-ingester.flush-check-period", "150ms", "-ingester.chunks-idle-period", "100ms")
	b, bURL := c.ingester("ingester-b", "-ingester.flush-check-period", "150ms", "-ingester.chunks-idle-period", "100ms")
	kafkaAddr, distURL, storeDir := c.kafkaAddr, c.distURL, c.storeDir
	waitOwned(t, partitions, aURL, bURL)
	waitRingOwned(t, distURL, partitions, 2)

	load := startPushLoad(t, distURL+"/loki/api/v1/push", 4, 6, 3)
	time.Sleep(time.Second)
	b.kill()
	killed := time.Now()
	t.Logf("ingester-b SIGKILLed; pushes so far: %s", load.outcomes())
	waitOwned(t, partitions, aURL)
	t.Logf("ingester-a owns all %d partitions %s after the kill (heartbeat timeout 2s)", partitions, time.Since(killed).Round(10*time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	load.finish()

	checkStoreHoldsAcked(t, load, kafkaAddr, storeDir, map[string]*proc{aURL: a})
}

// ringCluster is the multi-process write path with ring ownership: a
// broker process, a distributor process whose ring node is the seed
// everyone joins, and ring-mode ingester processes started on demand, all
// sharing one filesystem store. Ring timings are shrunk so a dead node is
// noticed in 2s.
type ringCluster struct {
	t                                      *testing.T
	partitions                             int
	kafkaAddr, distURL, distRing, storeDir string
}

var testRingArgs = []string{"-ring.heartbeat-period", "200ms", "-ring.heartbeat-timeout", "2s", "-memberlist.gossip-interval", "50ms"}

func startRingCluster(t *testing.T, partitions int) *ringCluster {
	t.Helper()
	c := &ringCluster{t: t, partitions: partitions, distRing: "127.0.0.1:" + freePort(t), storeDir: filepath.Join(t.TempDir(), "store")}
	host, port, _ := strings.Cut(c.distRing, ":")
	c.kafkaAddr, c.distURL = startWritePath(t, partitions, append([]string{"-memberlist.bind-addr", host, "-memberlist.bind-port", port}, testRingArgs...)...)
	return c
}

// ingester starts a ring-mode ingester process cutting small chunks
// (8KB) and returns it with its base URL.
func (c *ringCluster) ingester(name string, extra ...string) (*proc, string) {
	httpPort := freePort(c.t)
	args := append([]string{"-kafka.address", c.kafkaAddr, "-server.http-listen-port", httpPort, "-log.level", "warn",
		"-ingester.instance-id", name, "-storage.filesystem.dir", c.storeDir, "-ring.partitions", fmt.Sprint(c.partitions),
		"-memberlist.bind-port", "0", "-memberlist.join", c.distRing,
		"-ingester.chunk-target-size", "8KB", "-ingester.chunks-block-size", "2KB"}, testRingArgs...)
	return start(c.t, name, bin.ingester, append(args, extra...)...), "http://127.0.0.1:" + httpPort
}

// checkStoreHoldsAcked waits until the ingesters at urls have consumed the
// whole topic, flushes them, stops them, and fails the test if any line
// load got a 204 for is missing from the store at storeDir (read back
// through the index and chunks). It logs the figures.
func checkStoreHoldsAcked(t *testing.T, load *pushLoad, kafkaAddr, storeDir string, ingesters map[string]*proc) {
	t.Helper()
	var urls []string
	for u := range ingesters {
		urls = append(urls, u)
	}
	waitConsumed(t, kafkaAddr, urls...)
	for u, p := range ingesters {
		resp, err := http.Post(u+"/flush", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("%s/flush answered %d", u, resp.StatusCode)
		}
		p.stop()
	}
	res := readStore(t, storeDir)
	copies := make(map[string]int, len(res.Entries))
	for _, e := range res.Entries {
		copies[pushtest.LineID(e.Line)]++
	}
	r := load.check(copies)
	t.Logf("%d pushes acknowledged (%d lines), %d failed; store: %d series, %d chunks, %d distinct entries, %d duplicates removed at read",
		r.ackedPushes, r.ackedPushes*load.streams*load.lines, r.unackedPushes, res.Series, res.Chunks, len(res.Entries), res.Duplicates)
	if len(r.lost) > 0 {
		t.Fatalf("%d acknowledged lines missing from object storage, e.g. %v", len(r.lost), r.lost[:min(5, len(r.lost))])
	}
	if r.ackedPushes == 0 {
		t.Fatal("no push was acknowledged: the test proved nothing")
	}
}
