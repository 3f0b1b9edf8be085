package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/internal/kafkatest"
	"github.com/lokilab/lokilab/internal/pushtest"
	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/push"
)

// readTopic returns every record in topic "loki" at addr, read with franz-go
// up to the current high watermarks.
func readTopic(t *testing.T, addr string) []*kgo.Record {
	t.Helper()
	ctx := timeout(t, 60*time.Second)
	admin, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, "loki")
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("loki"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", len(out), total)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func pushTo(url string, req *push.Request, enc pushtest.Encoding) (int, string, error) {
	r, err := pushtest.NewRequest(url, "", req, enc)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestRunAllInOne is what a newcomer does: `lokilab run`, push, Ctrl-C, run
// again on the same data directory, and find the earlier data still there.
func TestRunAllInOne(t *testing.T) {
	dataDir := t.TempDir()
	httpPort, kafkaPort := freePort(t), freePort(t)
	args := []string{"run", "-data.dir", dataDir, "-server.http-listen-port", httpPort,
		"-kafka.broker.listen-address", "127.0.0.1:" + kafkaPort, "-log.level", "warn",
		"-memberlist.bind-port", "0", "-ingester.http-base-port", "0"}
	base := "http://127.0.0.1:" + httpPort

	lab := start(t, "lokilab run", bin.lokilab, args...)
	lab.waitOutput("lokilab is running")
	waitReady(t, base+"/ready")
	for _, want := range []string{base + "/loki/api/v1/push", "127.0.0.1:" + kafkaPort, `topic "loki", 12 partitions`, dataDir} {
		if !strings.Contains(lab.out.String(), want) {
			t.Errorf("the banner does not mention %q:\n%s", want, lab.out.String())
		}
	}
	first := pushtest.Request(pushtest.Options{Streams: 3, LinesPerStream: 10, ID: "first"})
	if code, body, err := pushTo(base+"/loki/api/v1/push", first, pushtest.JSON); err != nil || code != http.StatusNoContent {
		t.Fatalf("push: %d %q %v", code, body, err)
	}
	for path, want := range map[string]string{
		"/metrics":          `loki_distributor_lines_received_total{tenant="fake"} 30`,
		"/config":           "data_dir: " + dataDir,
		"/config?mode=diff": "http_listen_port: " + httpPort,
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	waitRingOwned(t, base, 12, 3)
	// A clean stop flushes what the ingesters have consumed; records not
	// consumed yet stay in Kafka for the next start. Wait for the push to
	// be consumed so the store check below is about the flush.
	ingesters := regexp.MustCompile(`ingester-\d+\s+(http://\S+)/ingester/status`).FindAllStringSubmatch(lab.out.String(), -1)
	if len(ingesters) != 3 {
		t.Fatalf("the banner lists %d ingesters, want 3:\n%s", len(ingesters), lab.out.String())
	}
	waitConsumed(t, "127.0.0.1:"+kafkaPort, ingesters[0][1], ingesters[1][1], ingesters[2][1])
	// The query API on the same port answers from the ingesters' memory.
	if q := queryAll(t, base, `{env="prod"}`); len(q.copies) != 30 || q.copies["first-2-9"] != 1 || len(q.warnings) > 0 {
		t.Fatalf("before any flush the query API answers %d distinct lines (first-2-9: %d times), warnings %q; want all 30 once",
			len(q.copies), q.copies["first-2-9"], q.warnings)
	}
	lab.stop() // SIGTERM: clean shutdown, exit 0: the ingesters flush
	if got := storedIDs(t, filepath.Join(dataDir, "store")); got["first-2-9"] != 1 || len(got) != 30 {
		t.Fatalf("after a clean stop the store holds %d distinct lines (first-2-9: %d), want all 30 once", len(got), got["first-2-9"])
	}

	lab = start(t, "lokilab run (again)", bin.lokilab, args...)
	waitReady(t, base+"/ready")
	second := pushtest.Request(pushtest.Options{Streams: 3, LinesPerStream: 10, ID: "second"})
	if code, body, err := pushTo(base+"/loki/api/v1/push", second, pushtest.Protobuf); err != nil || code != http.StatusNoContent {
		t.Fatalf("push after restart: %d %q %v", code, body, err)
	}
	// The first run's lines now come from the store, the second's from
	// the ingesters: each once.
	kafkatest.Eventually(t, "the query API answers both runs' lines once each", func() bool {
		q := queryAll(t, base, `{env="prod"}`)
		if len(q.copies) != 60 || len(q.warnings) > 0 {
			return false
		}
		for _, n := range q.copies {
			if n != 1 {
				return false
			}
		}
		return true
	})
	counts := pushtest.CountIDs(t, readTopic(t, "127.0.0.1:"+kafkaPort))
	for _, id := range []string{"first", "second"} {
		for s := range 3 {
			for l := range 10 {
				if n := counts[fmt.Sprintf("%s-%d-%d", id, s, l)]; n != 1 {
					t.Fatalf("line %s-%d-%d is in Kafka %d times after a restart, want 1", id, s, l, n)
				}
			}
		}
	}
	lab.stop()
}

// TestWritePathSurvivesKill9 runs the multi-process topology (a broker
// process and a distributor process on loopback) under continuous pushes,
// SIGKILLs the broker and then the distributor, restarts each, and checks
// that every line of every push that got 204 is in Kafka afterwards.
func TestWritePathSurvivesKill9(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "kafka")
	kafkaAddr := "127.0.0.1:" + freePort(t)
	httpPort := freePort(t)
	url := "http://127.0.0.1:" + httpPort + "/loki/api/v1/push"
	brokerArgs := []string{"kafka", "-kafka.broker.listen-address", kafkaAddr, "-kafka.broker.data-dir", dataDir,
		"-kafka.auto-create-topic-default-partitions", "4", "-log.level", "warn"}
	distArgs := []string{"-kafka.address", kafkaAddr, "-server.http-listen-port", httpPort, "-log.level", "warn", "-memberlist.bind-port", "0",
		"-kafka.write-timeout", "2s", "-distributor.kafka-breaker.open-timeout", "300ms",
		"-distributor.ingestion-rate-limit-mb", "1000", "-distributor.ingestion-burst-size-mb", "1000"}

	broker := start(t, "lokilab kafka", bin.lokilab, brokerArgs...)
	broker.waitOutput("kafka broker listening")
	dist := start(t, "distributor", bin.distributor, distArgs...)
	waitReady(t, "http://127.0.0.1:"+httpPort+"/ready")

	load := startPushLoad(t, url, 4, 2, 5)
	step := func(what string, d time.Duration) {
		time.Sleep(d)
		t.Logf("%-40s outcomes so far: %s", what, load.outcomes())
	}
	recovered := func(what string, since time.Time) {
		t.Logf("pushes acknowledged again %s after %s", load.waitAcked(what, since).Round(time.Millisecond), what)
	}

	step("running", time.Second)
	broker.kill()
	step("broker SIGKILLed", time.Second)
	broker = start(t, "lokilab kafka (restarted)", bin.lokilab, brokerArgs...)
	restarted := time.Now()
	broker.waitOutput("kafka broker listening")
	recovered("the broker restarted", restarted)
	step("broker restarted on its data dir", time.Second)
	dist.kill()
	step("distributor SIGKILLed", 500*time.Millisecond)
	dist = start(t, "distributor (restarted)", bin.distributor, distArgs...)
	restarted = time.Now()
	waitReady(t, "http://127.0.0.1:"+httpPort+"/ready")
	recovered("the distributor restarted", restarted)
	step("distributor restarted", time.Second)
	load.finish()
	dist.stop()

	r := load.check(pushtest.CountIDs(t, readTopic(t, kafkaAddr)))
	t.Logf("%d pushes acknowledged, %d not (%d of those stored anyway); duplicate lines in Kafka: %d; outcomes %s",
		r.ackedPushes, r.unackedPushes, r.unackedStored, r.dups, load.outcomes())
	if len(r.lost) > 0 {
		t.Fatalf("%d acknowledged lines missing from Kafka after kill -9, e.g. %v", len(r.lost), r.lost[:min(5, len(r.lost))])
	}
	if r.ackedPushes == 0 || r.unackedPushes == 0 {
		t.Fatalf("the kills were not felt: %d of %d pushes acknowledged", r.ackedPushes, r.ackedPushes+r.unackedPushes)
	}
	broker.stop()
}

// TestKcatReadsTheRecords: a Kafka client that is not franz-go (Debian's
// kcat, librdkafka) reads what the distributor wrote through `lokilab
// kafka`, and the values decode to the streams that were pushed.
func TestKcatReadsTheRecords(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is not installed: this test needs Debian's kcat package (apt-get install kcat); scripts/test installs it")
	}
	kafkaAddr := "127.0.0.1:" + freePort(t)
	httpPort := freePort(t)
	broker := start(t, "lokilab kafka", bin.lokilab, "kafka", "-kafka.broker.listen-address", kafkaAddr,
		"-kafka.broker.data-dir", t.TempDir(), "-kafka.auto-create-topic-default-partitions", "3", "-log.level", "warn")
	broker.waitOutput("kafka broker listening")
	dist := start(t, "distributor", bin.distributor, "-kafka.address", kafkaAddr, "-server.http-listen-port", httpPort, "-log.level", "warn", "-memberlist.bind-port", "0")
	waitReady(t, "http://127.0.0.1:"+httpPort+"/ready")

	req := pushtest.Request(pushtest.Options{Streams: 5, LinesPerStream: 20, ID: "kcat", StructuredMetadata: true})
	if code, body, err := pushTo("http://127.0.0.1:"+httpPort+"/loki/api/v1/push", req, pushtest.JSON); err != nil || code != http.StatusNoContent {
		t.Fatalf("push: %d %q %v", code, body, err)
	}

	// Metadata as librdkafka sees it.
	meta, err := exec.CommandContext(timeout(t, 30*time.Second), kcat, "-b", kafkaAddr, "-L", "-t", "loki").CombinedOutput()
	if err != nil || !strings.Contains(string(meta), `topic "loki" with 3 partitions`) {
		t.Fatalf("kcat -L: %v\n%s", err, meta)
	}

	// Every record, as: key, partition, offset and value length on one
	// line, then exactly that many value bytes.
	cmd := exec.CommandContext(timeout(t, 30*time.Second), kcat, "-b", kafkaAddr, "-t", "loki", "-C", "-e", "-q",
		"-f", "%k %p %o %S\n%s\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kcat -C: %v", err)
	}
	got := map[string]push.Stream{}
	rd := bufio.NewReader(bytes.NewReader(out))
	for {
		header, err := rd.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var (
			key               string
			partition, offset int
			size              int
		)
		if _, err := fmt.Sscanf(header, "%s %d %d %d\n", &key, &partition, &offset, &size); err != nil {
			t.Fatalf("kcat header %q: %v", header, err)
		}
		value := make([]byte, size+1)
		if _, err := io.ReadFull(rd, value); err != nil {
			t.Fatal(err)
		}
		tenantID, s, err := kafka.DecodeRecord(&kgo.Record{Key: []byte(key), Value: value[:size], Partition: int32(partition)})
		if err != nil {
			t.Fatalf("record at %d/%d as read by kcat: %v", partition, offset, err)
		}
		if tenantID != "fake" {
			t.Errorf("key %q, want the tenant fake", tenantID)
		}
		got[s.Labels] = s
	}
	if len(got) != len(req.Streams) {
		t.Fatalf("kcat read %d streams, pushed %d", len(got), len(req.Streams))
	}
	for _, want := range req.Streams {
		s, ok := got[want.Labels]
		if !ok || len(s.Entries) != len(want.Entries) {
			t.Fatalf("stream %s: kcat read %d entries, pushed %d", want.Labels, len(s.Entries), len(want.Entries))
		}
		for i := range want.Entries {
			if s.Entries[i].Line != want.Entries[i].Line || s.Entries[i].Timestamp != want.Entries[i].Timestamp {
				t.Fatalf("stream %s entry %d differs as read by kcat", want.Labels, i)
			}
		}
	}
	dist.stop()
	broker.stop()
}
