package querier

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/lokilab/lokilab/pkg/logql"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// maxDelayFor is the longest delay_for a tail may ask for: Loki's 5s.
const maxDelayFor = 5 * time.Second

// tailMessage is one websocket message of /tail, Loki's shape.
type tailMessage struct {
	Streams        []streamJSON `json:"streams"`
	DroppedEntries []struct{}   `json:"dropped_entries"`
}

// serveTail serves GET /loki/api/v1/tail: a websocket that first sends
// the last limit lines since start (default an hour ago), then new lines
// as they arrive, until the client leaves or tail_max_duration passes.
//
// Loki's ingesters push new lines to tailers as they append them; lokilab
// polls instead — every tail_poll_interval it runs the query forward from
// the last timestamp it sent. That costs one small query per poll and
// misses a line that arrives with a timestamp older than one already sent
// (out-of-order lines), which Loki's push would deliver. delay_for (up to
// 5s) holds lines back that long so that slightly late lines are not
// missed.
func (q *Querier) serveTail(w http.ResponseWriter, hr *http.Request) {
	tenants, ok := q.requestTenants(w, hr)
	if !ok {
		return
	}
	r := &request{Request: hr, tenants: tenants, limits: q.queryLimits(tenants)}
	if r.limits.MaxQueryParallelism == 0 {
		http.Error(w, errQueryingDisabled, http.StatusBadRequest)
		return
	}
	_ = hr.ParseForm()
	expr, err := parseQuery(hr.Form.Get("query"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	lq, isLog := expr.(*logql.LogQuery)
	if !isLog {
		http.Error(w, "tail needs a log query, not a metric query", http.StatusBadRequest)
		return
	}
	limit, _, err := logParams(r)
	if err == nil && r.Form.Get("direction") != "" {
		err = badRequest("tail does not take a direction: lines come oldest first")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	delay := time.Duration(0)
	if s := hr.Form.Get("delay_for"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || time.Duration(n)*time.Second > maxDelayFor {
			http.Error(w, "delay_for: want 0 to 5 seconds", http.StatusBadRequest)
			return
		}
		delay = time.Duration(n) * time.Second
	}
	start, err := parseTime(hr.Form.Get("start"), q.now().Add(-time.Hour))
	if err != nil {
		http.Error(w, "invalid parameter \"start\": "+err.Error(), http.StatusBadRequest)
		return
	}

	// A tail outlives the server's write timeout by design.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	_ = rc.SetReadDeadline(time.Time{})
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	conn, err := up.Upgrade(w, hr, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	defer conn.Close()
	q.metrics.tails.Inc()
	defer q.metrics.tails.Dec()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(hr.Context()), q.cfg.TailMaxDuration)
	defer cancel()
	// The client speaks only to close; reading is how a close is noticed.
	go func() {
		defer cancel()
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()

	t := &tailer{q: q, tenants: tenants, query: lq, limits: r.limits, conn: conn, sentAtTs: map[string]bool{}}
	err = t.serve(ctx, start, delay, limit) // tail_leak.go: run, unless the lab fault is on
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	if err != nil && ctx.Err() == nil {
		q.logger.Warn("tail ended", "query", lq.String(), "err", err)
		msg = websocket.FormatCloseMessage(websocket.CloseInternalServerErr, err.Error())
	}
	_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

type tailer struct {
	q       *Querier
	tenants []string
	query   *logql.LogQuery
	limits  *tenant.Limits
	conn    *websocket.Conn

	// What was sent at the newest timestamp sent, so the next poll (which
	// starts at that timestamp, inclusive) does not send it again.
	lastTs   int64
	sentAtTs map[string]bool
	// pastLastTs: every line stored at lastTs was read (more than a batch
	// shared it); reads start after it.
	pastLastTs bool
}

func (t *tailer) run(ctx context.Context, start time.Time, delay time.Duration, limit int) error {
	// First the last limit lines since start, then forward from there.
	streams, err := t.selectLogs(ctx, start.UnixNano(), t.q.now().Add(-delay).UnixNano(), true, limit)
	if err != nil {
		return err
	}
	t.lastTs = start.UnixNano()
	if err := t.send(streams); err != nil {
		return err
	}
	tick := time.NewTicker(t.q.cfg.TailPollInterval)
	defer tick.Stop()
	batch := max(t.limits.MaxEntriesLimitPerQuery, limit)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := t.poll(ctx, t.q.now().Add(-delay).UnixNano(), batch); err != nil {
			return err
		}
	}
}

// poll sends what arrived up to through, reading forward from the newest
// timestamp sent in batches of at most batch entries until one comes back
// short.
//
// A batch that holds nothing new means at least batch lines share that
// newest timestamp: reading from it again would return the same batch
// forever. Then poll reads that one timestamp alone, with a limit that
// grows by batch until the answer comes back short, and the next reads
// start just after it. Each regrowth rereads the group — quadratic in a
// pathological case, but bounded by the lines actually stored there; a
// line arriving later at that very timestamp is missed, like any
// out-of-order line.
func (t *tailer) poll(ctx context.Context, through int64, batch int) error {
	for {
		from := t.lastTs
		if t.pastLastTs {
			from++
		}
		streams, err := t.selectLogs(ctx, from, through, false, batch)
		if err != nil {
			return err
		}
		n, sent, err := t.sendNew(streams)
		if err != nil {
			return err
		}
		if n < batch {
			return nil // caught up; a full batch means more may be waiting
		}
		if sent > 0 {
			continue
		}
		for limit := len(t.sentAtTs) + batch; ; limit += batch {
			streams, err := t.selectLogs(ctx, t.lastTs, t.lastTs+1, false, limit)
			if err != nil {
				return err
			}
			n, _, err := t.sendNew(streams)
			if err != nil {
				return err
			}
			if n < limit {
				break
			}
		}
		t.pastLastTs = true
	}
}

func (t *tailer) selectLogs(ctx context.Context, from, through int64, backward bool, limit int) ([]logql.StreamEntries, error) {
	if through <= from {
		return nil, nil
	}
	var (
		st Stats
		w  warnings
	)
	return t.q.SelectLogs(ctx, t.tenants, LogQuery{Query: t.query, From: from, Through: through, Backward: backward, Limit: limit}, &st, &w)
}

// sendNew sends the entries not sent yet and returns how many entries the
// poll returned and how many of them it sent.
func (t *tailer) sendNew(streams []logql.StreamEntries) (n, sent int, err error) {
	var fresh []logql.StreamEntries
	for _, s := range streams {
		key := s.Labels.String()
		var es = s.Entries[:0:0]
		for _, e := range s.Entries {
			n++
			if e.Timestamp == t.lastTs && t.sentAtTs[key+"\x00"+e.Line] {
				continue
			}
			es = append(es, e)
		}
		if len(es) > 0 {
			fresh = append(fresh, logql.StreamEntries{Labels: s.Labels, Entries: es})
			sent += len(es)
		}
	}
	return n, sent, t.send(fresh)
}

// send writes streams as one message, oldest entries first, and remembers
// what it sent at the newest timestamp.
func (t *tailer) send(streams []logql.StreamEntries) error {
	if len(streams) == 0 {
		return nil
	}
	msg := tailMessage{Streams: make([]streamJSON, len(streams))}
	newest := t.lastTs
	for i, s := range streams {
		msg.Streams[i] = streamJSON{Stream: s.Labels.Map(), Values: make([][2]string, len(s.Entries))}
		for j, e := range s.Entries {
			// The first answer was read backward: send it oldest first.
			k := j
			if len(s.Entries) > 1 && s.Entries[0].Timestamp > s.Entries[len(s.Entries)-1].Timestamp {
				k = len(s.Entries) - 1 - j
			}
			msg.Streams[i].Values[k] = [2]string{strconv.FormatInt(e.Timestamp, 10), e.Line}
			newest = max(newest, e.Timestamp)
		}
	}
	if newest != t.lastTs {
		t.lastTs, t.sentAtTs, t.pastLastTs = newest, map[string]bool{}, false
	}
	for _, s := range streams {
		key := s.Labels.String()
		for _, e := range s.Entries {
			if e.Timestamp == t.lastTs {
				t.sentAtTs[key+"\x00"+e.Line] = true
			}
		}
	}
	_ = t.conn.SetWriteDeadline(time.Now().Add(t.q.cfg.TailWriteTimeout))
	return t.conn.WriteJSON(msg)
}
