package querier

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// subscribersParked counts the goroutines whose stack holds the lab
// leak's subscriber, from this process's goroutine profile: how a user
// finds them in a real one.
func subscribersParked(t *testing.T) int {
	t.Helper()
	var b bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	n := 0
	// "goroutine profile: total N" then records "count @ addrs" with their
	// frames, most goroutines first, separated by blank lines.
	_, body, _ := strings.Cut(b.String(), "\n")
	for _, rec := range strings.Split(body, "\n\n") {
		if !strings.Contains(rec, "querier.(*tailer).subscriber") {
			continue
		}
		var c int
		if _, err := fmt.Sscanf(rec, "%d @", &c); err == nil {
			n += c
		}
	}
	return n
}

// TestLabLeakTailSubscribers: with lab_leak_tail_subscribers off (the
// default), a tail whose client leaves leaves nothing behind; with it on,
// each one leaves a goroutine parked in (*tailer).subscriber — the lab's
// deliberate leak, and the frame question 12 teaches to find.
func TestLabLeakTailSubscribers(t *testing.T) {
	for _, tc := range []struct {
		leak bool
		want int
	}{{false, 0}, {true, 3}} {
		t.Run(fmt.Sprintf("leak=%v", tc.leak), func(t *testing.T) {
			tq := newTestQuerier(t, apiNow, 1, func(c *Config) {
				c.TailPollInterval = 20 * time.Millisecond
				c.LabLeakTailSubscribers = tc.leak
			})
			tq.ingesters[0].add("t", apiLS("app", "api"), apiLines("x", apiNow.Add(-10*time.Minute), time.Second, 3)...)
			before := subscribersParked(t)
			for range 3 {
				conn, code := tailDial(t, tq, "t", url.Values{"query": {`{app="api"}`}})
				if code != http.StatusSwitchingProtocols {
					t.Fatalf("status %d", code)
				}
				if got := tailRead(t, conn, 5*time.Second); len(got) != 3 {
					t.Fatalf("first message %v", got)
				}
				_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				conn.Close()
				waitTailsGone(t, tq)
			}
			// The handler has returned; a subscriber reaches its send within
			// a poll interval. Poll the profile until the count is what the
			// setting predicts and stays there.
			deadline := time.Now().Add(5 * time.Second)
			stable := 0
			for {
				got := subscribersParked(t) - before
				if got == tc.want {
					if stable++; stable == 5 {
						return
					}
				} else {
					stable = 0
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d goroutines parked in (*tailer).subscriber after 3 closed tails, want %d", got, tc.want)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
