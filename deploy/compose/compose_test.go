package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const (
	composeFile = "docker-compose.yml"
	offlineFile = "docker-compose.offline.yml"
	promConfig  = "prometheus/prometheus.yml"
	rulesGlob   = "prometheus/rules/*.yml"
	dashGlob    = "grafana/dashboards/*.json"
)

// needTool finds a command or skips the test, loudly: CI installs every one
// of these (scripts/test), so a skip here means the machine is incomplete.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("SKIPPED, NOT PASSED: %s is not installed (Debian package: apt-get install %s; scripts/test installs it)", name, debianPackage(name))
	}
	return p
}

func debianPackage(tool string) string {
	switch tool {
	case "promtool", "prometheus":
		return "prometheus"
	default:
		return tool
	}
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, ctx context.Context, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(ctx, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return buf.String(), err
}

func TestPromtoolChecksShippedFiles(t *testing.T) {
	promtool := needTool(t, "promtool")
	ctx := t.Context()
	out := run(t, ctx, nil, promtool, "check", "config", promConfig)
	// The config names the rule files; promtool checks them with it, and
	// finding none would pass silently.
	if !strings.Contains(out, "rule files found") {
		t.Errorf("promtool check config found no rule files:\n%s", out)
	}
	rules, _ := filepath.Glob(rulesGlob)
	if len(rules) == 0 {
		t.Fatalf("no rule files match %s", rulesGlob)
	}
	run(t, ctx, nil, promtool, append([]string{"check", "rules"}, rules...)...)
}

// composeCommand is docker-compose (Debian's 1.29) or, failing that, the
// Compose v2 plugin.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if p, err := exec.LookPath("docker-compose"); err == nil {
		return []string{p}
	}
	if p, err := exec.LookPath("docker"); err == nil {
		if _, err := runErr(t.Context(), nil, p, "compose", "version"); err == nil {
			return []string{p, "compose"}
		}
	}
	t.Skip("SKIPPED, NOT PASSED: neither docker-compose nor the docker compose plugin is installed (apt-get install docker-compose)")
	return nil
}

