package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
)

// queried is what paging through a query_range answer found.
type queried struct {
	copies   map[string]int // line ID → times returned
	warnings []string
	pages    int
}

// queryAll pages forward through every line selector matches in the last
// hour, 5000 at a time, as logcli does: the next page starts at the last
// timestamp seen, and lines already seen at that timestamp are skipped.
// Every line ID it returns more than once is a duplicate the querier let
// through.
func queryAll(t *testing.T, base, selector string) queried {
	t.Helper()
	q := queried{copies: map[string]int{}}
	start := time.Now().Add(-time.Hour).UnixNano()
	end := time.Now().Add(time.Minute).UnixNano()
	seenAtStart := map[string]bool{}
	for {
		v := url.Values{"query": {selector}, "start": {strconv.FormatInt(start, 10)}, "end": {strconv.FormatInt(end, 10)},
			"limit": {"5000"}, "direction": {"forward"}}
		resp, err := http.Get(base + "/loki/api/v1/query_range?" + v.Encode())
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data struct {
				Result []struct {
					Stream map[string]string `json:"stream"`
					Values [][2]string       `json:"values"`
				} `json:"result"`
			} `json:"data"`
			Warnings []string `json:"warnings"`
		}
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("query_range %s: %d %v", selector, resp.StatusCode, err)
		}
		q.pages++
		for _, w := range r.Warnings {
			if !strings.Contains(strings.Join(q.warnings, "\n"), w) {
				q.warnings = append(q.warnings, w)
			}
		}
		n, last := 0, start
		atLast := map[string]bool{}
		for _, s := range r.Data.Result {
			for _, kv := range s.Values {
				n++
				ts, _ := strconv.ParseInt(kv[0], 10, 64)
				key := fmt.Sprint(s.Stream, kv[0], kv[1])
				if ts == start && seenAtStart[key] {
					continue
				}
				q.copies[pushtest.LineID(kv[1])]++
				switch {
				case ts > last:
					last, atLast = ts, map[string]bool{key: true}
				case ts == last:
					atLast[key] = true
				}
			}
		}
		if n < 5000 {
			return q
		}
		if last == start {
			t.Fatalf("more than 5000 lines at one timestamp: cannot page")
		}
		start, seenAtStart = last, atLast
	}
}

// TestQueryThroughIngesterKill9 runs the multi-process topology with a
// querier process: every acknowledged line is answered exactly once while
// it is partly in the ingesters and partly in the store; when an ingester
// is SIGKILLed the answer carries a warning naming it (partial, never
// silent); once the survivor has replayed the dead one's partitions from
// their last commit, every acknowledged line is answered again.
func TestQueryThroughIngesterKill9(t *testing.T) {
	const partitions = 4
	c := startRingCluster(t, partitions)
	// Chunks cut and flushed often, so answers mix store and memory.
	flushArgs := []string{"-ingester.flush-check-period", "300ms", "-ingester.chunks-idle-period", "500ms"}
	_, aURL := c.ingester("ingester-a", flushArgs...)
	b, bURL := c.ingester("ingester-b", flushArgs...)
	kafkaAddr, distURL := c.kafkaAddr, c.distURL
	qPort := freePort(t)
	start(t, "querier", bin.querier, append([]string{"-server.http-listen-port", qPort, "-log.level", "warn",
		"-storage.filesystem.dir", c.storeDir, "-ring.partitions", fmt.Sprint(partitions),
		"-memberlist.bind-port", "0", "-memberlist.join", c.distRing}, testRingArgs...)...)
	qURL := "http://127.0.0.1:" + qPort
	waitOwned(t, partitions, aURL, bURL)
	waitRingOwned(t, qURL, partitions, 2)

	load := startPushLoad(t, distURL+"/loki/api/v1/push", 4, 6, 3)
	time.Sleep(1500 * time.Millisecond)
	if q := queryAll(t, qURL, `{env="prod"}`); len(q.warnings) > 0 || len(q.copies) == 0 {
		t.Fatalf("healthy cluster under load: %d lines, warnings %q", len(q.copies), q.warnings)
	}

	// Kill b with lines in its memory: the answer must say it is partial.
	b.kill()
	killed := time.Now()
	q := queryAll(t, qURL, `{env="prod"}`)
	if !strings.Contains(strings.Join(q.warnings, "\n"), "ingester-b") {
		t.Fatalf("an ingester was killed, yet the answer has no warning naming it: %q", q.warnings)
	}
	t.Logf("right after the kill: %d lines answered, warnings: %q", len(q.copies), q.warnings)
	time.Sleep(500 * time.Millisecond)
	load.finish()

	// Once a owns b's partitions and has replayed them from their last
	// commit, the answer is whole again, and says so by having no warning.
	waitOwned(t, partitions, aURL)
	t.Logf("ingester-a owns all %d partitions %s after the kill", partitions, time.Since(killed).Round(10*time.Millisecond))
	waitConsumed(t, kafkaAddr, aURL)
	// a announces each partition ACTIVE once it has caught up; until the
	// querier sees that, answers stay partial and say so.
	deadline := time.Now().Add(30 * time.Second)
	for q = queryAll(t, qURL, `{env="prod"}`); len(q.warnings) > 0; q = queryAll(t, qURL, `{env="prod"}`) {
		if time.Now().After(deadline) {
			t.Fatalf("every partition has been taken over and replayed, yet answers stay partial 30s on: %q", q.warnings)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("answers whole again %s after the kill", time.Since(killed).Round(10*time.Millisecond))
	r := load.check(q.copies)
	if len(r.lost) > 0 {
		t.Fatalf("%d acknowledged lines missing from the answer, e.g. %v", len(r.lost), r.lost[:min(5, len(r.lost))])
	}
	if r.dups > 0 {
		t.Fatalf("%d lines answered more than once", r.dups)
	}
	if r.ackedPushes == 0 {
		t.Fatal("no push was acknowledged: the test proved nothing")
	}
	if n := metricSum(t, qURL, "lokilab_querier_partial_results_total"); n < 1 {
		t.Errorf("lokilab_querier_partial_results_total = %v after a partial answer", n)
	}
	t.Logf("after the takeover: %d acknowledged pushes (%d lines) answered once each in %d pages; duplicates removed by the querier: %v",
		r.ackedPushes, r.ackedPushes*load.streams*load.lines, q.pages, metricSum(t, qURL, "lokilab_querier_duplicates_removed_total"))
}
