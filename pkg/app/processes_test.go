package app

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lokilab/lokilab/internal/freeport"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/server"
)

// backend is a process behind the gateway that says who it is.
func backend(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s", name, r.Method, r.URL.RequestURI(), r.Header.Get("X-Scope-OrgID"))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func testGateway(t *testing.T, backends map[string]string, mutate ...func(*server.Config)) string {
	t.Helper()
	var sc server.Config
	sc.RegisterFlags(flag.NewFlagSet("", flag.ContinueOnError))
	sc.HTTPListenPort = 0
	sc.LogLevel = "error"
	for _, m := range mutate {
		m(&sc)
	}
	gw, err := newGateway(sc, backends, server.NewRegistry(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = gw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + gw.Addr()
}

func TestGatewayRoutesEachPathToItsProcess(t *testing.T) {
	base := testGateway(t, map[string]string{procDistributor: backend(t, "distributor"), procQuerier: backend(t, "querier")})
	tests := []struct {
		method, path string
		want         string // the backend's answer; "" for the gateway's own
	}{
		{"POST", "/loki/api/v1/push", "distributor POST /loki/api/v1/push team-a"},
		{"GET", "/loki/api/v1/push", "distributor GET /loki/api/v1/push team-a"}, // the distributor answers its 405
		{"GET", "/loki/api/v1/query_range?query=%7Ba%3D%22b%22%7D&limit=5", "querier GET /loki/api/v1/query_range?query=%7Ba%3D%22b%22%7D&limit=5 team-a"},
		{"POST", "/loki/api/v1/query", "querier POST /loki/api/v1/query team-a"},
		{"GET", "/loki/api/v1/labels", "querier GET /loki/api/v1/labels team-a"},
		{"GET", "/loki/api/v1/label/app/values", "querier GET /loki/api/v1/label/app/values team-a"},
		{"GET", "/loki/api/v1/series", "querier GET /loki/api/v1/series team-a"},
		{"GET", "/loki/api/v1/index/stats", "querier GET /loki/api/v1/index/stats team-a"},
		{"GET", "/loki/api/v1/tail", "querier GET /loki/api/v1/tail team-a"},
		{"GET", "/ring?format=json", "distributor GET /ring?format=json team-a"},
		{"GET", "/memberlist", "distributor GET /memberlist team-a"},
		{"GET", "/distributor/status", "distributor GET /distributor/status team-a"},
		{"GET", "/metrics", ""}, // the supervisor's own
		{"GET", "/ready", ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+tt.path, nil)
		req.Header.Set("X-Scope-OrgID", "team-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := string(b)
		if tt.want != "" && got != tt.want {
			t.Errorf("%s %s reached %q, want %q", tt.method, tt.path, got, tt.want)
		}
		if tt.want == "" && (strings.HasPrefix(got, "distributor ") || strings.HasPrefix(got, "querier ")) {
			t.Errorf("%s %s was proxied (%q); it is the gateway's own", tt.method, tt.path, got)
		}
	}
}

func TestGatewayNamesAProcessThatIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	base := testGateway(t, map[string]string{procDistributor: backend(t, "distributor"), procQuerier: down})
	resp, err := http.Get(base + "/loki/api/v1/labels")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), "querier at "+down) {
		t.Fatalf("a query while the querier is down: %d %q, want 502 naming it", resp.StatusCode, b)
	}
}

// TestGatewayLeavesTimeoutsToTheProcess: a process that answers slower
// than the gateway's own write timeout still gets its answer (here a 503)
// to the client, instead of the gateway dropping the connection.
func TestGatewayLeavesTimeoutsToTheProcess(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(400 * time.Millisecond)
		http.Error(w, "kafka did not answer in time", http.StatusServiceUnavailable)
	}))
	defer slow.Close()
	short := func(sc *server.Config) { sc.WriteTimeout = 200 * time.Millisecond }
	base := testGateway(t, map[string]string{procDistributor: strings.TrimPrefix(slow.URL, "http://"), procQuerier: backend(t, "querier")}, short)
	resp, err := http.Post(base+"/loki/api/v1/push", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("a slow push through the gateway: %v; want the distributor's answer", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "kafka did not answer") {
		t.Fatalf("a slow push through the gateway: %d %q", resp.StatusCode, b)
	}
}

// TestGatewayPassesWebsockets: /tail is a websocket to the querier; it
// must pass the gateway and outlive the gateway's own HTTP timeouts.
func TestGatewayPassesWebsockets(t *testing.T) {
	up := websocket.Upgrader{}
	querier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/loki/api/v1/tail" || r.URL.Query().Get("query") != `{app="a"}` {
			http.Error(w, "wrong path "+r.URL.RequestURI(), http.StatusNotFound)
			return
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			kind, msg, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if err := conn.WriteMessage(kind, append([]byte("echo "), msg...)); err != nil {
				return
			}
		}
	}))
	defer querier.Close()
	short := func(sc *server.Config) { sc.ReadTimeout, sc.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond }
	base := testGateway(t, map[string]string{procDistributor: backend(t, "distributor"), procQuerier: strings.TrimPrefix(querier.URL, "http://")}, short)

	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(base, "http")+"/loki/api/v1/tail?query=%7Bapp%3D%22a%22%7D", nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("websocket through the gateway: %v (status %d)", err, status)
	}
	defer conn.Close()
	for i := range 3 {
		// Past the gateway's 200ms read and write timeouts.
		time.Sleep(150 * time.Millisecond)
		if err := conn.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, msg, err := conn.ReadMessage()
		if err != nil || string(msg) != fmt.Sprintf("echo m%d", i) {
			t.Fatalf("message %d back through the gateway: %q %v", i, msg, err)
		}
	}
}