// composeConfig is the part of `docker-compose config` output the checks
// read.
type composeConfig struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		MemLimit    any               `yaml:"mem_limit"`
		Restart     string            `yaml:"restart"`
		Profiles    []string          `yaml:"profiles"`
		Scale       *int              `yaml:"scale"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck *struct {
			Test    []string `yaml:"test"`
			Disable bool     `yaml:"disable"`
		} `yaml:"healthcheck"`
		DependsOn map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
	} `yaml:"services"`
}

func resolvedConfig(t *testing.T, compose []string, files ...string) composeConfig {
	t.Helper()
	args := slices.Clone(compose[1:])
	for _, f := range files {
		args = append(args, "-f", f)
	}
	// LOKILAB_IMAGE unset: the defaults in the files are what is checked.
	out := run(t, t.Context(), []string{"LOKILAB_IMAGE="}, compose[0], append(args, "config")...)
	var cfg composeConfig
	if err := yaml.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("parse docker-compose config output: %v\n%s", err, out)
	}
	return cfg
}

// TestComposeFilesAreAccepted runs `docker-compose config` on the compose
// file alone and with the offline override, and checks what the issue asks
// of the topology in the resolved result, where a merge mistake would show.
func TestComposeFilesAreAccepted(t *testing.T) {
	compose := composeCommand(t)
	base := resolvedConfig(t, compose, composeFile)
	offline := resolvedConfig(t, compose, composeFile, offlineFile)

	want := []string{"kafka", "minio", "distributor-1", "distributor-2", "ingester-1", "ingester-2", "ingester-3",
		"querier", "compactor", "prometheus", "grafana", "loadgen-1", "loadgen-2"}
	for _, name := range want {
		if _, ok := base.Services[name]; !ok {
			t.Errorf("docker-compose.yml has no service %s", name)
		}
	}
	for name, s := range base.Services {
		long := !strings.HasPrefix(name, "loadgen")
		if long && (s.Healthcheck == nil || s.Healthcheck.Disable || len(s.Healthcheck.Test) == 0) &&
			name != "prometheus" && name != "grafana" {
			t.Errorf("%s has no health check: depends_on conditions cannot wait for it", name)
		}
		if strings.HasPrefix(name, "loadgen") && !slices.Contains(s.Profiles, "load") {
			t.Errorf("%s is not under the load profile: plain up would start it", name)
		}
		for dep, d := range s.DependsOn {
			if d.Condition != "service_healthy" {
				t.Errorf("%s depends on %s with condition %q, want service_healthy", name, dep, d.Condition)
			}
		}
	}
	for i := 1; i <= 3; i++ {
		s := base.Services[fmt.Sprintf("ingester-%d", i)]
		if s.MemLimit == nil || s.Restart == "" || s.Restart == "no" {
			t.Errorf("ingester-%d: mem_limit %v, restart %q: the OOM experiment needs a limit and a restart policy", i, s.MemLimit, s.Restart)
		}
		if s.Environment["STORAGE_BACKEND"] != "s3" {
			t.Errorf("ingester-%d stores to %q, want s3 (MinIO)", i, s.Environment["STORAGE_BACKEND"])
		}
		o := offline.Services[fmt.Sprintf("ingester-%d", i)]
		if o.Environment["STORAGE_BACKEND"] != "filesystem" {
			t.Errorf("offline ingester-%d stores to %q, want filesystem", i, o.Environment["STORAGE_BACKEND"])
		}
	}
	if k := offline.Services["kafka"]; !slices.Contains(k.Command, "kafka") || !strings.HasPrefix(k.Image, "lokilab:") {
		t.Errorf("offline kafka runs %q %v, want the lokilab image's embedded broker", k.Image, k.Command)
	}
	// Offline, nothing may need a registry: every started service runs the
	// local image, and the others are scaled to zero.
	for name, s := range offline.Services {
		if !strings.HasPrefix(s.Image, "lokilab:") {
			t.Errorf("offline %s uses image %q, which needs a registry", name, s.Image)
		}
		if name == "minio" || name == "prometheus" || name == "grafana" {
			if s.Scale == nil || *s.Scale != 0 {
				t.Errorf("offline %s is started (scale %v), but it has no offline image", name, s.Scale)
			}
		}
	}
}

// --- every expression returns data ---

// exprRef is one PromQL expression and where it came from.
type exprRef struct{ where, expr string }

// grafanaVars are what the test puts for Grafana's variables: intervals that
// suit a one-second scrape, and "every value" for the dashboards' own.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "1m", "${__rate_interval}", "1m",
	"$__interval", "10s", "$__range", "5m",
	"$instance", ".+", "$tenant", ".+",
)

// dashboardExprs extracts every Prometheus expression from the dashboards:
// each panel's targets (rows' nested panels too) and each query variable,
// label_values(m, l) becoming a query for m's series that have l.
func dashboardExprs(t *testing.T) []exprRef {
	t.Helper()
	files, _ := filepath.Glob(dashGlob)
	if len(files) < 5 {
		t.Fatalf("%d dashboards in %s, want Writes, Ingesters, Reads, Tenants, Ring/Kafka", len(files), dashGlob)
	}
	type panel struct {
		Title   string  `json:"title"`
		Panels  []panel `json:"panels"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var dash struct {
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)
	var out []exprRef
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dash.Panels, dash.Templating.List = nil, nil
		if err := json.Unmarshal(b, &dash); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				for i, tg := range p.Targets {
					if tg.Expr == "" {
						t.Errorf("%s: panel %q target %d has no expression", dash.Title, p.Title, i)
						continue
					}
					out = append(out, exprRef{fmt.Sprintf("%s / %s", dash.Title, p.Title), tg.Expr})
				}
			}
		}
		walk(dash.Panels)
		for _, v := range dash.Templating.List {
			q, _ := v.Query.(string)
			if m, ok := v.Query.(map[string]any); ok {
				q, _ = m["query"].(string)
			}
			mm := labelValues.FindStringSubmatch(strings.TrimSpace(q))
			if mm == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(metric, label)", dash.Title, v.Name, q)
				continue
			}
			out = append(out, exprRef{fmt.Sprintf("%s / variable $%s", dash.Title, v.Name), fmt.Sprintf("count by (%s) (%s)", mm[2], mm[1])})
		}
	}
	return out
}

