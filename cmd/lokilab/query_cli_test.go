package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/lokiclient/lokiclienttest"
	"github.com/lokilab/lokilab/pkg/querier"
)

// TestQueryCLI runs `lokilab query` in its forms against lokilab's real
// querier (over an in-memory store) and checks what a user reads.
func TestQueryCLI(t *testing.T) {
	q := lokiclienttest.New(t, func(c *querier.Config) { c.TailMaxDuration = 300 * time.Millisecond })
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	api := map[string]string{"app": "api", "env": "prod"}
	web := map[string]string{"app": "web", "env": "prod"}
	q.Store(t, "lab", api,
		lokiclienttest.Entry{Time: t0, Line: "level=info status=200"},
		lokiclienttest.Entry{Time: t0.Add(time.Second), Line: "level=error status=500"},
		lokiclienttest.Entry{Time: t0.Add(2 * time.Second), Line: "level=info status=200"})
	q.Store(t, "lab", web,
		lokiclienttest.Entry{Time: t0.Add(time.Second), Line: "GET / 200"},
		lokiclienttest.Entry{Time: t0.Add(time.Second), Line: "GET /x 404"})
	q.Store(t, "other", map[string]string{"app": "secret"}, lokiclienttest.Entry{Time: t0, Line: "not yours"})

	base := []string{"query", "-addr", q.URL, "-tenant", "lab", "-from", "2026-11-20T09:59:00Z", "-to", "2026-11-20T10:01:00Z"}
	tests := []struct {
		name       string
		args       []string
		wantOut    string // exact
		wantErr    string // in the error; "" means none
		wantStderr string // contained in stderr
	}{
		{
			// Backward is exactly the reverse of forward's order (time,
			// labels, line).
			name: "log query: newest first, labels shared by every stream said once",
			args: []string{`{env="prod"}`},
			wantOut: `2026-11-20T10:00:02.000Z {app="api"} level=info status=200
2026-11-20T10:00:01.000Z {app="web"} GET /x 404
2026-11-20T10:00:01.000Z {app="web"} GET / 200
2026-11-20T10:00:01.000Z {app="api"} level=error status=500
2026-11-20T10:00:00.000Z {app="api"} level=info status=200
`,
			wantStderr: `common labels: {env="prod"}`,
		},
		{
			name: "flags after the query, forward, limit",
			args: []string{`{app="api"}`, "-forward", "-limit", "2"},
			wantOut: `2026-11-20T10:00:00.000Z level=info status=200
2026-11-20T10:00:01.000Z level=error status=500
`,
			wantStderr: `common labels: {app="api", env="prod"}`,
		},
		{
			name:    "raw lines",
			args:    []string{"-o", "raw", `{app="api"} |= "error"`},
			wantOut: "level=error status=500\n",
		},
		{
			name:    "jsonl keeps nanoseconds and every label",
			args:    []string{"-o", "jsonl", "-limit", "1", `{app="web"}`},
			wantOut: `{"ts":"2026-11-20T10:00:01Z","labels":{"app":"web","env":"prod"},"line":"GET /x 404"}` + "\n",
		},
		{
			name:    "-all pages through groups at one timestamp",
			args:    []string{"-all", "-limit", "1", `{env="prod"}`},
			wantOut: "2026-11-20T10:00:00.000Z {app=\"api\", env=\"prod\"} level=info status=200\n2026-11-20T10:00:01.000Z {app=\"api\", env=\"prod\"} level=error status=500\n2026-11-20T10:00:01.000Z {app=\"web\", env=\"prod\"} GET / 200\n2026-11-20T10:00:01.000Z {app=\"web\", env=\"prod\"} GET /x 404\n2026-11-20T10:00:02.000Z {app=\"api\", env=\"prod\"} level=info status=200\n",
		},
		{
			name: "metric query over a range: each series, then its points",
			args: []string{"-from", "2026-11-20T10:00:00Z", "-to", "2026-11-20T10:00:02Z", "-step", "1s", `sum by (app) (count_over_time({env="prod"}[1s]))`},
			wantOut: `{app="api"}
  2026-11-20T10:00:00Z      1
  2026-11-20T10:00:01Z      1
  2026-11-20T10:00:02Z      1

{app="web"}
  2026-11-20T10:00:01Z      2
`,
		},
		{
			name:    "instant metric query, with -stats",
			args:    []string{"-instant", "-stats", `sum by (app) (count_over_time({env="prod"}[5m]))`},
			wantOut: "{app=\"api\"}  3\n{app=\"web\"}  2\n",
			// The querier answered from the store: its chunks show.
			wantStderr: "stats: 5 lines",
		},
		{
			name:    "jsonl samples",
			args:    []string{"-instant", "-o", "jsonl", `count_over_time({app="web"}[5m])`},
			wantOut: `{"metric":{"app":"web","env":"prod"},"ts":"2026-11-20T10:01:00Z","value":"2"}` + "\n",
		},
		{
			name:       "nothing found says so",
			args:       []string{`{app="nope"}`},
			wantOut:    "",
			wantStderr: "no result from 2026-11-20T09:59:00Z to 2026-11-20T10:01:00Z",
		},
		{name: "labels", args: []string{"labels"}, wantOut: "app\nenv\n"},
		{name: "label values", args: []string{"labels", "app"}, wantOut: "api\nweb\n"},
		{name: "series", args: []string{"series", `{app=~"a.*|w.*"}`}, wantOut: "{app=\"api\", env=\"prod\"}\n{app=\"web\", env=\"prod\"}\n"},
		{name: "index stats", args: []string{"stats", `{app="web"}`}, wantOut: "streams 1, chunks 1, entries 2, bytes 19 B\n"},
		{
			name:    "tail: the last lines, until the server ends it",
			args:    []string{"tail", "-limit", "2", `{env="prod"}`},
			wantOut: "2026-11-20T10:00:01.000Z {app=\"web\", env=\"prod\"} GET /x 404\n2026-11-20T10:00:02.000Z {app=\"api\", env=\"prod\"} level=info status=200\n",
		},
		{name: "Loki's message on a bad query", args: []string{`{app="api"`}, wantErr: "400 Bad Request: parse error at line 1, col 11"},
		{name: "a metric query cannot be tailed", args: []string{"tail", `rate({app="api"}[1m])`}, wantErr: "tail needs a log query"},
		{name: "no query", args: []string{}, wantErr: "give a LogQL query"},
		{name: "two queries", args: []string{`{a="b"}`, `{c="d"}`}, wantErr: "give one query, in quotes"},
		{name: "unknown output", args: []string{"-o", "yaml", `{app="api"}`}, wantErr: `-o "yaml"`},
		{name: "bad time", args: []string{"-from", "yesterday", `{app="api"}`}, wantErr: "-from: cannot read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := slicesConcat(base, tt.args)
			if len(tt.args) > 0 && (tt.args[0] == "labels" || tt.args[0] == "series" || tt.args[0] == "stats" || tt.args[0] == "tail") {
				args = slicesConcat([]string{"query", tt.args[0]}, base[1:], tt.args[1:])
			}
			var out, errOut bytes.Buffer
			err := run(args, &out, &errOut)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("error %v; stderr %s", err, errOut.String())
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && out.String() != tt.wantOut {
				t.Fatalf("stdout:\n%s\nwant:\n%s", out.String(), tt.wantOut)
			}
			if !strings.Contains(errOut.String(), tt.wantStderr) {
				t.Fatalf("stderr %q, want it to contain %q", errOut.String(), tt.wantStderr)
			}
		})
	}

	t.Run("a tenant sees only its own streams", func(t *testing.T) {
		var out bytes.Buffer
		args := slicesConcat([]string{"query", "labels", "app"}, base[1:])
		args[len(args)-5] = "other" // -tenant other
		if err := run(args, &out, &bytes.Buffer{}); err != nil || out.String() != "secret\n" {
			t.Fatalf("other's values %q, %v", out.String(), err)
		}
	})

	t.Run("without a tenant, auth refuses with Loki's words", func(t *testing.T) {
		err := run([]string{"query", "-addr", q.URL, `{app="api"}`}, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || err.Error() != "401 Unauthorized: no org id" {
			t.Fatalf("error %v", err)
		}
	})
}

