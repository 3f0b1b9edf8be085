package loadgen

import (
	"math/rand/v2"
	"strconv"
	"time"
)

var (
	panicMsgs = []string{
		"runtime error: index out of range [5] with length 3",
		"runtime error: invalid memory address or nil pointer dereference",
		"assignment to entry in nil map",
		"runtime error: slice bounds out of range [:12] with capacity 8",
	}
	frames = []string{
		"main.(*Server).handleOrder(0xc000124000, {0x9f3b40, 0xc0001a8000}, 0xc0001c2000)\n\t/src/app/server.go:",
		"main.(*Store).Get(0xc00011e0a0, {0xc0000a6030, 0x8})\n\t/src/app/store.go:",
		"net/http.HandlerFunc.ServeHTTP(0xc000012345, {0x9f3b40, 0xc0001a8000}, 0xc0001c2000)\n\t/usr/local/go/src/net/http/server.go:",
		"net/http.(*ServeMux).ServeHTTP(0xc000098000, {0x9f3b40, 0xc0001a8000}, 0xc0001c2000)\n\t/usr/local/go/src/net/http/server.go:",
		"main.(*Cache).lookup(...)\n\t/src/app/cache.go:",
		"encoding/json.(*decodeState).object(0xc0002b4000, {0x8c1e20, 0xc0000b2060, 0x199})\n\t/usr/local/go/src/encoding/json/decode.go:",
	}
)

// appendStackTrace appends a multi-line entry: an error line carrying the
// identity, then a Go panic and its goroutine's stack, as a service that
// logs its recovered panics writes it (and as a shipper that joins
// multi-line entries sends it):
//
//	2026-11-28T11:47:48.123Z ERROR recovered from panic in handler lid=k3f9x2-0-20
//	panic: assignment to entry in nil map
//
//	goroutine 4711 [running]:
//	main.(*Store).Get(0xc00011e0a0, {0xc0000a6030, 0x8})
//		/src/app/store.go:88 +0x1c4
//	…
//
// Padding adds frames' worth of text after the last frame.
func appendStackTrace(b []byte, r *rand.Rand, ts time.Time, id []byte) ([]byte, padSpot) {
	start := len(b)
	b = ts.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
	b = append(b, " ERROR recovered from panic in handler lid="...)
	b = append(b, id...)
	b = append(b, "\npanic: "...)
	b = append(b, pick(r, panicMsgs)...)
	b = append(b, "\n\ngoroutine "...)
	b = strconv.AppendInt(b, int64(1+r.IntN(20000)), 10)
	b = append(b, " [running]:"...)
	for range 3 + r.IntN(6) {
		b = append(b, '\n')
		b = append(b, pick(r, frames)...)
		b = strconv.AppendInt(b, int64(1+r.IntN(1200)), 10)
		b = append(b, " +0x"...)
		b = strconv.AppendUint(b, uint64(r.IntN(1<<12)), 16)
	}
	return b, padSpot{at: len(b) - start, prefix: "\ncreated by main.(*Server).serve in goroutine 1\n\t/src/app/"}
}
