package storage

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"

	"github.com/lokilab/lokilab/internal/metricstest"
)

func newFaulty(t *testing.T) *FaultBucket {
	t.Helper()
	f := NewFaultBucket(objstore.NewInMemBucket(), 1, nil, nil)
	if err := f.Upload(context.Background(), "a/obj", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	if err := f.Upload(context.Background(), "b/obj", strings.NewReader("data")); err != nil {
		t.Fatal(err)
	}
	return f
}

// run performs op on key and returns its error.
func run(b objstore.Bucket, op Op, key string) error {
	ctx := context.Background()
	switch op {
	case OpGet:
		rc, err := b.Get(ctx, key)
		if err == nil {
			rc.Close()
		}
		return err
	case OpGetRange:
		rc, err := b.GetRange(ctx, key, 0, 1)
		if err == nil {
			rc.Close()
		}
		return err
	case OpExists:
		_, err := b.Exists(ctx, key)
		return err
	case OpAttributes:
		_, err := b.Attributes(ctx, key)
		return err
	case OpIter:
		return b.Iter(ctx, key, func(string) error { return nil })
	case OpUpload:
		return b.Upload(ctx, key, strings.NewReader("data"))
	case OpDelete:
		// Delete, then restore beneath the faults, so the object is there
		// for the next op.
		if err := b.Delete(ctx, key); err != nil {
			return err
		}
		if fb, ok := b.(*FaultBucket); ok {
			b = fb.bkt
		}
		return b.Upload(ctx, key, strings.NewReader("data"))
	}
	panic("unknown op " + op)
}

func TestFaultsSelectOperationsAndKeys(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault Fault
		fails func(op Op, key string) bool
	}{
		{"no ops fails every op", Fault{Rate: 1}, func(Op, string) bool { return true }},
		{"one op", Fault{Ops: []Op{OpUpload}, Rate: 1}, func(op Op, _ string) bool { return op == OpUpload }},
		{"several ops", Fault{Ops: []Op{OpGet, OpGetRange, OpIter}, Rate: 1}, func(op Op, _ string) bool {
			return op == OpGet || op == OpGetRange || op == OpIter
		}},
		{"key prefix", Fault{KeyPrefix: "a/", Rate: 1}, func(_ Op, key string) bool { return strings.HasPrefix(key, "a/") }},
		{"op and key prefix", Fault{Ops: []Op{OpExists}, KeyPrefix: "b/", Rate: 1}, func(op Op, key string) bool {
			return op == OpExists && strings.HasPrefix(key, "b/")
		}},
		{"rate 0 never fires", Fault{Rate: 0}, func(Op, string) bool { return false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFaulty(t)
			if err := f.Set(tc.fault); err != nil {
				t.Fatal(err)
			}
			want := map[Op]int64{}
			for _, op := range allOps {
				for _, key := range []string{"a/obj", "b/obj"} {
					if op == OpIter {
						key = key[:2] // iterate the directory
					}
					err := run(f, op, key)
					if tc.fails(op, key) {
						want[op]++
						if !errors.Is(err, ErrInjected) {
							t.Errorf("%s %s: err %v, want an injected failure", op, key, err)
						}
					} else if err != nil {
						t.Errorf("%s %s: %v, want success", op, key, err)
					}
				}
			}
			for _, op := range allOps {
				if got := f.Injected()[op]; got != want[op] {
					t.Errorf("Injected()[%s] = %d, want %d", op, got, want[op])
				}
			}
		})
	}
}