// ruleExprs extracts the rules' expressions. A recording rule must return
// data as written. An alert returns data only while it fires, so what must
// return data is its signal: each side of a top-level and/or/unless, with a
// trailing top-level comparison against a threshold removed. The whole
// alert expression is checked to evaluate (not to return data).
func ruleExprs(t *testing.T) (mustHaveData, mustEvaluate []exprRef) {
	t.Helper()
	files, _ := filepath.Glob(rulesGlob)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rf struct {
			Groups []struct {
				Rules []struct {
					Record string `yaml:"record"`
					Alert  string `yaml:"alert"`
					Expr   string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &rf); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, g := range rf.Groups {
			for _, r := range g.Rules {
				if r.Record != "" {
					mustHaveData = append(mustHaveData, exprRef{"record " + r.Record, r.Expr})
					continue
				}
				mustEvaluate = append(mustEvaluate, exprRef{"alert " + r.Alert, r.Expr})
				for i, s := range alertSignals(r.Expr) {
					mustHaveData = append(mustHaveData, exprRef{fmt.Sprintf("alert %s (signal %d)", r.Alert, i+1), s})
				}
			}
		}
	}
	return mustHaveData, mustEvaluate
}

// alertSignals splits an alert expression as ruleExprs describes. It scans
// outside parentheses, brackets, braces and quotes, so label matchers
// (=, !=, =~) and comparisons nested in a function are left alone.
func alertSignals(expr string) []string {
	var parts []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case depth == 0:
			for _, op := range []string{"and", "or", "unless"} {
				if strings.HasPrefix(expr[i:], op) && wordBoundary(expr, i, i+len(op)) {
					parts = append(parts, expr[start:i])
					start = i + len(op)
					i = start - 1
					break
				}
			}
		}
	}
	parts = append(parts, expr[start:])
	for i, p := range parts {
		parts[i] = strings.TrimSpace(cutComparison(p))
	}
	return parts
}

func wordBoundary(s string, from, to int) bool {
	isWord := func(b byte) bool {
		return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
	}
	return (from == 0 || !isWord(s[from-1])) && (to == len(s) || !isWord(s[to]))
}

// cutComparison returns expr up to its first top-level comparison operator.
func cutComparison(expr string) string {
	depth := 0
	var quote byte
	for i := 0; i < len(expr); i++ {
		c := expr[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'' || c == '`':
			quote = c
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']' || c == '}':
			depth--
		case depth == 0 && (c == '>' || c == '<' || (c == '=' || c == '!') && i+1 < len(expr) && expr[i+1] == '='):
			return expr[:i]
		}
	}
	return expr
}

