package app

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/kafka"
)

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startAllInOne runs the lab in this process on free ports with the
// defaults adjust changes, and stops it when the test ends (failing the
// test if it does not stop within a minute). It returns the API's address.
func startAllInOne(t *testing.T, adjust func(*AllInOneConfig), hooks AllInOneHooks) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts the whole lab")
	}
	var cfg AllInOneConfig
	if err := config.Parse(flag.NewFlagSet("test", flag.ContinueOnError), nil, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.DistributorHTTPBasePort = 0
	cfg.IngesterHTTPBasePort = 0
	cfg.Memberlist.BindPort = 0
	cfg.Memberlist.LeaveTimeout = time.Second
	cfg.Server.HTTPListenAddress = "127.0.0.1"
	cfg.Server.HTTPListenPort = freeTCPPort(t)
	cfg.EmbeddedKafka.ListenAddress = "127.0.0.1:" + strconv.Itoa(freeTCPPort(t))
	adjust(&cfg)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- RunAllInOneWith(ctx, cfg, nil, slog.New(slog.DiscardHandler), hooks) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && err != context.Canceled {
				t.Errorf("RunAllInOneWith: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("the lab did not stop")
		}
	})
	return "127.0.0.1:" + strconv.Itoa(cfg.Server.HTTPListenPort)
}

// TestRunAllInOneWithHooks runs the lab with two distributors and one
// ingester: the broker hook gets the embedded broker before anything
// starts, the distributors hook every distributor's address, both
// distributors take pushes and both are ACTIVE in one ring, so the global
// rate limit divides by two. The clock hook reaches the distributors: a
// line stamped now is accepted, and refused as too old once the lab's
// clock is moved eight days on.
func TestRunAllInOneWithHooks(t *testing.T) {
	var broker atomic.Pointer[kafka.Broker]
	var addrs atomic.Pointer[[]string]
	var ahead atomic.Int64 // how far the lab's clock is ahead of real time
	api := startAllInOne(t, func(cfg *AllInOneConfig) {
		cfg.Ingesters = 1
		cfg.Distributors = 2
	}, AllInOneHooks{
		Broker:       func(b *kafka.Broker) { broker.Store(b) },
		Distributors: func(a []string) { addrs.Store(&a) },
		Now:          func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) },
	})

	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	var ds []string
	for {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: addrs %v", ds)
		}
		time.Sleep(200 * time.Millisecond)
		if a := addrs.Load(); a != nil {
			ds = *a
		}
		if len(ds) != 2 {
			continue
		}
		ready := true
		for _, d := range ds {
			resp, err := client.Get("http://" + d + "/ready")
			if err != nil {
				ready = false
				break
			}
			resp.Body.Close()
			ready = ready && resp.StatusCode == http.StatusOK
		}
		if !ready {
			continue
		}
		var v struct {
			Instances []struct {
				Role    string `json:"role"`
				State   string `json:"state"`
				Healthy bool   `json:"healthy"`
			} `json:"instances"`
		}
		resp, err := client.Get("http://" + ds[1] + "/ring?format=json")
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		n := 0
		for _, in := range v.Instances {
			if in.Role == "distributor" && in.Healthy && in.State == "ACTIVE" {
				n++
			}
		}
		if err == nil && n == 2 {
			break
		}
	}
	if ds[0] != api || ds[1] == ds[0] {
		t.Fatalf("distributor addresses %v", ds)
	}
	if b := broker.Load(); b == nil || b.Cluster() == nil {
		t.Fatal("the broker hook was not called")
	}
	for _, d := range ds {
		resp, err := client.Get("http://" + d + "/distributor/status")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s /distributor/status: %d %s", d, resp.StatusCode, b)
		}
	}

	push := func(d string) (int, string) {
		body := `{"streams":[{"stream":{"app":"clock"},"values":[["` + strconv.FormatInt(time.Now().UnixNano(), 10) + `","tick"]]}]}`
		resp, err := client.Post("http://"+d+"/loki/api/v1/push", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, d := range ds {
		if code, body := push(d); code != http.StatusNoContent {
			t.Fatalf("%s: a line stamped now: %d %s", d, code, body)
		}
	}
	ahead.Store(int64(8 * 24 * time.Hour))
	for _, d := range ds {
		if code, body := push(d); code != http.StatusBadRequest || !strings.Contains(body, "timestamp too old") {
			t.Errorf("%s: a line stamped now, the clock 8 days on: %d %s, want 400 timestamp too old", d, code, body)
		}
	}
}

// TestAllInOneGroupOwnershipQueriesIngesters: with consumer-group
// ownership the ingesters do not join the ring, so the querier must ask
// them by address. A line just pushed (not flushed: the flush periods are
// hours) is answered from the ingesters' memory, and the stats say both
// were reached; through the ring the querier found none and answered an
// empty result with no warning.
func TestAllInOneGroupOwnershipQueriesIngesters(t *testing.T) {
	api := "http://" + startAllInOne(t, func(cfg *AllInOneConfig) {
		cfg.Ingesters = 2
		cfg.Ingester.Ownership = "group"
	}, AllInOneHooks{})

	client := &http.Client{Timeout: 5 * time.Second}
	line := "group ownership line " + strconv.FormatInt(time.Now().UnixNano(), 10)
	body := `{"streams":[{"stream":{"app":"group"},"values":[["` + strconv.FormatInt(time.Now().UnixNano(), 10) + `","` + line + `"]]}]}`
	deadline := time.Now().Add(60 * time.Second)
	for pushed := false; ; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pushed line (pushed: %v) never came back from the ingesters", pushed)
		}
		if !pushed {
			resp, err := client.Post(api+"/loki/api/v1/push", "application/json", strings.NewReader(body))
			if err != nil {
				continue
			}
			resp.Body.Close()
			pushed = resp.StatusCode == http.StatusNoContent
			continue
		}
		resp, err := client.Get(api + "/loki/api/v1/query_range?query=" + url.QueryEscape(`{app="group"}`) + "&limit=10")
		if err != nil {
			continue
		}
		var v struct {
			Data struct {
				Result []struct {
					Values [][2]string `json:"values"`
				} `json:"result"`
				Stats struct {
					Ingester struct {
						TotalReached int `json:"totalReached"`
					} `json:"ingester"`
				} `json:"stats"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("query answer: %v", err)
		}
		if reached := v.Data.Stats.Ingester.TotalReached; reached != 2 {
			t.Fatalf("the query reached %d ingesters, want both", reached)
		}
		if len(v.Data.Result) == 1 && len(v.Data.Result[0].Values) == 1 && v.Data.Result[0].Values[0][1] == line {
			return
		}
	}
}