func TestFaultErrorNamesTheOperationAndWrapsTheGivenError(t *testing.T) {
	f := newFaulty(t)
	disk := errors.New("disk on fire")
	f.Set(Fault{Ops: []Op{OpUpload}, Rate: 1, Err: disk})
	err := f.Upload(context.Background(), "a/x", strings.NewReader("x"))
	if !errors.Is(err, ErrInjected) || !errors.Is(err, disk) {
		t.Errorf("err %v: want both ErrInjected and the fault's error", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "upload") || !strings.Contains(msg, `"a/x"`) || !strings.Contains(msg, "disk on fire") {
		t.Errorf("message %q should name the op, key and cause", msg)
	}
	if f.IsObjNotFoundErr(err) {
		t.Error("an injected failure reads as not-found")
	}
}

func TestFailedUploadReadsNothing(t *testing.T) {
	f := newFaulty(t)
	f.Set(Fault{Ops: []Op{OpUpload}, Rate: 1})
	r := strings.NewReader("body")
	f.Upload(context.Background(), "a/x", r)
	if r.Len() != 4 {
		t.Errorf("a failed upload consumed %d bytes of its reader", 4-r.Len())
	}
}

func TestClearRestoresTheStore(t *testing.T) {
	f := newFaulty(t)
	f.Set(Fault{Rate: 1})
	if run(f, OpGet, "a/obj") == nil {
		t.Fatal("fault not active")
	}
	f.Clear()
	for _, op := range allOps {
		if err := run(f, op, "a/obj"); err != nil {
			t.Errorf("%s after Clear: %v", op, err)
		}
	}
	if len(f.Faults()) != 0 {
		t.Errorf("Faults() after Clear = %v", f.Faults())
	}
	// Set with nothing also clears.
	f.Set(Fault{Rate: 1})
	f.Set()
	if err := run(f, OpGet, "a/obj"); err != nil {
		t.Errorf("get after Set(): %v", err)
	}
}

func TestFractionalRateFailsAboutThatShare(t *testing.T) {
	f := newFaulty(t)
	f.Set(Fault{Ops: []Op{OpExists}, Rate: 0.25})
	const n = 4000
	failed := 0
	for range n {
		if _, err := f.Exists(context.Background(), "a/obj"); err != nil {
			failed++
		}
	}
	// The seed is fixed, so this is deterministic; the bounds are 6 sigma
	// so another seed would pass too.
	if failed < 850 || failed > 1150 {
		t.Errorf("%d of %d failed at rate 0.25", failed, n)
	}
}

func TestLatencyDelaysTheOperation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFaulty(t)
		f.Set(Fault{Ops: []Op{OpGet}, Latency: 2 * time.Second, Rate: 1})
		start := time.Now()
		if err := run(f, OpGet, "a/obj"); err != nil {
			t.Fatalf("a latency-only fault failed the get: %v", err)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("get took %v, want the injected 2s", d)
		}
		// Other operations are not delayed.
		start = time.Now()
		run(f, OpExists, "a/obj")
		if d := time.Since(start); d != 0 {
			t.Errorf("exists took %v, want no delay", d)
		}
		if got := f.Injected()[OpGet]; got != 0 {
			t.Errorf("a delay counted as %d injected failures", got)
		}
	})
}

func TestLatencyThenErrorAndComposition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFaulty(t)
		f.Set(
			Fault{Latency: time.Second, Rate: 1},                                             // everything slow
			Fault{Ops: []Op{OpUpload}, Latency: time.Second, Rate: 1, Err: io.ErrClosedPipe}, // uploads slower, then fail
		)
		start := time.Now()
		err := run(f, OpUpload, "a/x")
		if !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("upload err = %v", err)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("upload took %v, want both faults' 2s", d)
		}
		start = time.Now()
		if err := run(f, OpGet, "a/obj"); err != nil {
			t.Errorf("get: %v", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("get took %v, want 1s", d)
		}
	})
}

