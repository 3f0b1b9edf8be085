package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lokilab/lokilab/internal/pushtest"
)

// pushLoad is a few clients pushing small protobuf requests in a loop,
// remembering which pushes were acknowledged (204) — the lines the system
// has promised to keep.
type pushLoad struct {
	t       *testing.T
	streams int
	lines   int

	mu    sync.Mutex
	acked map[string]bool // push ID → answered 204
	codes map[string]int  // outcome → count
	stop  atomic.Bool
	wg    sync.WaitGroup
}

func startPushLoad(t *testing.T, url string, workers, streams, lines int) *pushLoad {
	l := &pushLoad{t: t, streams: streams, lines: lines, acked: map[string]bool{}, codes: map[string]int{}}
	client := &http.Client{Timeout: 10 * time.Second}
	for w := range workers {
		l.wg.Go(func() {
			for i := 0; !l.stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				r, err := pushtest.NewRequest(url, "", pushtest.Request(pushtest.Options{Streams: streams, LinesPerStream: lines, ID: id, Seed: uint64(i)}), pushtest.Protobuf)
				if err != nil {
					t.Error(err)
					return
				}
				outcome := "connection error"
				resp, err := client.Do(r)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					outcome = strconv.Itoa(resp.StatusCode)
				}
				l.mu.Lock()
				l.acked[id] = outcome == "204"
				l.codes[outcome]++
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	t.Cleanup(l.finish)
	return l
}

// finish stops the clients and waits for their last pushes' answers.
func (l *pushLoad) finish() {
	l.stop.Store(true)
	l.wg.Wait()
}

func (l *pushLoad) ackedCount() (n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ok := range l.acked {
		if ok {
			n++
		}
	}
	return n
}

func (l *pushLoad) outcomes() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.codes)
}

// waitAcked waits until at least one more push is acknowledged and returns
// how long that took since since: a figure to log, not to assert on.
func (l *pushLoad) waitAcked(what string, since time.Time) time.Duration {
	l.t.Helper()
	before := l.ackedCount()
	deadline := time.Now().Add(60 * time.Second)
	for l.ackedCount() == before {
		if time.Now().After(deadline) {
			l.t.Fatalf("no push acknowledged within 60s after %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(since)
}

// lossReport is how the acknowledged lines fared in a store (Kafka or
// object storage), given how many copies of each line ID it holds.
type lossReport struct {
	ackedPushes, unackedPushes int
	// unackedStored counts pushes answered with an error whose lines were
	// stored anyway: allowed (the client retries), and worth knowing.
	unackedStored int
	lost          []string // acknowledged line IDs not stored
	dups          int
}

func (l *pushLoad) check(copies map[string]int) lossReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r lossReport
	for id, ok := range l.acked {
		stored := 0
		for s := range l.streams {
			for ln := range l.lines {
				lineID := fmt.Sprintf("%s-%d-%d", id, s, ln)
				n := copies[lineID]
				stored += n
				if ok && n == 0 {
					r.lost = append(r.lost, lineID)
				}
				if n > 1 {
					r.dups += n - 1
				}
			}
		}
		switch {
		case ok:
			r.ackedPushes++
		case stored > 0:
			r.unackedPushes++
			r.unackedStored++
		default:
			r.unackedPushes++
		}
	}
	return r
}