func TestAlertSignals(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`up{job="ingester"} == 0`, []string{`up{job="ingester"}`}},
		{`rate(x{a!="b",c=~"d"}[5m]) > 0.1`, []string{`rate(x{a!="b",c=~"d"}[5m])`}},
		{"a > 1\nand\nsum by (instance) (deriv(b[5m])) > 0", []string{"a", "sum by (instance) (deriv(b[5m]))"}},
		{`r:ratio > (14.4 * 0.01) and r:ratio_1h > (14.4 * 0.01)`, []string{"r:ratio", "r:ratio_1h"}},
		{`max(sum(x) > 1) or vector(0)`, []string{`max(sum(x) > 1)`, `vector(0)`}},
		{`sum by (operator) (x)`, []string{`sum by (operator) (x)`}},
	} {
		if got := alertSignals(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("alertSignals(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// freeBlock returns the first of n consecutive loopback ports free for TCP
// and UDP (memberlist binds both).
func freeBlock(t *testing.T, n int) int {
	t.Helper()
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			continue
		}
		base := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if base+n > 65535 {
			continue
		}
		ok := true
		var held []io.Closer
		for p := base; ok && p < base+n; p++ {
			addr := fmt.Sprintf("127.0.0.1:%d", p)
			l, err := net.Listen("tcp", addr)
			if ok = err == nil; ok {
				held = append(held, l)
				u, err := net.ListenPacket("udp", addr)
				if ok = err == nil; ok {
					held = append(held, u)
				}
			}
		}
		for _, c := range held {
			c.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no block of %d free ports", n)
	return 0
}

// buildLokilab builds the lokilab binary into a temp dir. env is added to
// go build's: nil keeps the default settings, which share the build cache
// with the other tests; CGO_ENABLED=0 gives a static binary for an image.
func buildLokilab(t *testing.T, env ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lokilab")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	run(t, ctx, env, "go", "build", "-o", bin, "../../cmd/lokilab")
	return bin
}

// startProcess starts a long-running command whose output goes to a file
// in the test's temp dir (printed if the test fails), and stops it at
// cleanup: SIGTERM, then SIGKILL after a grace period. The channel yields
// the command's exit error once it has exited.
func startProcess(t *testing.T, name string, args ...string) <-chan error {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			t.Logf("--- last output of %s:\n%s", filepath.Base(name), b)
		}
	})
	return exited
}

// waitFor polls check until it returns nil or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%s: %v", what, t.Context().Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func httpDo(method, u, tenant string, body io.Reader, contentType string) (int, string, error) {
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return 0, "", err
	}
	if tenant != "" {
		req.Header.Set("X-Scope-OrgID", tenant)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), nil
}

func ready(u string) error {
	code, body, err := httpDo(http.MethodGet, u+"/ready", "", nil, "")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%d %s", code, strings.TrimSpace(body))
	}
	return nil
}

// busiestIngester returns the index of the ingester owning the most
// partitions (from /ingester/status), and how many it owns: killing one that
// owns none would test nothing. Startup can leave an ingester without any
// (the ring does not move partitions that already have a live owner).
func busiestIngester(t *testing.T, urls []string) (int, int) {
	t.Helper()
	best, most := -1, -1
	for i, u := range urls {
		_, body, err := httpDo(http.MethodGet, u+"/ingester/status", "", nil, "")
		var st struct {
			Partitions []json.RawMessage `json:"partitions"`
		}
		if err != nil || json.Unmarshal([]byte(body), &st) != nil {
			t.Fatalf("GET %s/ingester/status: %v %s", u, err, body)
		}
		if len(st.Partitions) > most {
			best, most = i, len(st.Partitions)
		}
	}
	if most <= 0 {
		t.Fatalf("no ingester owns a partition")
	}
	return best, most
}

// promQuery runs an instant query and returns how many series it gave.
func promQuery(prom, expr string) (int, error) {
	code, body, err := httpDo(http.MethodGet, prom+"/api/v1/query?query="+url.QueryEscape(expr), "", nil, "")
	if err != nil {
		return 0, err
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		return 0, fmt.Errorf("%d: %s", code, body)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query failed: %s", r.Error)
	}
	return len(r.Data.Result), nil
}

