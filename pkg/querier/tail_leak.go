package querier

import (
	"context"
	"time"
)

// This file is the lab's deliberate memory leak: question 12's bug
// (`lokilab scenario leak`, docs/questions/12-memory-leak.md). It runs
// only with querier.lab_leak_tail_subscribers on
// (-querier.lab-leak-tail-subscribers), which is off by default and shown
// in /config; off, serve is a plain call of run.
//
// The story it tells is a real one. Someone wanted a tail to notice its
// client leaving at once, even while a slow poll is in flight, so the poll
// loop moved into a subscriber goroutine that reports how it ended on a
// channel, and the handler waits for whichever comes first: the
// subscriber's end or the context's. The channel is unbuffered. When the
// client leaves first — the usual way a tail ends — the handler returns,
// nobody will ever receive, and the subscriber blocks forever on its send:
// Go's commonest goroutine leak, the forgotten sender. The goroutine keeps
// its tailer reachable, and with it the websocket connection, its read and
// write buffers and what the tail last sent, so every closed tail costs a
// goroutine stack and some kilobytes of heap, for good. Nothing fails; the
// querier just grows until it is restarted or OOM-killed.
//
// The fix is one character: make(chan error, 1). The send then always
// succeeds and the goroutine ends, whether or not anyone reads the result.
// (Equivalently: select on ctx.Done() beside the send.)
//
// How it shows (the scenario walks through it): go_goroutines on the
// querier's /metrics climbs by one per closed tail;
// /debug/pprof/goroutine?debug=1 groups the leaked goroutines under one
// stack whose top frame is (*tailer).subscriber at a channel send, its
// count growing between two profiles; `go tool pprof -diff_base` of two
// heap profiles points at the websocket buffers the leaked tailers hold.

// serve runs the tail until its client leaves or it fails: run itself,
// or through a subscriber goroutine with the lab fault on.
func (t *tailer) serve(ctx context.Context, start time.Time, delay time.Duration, limit int) error {
	if !t.q.cfg.LabLeakTailSubscribers {
		return t.run(ctx, start, delay, limit)
	}
	// THE LAB'S BUG: unbuffered. The fix is make(chan error, 1).
	done := make(chan error)
	go t.subscriber(ctx, done, start, delay, limit)
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// The client left (or tail_max_duration passed): answer at once
		// instead of waiting for the poll in flight. Nobody receives from
		// done any more.
		return ctx.Err()
	}
}

// subscriber runs the tail's poll loop and reports how it ended. When
// serve has already returned, the send never completes: this frame is
// what a goroutine profile shows once per leaked tail.
func (t *tailer) subscriber(ctx context.Context, done chan<- error, start time.Time, delay time.Duration, limit int) {
	done <- t.run(ctx, start, delay, limit)
}