func TestLatencyEndsWithTheContext(t *testing.T) {
	f := newFaulty(t)
	f.Set(Fault{Latency: time.Hour, Rate: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := f.Get(ctx, "a/obj")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline", err)
	}
	if errors.Is(err, ErrInjected) {
		t.Errorf("a cancelled wait reads as an injected failure: %v", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if err := f.Upload(ctx, "a/x", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestSetRejectsInvalidFaults(t *testing.T) {
	f := newFaulty(t)
	good := Fault{Ops: []Op{OpGet}, Rate: 1}
	f.Set(good)
	for _, bad := range []Fault{
		{Ops: []Op{"put"}, Rate: 1},
		{Rate: 1.5},
		{Rate: -0.1},
		{Rate: nanRate()},
		{Rate: 1, Latency: -time.Second},
	} {
		if err := f.Set(good, bad); err == nil {
			t.Errorf("Set accepted %+v", bad)
		}
	}
	if got := f.Faults(); len(got) != 1 || got[0].Ops[0] != OpGet {
		t.Errorf("a rejected Set changed the faults to %+v", got)
	}
}

func nanRate() float64 {
	zero := 0.0
	return zero / zero
}

// Faults switch on and off while operations run; -race checks the
// handover and every operation must either succeed or fail as injected.
func TestFaultsSwitchConcurrentlyWithOperations(t *testing.T) {
	f := newFaulty(t)
	var (
		wg   sync.WaitGroup
		stop atomic.Bool
		bad  atomic.Value
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				op := allOps[(w+i)%len(allOps)]
				if op == OpDelete {
					continue // concurrent deletes of one key fail for real
				}
				key := "a/obj"
				if op == OpIter {
					key = "a/"
				}
				if err := run(f, op, key); err != nil && !errors.Is(err, ErrInjected) {
					bad.Store(err)
				}
			}
		})
	}
	for i := range 500 {
		switch i % 3 {
		case 0:
			f.Set(Fault{Ops: []Op{OpGet}, Rate: 0.5}, Fault{KeyPrefix: "a/", Rate: 0.1})
		case 1:
			f.Set(Fault{Rate: 1})
		default:
			f.Clear()
		}
		f.Faults()
		f.Injected()
	}
	stop.Store(true)
	wg.Wait()
	if err := bad.Load(); err != nil {
		t.Errorf("an operation failed for a reason other than a fault: %v", err)
	}
}

func TestFaultJSON(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Fault
		wantErr string
	}{
		{`{}`, Fault{Rate: 1}, ""},
		{`{"ops":["upload","delete"],"key_prefix":"fake/","rate":0.5,"latency":"1.5s","error":"disk on fire"}`,
			Fault{Ops: []Op{OpUpload, OpDelete}, KeyPrefix: "fake/", Rate: 0.5, Latency: 1500 * time.Millisecond, Err: errors.New("disk on fire")}, ""},
		{`{"latency":"2s"}`, Fault{Rate: 1, Latency: 2 * time.Second}, ""},
		{`{"rate":0}`, Fault{Rate: 0}, ""},
		{`{"ops":["put"]}`, Fault{}, `unknown operation "put"`},
		{`{"rate":2}`, Fault{}, "not a probability"},
		{`{"latency":"soon"}`, Fault{}, "latency"},
		{`{"latency":2}`, Fault{}, "cannot unmarshal"},
		{`{"op":["get"]}`, Fault{}, `unknown field "op"`},
		{`[]`, Fault{}, "cannot unmarshal"},
		{`null`, Fault{}, "cannot be null"},
	} {
		var got Fault
		err := json.Unmarshal([]byte(tc.in), &got)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !sameFault(got, tc.want) {
			t.Errorf("%s decoded to %+v, want %+v", tc.in, got, tc.want)
		}
		// What prints parses back to the same fault.
		out, err := json.Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		var again Fault
		if err := json.Unmarshal(out, &again); err != nil || !sameFault(again, got) {
			t.Errorf("%s re-encoded as %s, which decodes to %+v (%v)", tc.in, out, again, err)
		}
	}
}

func sameFault(a, b Fault) bool {
	errMsg := func(e error) string {
		if e == nil {
			return ""
		}
		return e.Error()
	}
	if len(a.Ops) != len(b.Ops) {
		return false
	}
	for i := range a.Ops {
		if a.Ops[i] != b.Ops[i] {
			return false
		}
	}
	return a.KeyPrefix == b.KeyPrefix && a.Rate == b.Rate && a.Latency == b.Latency && errMsg(a.Err) == errMsg(b.Err)
}

// FuzzFaultJSON checks that the decoder never panics and that whatever it
// accepts is a valid fault that survives a round trip.
func FuzzFaultJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"ops":["upload"],"rate":1}`, `{"latency":"2s","error":"x"}`,
		`{"key_prefix":"a/","rate":0.5,"ops":["get","get_range","iter"]}`, `{"rate":-1}`, `[`, `null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ft Fault
		if err := json.Unmarshal(data, &ft); err != nil {
			return
		}
		if err := ft.validate(); err != nil {
			t.Fatalf("decoded an invalid fault %+v from %q: %v", ft, data, err)
		}
		out, err := json.Marshal(ft)
		if err != nil {
			t.Fatalf("marshal %+v: %v", ft, err)
		}
		var again Fault
		if err := json.Unmarshal(out, &again); err != nil || !sameFault(ft, again) {
			t.Fatalf("%q → %+v → %s → %+v (%v)", data, ft, out, again, err)
		}
	})
}