// freePortFlags gives every process of -processes a free port (one
// block: TCP and UDP, as memberlist needs both), so that a test never
// meets a lab someone else runs on the defaults.
func freePortFlags(t *testing.T) []string {
	t.Helper()
	base, err := freeport.Block(12)
	if err != nil {
		t.Fatal(err)
	}
	return []string{
		"-server.http-listen-port", "0",
		"-kafka.broker.listen-address", fmt.Sprintf("127.0.0.1:%d", base),
		"-processes.distributor-port", fmt.Sprint(base + 1),
		"-processes.querier-port", fmt.Sprint(base + 2),
		"-processes.compactor-port", fmt.Sprint(base + 3),
		"-ingester.http-base-port", fmt.Sprint(base + 4),
		"-memberlist.bind-port", fmt.Sprint(base + 7),
	}
}

func defaultAllInOne(t *testing.T, args ...string) AllInOneConfig {
	t.Helper()
	var cfg AllInOneConfig
	if err := parse(t, &cfg, args...); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestProcessesPlanPortsAndMembership(t *testing.T) {
	cfg := defaultAllInOne(t, "-processes", "-data.dir", "/lab")
	plan, err := planProcesses(cfg, 12)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ name, command, http, memberlist string }
	want := []row{
		{"kafka", "kafka", "", ""},
		{"distributor", "distributor", "127.0.0.1:3110", "127.0.0.1:7946"},
		{"ingester-1", "ingester", "127.0.0.1:3101", "127.0.0.1:7947"},
		{"ingester-2", "ingester", "127.0.0.1:3102", "127.0.0.1:7948"},
		{"ingester-3", "ingester", "127.0.0.1:3103", "127.0.0.1:7949"},
		{"querier", "querier", "127.0.0.1:3200", "127.0.0.1:7950"},
		{"compactor", "compactor", "127.0.0.1:3300", ""},
	}
	var got []row
	for _, sp := range plan {
		got = append(got, row{sp.name, sp.command, sp.httpAddr, sp.memberlist})
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan:\n%v\nwant\n%v", got, want)
	}
	if plan[0].kafkaAddr != "127.0.0.1:9092" {
		t.Errorf("kafka at %q", plan[0].kafkaAddr)
	}
	if b := plan[0].config.(*BrokerProcessConfig); b.Broker.DataDir != "/lab/kafka" {
		t.Errorf("broker data dir %q, want /lab/kafka", b.Broker.DataDir)
	}
	// The distributor seeds the cluster; a restarted one joins the rest.
	d := plan[1].config.(*DistributorConfig)
	if len(d.Memberlist.JoinMembers) != 0 || d.Kafka.Address != "127.0.0.1:9092" || d.Memberlist.Partitions != 12 {
		t.Errorf("distributor: join %v, kafka %q, partitions %d", d.Memberlist.JoinMembers, d.Kafka.Address, d.Memberlist.Partitions)
	}
	if want := "127.0.0.1:7947,127.0.0.1:7948,127.0.0.1:7949,127.0.0.1:7950"; strings.Join(plan[1].joinOnRestart, ",") != want {
		t.Errorf("distributor rejoins through %v, want %s", plan[1].joinOnRestart, want)
	}
	// Each ingester joins through every other node, so a restarted one
	// finds the cluster even while the distributor is down.
	i2 := plan[3].config.(*IngesterConfig)
	if want := "127.0.0.1:7946,127.0.0.1:7947,127.0.0.1:7949,127.0.0.1:7950"; strings.Join(i2.Memberlist.JoinMembers, ",") != want {
		t.Errorf("ingester-2 joins through %v, want %s", i2.Memberlist.JoinMembers, want)
	}
	if i2.Ingester.InstanceID != "ingester-2" || i2.Storage.Filesystem.Dir != "/lab/store" || i2.Memberlist.Partitions != 12 {
		t.Errorf("ingester-2: id %q, store %q, partitions %d", i2.Ingester.InstanceID, i2.Storage.Filesystem.Dir, i2.Memberlist.Partitions)
	}
	if q := plan[5].config.(*QuerierConfig); len(q.IngesterAddresses) != 0 {
		t.Errorf("a ring-mode querier asks fixed addresses %v", q.IngesterAddresses)
	}
	group := defaultAllInOne(t, "-processes", "-ingester.ownership", "group")
	plan, err = planProcesses(group, 12)
	if err != nil {
		t.Fatal(err)
	}
	if q := plan[5].config.(*QuerierConfig); strings.Join(q.IngesterAddresses, ",") != "127.0.0.1:3101,127.0.0.1:3102,127.0.0.1:3103" {
		t.Errorf("with group ownership the querier asks %v, want the three ingesters", q.IngesterAddresses)
	}
}