// TestEveryExpressionReturnsData runs Debian's Prometheus with the shipped
// scrape configuration (targets rewritten to a `lokilab run -processes` on
// free ports, intervals shortened to 1s) and the shipped rules, drives the
// situations the dashboards and rules watch — load from two tenants, lines
// refused, queries, a failing then a working flush, an ingester killed and
// replaying — and then requires every dashboard and rule expression to
// return at least one series.
func TestEveryExpressionReturnsData(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED, NOT PASSED: starts lokilab and Prometheus (about a minute); run without -short")
	}
	prometheus := needTool(t, "prometheus")
	dashExprs := dashboardExprs(t)
	ruleData, ruleEval := ruleExprs(t)
	if len(dashExprs) == 0 || len(ruleData) == 0 || len(ruleEval) == 0 {
		t.Fatalf("found %d dashboard, %d rule and %d alert expressions", len(dashExprs), len(ruleData), len(ruleEval))
	}

	bin := buildLokilab(t)
	base := freeBlock(t, 14)
	port := func(i int) int { return base + i }
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", port(i)) }
	gw, dist, querier, compactor := "http://"+addr(1), "http://"+addr(2), "http://"+addr(3), "http://"+addr(4)
	ingesters := []string{"http://" + addr(5), "http://" + addr(6), "http://" + addr(7)}
	promAddr := addr(13)
	startProcess(t, bin, "run", "-processes",
		"-data.dir", t.TempDir(),
		"-kafka.broker.listen-address", addr(0),
		"-server.http-listen-port", fmt.Sprint(port(1)),
		"-processes.distributor-port", fmt.Sprint(port(2)),
		"-processes.querier-port", fmt.Sprint(port(3)),
		"-processes.compactor-port", fmt.Sprint(port(4)),
		"-ingester.http-base-port", fmt.Sprint(port(5)),
		"-memberlist.bind-port", fmt.Sprint(port(8)), // 8..12
		"-kafka.auto-create-topic-default-partitions", "6",
		"-auth.enabled=true",
	)

	// The shipped scrape configuration, with only the targets and the
	// intervals changed. A job this test does not know fails the test, so
	// a job added to the file gets a target here too.
	targets := map[string][]string{
		"distributor": {addr(2)},
		"ingester":    {addr(5), addr(6), addr(7)},
		"querier":     {addr(3)},
		"compactor":   {addr(4)},
		"prometheus":  {promAddr},
	}
	b, err := os.ReadFile(promConfig)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	global := cfg["global"].(map[string]any)
	global["scrape_interval"], global["evaluation_interval"] = "1s", "1s"
	rulesDir, err := filepath.Abs("prometheus/rules")
	if err != nil {
		t.Fatal(err)
	}
	cfg["rule_files"] = []string{filepath.Join(rulesDir, "*.yml")}
	for _, sc := range cfg["scrape_configs"].([]any) {
		job := sc.(map[string]any)
		tg, ok := targets[job["job_name"].(string)]
		if !ok {
			t.Fatalf("prometheus.yml has job %q, which this test does not map to a target", job["job_name"])
		}
		job["static_configs"] = []map[string]any{{"targets": tg}}
	}
	promDir := t.TempDir()
	rewritten, _ := yaml.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(promDir, "prometheus.yml"), rewritten, 0o644); err != nil {
		t.Fatal(err)
	}
	// Its own port and data directory: the Debian package's service (if
	// running) keeps :9090 and /var/lib/prometheus, untouched.
	startProcess(t, prometheus, "--config.file="+filepath.Join(promDir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(promDir, "data"), "--web.listen-address="+promAddr, "--log.level=warn")
	prom := "http://" + promAddr

	for _, u := range append([]string{dist, querier, compactor, prom + "/-"}, ingesters...) {
		waitFor(t, u+" ready", 3*time.Minute, func() error { return ready(u) })
	}

	// Load from two tenants through the gateway, in the background.
	loadDone := startProcess(t, bin, "load", "-url", gw+"/loki/api/v1/push", "-duration", "25s",
		"-rate", "400", "-tenants", "2", "-streams", "10", "-progress-interval", "5s")

	// Lines refused: too long for max_line_size (256KB), and too old.
	long := strings.Repeat("x", 300<<10)
	old := time.Now().Add(-30 * 24 * time.Hour).UnixNano()
	for i := range 3 {
		now := time.Now().UnixNano()
		body := fmt.Sprintf(`{"streams":[{"stream":{"app":"refused"},"values":[["%d","%s"],["%d","too old %d"]]}]}`, now, long, old, i)
		code, resp, err := httpDo(http.MethodPost, dist+"/loki/api/v1/push", "tenant-1", strings.NewReader(body), "application/json")
		if err != nil || code != http.StatusBadRequest {
			t.Fatalf("invalid push: %d %s %v, want 400", code, resp, err)
		}
	}

	// A crash: kill the ingester owning the most partitions while its lines
	// are not flushed yet (the supervisor restarts it, and it replays its
	// partitions from the committed offsets).
	time.Sleep(3 * time.Second) // let some lines reach the ingesters
	victim, owned := busiestIngester(t, ingesters)
	victimName := fmt.Sprintf("ingester-%d", victim+1)
	var procs struct {
		Processes []struct {
			Name string `json:"name"`
			PID  int    `json:"pid"`
		} `json:"processes"`
	}
	_, body, err := httpDo(http.MethodGet, gw+"/processes", "", nil, "")
	if err != nil || json.Unmarshal([]byte(body), &procs) != nil {
		t.Fatalf("GET /processes: %v %s", err, body)
	}
	killed := false
	for _, p := range procs.Processes {
		if p.Name == victimName {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %s (pid %d): %v", victimName, p.PID, err)
			}
			killed = true
		}
	}
	if !killed {
		t.Fatalf("no %s in /processes: %s", victimName, body)
	}
	t.Logf("killed %s (owning %d partitions) with SIGKILL", victimName, owned)
	waitFor(t, victimName+" back and ready", 2*time.Minute, func() error { return ready(ingesters[victim]) })

	// Chunks: one failing flush (an injected upload fault), then working ones.
	faultURL := ingesters[0] + "/ingester/faults/store"
	if code, resp, err := httpDo(http.MethodPost, faultURL, "", strings.NewReader(`{"ops":["upload"],"rate":1}`), "application/json"); err != nil || code != http.StatusOK {
		t.Fatalf("inject store fault: %d %s %v", code, resp, err)
	}
	httpDo(http.MethodPost, ingesters[0]+"/flush", "", nil, "")
	waitFor(t, "a failed flush on ingester-1", time.Minute, func() error {
		n, err := promQuery(prom, `loki_ingester_chunks_flush_failures_total > 0`)
		if err == nil && n == 0 {
			err = fmt.Errorf("no flush failure scraped yet")
		}
		return err
	})
	if code, resp, err := httpDo(http.MethodDelete, faultURL, "", nil, ""); err != nil || code != http.StatusOK {
		t.Fatalf("clear store fault: %d %s %v", code, resp, err)
	}
	for _, ing := range ingesters {
		if code, resp, err := httpDo(http.MethodPost, ing+"/flush", "", nil, ""); err != nil || code/100 != 2 {
			t.Fatalf("flush %s: %d %s %v", ing, code, resp, err)
		}
	}

	// Queries, for the read path's metrics: the routes the SLO counts, both
	// tenants, and a multi-tenant one, repeated so chunk reads hit the cache.
	queries := []string{
		"/loki/api/v1/query_range?query=" + url.QueryEscape(`{job=~".+"} |= "a"`) + "&limit=50",
		"/loki/api/v1/query_range?query=" + url.QueryEscape(`sum by (job) (count_over_time({job=~".+"}[1m]))`) + "&step=10",
		"/loki/api/v1/query?query=" + url.QueryEscape(`sum(rate({job=~".+"}[1m]))`),
		"/loki/api/v1/labels",
		"/loki/api/v1/series?match[]=" + url.QueryEscape(`{job=~".+"}`),
	}
	for round := 0; ; round++ {
		for _, q := range queries {
			for _, tenant := range []string{"tenant-1", "tenant-2"} {
				if code, resp, err := httpDo(http.MethodGet, querier+q, tenant, nil, ""); err != nil || code != http.StatusOK {
					t.Fatalf("query %s as %s: %d %s %v", q, tenant, code, resp, err)
				}
			}
		}
		select {
		case err := <-loadDone:
			if err != nil {
				t.Fatalf("lokilab load: %v", err)
			}
		case <-time.After(time.Second):
			continue
		}
		break
	}
	// Every expression: the recording rules and rate windows need a few
	// evaluations after the events above, so each is retried until a
	// deadline; what still returns nothing then is reported, all at once.
	check := append(dashExprs, ruleData...)
	pending := map[int]error{}
	for i := range check {
		pending[i] = nil
	}
	deadline := time.Now().Add(90 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for i := range pending {
			e := grafanaVars.Replace(check[i].expr)
			if strings.Contains(e, "$") {
				pending[i] = fmt.Errorf("unknown Grafana variable left in %q", e)
				continue
			}
			n, err := promQuery(prom, e)
			switch {
			case err != nil:
				pending[i] = err
			case n == 0:
				pending[i] = fmt.Errorf("no data")
			default:
				delete(pending, i)
			}
		}
		if len(pending) > 0 {
			time.Sleep(2 * time.Second)
		}
	}
	for i, err := range pending {
		t.Errorf("%s: %v\n    %s", check[i].where, err, check[i].expr)
	}
	for _, a := range ruleEval {
		if _, err := promQuery(prom, a.expr); err != nil {
			t.Errorf("%s does not evaluate: %v", a.where, err)
		}
	}
	t.Logf("%d dashboard expressions and %d rule expressions (recording rules and alert signals) returned data; %d alert expressions evaluated",
		len(dashExprs), len(ruleData), len(ruleEval))
}

