package loadgen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

var (
	logLevels  = []string{"debug", "debug", "info", "info", "info", "info", "info", "warn", "error"}
	logCallers = []string{"server.go", "handler.go", "store.go", "client.go", "cache.go", "worker.go"}
	logMsgs    = []string{"request served", "cache miss", "retrying upstream", "connection reset by peer",
		"user logged in", "payment authorised", "order created", "slow query", "token refreshed", "job finished"}
	logMethods = []string{"GET", "POST", "PUT", "DELETE"}
	logRoutes  = []string{"/api/v1/orders", "/api/v1/users", "/api/v1/search", "/api/v1/cart", "/api/v1/payments"}
)

// appendLogfmt appends an application log line in logfmt, the way Go
// services using log/slog or go-kit log write it:
//
//	ts=2026-11-28T11:47:48.123456Z level=info caller=server.go:214 msg="request served" method=GET route=/api/v1/orders status=200 duration=12.3ms user=4711 lid=k3f9x2-0-18
//
// Padding adds a quoted detail field before the identity.
func appendLogfmt(b []byte, r *rand.Rand, ts time.Time, id []byte) ([]byte, padSpot) {
	start := len(b)
	b = append(b, "ts="...)
	b = ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, " level="...)
	b = append(b, pick(r, logLevels)...)
	b = append(b, " caller="...)
	b = append(b, pick(r, logCallers)...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(1+r.IntN(900)), 10)
	b = append(b, " msg="...)
	b = strconv.AppendQuote(b, pick(r, logMsgs))
	b = append(b, " method="...)
	b = append(b, pick(r, logMethods)...)
	b = append(b, " route="...)
	b = append(b, pick(r, logRoutes)...)
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(pick(r, nginxCodes)), 10)
	b = append(b, " duration="...)
	b = strconv.AppendFloat(b, r.ExpFloat64()*20, 'f', 1, 64)
	b = append(b, "ms user="...)
	b = strconv.AppendInt(b, int64(r.IntN(100000)), 10)
	at := len(b) - start
	b = append(b, " lid="...)
	b = append(b, id...)
	return b, padSpot{at: at, prefix: ` detail="`, suffix: `"`}
}
