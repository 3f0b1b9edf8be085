// Conformance of the query API (/loki/api/v1/query_range and /query) with
// Loki's semantics.
//
// What the table proves: for a generated data set, every row's LogQL query
// is answered over HTTP by lokilab and, independently, by a brute force in
// this file that reads the raw pushed lines and knows nothing of pkg/logql
// or of the querier (each row carries its own meaning as small Go functions:
// a selector, pipeline stages, a range function, aggregations). The answers
// must be identical:
//
//   - log queries: the same streams (labels after the pipeline, parsed
//     labels included) holding the same (timestamp, line) sequences, in the
//     query's direction, with the same entries kept by the limit. Entries
//     are in [start, end) as Loki documents. The limit counts entries across
//     streams, ordered by timestamp, then stream labels (in their canonical
//     {a="1", b="2"} spelling), then line; backward is exactly the reverse
//     of forward. That tie order is lokilab's (Loki leaves it unspecified);
//     rows whose limit cuts a group of equal timestamps pin it down.
//   - metric queries: the same series with the same (time, value) points,
//     at steps start, start+step, … ≤ end, each range function over the
//     left-open window (t-range, t] as in Loki. Counts and bytes compare as
//     exact strings; rate, bytes_rate and avg (divisions, sums of quotients
//     in a different order) within a relative 1e-9. topk and bottomk break
//     ties by series labels, ascending (lokilab's order; Loki leaves it
//     unspecified).
//   - numeric label filters (number, duration, bytes) drop a line that lacks
//     the label, as Loki does (grafana/loki#6713); the data has no value a
//     filter cannot convert, so __error__ never appears in expected answers.
//
// Every row runs twice, with split_queries_by_interval 1h and 20m: splitting
// must not change an answer.
//
// Data layout (deterministic, math/rand/v2 PCG with a fixed seed): the
// querier's clock is apiNow, 12:00; three tenants (acme, globex, initech)
// with 4-6 streams each; logfmt, JSON (nested objects, numbers, booleans,
// unicode), nginx access, plain and unicode lines from 06:00 to 12:00 at
// irregular intervals (ms and ns offsets), with groups of lines at one
// timestamp in a stream and clusters at one timestamp across streams, some
// exactly on split boundaries (10:00, 10:20, 11:00, …), on the ingesters'
// 3h boundary (09:00), and 1ns either side. Per stream, lines older than a
// cut near 10:30 are flushed to the store as several chunks, plus one
// replayed chunk overlapping two of them with other boundaries; lines from
// a cut near 10:00 (never before 09:00) are in one or both of two fake
// ingesters (a replica, whole or from 11:00 on). So the store/ingester
// overlap (about 10:00-10:30) holds every line two or three times, and
// the answer must hold it once. One stream lives only in the store, one
// only in the ingesters, one is cut between them exactly at 09:00 with no
// overlap. globex has a stream with the very labels of one of acme's:
// tenants must not see each other's lines; multi-tenant rows (acme|globex)
// tell them apart by __tenant_id__.

package querier

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/lokilab/lokilab/internal/metricstest"
	"github.com/lokilab/lokilab/pkg/config"
	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// confT is a time of the data set's day.
func confT(h, m, s int) time.Time { return time.Date(2026, 11, 28, h, m, s, 0, time.UTC) }

// ---------------------------------------------------------------------------
// The data set.

type confEntry struct {
	ts   int64
	line string
}

type confStream struct {
	tenant   string
	labels   map[string]string
	shape    string    // how its lines look: logfmt, tps, json, payments, nginx, worker, legacy, printer
	from, to time.Time // it logs in [from, to)
	// storeBefore: lines before it are flushed (zero: none). ingFrom: lines
	// from it on are in ingesters[0] (zero: none); ingesters[1], if any,
	// holds those from replicaFrom (zero: ingFrom) on as well.
	storeBefore, ingFrom, replicaFrom time.Time
	ingesters                         []int
	entries                           []confEntry // sorted by (ts, line), unique
}

type confData struct{ streams []*confStream }

// confClusters are timestamps many streams log at; forced ones get two lines
// in every stream logging then (the limit rows cut inside them).
var confClusters = []struct {
	at     time.Time
	forced bool
}{
	{confT(7, 0, 0), false}, {confT(8, 30, 0), false}, {confT(9, 0, 0), false},
	{confT(10, 0, 0), false}, {confT(10, 15, 0), false}, {confT(10, 20, 0), false},
	{confT(10, 30, 0), false}, {confT(10, 40, 0), false}, {confT(11, 0, 0), true},
	{confT(11, 20, 0), false}, {confT(11, 37, 0), true}, {confT(11, 40, 0), false},
}

func confGenerate() *confData {
	ls := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	day, end := confT(6, 0, 0), apiNow
	d := &confData{streams: []*confStream{
		{tenant: "acme", labels: ls("app", "api", "env", "prod", "pod", "api-7f9c-1"), shape: "logfmt", from: day, to: end,
			storeBefore: confT(10, 30, 0), ingFrom: confT(10, 0, 0), ingesters: []int{0}},
		{tenant: "acme", labels: ls("app", "api", "env", "prod", "pod", "api-7f9c-2"), shape: "logfmt", from: day, to: end,
			storeBefore: confT(10, 22, 0), ingFrom: confT(9, 40, 0), ingesters: []int{1, 0}},
		{tenant: "acme", labels: ls("app", "api", "env", "dev", "pod", "api-dev-0"), shape: "logfmt", from: day, to: end,
			storeBefore: confT(10, 35, 0), ingFrom: confT(10, 5, 0), ingesters: []int{1}},
		{tenant: "acme", labels: ls("app", "web", "env", "prod"), shape: "nginx", from: day, to: end,
			storeBefore: confT(10, 30, 0), ingFrom: confT(10, 0, 0), ingesters: []int{0, 1}, replicaFrom: confT(11, 0, 0)},
		{tenant: "acme", labels: ls("app", "worker", "env", "prod", "level", "info"), shape: "worker", from: day, to: end,
			storeBefore: confT(10, 26, 0), ingFrom: confT(9, 15, 0), ingesters: []int{0, 1}},
		{tenant: "acme", labels: ls("app", "checkout", "env", "prod"), shape: "json", from: confT(10, 45, 0), to: end,
			ingFrom: confT(10, 45, 0), ingesters: []int{1}},
		{tenant: "globex", labels: ls("app", "api", "env", "prod", "pod", "api-7f9c-1"), shape: "logfmt", from: day, to: end,
			storeBefore: confT(10, 31, 0), ingFrom: confT(10, 1, 0), ingesters: []int{1, 0}},
		{tenant: "globex", labels: ls("app", "payments", "env", "prod", "level", "error"), shape: "payments", from: day, to: end,
			storeBefore: confT(10, 28, 0), ingFrom: confT(9, 58, 0), ingesters: []int{0}},
		{tenant: "globex", labels: ls("app", "web", "env", "staging"), shape: "nginx", from: day, to: end,
			storeBefore: confT(10, 33, 0), ingFrom: confT(10, 2, 0), ingesters: []int{1}},
		{tenant: "globex", labels: ls("app", "legacy", "env", "prod"), shape: "legacy", from: day, to: confT(9, 30, 0),
			storeBefore: confT(9, 30, 0)},
		{tenant: "initech", labels: ls("app", "tps", "env", "prod", "level", "warn"), shape: "tps", from: day, to: end,
			storeBefore: confT(10, 30, 0), ingFrom: confT(10, 0, 0), ingesters: []int{0, 1}},
		{tenant: "initech", labels: ls("app", "printer", "env", "prod"), shape: "printer", from: day, to: end, // no overlap: cut exactly at now - query_ingesters_within
			storeBefore: confT(9, 0, 0), ingFrom: confT(9, 0, 0), ingesters: []int{1}},
		{tenant: "initech", labels: ls("app", "api", "env", "prod", "pod", "api-1"), shape: "json", from: day, to: end,
			storeBefore: confT(10, 40, 0), ingFrom: confT(10, 10, 0), ingesters: []int{0}},
		{tenant: "initech", labels: ls("app", "web", "env", "prod"), shape: "nginx", from: day, to: end,
			storeBefore: confT(10, 30, 0), ingFrom: confT(10, 0, 0), ingesters: []int{1, 0}, replicaFrom: confT(11, 0, 0)},
	}}
	r := rand.New(rand.NewPCG(20261128, 7))
	for _, s := range d.streams {
		var es []confEntry
		add := func(at time.Time) { es = append(es, confEntry{at.UnixNano(), confLine(r, s.shape, at)}) }
		at := s.from.Add(time.Duration(r.IntN(90_000)) * time.Millisecond)
		for at.Before(s.to) {
			add(at)
			if r.IntN(10) == 0 { // a group of lines at one timestamp
				for range 1 + r.IntN(3) {
					add(at)
				}
			}
			step := time.Duration(500+r.IntN(110_000)) * time.Millisecond
			if r.IntN(5) == 0 {
				step += time.Duration(r.IntN(1_000_000)) // ns precision
			}
			at = at.Add(step)
		}
		for _, c := range confClusters {
			if c.at.Before(s.from) || !c.at.Before(s.to) {
				continue
			}
			n := 2
			if !c.forced {
				if r.IntN(4) == 0 {
					continue
				}
				n = 1 + r.IntN(3)
			}
			for range n {
				add(c.at)
			}
			if r.IntN(3) == 0 {
				add(c.at.Add(-1))
			}
			if r.IntN(3) == 0 {
				add(c.at.Add(1))
			}
		}
		slices.SortFunc(es, func(a, b confEntry) int { return cmp.Or(cmp.Compare(a.ts, b.ts), strings.Compare(a.line, b.line)) })
		s.entries = slices.Compact(es) // the same line twice at one time is one entry
	}
	return d
}