// TestOfflineComposeEndToEnd brings the offline variant up for real where a
// Docker engine answers: the FROM scratch image built here, the embedded
// broker and a filesystem store in containers, with health checks, depends_on
// conditions and memory limits. It pushes with `lokilab load -ack-log`, kills
// the ingester container owning the most partitions in the middle of it, and
// requires `lokilab verify` to find every acknowledged line: the surviving
// ingesters take the dead one's partitions over and replay them from Kafka. Everything it creates
// (containers, network, volumes, image) is removed at cleanup.
func TestOfflineComposeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED, NOT PASSED: builds an image and runs containers (a few minutes); run without -short")
	}
	docker := needTool(t, "docker")
	if out, err := runErr(t.Context(), nil, docker, "info"); err != nil {
		t.Skipf("SKIPPED, NOT PASSED: no Docker engine answers (docker info: %v):\n%s", err, out)
	}
	compose := composeCommand(t)
	// One static binary: in the image, and on the host for load and verify.
	bin := buildLokilab(t, "CGO_ENABLED=0")

	suffix := fmt.Sprintf("%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
	image := "lokilab:e2e-" + suffix
	buildCtx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	run(t, buildCtx, []string{"LOKILAB_BINARY=" + bin}, "../docker/build-scratch-image.sh", image)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		runErr(ctx, nil, docker, "rmi", "-f", image)
	})

	// Every published port moved to a free one, so that the test never
	// meets a lab (or another test) on the defaults.
	ports := []string{"KAFKA", "MINIO", "MINIO_CONSOLE", "DISTRIBUTOR_1", "DISTRIBUTOR_2", "INGESTER_1", "INGESTER_2",
		"INGESTER_3", "QUERIER", "COMPACTOR", "PROMETHEUS", "GRAFANA"}
	base := freeBlock(t, len(ports))
	env := []string{"LOKILAB_IMAGE=" + image, "LOKILAB_BIND=127.0.0.1"}
	published := map[string]string{}
	for i, p := range ports {
		env = append(env, fmt.Sprintf("PORT_%s=%d", p, base+i))
		published[p] = fmt.Sprintf("http://127.0.0.1:%d", base+i)
	}
	project := "lokilabe2e" + suffix
	composeArgs := append(slices.Clone(compose[1:]), "-p", project, "-f", composeFile, "-f", offlineFile)
	dc := func(ctx context.Context, args ...string) (string, error) {
		return runErr(ctx, env, compose[0], append(slices.Clone(composeArgs), args...)...)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := dc(ctx, "logs", "--tail", "40")
			t.Logf("--- docker-compose logs (last 40 lines each):\n%s", out)
		}
		if out, err := dc(ctx, "down", "-v", "-t", "5", "--remove-orphans"); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})

	start := time.Now()
	upCtx, cancelUp := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancelUp()
	if out, err := dc(upCtx, "up", "-d"); err != nil {
		t.Fatalf("docker-compose up: %v\n%s", err, out)
	}
	for _, p := range []string{"DISTRIBUTOR_1", "DISTRIBUTOR_2", "INGESTER_1", "INGESTER_2", "INGESTER_3", "QUERIER", "COMPACTOR"} {
		waitFor(t, p+" ready", 3*time.Minute, func() error { return ready(published[p]) })
	}
	t.Logf("offline variant up and ready in %s", time.Since(start).Round(time.Second))

	containerID := func(service string) string {
		out, err := dc(t.Context(), "ps", "-q", service)
		id := strings.TrimSpace(out)
		if err != nil || id == "" {
			t.Fatalf("container of %s: %v %q", service, err, out)
		}
		return id
	}
	// The memory limit the OOM experiment relies on reached the kernel.
	for _, s := range []string{"ingester-1", "ingester-2", "ingester-3"} {
		mem := strings.TrimSpace(run(t, t.Context(), nil, docker, "inspect", "-f", "{{.HostConfig.Memory}}", containerID(s)))
		if mem != fmt.Sprint(512<<20) {
			t.Errorf("%s has memory limit %s, want %d (mem_limit 512m)", s, mem, 512<<20)
		}
	}

	ackLog := filepath.Join(t.TempDir(), "acks.log")
	loadDone := startProcess(t, bin, "load", "-url", published["DISTRIBUTOR_1"]+"/loki/api/v1/push",
		"-duration", "20s", "-rate", "300", "-tenants", "2", "-streams", "12", "-ack-log", ackLog, "-progress-interval", "5s")
	time.Sleep(6 * time.Second) // acknowledged lines that only the victim's memory and Kafka hold
	i, owned := busiestIngester(t, []string{published["INGESTER_1"], published["INGESTER_2"], published["INGESTER_3"]})
	victimName := fmt.Sprintf("ingester-%d", i+1)
	victim := containerID(victimName)
	run(t, t.Context(), nil, docker, "kill", victim)
	t.Logf("docker kill %s (owning %d partitions)", victimName, owned)
	if err := <-loadDone; err != nil {
		t.Fatalf("lokilab load: %v", err)
	}
	if running := strings.TrimSpace(run(t, t.Context(), nil, docker, "inspect", "-f", "{{.State.Running}}", victim)); running != "false" {
		t.Fatalf("%s still running after docker kill (%s)", victimName, running)
	}
	if fi, err := os.Stat(ackLog); err != nil || fi.Size() == 0 {
		t.Fatalf("no acknowledged lines recorded in %s: %v", ackLog, err)
	}

	verifyCtx, cancelVerify := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancelVerify()
	out, err := runErr(verifyCtx, nil, bin, "verify", "-url", published["QUERIER"], "-ack-log", ackLog, "-wait", "2m")
	if err != nil || !strings.Contains(out, "every acknowledged line was found") {
		t.Fatalf("lokilab verify after killing %s: %v\n%s", victimName, err, out)
	}
	t.Logf("after docker kill of %s:\n%s", victimName, out)
}
