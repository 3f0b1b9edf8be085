package lokiclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// Tail follows a log query over Loki's websocket (/loki/api/v1/tail): the
// server first sends up to limit lines since start (zero: its default, an
// hour ago; limit ≤ 0: its default, 100), then new lines as they arrive,
// each message's streams oldest first. fn is called once per message; an
// error from fn ends the tail with that error. delayFor (whole seconds,
// at most 5s) asks the server to hold lines back that long so that late
// lines are not missed.
//
// Tail returns ctx.Err() when ctx ends, nil when the server closes the
// connection normally (tail_max_duration passed), and an error with the
// server's reason otherwise. A refused request (bad query, no org id) is
// an *APIError. Loki's dropped_entries (lines a slow tailer missed) are
// not reported.
func (c *Client) Tail(ctx context.Context, query string, start time.Time, limit int, delayFor time.Duration, fn func([]Stream) error) error {
	v := url.Values{"query": {query}}
	setTime(v, "start", start)
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	if delayFor > 0 {
		v.Set("delay_for", strconv.Itoa(int(delayFor/time.Second)))
	}
	scheme := "ws"
	if c.base != nil && c.base.Scheme == "https" {
		scheme = "wss"
	}
	u, err := c.url(scheme, "/loki/api/v1/tail", v)
	if err != nil {
		return err
	}
	h := http.Header{}
	if c.tenant != "" {
		h.Set(TenantHeader, c.tenant)
	}
	conn, resp, err := websocket.DefaultDialer.DialContext(ctx, u, h)
	if err != nil {
		if resp != nil && resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusSwitchingProtocols {
			defer resp.Body.Close()
			return readAPIError(resp)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("tail: %w", err)
	}
	defer conn.Close()

	// Closing the connection is how a blocked read notices ctx.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			_ = conn.Close()
		case <-done:
		}
	}()

	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				if ce.Code == websocket.CloseNormalClosure {
					return nil
				}
				return fmt.Errorf("tail closed by the server: %s", ce.Text)
			}
			return fmt.Errorf("tail: %w", err)
		}
		streams, err := DecodeTailMessage(data)
		if err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		if len(streams) == 0 {
			continue
		}
		if err := fn(streams); err != nil {
			return err
		}
	}
}

// DecodeTailMessage decodes one /tail websocket message:
// {"streams":[{"stream":{…},"values":[["<ns>","<line>"],…]}],"dropped_entries":[…]}.
func DecodeTailMessage(data []byte) ([]Stream, error) {
	var msg struct {
		Streams json.RawMessage `json:"streams"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		return nil, fmt.Errorf("decoding tail message: %w", err)
	}
	if len(msg.Streams) == 0 || string(msg.Streams) == "null" {
		return nil, nil
	}
	return decodeStreams(msg.Streams)
}
