package chunk

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/push"
)

// lineKind is a shape of log line, for benchmarks that compare codecs on
// what real streams carry. A real stream is usually one shape (one program
// wrote it), so each kind is measured alone, and "mixed" interleaves them.
type lineKind int

const (
	kindNginx lineKind = iota
	kindLogfmt
	kindJSON
	kindJava
	kindMixed
)

var lineKinds = []lineKind{kindNginx, kindLogfmt, kindJSON, kindJava, kindMixed}

func (k lineKind) String() string {
	return [...]string{"nginx", "logfmt", "json", "java", "mixed"}[k]
}

// lineGen generates realistic lines deterministically from a seed: the
// repeated structure and the varying fields (IPs, latencies, IDs) of real
// logs, which is what decides how well a codec does.
type lineGen struct {
	r  *rand.Rand
	ts int64
	sb strings.Builder
}

func newLineGen(seed uint64) *lineGen {
	return &lineGen{r: rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d)), ts: 1_700_000_000_000_000_000}
}

var (
	genMethods = []string{"GET", "GET", "GET", "GET", "POST", "PUT", "DELETE"}
	genCodes   = []int{200, 200, 200, 200, 200, 201, 204, 301, 304, 400, 404, 500, 502}
	genAgents  = []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36", "curl/8.4.0", "Go-http-client/1.1", "Prometheus/2.48.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"}
	genLevels  = []string{"debug", "info", "info", "info", "info", "warn", "error"}
	genMsgs    = []string{"request served", "cache miss", "retrying upstream request", "connection reset by peer", "user logged in", "payment authorised", "order created", "slow query"}
	genCallers = []string{"server.go", "handler.go", "cache.go", "db.go", "client.go"}
	genWords   = []string{"shoes", "red+dress", "laptop", "usb-c+cable", "garden+chair"}
	genClasses = []string{"com.example.shop.OrderService", "com.example.shop.PaymentClient", "com.example.shop.web.OrderController", "org.springframework.web.servlet.FrameworkServlet", "org.apache.catalina.core.ApplicationFilterChain", "java.base/java.util.concurrent.ThreadPoolExecutor"}
	genExc     = []string{"java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null", "java.net.SocketTimeoutException: Read timed out", "java.lang.IllegalStateException: order already paid", "org.postgresql.util.PSQLException: ERROR: deadlock detected"}
)

// next returns the next entry of kind k: timestamps about 1ms apart.
func (g *lineGen) next(k lineKind) push.Entry {
	g.ts += int64(500_000 + g.r.IntN(1_000_000))
	if k == kindMixed {
		k = lineKind(g.r.IntN(int(kindMixed)))
	}
	e := push.Entry{Timestamp: g.ts, Line: g.line(k)}
	if g.r.IntN(2) == 0 {
		e.StructuredMetadata = []labels.Label{{Name: "trace_id", Value: fmt.Sprintf("%016x", g.r.Uint64())}}
	}
	return e
}

func (g *lineGen) line(k lineKind) string {
	r, b := g.r, &g.sb
	b.Reset()
	sec := g.ts / 1e9
	switch k {
	case kindNginx:
		var path string
		switch r.IntN(8) {
		case 0:
			path = fmt.Sprintf("/api/v1/orders/%d", r.IntN(100000))
		case 1:
			path = fmt.Sprintf("/api/v1/users/%d/profile", r.IntN(100000))
		case 2:
			path = fmt.Sprintf("/static/js/app.%08x.js", r.IntN(4))
		case 3:
			path = fmt.Sprintf("/api/v1/search?q=%s&page=%d", genWords[r.IntN(len(genWords))], 1+r.IntN(5))
		default:
			path = []string{"/api/v1/orders", "/healthz", "/login", "/metrics"}[r.IntN(4)]
		}
		fmt.Fprintf(b, `10.%d.%d.%d - - [14/Nov/2023:22:%02d:%02d +0000] "%s %s HTTP/1.1" %d %d "-" "%s" rt=%.3f uct=0.000 urt=%.3f`,
			r.IntN(4), r.IntN(256), r.IntN(256), sec/60%60, sec%60, genMethods[r.IntN(len(genMethods))], path,
			genCodes[r.IntN(len(genCodes))], 200+r.IntN(40000), genAgents[r.IntN(len(genAgents))], r.Float64()/4, r.Float64()/4)
	case kindLogfmt:
		fmt.Fprintf(b, `ts=2023-11-14T22:%02d:%02d.%03dZ level=%s caller=%s:%d msg=%q order_id=%d duration=%dms user_id=%d`,
			sec/60%60, sec%60, g.ts/1e6%1000, genLevels[r.IntN(len(genLevels))], genCallers[r.IntN(len(genCallers))], 20+r.IntN(400),
			genMsgs[r.IntN(len(genMsgs))], r.IntN(1<<24), r.IntN(900), r.IntN(100000))
	case kindJSON:
		fmt.Fprintf(b, `{"timestamp":"2023-11-14T22:%02d:%02d.%03dZ","level":%q,"logger":"shop.orders","message":%q,"order_id":%d,"amount":%.2f,"currency":"EUR","customer":{"id":%d,"country":"%s"},"duration_ms":%d}`,
			sec/60%60, sec%60, g.ts/1e6%1000, genLevels[r.IntN(len(genLevels))], genMsgs[r.IntN(len(genMsgs))], r.IntN(1<<24),
			r.Float64()*300, r.IntN(100000), []string{"DE", "FR", "NL", "US"}[r.IntN(4)], r.IntN(900))
	case kindJava:
		if r.IntN(4) != 0 { // most lines of a Java service are not traces
			fmt.Fprintf(b, `2023-11-14 22:%02d:%02d.%03d  INFO 1 --- [nio-8080-exec-%d] %s : %s order=%d`,
				sec/60%60, sec%60, g.ts/1e6%1000, 1+r.IntN(10), genClasses[r.IntN(3)], genMsgs[r.IntN(len(genMsgs))], r.IntN(1<<24))
			break
		}
		fmt.Fprintf(b, "2023-11-14 22:%02d:%02d.%03d ERROR 1 --- [nio-8080-exec-%d] %s : request failed\n%s\n",
			sec/60%60, sec%60, g.ts/1e6%1000, 1+r.IntN(10), genClasses[2], genExc[r.IntN(len(genExc))])
		for f := range 8 + r.IntN(20) {
			c := genClasses[r.IntN(len(genClasses))]
			fmt.Fprintf(b, "\tat %s.%s(%s.java:%d)\n", c, []string{"handle", "process", "doFilter", "invoke", "run"}[f%5], c[strings.LastIndexByte(c, '.')+1:], 30+r.IntN(700))
		}
		fmt.Fprintf(b, "\t... %d more", 10+r.IntN(40))
	}
	return b.String()
}