func confPick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// confLine makes one line of a shape.
func confLine(r *rand.Rand, shape string, at time.Time) string {
	switch shape {
	case "logfmt":
		lvl := confPick(r, "info", "info", "info", "info", "info", "info", "warn", "warn", "error", "debug")
		if lvl == "debug" {
			return fmt.Sprintf("level=debug msg=%s keys=%d", strconv.Quote(confPick(r, "cache refreshed", "config reloaded ✓")), r.IntN(500))
		}
		status := map[string][]int{"info": {200, 200, 201, 204, 304}, "warn": {404, 429}, "error": {500, 502, 503}}[lvl]
		var dur string
		switch n := r.IntN(10); {
		case n < 7:
			dur = fmt.Sprintf("%dms", 1+r.IntN(1500))
		case n < 9:
			dur = fmt.Sprintf("%d.%02ds", 1+r.IntN(4), r.IntN(100))
		default:
			dur = fmt.Sprintf("%dus", 50+r.IntN(900))
		}
		var size string
		switch n := r.IntN(20); {
		case n < 8:
			size = fmt.Sprintf("%dB", 1+r.IntN(999))
		case n < 16:
			size = fmt.Sprintf("%d.%dKB", 1+r.IntN(9), r.IntN(10))
		case n < 19:
			size = fmt.Sprintf("%dKiB", 1+r.IntN(64))
		default:
			size = fmt.Sprintf("%d.%02dMB", 1+r.IntN(3), r.IntN(100))
		}
		return fmt.Sprintf("level=%s method=%s path=%s status=%d duration=%s bytes=%s msg=%s", lvl,
			confPick(r, "GET", "GET", "GET", "POST", "PUT", "DELETE"),
			confPick(r, "/api/v1/orders", "/api/v1/orders/7/items", "/api/v1/users/42", "/api/v2/search", "/healthz"),
			confPick(r, status...), dur, size,
			strconv.Quote(confPick(r, "request served", "upstream timeout", "Zahlung für Bestellung ✓", `user "bob" not found`, "データ取得完了")))
	case "tps":
		return fmt.Sprintf("level=%s report=TPS-%d pages=%d cover=%t msg=%s", confPick(r, "info", "info", "warn", "error"),
			100+r.IntN(900), 1+r.IntN(40), r.IntN(2) == 0, strconv.Quote(confPick(r, "cover sheet missing", "report filed", "memo received — ok")))
	case "json":
		lvl := confPick(r, "info", "info", "info", "warn", "error")
		status := map[string][]int{"info": {200, 201}, "warn": {404, 409}, "error": {500, 503}}[lvl]
		lat := strconv.Itoa(r.IntN(400))
		if r.IntN(5) == 0 {
			lat += "." + strconv.Itoa(1+r.IntN(9))
		}
		user := ""
		if r.IntN(4) != 0 {
			user = fmt.Sprintf(`"user":{"id":%d,"name":%q},`, 1+r.IntN(12), confPick(r, "zoë", "bob", "李雷", "ana-maría"))
		}
		return fmt.Sprintf(`{"level":%q,"status":%d,"latency_ms":%s,%s"msg":%q,"cached":%t}`, lvl, confPick(r, status...), lat, user,
			confPick(r, "payment accepted", "upstream timeout", "cart updated ✓", "Warenkorb geleert"), r.IntN(3) == 0)
	case "payments":
		return fmt.Sprintf(`{"level":%q,"amount":%d.%d,"currency":%q,"status":%d,"msg":%q}`, confPick(r, "error", "error", "warn"),
			r.IntN(500), 1+r.IntN(9), confPick(r, "EUR", "USD", "JPY"), confPick(r, 402, 409, 500), confPick(r, "card declined", "timeout talking to bank", "double charge avoided"))
	case "nginx":
		status := confPick(r, 200, 200, 200, 200, 301, 304, 404, 500, 502)
		return fmt.Sprintf(`10.0.%d.%d - - [%s] "%s %s HTTP/1.1" %d %d "-" %q`, r.IntN(4), 1+r.IntN(254), at.Format("02/Jan/2006:15:04:05 -0700"),
			confPick(r, "GET", "GET", "GET", "POST", "HEAD"), confPick(r, "/static/app.js", "/static/logo.png", "/api/v1/orders", "/login", "/healthz"),
			status, 100+r.IntN(20000), confPick(r, "Mozilla/5.0", "curl/8.4.0", "kube-probe/1.29"))
	case "worker":
		switch r.IntN(6) {
		case 0:
			return fmt.Sprintf("worker %d finished batch %d in %dms", r.IntN(8), r.IntN(10000), r.IntN(5000))
		case 1:
			return fmt.Sprintf("retrying job %d (attempt %d/5)", r.IntN(10000), 1+r.IntN(5))
		case 2:
			return "panic: runtime error: index out of range [5] with length 3"
		case 3:
			return fmt.Sprintf("Ünïcödé → batch %d ✓ done", r.IntN(1000))
		case 4:
			return fmt.Sprintf("警告: キューが満杯です (%d)", r.IntN(100))
		default:
			return fmt.Sprintf("upstream TIMEOUT after %ds", 1+r.IntN(60))
		}
	case "legacy":
		return fmt.Sprintf("legacy cron %s ran in %ds", confPick(r, "nightly-export", "cleanup", "billing"), r.IntN(300))
	case "printer":
		return confPick(r, fmt.Sprintf("PC LOAD LETTER on tray %d", 1+r.IntN(3)), fmt.Sprintf("Drucker %d: Papierstau ✗", r.IntN(9)),
			fmt.Sprintf("job %d printed %d pages", r.IntN(9999), 1+r.IntN(50)))
	}
	panic("unknown shape " + shape)
}

