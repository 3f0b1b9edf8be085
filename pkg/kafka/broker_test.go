package kafka

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaks a goroutine (a broker or client left
// running), except under -fuzz: a fuzz worker process keeps goroutines that
// talk to the fuzzing coordinator, which goleak would report, failing the
// worker with exit status 1 and stalling the fuzzer.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzzworker"); (f != nil && f.Value.String() == "true") || flag.Lookup("test.fuzz").Value.String() != "" {
		os.Exit(m.Run())
	}
	goleak.VerifyTestMain(m)
}

func flagSet() *flag.FlagSet { return flag.NewFlagSet("test", flag.ContinueOnError) }

func brokerConfig(t *testing.T, dir string) BrokerConfig {
	t.Helper()
	var c BrokerConfig
	c.RegisterFlags(flagSet())
	c.DataDir = dir
	c.ListenAddress = "127.0.0.1:0"
	return c
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// consumeAll reads every record of topic from the start until it has want.
func consumeAll(t *testing.T, addr, topic string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ctxT(t)
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), want, err)
		}
		fs.EachError(func(_ string, _ int32, err error) { t.Fatalf("fetch: %v", err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestBrokerPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := brokerConfig(t, dir)
	cfg.ListenAddress = "127.0.0.1:" + strconv.Itoa(freePort(t))
	b, err := NewBroker(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := b.EnsureTopic(ctxT(t), "loki", 4)
	if err != nil || n != 4 {
		t.Fatalf("EnsureTopic = %d, %v", n, err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("loki"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	const records = 200
	for i := range records {
		r := &kgo.Record{Key: []byte("t"), Value: []byte(fmt.Sprintf("record-%d", i)), Partition: int32(i % 4)}
		if err := cl.ProduceSync(ctxT(t), r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	b.Close()

	// Same directory, same port: everything acknowledged is still there.
	b2, err := NewBroker(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if n, err := b2.EnsureTopic(ctxT(t), "loki", 12); err != nil || n != 4 {
		t.Fatalf("restarted EnsureTopic = %d, %v; an existing topic keeps its partitions", n, err)
	}
	got := consumeAll(t, b2.Addr(), "loki", records)
	seen := map[string]bool{}
	for _, r := range got {
		seen[string(r.Value)] = true
	}
	for i := range records {
		if !seen[fmt.Sprintf("record-%d", i)] {
			t.Fatalf("record-%d lost across restart", i)
		}
	}
}

func TestBrokerSetsRetentionOnTheTopic(t *testing.T) {
	cfg := brokerConfig(t, t.TempDir())
	cfg.RetentionPeriod = 3 * time.Hour
	cfg.RetentionBytes = 64 << 20
	b, err := NewBroker(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.EnsureTopic(ctxT(t), "loki", 2); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctxT(t), "loki")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := rcs.On("loki", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc.Configs {
		if c.Value != nil {
			got[c.Key] = *c.Value
		}
	}
	if got["retention.ms"] != "10800000" || got["retention.bytes"] != strconv.Itoa(64<<20) {
		t.Fatalf("topic retention = %q / %q, want 10800000 / %d", got["retention.ms"], got["retention.bytes"], 64<<20)
	}
}

func TestBrokerAdvertisesTheConfiguredAddress(t *testing.T) {
	port := freePort(t)
	cfg := brokerConfig(t, t.TempDir())
	cfg.ListenAddress = "0.0.0.0:" + strconv.Itoa(port)
	cfg.AdvertiseAddress = "localhost:" + strconv.Itoa(port)
	b, err := NewBroker(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:" + strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(meta.Brokers) != 1 || meta.Brokers[0].Host != "localhost" || int(meta.Brokers[0].Port) != port {
		t.Fatalf("metadata advertises %+v, want localhost:%d", meta.Brokers, port)
	}
	// A client that bootstraps over 127.0.0.1 then follows the advertised
	// name for produce.
	if _, err := b.EnsureTopic(ctxT(t), "loki", 1); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: "loki", Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("produce through the advertised address: %v", err)
	}
}

func TestBrokerOnAllInterfacesAdvertisesLoopbackByDefault(t *testing.T) {
	cfg := brokerConfig(t, t.TempDir())
	cfg.ListenAddress = "0.0.0.0:0"
	b, err := NewBroker(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	host, _, _ := net.SplitHostPort(b.Addr())
	if host != "127.0.0.1" {
		t.Fatalf("advertised %s: 0.0.0.0 is not dialable", b.Addr())
	}
}

func TestBrokerConfigValidate(t *testing.T) {
	for name, mutate := range map[string]func(*BrokerConfig){
		"no data dir":       func(c *BrokerConfig) { c.DataDir = "" },
		"bad listen":        func(c *BrokerConfig) { c.ListenAddress = "nope" },
		"bad advertise":     func(c *BrokerConfig) { c.AdvertiseAddress = "kafka" },
		"no retention":      func(c *BrokerConfig) { c.RetentionPeriod = 0 },
		"no check interval": func(c *BrokerConfig) { c.RetentionCheckInterval = 0 },
	} {
		c := brokerConfig(t, "x")
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestEnsureTopicWithoutAutoCreate(t *testing.T) {
	b, err := NewBroker(brokerConfig(t, t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := EnsureTopic(ctxT(t), cl, "missing", 0, nil); err == nil {
		t.Fatal("EnsureTopic created a topic with auto-creation off")
	}
}