func TestFaultHTTPHandler(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := NewInMemory("ingester", reg)
	srv := httptest.NewServer(s.Faults)
	defer srv.Close()

	do := func(method, body string) (int, FaultState, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var st FaultState
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal(raw, &st); err != nil {
				t.Fatalf("%s: decoding %s: %v", method, raw, err)
			}
		}
		return resp.StatusCode, st, string(raw)
	}

	code, st, raw := do(http.MethodGet, "")
	if code != http.StatusOK || len(st.Faults) != 0 || !strings.Contains(raw, `"faults": []`) {
		t.Fatalf("initial GET: %d %s", code, raw)
	}

	code, st, raw = do(http.MethodPut, `{"ops":["upload"],"rate":1,"error":"bucket gone"}`)
	if code != http.StatusOK || len(st.Faults) != 1 {
		t.Fatalf("PUT: %d %s", code, raw)
	}
	err := s.Bucket.Upload(context.Background(), "fake/x", strings.NewReader("x"))
	if !errors.Is(err, ErrInjected) || !strings.Contains(err.Error(), "bucket gone") {
		t.Fatalf("upload after PUT: %v", err)
	}
	if got := metricstest.Value(t, reg, "lokilab_objstore_faults_injected_total", "operation", "upload"); got != 1 {
		t.Errorf("fault metric = %v, want 1", got)
	}

	// POST an array: replaces, does not add.
	code, st, raw = do(http.MethodPost, `[{"ops":["get"],"latency":"1ms"},{"key_prefix":"index/","rate":0.5}]`)
	if code != http.StatusOK || len(st.Faults) != 2 || st.Faults[0].Latency != time.Millisecond || st.Faults[1].Rate != 0.5 {
		t.Fatalf("POST: %d %s", code, raw)
	}
	if st.Injected[OpUpload] != 1 {
		t.Errorf("state counts %d injected uploads, want 1", st.Injected[OpUpload])
	}
	if err := s.Bucket.Upload(context.Background(), "fake/x", strings.NewReader("x")); err != nil {
		t.Errorf("upload after the faults were replaced: %v", err)
	}

	for _, body := range []string{``, `null`, `[null]`, `{"ops":["put"]}`, `{"rate":`, `{"rate":1} {}`} {
		if code, _, raw := do(http.MethodPut, body); code != http.StatusBadRequest {
			t.Errorf("PUT %q: %d %s, want 400", body, code, raw)
		}
	}
	if _, st, _ := do(http.MethodGet, ""); len(st.Faults) != 2 {
		t.Errorf("a rejected PUT changed the faults: %+v", st.Faults)
	}

	if code, st, raw := do(http.MethodDelete, ""); code != http.StatusOK || len(st.Faults) != 0 {
		t.Errorf("DELETE: %d %s", code, raw)
	}
	if len(s.Faults.Faults()) != 0 {
		t.Error("DELETE left faults active")
	}
	if code, _, _ := do(http.MethodPatch, "{}"); code != http.StatusMethodNotAllowed {
		t.Errorf("PATCH: %d, want 405", code)
	}
}