// confLoad places the data: the store's chunks (with a replay) and the
// ingesters' memory, as the package comment describes.
func confLoad(t *testing.T, tq *testQuerier, d *confData) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for i, s := range d.streams {
		ls := labels.FromMap(s.labels)
		var stored, recent []push.Entry
		for _, e := range s.entries {
			pe := push.Entry{Timestamp: e.ts, Line: e.line}
			inStore := !s.storeBefore.IsZero() && e.ts < s.storeBefore.UnixNano()
			inIng := !s.ingFrom.IsZero() && e.ts >= s.ingFrom.UnixNano()
			if !inStore && !inIng {
				t.Fatalf("data layout: stream %d's line at %d is nowhere", i, e.ts)
			}
			if inStore {
				stored = append(stored, pe)
			}
			if inIng {
				recent = append(recent, pe)
			}
		}
		if !s.ingFrom.IsZero() && s.ingFrom.Before(apiNow.Add(-3*time.Hour)) {
			t.Fatalf("data layout: stream %d is in the ingesters before query_ingesters_within", i)
		}
		var bounds []int
		for j := 0; j < len(stored); {
			n := min(60+r.IntN(100), len(stored)-j)
			flush(t, tq.bkt, s.tenant, ls, stored[j:j+n], fmt.Sprintf("s%d-c%d", i, len(bounds)))
			j += n
			bounds = append(bounds, j)
		}
		if len(bounds) >= 2 { // a replay: the lines around the first boundary again, cut elsewhere
			a, b := max(bounds[0]-25, 0), min(bounds[0]+40, len(stored))
			flush(t, tq.bkt, s.tenant, ls, stored[a:b], fmt.Sprintf("s%d-replay", i))
		}
		for k, ing := range s.ingesters {
			from := s.ingFrom
			if k > 0 && !s.replicaFrom.IsZero() {
				from = s.replicaFrom
			}
			for _, e := range recent {
				if e.Timestamp >= from.UnixNano() {
					tq.ingesters[ing].add(s.tenant, ls, e)
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// The rows' meaning: selectors, pipeline stages, aggregations.

// confMatcher is one label matcher of a selector.
type confMatcher func(ls map[string]string) bool

func confEq(n, v string) confMatcher  { return func(ls map[string]string) bool { return ls[n] == v } }
func confNeq(n, v string) confMatcher { return func(ls map[string]string) bool { return ls[n] != v } }
func confRe(n, re string) confMatcher {
	x := regexp.MustCompile("^(?:" + re + ")$") // label regexes are anchored
	return func(ls map[string]string) bool { return x.MatchString(ls[n]) }
}
func confNre(n, re string) confMatcher {
	m := confRe(n, re)
	return func(ls map[string]string) bool { return !m(ls) }
}

// confItem is an entry going through a row's stages.
type confItem struct {
	line     string
	ls, base map[string]string // current labels; the stream's
}

// confStage keeps (true) or drops an entry, possibly changing it.
type confStage func(*confItem) bool

func confHas(s string) confStage {
	return func(it *confItem) bool { return strings.Contains(it.line, s) }
}
func confHasNot(s string) confStage {
	return func(it *confItem) bool { return !strings.Contains(it.line, s) }
}
func confMatch(re string) confStage {
	x := regexp.MustCompile(re) // line regexes are not anchored
	return func(it *confItem) bool { return x.MatchString(it.line) }
}
func confNoMatch(re string) confStage {
	x := regexp.MustCompile(re)
	return func(it *confItem) bool { return !x.MatchString(it.line) }
}

// confExtract adds parsed fields; one named like a stream label gets the
// _extracted suffix.
func confExtract(it *confItem, fields map[string]string) {
	for k, v := range fields {
		if _, ok := it.base[k]; ok {
			k += "_extracted"
		}
		it.ls[k] = v
	}
}

// confLogfmt parses key=value and key="quoted \"value\"" pairs.
func confLogfmt(it *confItem) bool {
	fields := map[string]string{}
	rest := it.line
	for rest = strings.TrimLeft(rest, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || strings.Contains(key, " ") {
			panic("conformance data: not logfmt: " + it.line)
		}
		if strings.HasPrefix(after, `"`) {
			i := 1
			for i < len(after) && after[i] != '"' {
				if after[i] == '\\' {
					i++
				}
				i++
			}
			v, err := strconv.Unquote(after[:i+1])
			if err != nil {
				panic("conformance data: bad quoted value in " + it.line)
			}
			fields[key], rest = v, after[i+1:]
		} else {
			fields[key], rest, _ = strings.Cut(after, " ")
		}
	}
	confExtract(it, fields)
	return true
}

// confJSON flattens a JSON object's fields: nested objects joined with _,
// numbers as written, booleans as true/false.
func confJSON(it *confItem) bool {
	dec := json.NewDecoder(strings.NewReader(it.line))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		panic("conformance data: not JSON: " + it.line)
	}
	fields := map[string]string{}
	var walk func(prefix string, o map[string]any)
	walk = func(prefix string, o map[string]any) {
		for k, v := range o {
			switch v := v.(type) {
			case map[string]any:
				walk(prefix+k+"_", v)
			case string:
				fields[prefix+k] = v
			case json.Number:
				fields[prefix+k] = v.String()
			case bool:
				fields[prefix+k] = strconv.FormatBool(v)
			default:
				panic(fmt.Sprintf("conformance data: JSON value %v in %s", v, it.line))
			}
		}
	}
	walk("", obj)
	confExtract(it, fields)
	return true
}

// confPred is a label filter's condition.
type confPred func(ls map[string]string) bool

func confWhere(p confPred) confStage { return func(it *confItem) bool { return p(it.ls) } }
func confStr(n, v string) confPred   { return func(ls map[string]string) bool { return ls[n] == v } }
func confStrNe(n, v string) confPred {
	return func(ls map[string]string) bool { return ls[n] != v }
}
func confStrRe(n, re string) confPred {
	m := confRe(n, re)
	return func(ls map[string]string) bool { return m(ls) }
}
func confAnd(a, b confPred) confPred {
	return func(ls map[string]string) bool { return a(ls) && b(ls) }
}
func confOr(a, b confPred) confPred {
	return func(ls map[string]string) bool { return a(ls) || b(ls) }
}

// confCmp compares a label converted by conv with x; a missing label does
// not pass (Loki drops the line), a value conv cannot read is a data bug.
func confCmp(n, op string, x float64, conv func(string) (float64, error)) confPred {
	return func(ls map[string]string) bool {
		s, ok := ls[n]
		if !ok {
			return false
		}
		v, err := conv(s)
		if err != nil {
			panic(fmt.Sprintf("conformance data: label %s=%q: %v", n, s, err))
		}
		switch op {
		case ">":
			return v > x
		case ">=":
			return v >= x
		case "<":
			return v < x
		case "<=":
			return v <= x
		case "==":
			return v == x
		case "!=":
			return v != x
		}
		panic("bad op " + op)
	}
}

func confNum(n, op string, x float64) confPred {
	return confCmp(n, op, x, func(s string) (float64, error) { return strconv.ParseFloat(s, 64) })
}

func confDur(n, op string, d time.Duration) confPred {
	return confCmp(n, op, d.Seconds(), func(s string) (float64, error) {
		v, err := time.ParseDuration(s)
		return v.Seconds(), err
	})
}

// confBytes compares sizes: B, KB/MB (powers of 1000), KiB (1024).
func confBytes(n, op string, x float64) confPred {
	return confCmp(n, op, x, func(s string) (float64, error) {
		i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		unit := map[string]float64{"B": 1, "KB": 1e3, "MB": 1e6, "KiB": 1024}[s[max(i, 0):]]
		v, err := strconv.ParseFloat(s[:max(i, 0)], 64)
		if i < 0 || unit == 0 || err != nil {
			return 0, fmt.Errorf("not a size")
		}
		return v * unit, nil
	})
}

func confFormat(f func(ls map[string]string) string) confStage {
	return func(it *confItem) bool { it.line = f(it.ls); return true }
}

func confDrop(names ...string) confStage {
	return func(it *confItem) bool {
		for _, n := range names {
			delete(it.ls, n)
		}
		return true
	}
}

// confAgg is a vector aggregation: op by/without labels; k for topk and
// bottomk.
type confAgg struct {
	op      string
	labels  []string
	without bool
	k       int
}

// confSample is one series' value at a step.
type confSample struct {
	ls map[string]string
	v  float64
}

func (a confAgg) apply(in map[string]confSample) map[string]confSample {
	type group struct{ members []string }
	groups := map[string]*group{}
	glabels := map[string]map[string]string{}
	for k, s := range in {
		g := map[string]string{}
		for n, v := range s.ls {
			if slices.Contains(a.labels, n) != a.without {
				g[n] = v
			}
		}
		gk := confKey(g)
		if groups[gk] == nil {
			groups[gk], glabels[gk] = &group{}, g
		}
		groups[gk].members = append(groups[gk].members, k)
	}
	out := map[string]confSample{}
	for gk, g := range groups {
		slices.Sort(g.members)
		switch a.op {
		case "topk", "bottomk":
			slices.SortStableFunc(g.members, func(x, y string) int {
				if a.op == "topk" {
					return cmp.Compare(in[y].v, in[x].v)
				}
				return cmp.Compare(in[x].v, in[y].v)
			})
			for _, k := range g.members[:min(a.k, len(g.members))] {
				out[k] = in[k]
			}
			continue
		}
		vs := make([]float64, len(g.members))
		for i, k := range g.members {
			vs[i] = in[k].v
		}
		var v float64
		switch a.op {
		case "sum", "avg":
			for _, x := range vs {
				v += x
			}
			if a.op == "avg" {
				v /= float64(len(vs))
			}
		case "min":
			v = slices.Min(vs)
		case "max":
			v = slices.Max(vs)
		case "count":
			v = float64(len(vs))
		default:
			panic("bad aggregation " + a.op)
		}
		out[gk] = confSample{glabels[gk], v}
	}
	return out
}

// confKey spells a label set canonically: {a="1", b="2"}.
func confKey(ls map[string]string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range slices.Sorted(maps.Keys(ls)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n + "=" + strconv.Quote(ls[n]))
	}
	b.WriteByte('}')
	return b.String()
}

// ---------------------------------------------------------------------------
// The table.

type confRow struct {
	name   string
	tenant string // one, or several separated by |
	query  string
	sel    []confMatcher
	stages []confStage
	// A log query covers [start, end); a metric query steps from start to
	// end; an instant query is at start.
	start, end time.Time
	limit      int
	backward   bool
	cutsTie    bool // the limit must fall inside a group of equal timestamps
	// Metric queries: count, rate, bytes or bytes_rate over rng, then aggs
	// (innermost first).
	fn      string
	rng     time.Duration
	aggs    []confAgg
	step    time.Duration
	instant bool
}

func (r *confRow) approx() bool {
	return r.fn == "rate" || r.fn == "bytes_rate" || slices.ContainsFunc(r.aggs, func(a confAgg) bool { return a.op == "avg" })
}

type confPoint struct {
	t int64 // ms
	v float64
}

// confWant is a row's expected answer.
type confWant struct {
	streams map[string][]confEntry // log queries
	series  map[string][]confPoint // metric queries
}

func (w confWant) empty() bool { return len(w.streams) == 0 && len(w.series) == 0 }

// confOut is an entry after a row's pipeline.
type confOut struct {
	key  string
	ls   map[string]string
	ts   int64
	line string
}

// run is the brute force's log query: every matching stream's entries in
// [from, through) through the stages.
func (d *confData) run(r *confRow, from, through int64) ([]confOut, error) {
	tenants := strings.Split(r.tenant, "|")
	var out []confOut
	seen := map[string]bool{}
	for _, s := range d.streams {
		if !slices.Contains(tenants, s.tenant) || slices.ContainsFunc(r.sel, func(m confMatcher) bool { return !m(s.labels) }) {
			continue
		}
		base := maps.Clone(s.labels)
		if len(tenants) > 1 {
			base["__tenant_id__"] = s.tenant
		}
	entries:
		for _, e := range s.entries {
			if e.ts < from || e.ts >= through {
				continue
			}
			it := &confItem{line: e.line, ls: maps.Clone(base), base: base}
			for _, st := range r.stages {
				if !st(it) {
					continue entries
				}
			}
			maps.DeleteFunc(it.ls, func(_, v string) bool { return v == "" })
			o := confOut{confKey(it.ls), it.ls, e.ts, it.line}
			id := fmt.Sprint(o.key, o.ts, o.line)
			if seen[id] {
				return nil, fmt.Errorf("row %q is ambiguous: two identical entries %s %d %q", r.name, o.key, o.ts, o.line)
			}
			seen[id] = true
			out = append(out, o)
		}
	}
	return out, nil
}

func (r *confRow) steps() []time.Time {
	if r.instant {
		return []time.Time{r.start}
	}
	var ts []time.Time
	for t := r.start; !t.After(r.end); t = t.Add(r.step) {
		ts = append(ts, t)
	}
	return ts
}

// expect computes a row's answer by brute force.
func (d *confData) expect(r *confRow) (confWant, error) {
	if r.fn == "" {
		out, err := d.run(r, r.start.UnixNano(), r.end.UnixNano())
		if err != nil {
			return confWant{}, err
		}
		slices.SortFunc(out, func(a, b confOut) int {
			return cmp.Or(cmp.Compare(a.ts, b.ts), strings.Compare(a.key, b.key), strings.Compare(a.line, b.line))
		})
		if r.backward {
			slices.Reverse(out)
		}
		if r.cutsTie && (len(out) <= r.limit || out[r.limit-1].ts != out[r.limit].ts) {
			return confWant{}, fmt.Errorf("row %q: its limit does not cut a group of equal timestamps", r.name)
		}
		w := confWant{streams: map[string][]confEntry{}}
		for _, o := range out[:min(r.limit, len(out))] {
			w.streams[o.key] = append(w.streams[o.key], confEntry{o.ts, o.line})
		}
		return w, nil
	}
	steps := r.steps()
	rng := int64(r.rng)
	out, err := d.run(r, steps[0].UnixNano()-rng+1, steps[len(steps)-1].UnixNano()+1)
	if err != nil {
		return confWant{}, err
	}
	w := confWant{series: map[string][]confPoint{}}
	for _, at := range steps {
		t := at.UnixNano()
		type acc struct {
			ls       map[string]string
			n, bytes int
		}
		accs := map[string]*acc{}
		for _, o := range out {
			if o.ts <= t-rng || o.ts > t { // the window is (t-range, t]
				continue
			}
			a := accs[o.key]
			if a == nil {
				a = &acc{ls: o.ls}
				accs[o.key] = a
			}
			a.n++
			a.bytes += len(o.line)
		}
		vec := map[string]confSample{}
		for k, a := range accs {
			v := map[string]float64{"count": float64(a.n), "rate": float64(a.n) / r.rng.Seconds(),
				"bytes": float64(a.bytes), "bytes_rate": float64(a.bytes) / r.rng.Seconds()}[r.fn]
			vec[k] = confSample{a.ls, v}
		}
		for _, a := range r.aggs {
			vec = a.apply(vec)
		}
		for k, s := range vec {
			w.series[k] = append(w.series[k], confPoint{at.UnixMilli(), s.v})
		}
	}
	return w, nil
}

func confRows() []confRow {
	day, end := confT(6, 0, 0), apiNow
	api := []confMatcher{confEq("app", "api")}
	apiProd := []confMatcher{confEq("app", "api"), confEq("env", "prod")}
	prod := []confMatcher{confEq("env", "prod")}
	anyApp := []confMatcher{confRe("app", ".+")}
	notDebug := confWhere(confStrNe("level", "debug"))
	sum := func(by ...string) confAgg { return confAgg{op: "sum", labels: by} }
	const bwd = true
	rows := []confRow{
		// Selectors.
		{name: "eq selector forward whole day", tenant: "acme", query: `{app="api", env="prod"}`, sel: apiProd, start: day, end: end, limit: 5000},
		{name: "neq selector backward", tenant: "acme", query: `{app=~".+", env!="prod"}`, sel: []confMatcher{confRe("app", ".+"), confNeq("env", "prod")}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "regex selector across 10h split and store-ingester overlap", tenant: "acme", query: `{app=~"api|web"}`, sel: []confMatcher{confRe("app", "api|web")}, start: confT(9, 40, 0), end: confT(10, 50, 0), limit: 5000},
		{name: "not-regex selector across the ingesters 3h boundary", tenant: "acme", query: `{env="prod", app!~"api|checkout"}`, sel: []confMatcher{confEq("env", "prod"), confNre("app", "api|checkout")}, start: confT(8, 50, 0), end: confT(9, 10, 0), limit: 5000, backward: bwd},
		{name: "two matchers on one label, ingester-only stream", tenant: "acme", query: `{app=~"[a-c].*", app!="api"}`, sel: []confMatcher{confRe("app", "[a-c].*"), confNeq("app", "api")}, start: day, end: end, limit: 5000},
		{name: "backtick strings, limit cuts backward", tenant: "acme", query: "{app=~`api|web`} |= `POST`", sel: []confMatcher{confRe("app", "api|web")}, stages: []confStage{confHas("POST")}, start: day, end: end, limit: 300, backward: bwd},

		// Line filters.
		{name: "line filter chain", tenant: "acme", query: `{app="api"} != "healthz" != "level=debug" |= "status=5"`, sel: api, stages: []confStage{confHasNot("healthz"), confHasNot("level=debug"), confHas("status=5")}, start: day, end: end, limit: 5000},
		{name: "line regex nginx 4xx and 5xx", tenant: "acme", query: `{app="web"} |~ "HTTP/1\\.1\" [45]\\d\\d "`, sel: []confMatcher{confEq("app", "web")}, stages: []confStage{confMatch(`HTTP/1\.1" [45]\d\d `)}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "line not-regex case-insensitive", tenant: "acme", query: `{app=~"api|worker"} !~ "(?i)timeout|retry"`, sel: []confMatcher{confRe("app", "api|worker")}, stages: []confStage{confNoMatch(`(?i)timeout|retry`)}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "unicode substring", tenant: "acme", query: `{env="prod"} |= "✓"`, sel: prod, stages: []confStage{confHas("✓")}, start: day, end: end, limit: 5000},
		{name: "unicode regex katakana", tenant: "acme", query: "{app=\"worker\"} |~ `\\p{Katakana}`", sel: []confMatcher{confEq("app", "worker")}, stages: []confStage{confMatch(`\p{Katakana}`)}, start: day, end: end, limit: 5000},

		// Parsers and label filters.
		{name: "logfmt numeric status", tenant: "acme", query: `{app="api"} | logfmt | level!="debug" | status >= 500`, sel: api, stages: []confStage{confLogfmt, notDebug, confWhere(confNum("status", ">=", 500))}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "logfmt duration", tenant: "acme", query: `{app="api"} | logfmt | level!="debug" | duration > 1s`, sel: api, stages: []confStage{confLogfmt, notDebug, confWhere(confDur("duration", ">", time.Second))}, start: day, end: end, limit: 5000},
		{name: "logfmt bytes", tenant: "acme", query: `{app="api", env="prod"} | logfmt | level!="debug" | bytes >= 2KB`, sel: apiProd, stages: []confStage{confLogfmt, notDebug, confWhere(confBytes("bytes", ">=", 2000))}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "logfmt string and regex with comma", tenant: "acme", query: `{app="api"} | logfmt | method="POST", path=~"/api/v1/orders.*"`, sel: api, stages: []confStage{confLogfmt, confWhere(confAnd(confStr("method", "POST"), confStrRe("path", "/api/v1/orders.*")))}, start: day, end: end, limit: 5000},
		{name: "logfmt or", tenant: "acme", query: `{app="api"} | logfmt | level!="debug" | status == 429 or duration >= 1200ms`, sel: api, stages: []confStage{confLogfmt, notDebug, confWhere(confOr(confNum("status", "==", 429), confDur("duration", ">=", 1200*time.Millisecond)))}, start: day, end: end, limit: 5000},
		{name: "logfmt and-or with parentheses", tenant: "acme", query: `{app="api"} | logfmt | (method="DELETE" or method="PUT") and status < 300`, sel: api, stages: []confStage{confLogfmt, confWhere(confAnd(confOr(confStr("method", "DELETE"), confStr("method", "PUT")), confNum("status", "<", 300)))}, start: day, end: end, limit: 5000, backward: bwd},
		// A numeric filter drops lines without the label (debug lines have
		// no duration), as in Loki; only a value that does not convert is
		// an error.
		{name: "logfmt numeric filter on a field some lines lack", tenant: "acme", query: `{app="api"} | logfmt | duration > 1s`, sel: api, stages: []confStage{confLogfmt, confWhere(confDur("duration", ">", time.Second))}, start: day, end: end, limit: 5000},
		{name: "logfmt line_format", tenant: "acme", query: `{app="api", env="prod"} | logfmt | level="error" | line_format "{{.method}} {{.path}} -> {{.status}}"`, sel: apiProd, stages: []confStage{confLogfmt, confWhere(confStr("level", "error")), confFormat(func(ls map[string]string) string { return ls["method"] + " " + ls["path"] + " -> " + ls["status"] })}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "line_format then line filter", tenant: "acme", query: `{app="api"} | logfmt | line_format "{{.level | ToUpper}}: {{.msg}}" |= "WARN"`, sel: api, stages: []confStage{confLogfmt, confFormat(func(ls map[string]string) string { return strings.ToUpper(ls["level"]) + ": " + ls["msg"] }), confHas("WARN")}, start: day, end: end, limit: 5000},
		{name: "drop", tenant: "acme", query: `{app="api", pod="api-7f9c-1"} | logfmt | drop method, path, msg, bytes, duration`, sel: []confMatcher{confEq("app", "api"), confEq("pod", "api-7f9c-1")}, stages: []confStage{confLogfmt, confDrop("method", "path", "msg", "bytes", "duration")}, start: confT(10, 0, 0), end: confT(10, 40, 0), limit: 5000},
		{name: "json nested numeric and", tenant: "acme", query: `{app="checkout"} | json | status >= 500 and latency_ms > 100`, sel: []confMatcher{confEq("app", "checkout")}, stages: []confStage{confJSON, confWhere(confAnd(confNum("status", ">=", 500), confNum("latency_ms", ">", 100)))}, start: day, end: end, limit: 5000},
		{name: "json nested string regex unicode", tenant: "acme", query: `{app="checkout"} | json | user_name=~"zo.*|李.*"`, sel: []confMatcher{confEq("app", "checkout")}, stages: []confStage{confJSON, confWhere(confStrRe("user_name", "zo.*|李.*"))}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "json field named like a stream label", tenant: "globex", query: `{app="payments"} | json | level_extracted="error"`, sel: []confMatcher{confEq("app", "payments")}, stages: []confStage{confJSON, confWhere(confStr("level_extracted", "error"))}, start: day, end: end, limit: 5000},
		{name: "logfmt field named like a stream label", tenant: "initech", query: `{app="tps"} | logfmt | level_extracted="info"`, sel: []confMatcher{confEq("app", "tps")}, stages: []confStage{confLogfmt, confWhere(confStr("level_extracted", "info"))}, start: day, end: end, limit: 5000, backward: bwd},
		{name: "json string regex on a number", tenant: "initech", query: `{app="api"} | json | status=~"5.."`, sel: api, stages: []confStage{confJSON, confWhere(confStrRe("status", "5.."))}, start: day, end: end, limit: 5000},
		// The same, for lines without a user object.
		{name: "json numeric equality on a nested field", tenant: "initech", query: `{app="api"} | json | user_id == 7`, sel: api, stages: []confStage{confJSON, confWhere(confNum("user_id", "==", 7))}, start: day, end: end, limit: 5000},
		{name: "json numeric equality on a nested field of lines that have it", tenant: "initech", query: `{app="api"} | json | user_name!="" | user_id == 7`, sel: api, stages: []confStage{confJSON, confWhere(confStrNe("user_name", "")), confWhere(confNum("user_id", "==", 7))}, start: day, end: end, limit: 5000},

		// Tenants.
		{name: "tenant sees only its own stream of shared labels", tenant: "globex", query: `{app="api", env="prod", pod="api-7f9c-1"}`, sel: []confMatcher{confEq("app", "api"), confEq("env", "prod"), confEq("pod", "api-7f9c-1")}, start: day, end: end, limit: 5000},
		{name: "another tenant's stream is invisible", tenant: "acme", query: `{app="payments"}`, sel: []confMatcher{confEq("app", "payments")}, start: day, end: end, limit: 5000},
		{name: "multi-tenant", tenant: "acme|globex", query: `{app="api", pod="api-7f9c-1"}`, sel: []confMatcher{confEq("app", "api"), confEq("pod", "api-7f9c-1")}, start: day, end: end, limit: 5000},
		{name: "multi-tenant backward limit", tenant: "globex|acme", query: `{app=~"api|web"} |~ "(?i)timeout"`, sel: []confMatcher{confRe("app", "api|web")}, stages: []confStage{confMatch(`(?i)timeout`)}, start: day, end: end, limit: 40, backward: bwd},
		{name: "whole tenant acme", tenant: "acme", query: `{app=~".+"}`, sel: anyApp, start: day, end: end, limit: 5000},
		{name: "whole tenant globex", tenant: "globex", query: `{app=~".+"}`, sel: anyApp, start: day, end: end, limit: 5000, backward: bwd},
		{name: "whole tenant initech", tenant: "initech", query: `{app=~".+"}`, sel: anyApp, start: day, end: end, limit: 5000},

		// Limits and boundaries.
		{name: "limit cuts a same-timestamp group backward", tenant: "acme", query: `{env="prod"}`, sel: prod, start: confT(11, 30, 0), end: confT(11, 37, 0).Add(1), limit: 4, backward: bwd, cutsTie: true},
		{name: "limit cuts a same-timestamp group forward", tenant: "acme", query: `{env="prod"}`, sel: prod, start: confT(11, 37, 0), end: confT(11, 45, 0), limit: 5, cutsTie: true},
		{name: "limit cuts the group on an hour boundary forward", tenant: "acme", query: `{env=~"prod|dev"}`, sel: []confMatcher{confRe("env", "prod|dev")}, start: confT(11, 0, 0), end: confT(11, 20, 0), limit: 3, cutsTie: true},
		{name: "limit cuts the group on an hour boundary backward", tenant: "acme", query: `{env=~"prod|dev"}`, sel: []confMatcher{confRe("env", "prod|dev")}, start: confT(10, 40, 0), end: confT(11, 0, 0).Add(1), limit: 3, backward: bwd, cutsTie: true},
		{name: "limit inside the store-ingester overlap", tenant: "acme", query: `{app="api"}`, sel: api, start: confT(9, 30, 0), end: confT(10, 45, 0), limit: 150, backward: bwd},
		{name: "limit through the replayed chunks", tenant: "acme", query: `{app="worker"}`, sel: []confMatcher{confEq("app", "worker")}, start: day, end: end, limit: 200},
		{name: "small limit over the whole day", tenant: "initech", query: `{env="prod"}`, sel: prod, start: day, end: end, limit: 25, backward: bwd},
		{name: "limit 1", tenant: "globex", query: `{app="web"}`, sel: []confMatcher{confEq("app", "web")}, start: day, end: end, limit: 1},
		{name: "store-only stream", tenant: "globex", query: `{app="legacy"}`, sel: []confMatcher{confEq("app", "legacy")}, start: day, end: end, limit: 5000},
		{name: "inside the overlap only", tenant: "acme", query: `{app=~".+"}`, sel: anyApp, start: confT(10, 5, 0), end: confT(10, 25, 0), limit: 5000},
		{name: "nginx substring chain", tenant: "initech", query: `{app="web"} |= "GET /static" != "kube-probe"`, sel: []confMatcher{confEq("app", "web")}, stages: []confStage{confHas("GET /static"), confHasNot("kube-probe")}, start: day, end: end, limit: 5000, backward: bwd},

		// Metric queries.
		{name: "count_over_time per stream 1m steps", tenant: "acme", query: `count_over_time({app="api"}[5m])`, sel: api, fn: "count", rng: 5 * time.Minute, start: confT(10, 0, 0), end: confT(11, 0, 0), step: time.Minute},
		{name: "sum by env 5m steps all day", tenant: "acme", query: `sum by (env) (count_over_time({app="api"}[10m]))`, sel: api, fn: "count", rng: 10 * time.Minute, aggs: []confAgg{sum("env")}, start: day, end: end, step: 5 * time.Minute},
		{name: "sum without pod of rate 17m steps", tenant: "acme", query: `sum without (pod) (rate({app="api"}[5m]))`, sel: api, fn: "rate", rng: 5 * time.Minute, aggs: []confAgg{{op: "sum", labels: []string{"pod"}, without: true}}, start: day, end: end, step: 17 * time.Minute},
		{name: "bytes_over_time 1h at an odd start", tenant: "acme", query: `bytes_over_time({app="web"}[1h])`, sel: []confMatcher{confEq("app", "web")}, fn: "bytes", rng: time.Hour, start: confT(6, 13, 27), end: confT(11, 59, 59), step: 17 * time.Minute},
		{name: "sum of bytes_rate across the overlap", tenant: "acme", query: `sum(bytes_rate({env="prod"}[10m]))`, sel: prod, fn: "bytes_rate", rng: 10 * time.Minute, aggs: []confAgg{sum()}, start: confT(9, 30, 0), end: confT(10, 40, 0), step: 5 * time.Minute},
		{name: "avg by app", tenant: "acme", query: `avg by (app) (count_over_time({env="prod"}[10m]))`, sel: prod, fn: "count", rng: 10 * time.Minute, aggs: []confAgg{{op: "avg", labels: []string{"app"}}}, start: day, end: end, step: 17 * time.Minute},
		{name: "min by app with a line filter", tenant: "acme", query: `min by (app) (count_over_time({env="prod"} |= "GET" [1h]))`, sel: prod, stages: []confStage{confHas("GET")}, fn: "count", rng: time.Hour, aggs: []confAgg{{op: "min", labels: []string{"app"}}}, start: day, end: end, step: 20 * time.Minute},
		{name: "max of a logfmt filter", tenant: "acme", query: `max(count_over_time({app="api"} | logfmt | level!="debug" | status >= 500 [10m]))`, sel: api, stages: []confStage{confLogfmt, notDebug, confWhere(confNum("status", ">=", 500))}, fn: "count", rng: 10 * time.Minute, aggs: []confAgg{{op: "max"}}, start: day, end: end, step: 5 * time.Minute},
		{name: "count of streams", tenant: "acme", query: `count(count_over_time({env=~"prod|dev"}[5m]))`, sel: []confMatcher{confRe("env", "prod|dev")}, fn: "count", rng: 5 * time.Minute, aggs: []confAgg{{op: "count"}}, start: confT(9, 55, 0), end: confT(10, 35, 0), step: time.Minute},
		{name: "topk", tenant: "acme", query: `topk(2, count_over_time({app="api"}[10m]))`, sel: api, fn: "count", rng: 10 * time.Minute, aggs: []confAgg{{op: "topk", k: 2}}, start: day, end: end, step: 17 * time.Minute},
		{name: "bottomk", tenant: "acme", query: `bottomk(1, bytes_over_time({env="prod"}[1h]))`, sel: prod, fn: "bytes", rng: time.Hour, aggs: []confAgg{{op: "bottomk", k: 1}}, start: day, end: end, step: 30 * time.Minute},
		{name: "topk by over sum by", tenant: "acme", query: `topk by (env) (1, sum by (env, pod) (count_over_time({app="api"}[30m])))`, sel: api, fn: "count", rng: 30 * time.Minute, aggs: []confAgg{sum("env", "pod"), {op: "topk", labels: []string{"env"}, k: 1}}, start: day, end: end, step: 17 * time.Minute},
		{name: "sum by a parsed label", tenant: "acme", query: `sum by (level) (count_over_time({app="api"} | logfmt [5m]))`, sel: api, stages: []confStage{confLogfmt}, fn: "count", rng: 5 * time.Minute, aggs: []confAgg{sum("level")}, start: confT(10, 0, 0), end: confT(11, 0, 0), step: time.Minute},
		{name: "json sum by status", tenant: "acme", query: `sum by (status) (count_over_time({app="checkout"} | json | status >= 500 [15m]))`, sel: []confMatcher{confEq("app", "checkout")}, stages: []confStage{confJSON, confWhere(confNum("status", ">=", 500))}, fn: "count", rng: 15 * time.Minute, aggs: []confAgg{sum("status")}, start: confT(10, 40, 0), end: end, step: 5 * time.Minute},
		{name: "json grouping by an _extracted label", tenant: "globex", query: `sum by (level_extracted) (count_over_time({app="payments"} | json [1h]))`, sel: []confMatcher{confEq("app", "payments")}, stages: []confStage{confJSON}, fn: "count", rng: time.Hour, aggs: []confAgg{sum("level_extracted")}, start: day, end: end, step: 17 * time.Minute},
		{name: "regex line filter metric", tenant: "initech", query: "sum(count_over_time({app=\"web\"} |~ `HTTP/1\\.1\" 5\\d\\d` [1h]))", sel: []confMatcher{confEq("app", "web")}, stages: []confStage{confMatch(`HTTP/1\.1" 5\d\d`)}, fn: "count", rng: time.Hour, aggs: []confAgg{sum()}, start: day, end: end, step: 17 * time.Minute},
		{name: "rate of a store-only stream", tenant: "globex", query: `rate({app="legacy"}[5m])`, sel: []confMatcher{confEq("app", "legacy")}, fn: "rate", rng: 5 * time.Minute, start: confT(9, 0, 0), end: confT(10, 0, 0), step: time.Minute},
		{name: "multi-tenant sum by tenant and app", tenant: "acme|globex", query: `sum by (__tenant_id__, app) (count_over_time({env="prod"}[30m]))`, sel: prod, fn: "count", rng: 30 * time.Minute, aggs: []confAgg{sum("__tenant_id__", "app")}, start: day, end: end, step: 17 * time.Minute},
		{name: "steps on the split boundaries", tenant: "initech", query: `sum by (app) (count_over_time({env="prod"}[1h]))`, sel: prod, fn: "count", rng: time.Hour, aggs: []confAgg{sum("app")}, start: day, end: end, step: 20 * time.Minute},
		{name: "max by pod of a bytes filter", tenant: "acme", query: `max by (pod) (bytes_over_time({app="api"} | logfmt | level!="debug" | bytes > 1KB [10m]))`, sel: api, stages: []confStage{confLogfmt, notDebug, confWhere(confBytes("bytes", ">", 1000))}, fn: "bytes", rng: 10 * time.Minute, aggs: []confAgg{{op: "max", labels: []string{"pod"}}}, start: day, end: end, step: 17 * time.Minute},
		// The same in a metric query: debug lines are not counted.
		{name: "metric numeric filter on a field some lines lack", tenant: "acme", query: `sum(count_over_time({app="api"} | logfmt | duration > 1s [10m]))`, sel: api, stages: []confStage{confLogfmt, confWhere(confDur("duration", ">", time.Second))}, fn: "count", rng: 10 * time.Minute, aggs: []confAgg{sum()}, start: day, end: end, step: 17 * time.Minute},

		// Instant queries.
		{name: "instant sum by app at the store cut", tenant: "acme", query: `sum by (app) (count_over_time({env="prod"}[1h]))`, sel: prod, fn: "count", rng: time.Hour, aggs: []confAgg{sum("app")}, start: confT(10, 30, 0), instant: true},
		{name: "instant topk of rates", tenant: "acme", query: `topk(3, sum by (pod) (rate({app="api"}[30m])))`, sel: api, fn: "rate", rng: 30 * time.Minute, aggs: []confAgg{sum("pod"), {op: "topk", k: 3}}, start: confT(11, 37, 0), instant: true},
		{name: "instant on a cluster timestamp", tenant: "acme", query: `count_over_time({app="worker"}[2h])`, sel: []confMatcher{confEq("app", "worker")}, fn: "count", rng: 2 * time.Hour, start: confT(10, 0, 0), instant: true},
		{name: "instant bytes of a whole tenant", tenant: "globex", query: `sum(bytes_over_time({app=~".+"}[6h]))`, sel: anyApp, fn: "bytes", rng: 6 * time.Hour, aggs: []confAgg{sum()}, start: end, instant: true},
		{name: "instant avg at the ingesters boundary", tenant: "initech", query: `avg(count_over_time({app="api"}[5m]))`, sel: api, fn: "count", rng: 5 * time.Minute, aggs: []confAgg{{op: "avg"}}, start: confT(9, 0, 0), instant: true},
		{name: "instant multi-tenant sum by tenant", tenant: "acme|globex", query: `sum by (__tenant_id__) (count_over_time({app="api"}[6h]))`, sel: api, fn: "count", rng: 6 * time.Hour, aggs: []confAgg{sum("__tenant_id__")}, start: end, instant: true},
	}
	return rows
}

// ---------------------------------------------------------------------------
// Asking lokilab and comparing.

func (r *confRow) check(t *testing.T, tq *testQuerier, want confWant) {
	t.Helper()
	switch {
	case r.fn == "":
		dir := "forward"
		if r.backward {
			dir = "backward"
		}
		streams, _ := apiLogQuery(t, tq, r.tenant, apiRange(r.query, r.start, r.end, "limit", strconv.Itoa(r.limit), "direction", dir))
		got := map[string][]confEntry{}
		for _, s := range streams {
			k := confKey(s.Stream)
			if _, dup := got[k]; dup {
				t.Errorf("stream %s comes back twice", k)
			}
			got[k] = []confEntry{}
			for _, v := range s.Values {
				ts, err := strconv.ParseInt(v[0], 10, 64)
				if err != nil {
					t.Fatalf("bad timestamp %q", v[0])
				}
				got[k] = append(got[k], confEntry{ts, v[1]})
			}
		}
		confDiff(t, want.streams, got, func(w, g confEntry) bool { return w == g })
	default:
		got := map[string][]confPoint{}
		raw := map[string][]string{}
		addPoint := func(metric map[string]string, ts any, v any) {
			k := confKey(metric)
			sec, ok1 := ts.(float64)
			s, ok2 := v.(string)
			if !ok1 || !ok2 {
				t.Fatalf("bad point %v %v", ts, v)
			}
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				t.Fatalf("bad value %q", s)
			}
			got[k] = append(got[k], confPoint{int64(math.Round(sec * 1000)), f})
			raw[k] = append(raw[k], s)
		}
		if r.instant {
			var vec []apiVector
			qr, _ := apiGetJSON(t, tq, r.tenant, "/loki/api/v1/query", url.Values{"query": {r.query}, "time": {strconv.FormatInt(r.start.UnixNano(), 10)}}, &vec)
			if qr.Data.ResultType != "vector" {
				t.Fatalf("resultType %q, want vector", qr.Data.ResultType)
			}
			for _, s := range vec {
				if _, dup := got[confKey(s.Metric)]; dup {
					t.Errorf("series %s comes back twice", confKey(s.Metric))
				}
				addPoint(s.Metric, s.Value[0], s.Value[1])
			}
		} else {
			var mat []apiMatrix
			qr, _ := apiGetJSON(t, tq, r.tenant, "/loki/api/v1/query_range", apiRange(r.query, r.start, r.end, "step", strconv.Itoa(int(r.step.Seconds()))), &mat)
			if qr.Data.ResultType != "matrix" {
				t.Fatalf("resultType %q, want matrix", qr.Data.ResultType)
			}
			for _, s := range mat {
				if _, dup := got[confKey(s.Metric)]; dup {
					t.Errorf("series %s comes back twice", confKey(s.Metric))
				}
				for _, p := range s.Values {
					addPoint(s.Metric, p[0], p[1])
				}
			}
		}
		approx := r.approx()
		confDiff(t, want.series, got, func(w, g confPoint) bool {
			if w.t != g.t {
				return false
			}
			if approx {
				return math.Abs(w.v-g.v) <= 1e-9*max(1, math.Abs(w.v))
			}
			return w.v == g.v
		})
		if !approx { // exact values must also be spelled as integers are
			for k, ps := range want.series {
				for i, p := range ps {
					if i < len(raw[k]) && raw[k][i] != strconv.FormatFloat(p.v, 'f', -1, 64) {
						t.Errorf("%s point %d: value spelled %q, want %q", k, i, raw[k][i], strconv.FormatFloat(p.v, 'f', -1, 64))
						break
					}
				}
			}
		}
	}
}

// confDiff reports the differences between the expected and returned
// streams or series: missing, unexpected, and the first differing element
// of each.
func confDiff[E any](t *testing.T, want, got map[string][]E, same func(w, g E) bool) {
	t.Helper()
	bad := 0
	for _, k := range slices.Sorted(maps.Keys(want)) {
		w, g := want[k], got[k]
		if _, ok := got[k]; !ok {
			t.Errorf("missing %s (%d elements, first %+v)", k, len(w), w[0])
			bad++
			continue
		}
		for i := range max(len(w), len(g)) {
			switch {
			case i >= len(g):
				t.Errorf("%s: %d elements, want %d; first missing %+v", k, len(g), len(w), w[i])
			case i >= len(w):
				t.Errorf("%s: %d elements, want %d; first extra %+v", k, len(g), len(w), g[i])
			case !same(w[i], g[i]):
				t.Errorf("%s: element %d is %+v, want %+v", k, i, g[i], w[i])
			default:
				continue
			}
			bad++
			break
		}
		if bad > 10 {
			t.Fatal("too many differences")
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			var first any
			if len(got[k]) > 0 {
				first = got[k][0]
			}
			t.Errorf("unexpected %s (%d elements, first %+v)", k, len(got[k]), first)
			if bad++; bad > 10 {
				t.Fatal("too many differences")
			}
		}
	}
}

// TestConformance answers the table's queries with lokilab and with the
// brute force and wants identical answers, with the default split and with
// 20m splits. See the top of this file.
func TestConformance(t *testing.T) {
	data := confGenerate()
	rows := confRows()
	wants := make([]confWant, len(rows))
	nonEmpty := 0
	for i := range rows {
		w, err := data.expect(&rows[i])
		if err != nil {
			t.Fatal(err)
		}
		wants[i] = w
		if !w.empty() {
			nonEmpty++
		}
	}
	// The brute force is not vacuous: nearly every row expects something.
	if len(rows) < 50 || nonEmpty < 45 {
		t.Fatalf("%d rows, %d expecting a non-empty answer: the table or the data set is too thin", len(rows), nonEmpty)
	}
	total := 0
	for _, s := range data.streams {
		total += len(s.entries)
	}
	t.Logf("%d rows (%d non-empty) over %d lines in %d streams", len(rows), nonEmpty, total, len(data.streams))

	slicesRead := map[string]uint64{}
	for _, v := range []struct {
		name       string
		split      time.Duration
		sliceBytes config.ByteSize // metric_slice_bytes
	}{
		{"split=1h", time.Hour, 64 << 20},
		{"split=20m", 20 * time.Minute, 64 << 20},
		// Metric queries read in slices of a few lines each:
		// slicing must not change an answer either.
		{"split=1h,slices=1KiB", time.Hour, 1 << 10},
	} {
		t.Run(v.name, func(t *testing.T) {
			tq := newTestQuerier(t, apiNow, 2, func(c *Config) {
				c.MultiTenantQueriesEnabled = true
				c.MetricSliceBytes = v.sliceBytes
			})
			tq.limits.SplitQueriesByInterval = model.Duration(v.split)
			confLoad(t, tq, data)

			// The layout holds what it should: replayed chunks and lines
			// both flushed and in the ingesters (or in two of them), all
			// removed from the answers.
			for _, id := range []string{"acme", "globex", "initech"} {
				_, qr := apiLogQuery(t, tq, id, apiRange(`{app=~".+"}`, confT(6, 0, 0), apiNow, "limit", "5000"))
				st := qr.Data.Stats
				if st.Querier.Store.Chunk.TotalDuplicates == 0 || st.Ingester.Store.Chunk.TotalDuplicates == 0 || st.Ingester.TotalReached != 2 {
					t.Errorf("%s: store duplicates %d, store+ingester duplicates %d, ingesters reached %d; want replays, overlaps and both ingesters",
						id, st.Querier.Store.Chunk.TotalDuplicates, st.Ingester.Store.Chunk.TotalDuplicates, st.Ingester.TotalReached)
				}
			}

			for i := range rows {
				t.Run(rows[i].name, func(t *testing.T) {
					rows[i].check(t, tq, wants[i])
					if t.Failed() {
						t.Logf("query %s as %s", rows[i].query, rows[i].tenant)
					}
				})
			}

			// The slices were as many as their size says: at 4 KiB, metric
			// rows read in many small slices; at 64 MiB, in a handful each.
			n := metricstest.HistogramCount(t, tq.reg, "lokilab_querier_metric_slice_bytes")
			perSlice := metricstest.HistogramSum(t, tq.reg, "lokilab_querier_metric_slice_bytes") / float64(n)
			t.Logf("metric rows read %d slices, %.0f bytes each on average", n, perSlice)
			// An estimate from the slice before: irregular data overshoots
			// it, but not on average by a factor of two.
			if perSlice > 2*float64(v.sliceBytes) {
				t.Errorf("slices of %.0f bytes on average with metric_slice_bytes %v", perSlice, v.sliceBytes)
			}
			slicesRead[v.name] = n
		})
	}
	// The slices were sized by metric_slice_bytes: the same rows read in
	// several times as many of them at 1 KiB as at 64 MiB.
	if small, large := slicesRead["split=1h,slices=1KiB"], slicesRead["split=1h"]; small < 3*large {
		t.Errorf("%d slices at 1 KiB, %d at 64 MiB: the size did not change the slicing", small, large)
	}
}
