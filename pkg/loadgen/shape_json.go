package loadgen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

var jsonServices = []string{"checkout", "billing", "search", "auth", "inventory"}

// appendJSON appends an application log line as one JSON object, as
// structured loggers (zap, logrus, slog's JSON handler) write it:
//
//	{"time":"2026-11-28T11:47:48.123Z","level":"info","service":"billing","msg":"payment authorised","order_id":81723,"amount":42.17,"trace_id":"4bf92f3577b34da6","lid":"k3f9x2-0-19"}
//
// Every string it writes needs no JSON escaping. Padding adds a "detail"
// field before the identity.
func appendJSON(b []byte, r *rand.Rand, ts time.Time, id []byte) ([]byte, padSpot) {
	start := len(b)
	b = append(b, `{"time":"`...)
	b = ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, `","level":"`...)
	b = append(b, pick(r, logLevels)...)
	b = append(b, `","service":"`...)
	b = append(b, pick(r, jsonServices)...)
	b = append(b, `","msg":"`...)
	b = append(b, pick(r, logMsgs)...)
	b = append(b, `","order_id":`...)
	b = strconv.AppendInt(b, int64(r.IntN(1<<20)), 10)
	b = append(b, `,"amount":`...)
	b = strconv.AppendFloat(b, r.Float64()*500, 'f', 2, 64)
	b = append(b, `,"trace_id":"`...)
	b = appendHex(b, r.Uint64())
	b = append(b, '"')
	at := len(b) - start
	b = append(b, `,"lid":"`...)
	b = append(b, id...)
	b = append(b, `"}`...)
	return b, padSpot{at: at, prefix: `,"detail":"`, suffix: `"`}
}

// appendHex appends v as 16 lowercase hex digits.
func appendHex(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, digits[v>>uint(shift)&0xf])
	}
	return b
}