// TestQueryCLIPartial: warnings of a partial answer go to stderr, the
// lines to stdout, and the command still succeeds.
func TestQueryCLIPartial(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts := time.Now().Add(-time.Minute).UnixNano()
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"streams","result":[{"stream":{"app":"a"},"values":[["%d","x"]]}]},"warnings":["ingester ingester-2 (127.0.0.1:3102) could not be queried: connection refused"]}`, ts)
	}))
	defer srv.Close()
	for _, extra := range [][]string{nil, {"-all"}} {
		var out, errOut bytes.Buffer
		if err := run(slicesConcat([]string{"query", "-addr", srv.URL}, extra, []string{`{app="a"}`}), &out, &errOut); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(errOut.String(), "partial result: ingester ingester-2 (127.0.0.1:3102) could not be queried") || !strings.HasSuffix(out.String(), " x\n") {
			t.Fatalf("%v: stdout %q, stderr %q", extra, out.String(), errOut.String())
		}
	}
}

func TestQueryCLIHelp(t *testing.T) {
	var errOut bytes.Buffer
	err := run([]string{"query", "-help"}, &bytes.Buffer{}, &errOut)
	if err == nil || !strings.Contains(errOut.String(), "lokilab query labels") || !strings.Contains(errOut.String(), "-tenant") {
		t.Fatalf("error %v, help %q", err, errOut.String())
	}
}

func slicesConcat(ss ...[]string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s...)
	}
	return out
}