// TestProcessConfigFilesLoadBack: each child runs `lokilab <component>
// -config.file <file>`; what it loads must be exactly what the supervisor
// planned, or a setting given to `lokilab run -processes` would silently
// not reach the process.
func TestProcessConfigFilesLoadBack(t *testing.T) {
	cfg := defaultAllInOne(t, "-processes", "-data.dir", t.TempDir(), "-auth.enabled", "-ingester.chunk-target-size", "8KB",
		"-ring.heartbeat-timeout", "3s", "-distributor.ingestion-rate-limit-mb", "9", "-log.level", "warn")
	plan, err := planProcesses(cfg, 4)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, sp := range plan {
		path := filepath.Join(dir, sp.name+".yaml")
		if err := writeConfig(path, sp); err != nil {
			t.Fatal(err)
		}
		got := reflect.New(reflect.TypeOf(sp.config).Elem()).Interface().(config.Registerer)
		if err := config.Parse(flag.NewFlagSet(sp.name, flag.ContinueOnError), []string{"-config.file", path}, got); err != nil {
			t.Fatalf("%s: %v", sp.name, err)
		}
		// Compared as /config prints them: a nil and an empty list are the
		// same setting.
		gotY, err1 := config.YAML(got)
		wantY, err2 := config.YAML(sp.config)
		if err1 != nil || err2 != nil || string(gotY) != string(wantY) {
			t.Errorf("%s: the config file loads back different:\n%s\nwant\n%s", sp.name, gotY, wantY)
		}
	}
}

func TestProcessesConfigValidation(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-ingesters", "10"}, "port 3110 is both distributor's and ingester-10's"},
		{[]string{"-ingester.http-base-port", "0"}, "fixed port for ingester-1 (-ingester.http-base-port)"},
		{[]string{"-memberlist.bind-port", "0"}, "fixed port for memberlist node 0 (-memberlist.bind-port)"},
		{[]string{"-processes.querier-port", "9092"}, "port 9092 is both kafka's and querier's"},
		{[]string{"-ingester.ownership", "static", "-ingester.static-partitions", "0"}, "static partitions"},
		{[]string{"-ingesters", "0"}, "at least one ingester"},
	}
	for _, tt := range tests {
		cfg := defaultAllInOne(t, append([]string{"-processes"}, tt.args...)...)
		_, err := planProcesses(cfg, 12)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error %v, want %q", tt.args, err, tt.want)
		}
	}
}

func TestPortInUseNamesTheProcessAndFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := defaultAllInOne(t, "-processes", "-processes.querier-port", fmt.Sprint(port))
	plan, err := planProcesses(cfg, 12)
	if err != nil {
		t.Fatal(err)
	}
	err = checkPortsFree(plan[5:6])
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("querier cannot listen on 127.0.0.1:%d (change -processes.querier-port)", port)) {
		t.Fatalf("checkPortsFree = %v", err)
	}
}

func TestPrefixWriterPrefixesWholeLines(t *testing.T) {
	var out strings.Builder
	lw := &lineWriter{w: &out}
	a := &prefixWriter{out: lw, prefix: "ingester-1 | ", keep: 2}
	b := &prefixWriter{out: lw, prefix: "querier    | "}
	io.WriteString(a, "first li")
	io.WriteString(b, "q1\nq2\n")
	io.WriteString(a, "ne\nsecond\nthird\nunfinished")
	a.flush()
	want := "querier    | q1\nquerier    | q2\ningester-1 | first line\ningester-1 | second\ningester-1 | third\ningester-1 | unfinished\n"
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if tail := a.tail(); !reflect.DeepEqual(tail, []string{"third", "unfinished"}) {
		t.Fatalf("tail %q", tail)
	}
}

// TestAProcessFailingAtStartupEndsTheSupervisor: a child that exits during
// the startup (here the "binary" is a shell that cannot find the script it
// is told to run) stops the supervisor with an error naming the process,
// its exit status and its last words, and leaves nothing running.
func TestAProcessFailingAtStartupEndsTheSupervisor(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cfg := defaultAllInOne(t, append(freePortFlags(t), "-processes", "-data.dir", t.TempDir(), "-log.level", "error")...)
	var out, errOut strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger, _ := server.NewLogger(io.Discard, "error", "logfmt")
	err = RunProcesses(ctx, cfg, nil, logger, sh, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "kafka (pid ") || !strings.Contains(err.Error(), "failed to start: exit status") ||
		!strings.Contains(err.Error(), "cannot open kafka") {
		t.Fatalf("RunProcesses = %v, want a startup failure naming kafka, with its last words", err)
	}
	if !strings.HasPrefix(errOut.String(), "kafka       | ") || !strings.Contains(errOut.String(), "cannot open kafka") {
		t.Errorf("the child's stderr was not passed on with its name: %q", errOut.String())
	}
	t.Logf("the error: %v", err)
}
