package loadgen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

var (
	nginxMethods = []string{"GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD"}
	nginxPaths   = []string{"/", "/healthz", "/api/v1/orders", "/api/v1/orders/", "/api/v1/users/", "/api/v1/search?q=shoes&page=",
		"/static/app.js", "/static/css/main.css", "/login", "/logout", "/api/v1/cart/items/", "/favicon.ico"}
	nginxCodes  = []int{200, 200, 200, 200, 200, 200, 201, 204, 301, 304, 400, 401, 404, 404, 499, 500, 502, 503}
	nginxAgents = []string{
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
		"curl/8.5.0", "Go-http-client/1.1", "kube-probe/1.31", "Prometheus/2.53.0",
	}
	nginxReferers = []string{"-", "-", "-", "https://shop.example.com/", "https://shop.example.com/cart", "https://www.google.com/"}
)

// appendNginx appends an access log line in nginx's "combined" format plus
// the request time and the line's identity, as many deployments configure
// log_format:
//
//	10.0.3.7 - - [28/Nov/2026:11:47:48 +0000] "GET /api/v1/orders/42 HTTP/1.1" 200 1534 "-" "curl/8.5.0" rt=0.012 lid=k3f9x2-0-17
//
// Padding lengthens the user agent.
func appendNginx(b []byte, r *rand.Rand, ts time.Time, id []byte) ([]byte, padSpot) {
	start := len(b)
	b = append(b, "10."...)
	b = strconv.AppendInt(b, int64(r.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(r.IntN(256)), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(r.IntN(256)), 10)
	b = append(b, " - - ["...)
	b = ts.UTC().AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = append(b, pick(r, nginxMethods)...)
	b = append(b, ' ')
	path := pick(r, nginxPaths)
	b = append(b, path...)
	if path[len(path)-1] == '/' || path[len(path)-1] == '=' {
		b = strconv.AppendInt(b, int64(r.IntN(10000)), 10)
	}
	b = append(b, " HTTP/1.1\" "...)
	b = strconv.AppendInt(b, int64(pick(r, nginxCodes)), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.IntN(60000)), 10)
	b = append(b, " \""...)
	b = append(b, pick(r, nginxReferers)...)
	b = append(b, "\" \""...)
	b = append(b, pick(r, nginxAgents)...)
	at := len(b) - start
	b = append(b, "\" rt="...)
	b = strconv.AppendFloat(b, r.ExpFloat64()*0.05, 'f', 3, 64)
	b = append(b, " lid="...)
	b = append(b, id...)
	return b, padSpot{at: at, prefix: " "}
}
