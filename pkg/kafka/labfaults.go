package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file is the broker's side of the lab's fault injection: when the
// broker runs as a process of its own (`lokilab kafka`, the multi-process
// lab) nothing outside it can reach kfake's controls, so with the lab's
// faults on it serves them over HTTP on loopback (FaultPath). Off by
// default: a broker started without them has no such endpoint.

// FaultPath is where the broker's fault endpoint is served: PUT adds a
// fault (a FaultSpec as JSON), DELETE clears them all, GET lists them.
const FaultPath = "/debug/fault/kafka"

// FaultSpec is one injected broker fault: requests of one kind answered
// with an error code, or held for a while, a number of times.
type FaultSpec struct {
	// Request is the Kafka request kind: "produce", "fetch",
	// "offset_commit", … (kmsg's names, case and underscores ignored).
	Request string `json:"request"`
	// ErrorCode is the Kafka error code to answer with (kerr), 0 for none.
	// The broker answers it without storing anything.
	ErrorCode int16 `json:"error_code,omitempty"`
	// Delay holds each matching request this long (a Go duration, "2s")
	// before the broker handles it: a stall.
	Delay string `json:"delay,omitempty"`
	// Count is how many requests the fault applies to; 0 until cleared.
	Count int `json:"count,omitempty"`
}

// FaultInjector installs FaultSpecs on a kfake cluster and takes them all
// back at once.
type FaultInjector struct {
	cluster *kfake.Cluster
	mu      sync.Mutex
	active  []FaultSpec
	handles []*kfake.FaultHandle
	// wake is closed by Clear: every request a delay holds is released at
	// once, and the delay's control function drops itself.
	wake chan struct{}
}

// NewFaultInjector returns an injector for the broker's cluster.
func NewFaultInjector(b *Broker) *FaultInjector { return &FaultInjector{cluster: b.cluster} }

// RequestKey maps a request kind ("produce", "offset_commit",
// "OffsetCommit") to its Kafka API key.
func RequestKey(name string) (kmsg.Key, error) {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	for k := int16(0); k < 128; k++ {
		if n := kmsg.NameForKey(k); n != "" && norm(n) == norm(name) {
			return kmsg.Key(k), nil
		}
	}
	return 0, fmt.Errorf("unknown Kafka request kind %q (e.g. produce, fetch, offset_commit, metadata)", name)
}

// Add installs f.
func (fi *FaultInjector) Add(f FaultSpec) error {
	key, err := RequestKey(f.Request)
	if err != nil {
		return err
	}
	var delay time.Duration
	if f.Delay != "" {
		if delay, err = time.ParseDuration(f.Delay); err != nil || delay < 0 {
			return fmt.Errorf("fault delay %q: want a positive Go duration such as 2s", f.Delay)
		}
	}
	if f.ErrorCode == 0 && delay == 0 {
		return errors.New("fault: neither an error code nor a delay")
	}
	if f.Count < 0 {
		return errors.New("fault: negative count")
	}
	var kerrErr *kerr.Error
	if f.ErrorCode != 0 {
		e := kerr.ErrorForCode(f.ErrorCode)
		if !errors.As(e, &kerrErr) || kerrErr.Code != f.ErrorCode {
			return fmt.Errorf("fault: unknown Kafka error code %d", f.ErrorCode)
		}
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	if fi.wake == nil {
		fi.wake = make(chan struct{})
	}
	c := fi.cluster
	if delay > 0 {
		// Hold each matching request for the delay (or until cleared),
		// then let the broker handle it normally; control functions run
		// concurrently once one sleeps.
		wake := fi.wake
		var left atomic.Int64
		left.Store(int64(f.Count))
		c.ControlKey(key.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			select {
			case <-wake:
				c.DropControl()
				return nil, nil, false
			default:
			}
			c.KeepControl()
			if f.Count > 0 && left.Add(-1) <= 0 {
				c.DropControl()
			}
			c.SleepControl(func() {
				t := time.NewTimer(delay)
				defer t.Stop()
				select {
				case <-t.C:
				case <-wake:
				}
			})
			return nil, nil, false
		})
	}
	if kerrErr != nil {
		count := f.Count
		if count == 0 {
			count = -1
		}
		fi.handles = append(fi.handles, c.Fault(kfake.Fault{Keys: []kmsg.Key{key}, Err: kerrErr, Count: count}))
	}
	fi.active = append(fi.active, f)
	return nil
}

// Clear removes every fault and releases every held request.
func (fi *FaultInjector) Clear() {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	for _, h := range fi.handles {
		h.Remove()
	}
	fi.handles, fi.active = nil, nil
	if fi.wake != nil {
		close(fi.wake)
		fi.wake = nil
	}
}

// Active lists the faults added since the last Clear.
func (fi *FaultInjector) Active() []FaultSpec {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return append([]FaultSpec{}, fi.active...)
}

// Handler serves FaultPath: PUT adds a fault, DELETE clears them, GET
// lists them; each answers the active faults as JSON.
func (fi *FaultInjector) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut, http.MethodPost:
			var f FaultSpec
			dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&f); err != nil {
				http.Error(w, "fault: "+err.Error(), http.StatusBadRequest)
				return
			}
			if err := fi.Add(f); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		case http.MethodDelete:
			fi.Clear()
		case http.MethodGet:
		default:
			w.Header().Set("Allow", "GET, PUT, DELETE")
			http.Error(w, "PUT adds a fault, DELETE clears, GET lists", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(fi.Active())
	})
}
