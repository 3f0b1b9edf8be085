package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
)

// Op is an object-store operation. The names are objstore's, the values of
// the operation label on the loki_objstore_bucket_* metrics, so a fault on
// "upload" shows up in the series with operation="upload".
type Op string

// The operations a fault can target. IterWithAttributes counts as OpIter.
const (
	OpGet        Op = objstore.OpGet
	OpGetRange   Op = objstore.OpGetRange
	OpExists     Op = objstore.OpExists
	OpAttributes Op = objstore.OpAttributes
	OpIter       Op = objstore.OpIter
	OpUpload     Op = objstore.OpUpload
	OpDelete     Op = objstore.OpDelete
)

// allOps lists every operation; an Op's index in it is its counter's.
var allOps = [...]Op{OpGet, OpGetRange, OpExists, OpAttributes, OpIter, OpUpload, OpDelete}

func (o Op) index() int {
	for i, op := range allOps {
		if op == o {
			return i
		}
	}
	return -1
}

// ErrInjected is matched (errors.Is) by every failure a Fault injects,
// whatever error the fault names.
var ErrInjected = errors.New("injected fault")

// Fault describes one way to break the store. Each operation on a
// FaultBucket checks the active faults in order; a fault that matches the
// operation and key and fires (with probability Rate) first waits Latency,
// then fails the operation if it has an Err or no Latency. A fault that
// only adds latency lets the operation go on to the next fault and the
// store, so faults compose: one slowing everything, one failing 10% of
// uploads.
type Fault struct {
	// Ops are the operations the fault applies to; empty means all.
	Ops []Op
	// KeyPrefix limits the fault to object keys (for Iter, directories)
	// starting with it, e.g. "tenant-a/" or "index/"; empty means all.
	KeyPrefix string
	// Rate is the probability in [0,1] that the fault fires on a matching
	// operation: 1 every time, 0 never. In JSON an omitted rate means 1.
	Rate float64
	// Latency is added before the operation, as a slow network or an
	// overloaded store would. The wait ends early, with the context's
	// error, if the operation's context does.
	Latency time.Duration
	// Err is returned instead of running the operation. Nil with no
	// Latency fails with ErrInjected; nil with a Latency only delays.
	Err error
}

func (f *Fault) validate() error {
	for _, op := range f.Ops {
		if op.index() < 0 {
			return fmt.Errorf("unknown operation %q: want one of %s", op, opNames())
		}
	}
	if !(f.Rate >= 0 && f.Rate <= 1) { // also false for NaN
		return fmt.Errorf("rate %v is not a probability in [0,1]", f.Rate)
	}
	if f.Latency < 0 {
		return fmt.Errorf("latency %v is negative", f.Latency)
	}
	return nil
}

func (f *Fault) matches(op Op, key string) bool {
	if !strings.HasPrefix(key, f.KeyPrefix) {
		return false
	}
	if len(f.Ops) == 0 {
		return true
	}
	for _, o := range f.Ops {
		if o == op {
			return true
		}
	}
	return false
}

func opNames() string {
	s := make([]string, len(allOps))
	for i, op := range allOps {
		s[i] = string(op)
	}
	return strings.Join(s, ", ")
}

// faultJSON is Fault on the wire:
//
//	{"ops":["upload"],"key_prefix":"fake/","rate":0.5,"latency":"2s","error":"disk on fire"}
//
// Every field is optional: {} fails every operation.
type faultJSON struct {
	Ops       []Op     `json:"ops,omitempty"`
	KeyPrefix string   `json:"key_prefix,omitempty"`
	Rate      *float64 `json:"rate,omitempty"`
	Latency   string   `json:"latency,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// MarshalJSON encodes the fault as documented on UnmarshalJSON.
func (f Fault) MarshalJSON() ([]byte, error) {
	j := faultJSON{Ops: f.Ops, KeyPrefix: f.KeyPrefix, Rate: &f.Rate}
	if f.Latency != 0 {
		j.Latency = f.Latency.String()
	}
	if f.Err != nil {
		j.Error = f.Err.Error()
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes
//
//	{"ops":["upload"],"key_prefix":"fake/","rate":0.5,"latency":"2s","error":"disk on fire"}
//
// ops are Op names; rate defaults to 1; latency is a Go duration; error is
// the message of the error to return. Unknown fields are rejected, so a
// misspelt key does not silently leave a fault wider than meant.
func (f *Fault) UnmarshalJSON(b []byte) error {
	// A null would decode to {}, a fault failing everything: too much to
	// do by accident.
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return errors.New("a fault cannot be null; {} fails every operation")
	}
	var j faultJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	out := Fault{Ops: j.Ops, KeyPrefix: j.KeyPrefix, Rate: 1}
	if j.Rate != nil {
		out.Rate = *j.Rate
	}
	if j.Latency != "" {
		d, err := time.ParseDuration(j.Latency)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		out.Latency = d
	}
	if j.Error != "" {
		out.Err = errors.New(j.Error)
	}
	if err := out.validate(); err != nil {
		return err
	}
	*f = out
	return nil
}

// injectedError is the error of an injected failure.
type injectedError struct {
	op  Op
	key string
	err error // nil: ErrInjected alone
}

func (e *injectedError) Error() string {
	msg := ErrInjected.Error()
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return fmt.Sprintf("storage: %s %q: %s", e.op, e.key, msg)
}

func (e *injectedError) Is(target error) bool { return target == ErrInjected }
func (e *injectedError) Unwrap() error        { return e.err }

// FaultBucket wraps a bucket and fails or slows its operations on demand.
// With no faults set an operation costs one atomic load more than the
// bucket beneath. Faults may be set and cleared at any time, concurrently
// with operations: each operation sees the set that was active when it
// started.
type FaultBucket struct {
	bkt    objstore.Bucket
	logger *slog.Logger
	faults atomic.Pointer[[]Fault]

	mu  sync.Mutex // guards rnd, which is not safe for concurrent use
	rnd *rand.Rand

	injected      [len(allOps)]atomic.Int64
	injectedTotal *prometheus.CounterVec
}

var _ objstore.Bucket = (*FaultBucket)(nil)

// NewFaultBucket wraps b with no faults active. seed makes fractional
// rates reproducible for a given sequence of operations. The counter
// lokilab_objstore_faults_injected_total{operation} is registered on reg,
// which may be nil; a collision panics, as MustRegister does. Changes to
// the faults are logged at warn level to logger, which may be nil.
func NewFaultBucket(b objstore.Bucket, seed uint64, reg prometheus.Registerer, logger *slog.Logger) *FaultBucket {
	f, err := newFaultBucket(b, seed, reg, logger)
	if err != nil {
		panic(err)
	}
	return f
}

func newFaultBucket(b objstore.Bucket, seed uint64, reg prometheus.Registerer, logger *slog.Logger) (*FaultBucket, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	f := &FaultBucket{
		bkt:    b,
		logger: logger,
		rnd:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		injectedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lokilab_objstore_faults_injected_total",
			Help: "Object-store operations failed on purpose by the fault injector.",
		}, []string{"operation"}),
	}
	for _, op := range allOps {
		f.injectedTotal.WithLabelValues(string(op))
	}
	if reg != nil {
		if err := reg.Register(f.injectedTotal); err != nil {
			return nil, fmt.Errorf("registering fault metrics: %w", err)
		}
	}
	return f, nil
}

// Set replaces the active faults. It rejects, leaving the active faults
// unchanged, an unknown operation, a rate outside [0,1] or a negative
// latency.
func (f *FaultBucket) Set(faults ...Fault) error {
	for i := range faults {
		if err := faults[i].validate(); err != nil {
			return fmt.Errorf("storage: fault %d: %w", i, err)
		}
	}
	if len(faults) == 0 {
		f.Clear()
		return nil
	}
	fs := append([]Fault(nil), faults...)
	f.faults.Store(&fs)
	desc, _ := json.Marshal(fs)
	f.logger.Warn("object store faults set", "faults", string(desc))
	return nil
}

// Clear removes every fault.
func (f *FaultBucket) Clear() {
	if f.faults.Swap(nil) != nil {
		f.logger.Warn("object store faults cleared")
	}
}

// Faults returns the active faults.
func (f *FaultBucket) Faults() []Fault {
	p := f.faults.Load()
	if p == nil {
		return []Fault{}
	}
	return append([]Fault(nil), *p...)
}

// Injected returns, per operation, how many failures have been injected
// since the bucket was built. Every operation is present.
func (f *FaultBucket) Injected() map[Op]int64 {
	m := make(map[Op]int64, len(allOps))
	for i, op := range allOps {
		m[op] = f.injected[i].Load()
	}
	return m
}

// inject applies the active faults to one operation and returns the error
// the operation must fail with, if any.
func (f *FaultBucket) inject(ctx context.Context, op Op, key string) error {
	p := f.faults.Load()
	if p == nil {
		return nil
	}
	for i := range *p {
		ft := &(*p)[i]
		if !ft.matches(op, key) || !f.fires(ft.Rate) {
			continue
		}
		if ft.Latency > 0 {
			if err := sleep(ctx, ft.Latency); err != nil {
				return fmt.Errorf("storage: %s %q: waiting out injected latency: %w", op, key, err)
			}
			if ft.Err == nil {
				continue
			}
		}
		f.injected[op.index()].Add(1)
		f.injectedTotal.WithLabelValues(string(op)).Inc()
		return &injectedError{op: op, key: key, err: ft.Err}
	}
	return nil
}

func (f *FaultBucket) fires(rate float64) bool {
	switch {
	case rate >= 1:
		return true
	case rate <= 0:
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rnd.Float64() < rate
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Iter implements objstore.Bucket.
func (f *FaultBucket) Iter(ctx context.Context, dir string, fn func(string) error, opts ...objstore.IterOption) error {
	if err := f.inject(ctx, OpIter, dir); err != nil {
		return err
	}
	return f.bkt.Iter(ctx, dir, fn, opts...)
}

// IterWithAttributes implements objstore.Bucket; faults see it as OpIter.
func (f *FaultBucket) IterWithAttributes(ctx context.Context, dir string, fn func(objstore.IterObjectAttributes) error, opts ...objstore.IterOption) error {
	if err := f.inject(ctx, OpIter, dir); err != nil {
		return err
	}
	return f.bkt.IterWithAttributes(ctx, dir, fn, opts...)
}

// Get implements objstore.Bucket.
func (f *FaultBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := f.inject(ctx, OpGet, name); err != nil {
		return nil, err
	}
	return f.bkt.Get(ctx, name)
}

// GetRange implements objstore.Bucket.
func (f *FaultBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := f.inject(ctx, OpGetRange, name); err != nil {
		return nil, err
	}
	return f.bkt.GetRange(ctx, name, off, length)
}

// Exists implements objstore.Bucket.
func (f *FaultBucket) Exists(ctx context.Context, name string) (bool, error) {
	if err := f.inject(ctx, OpExists, name); err != nil {
		return false, err
	}
	return f.bkt.Exists(ctx, name)
}

// Attributes implements objstore.Bucket.
func (f *FaultBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	if err := f.inject(ctx, OpAttributes, name); err != nil {
		return objstore.ObjectAttributes{}, err
	}
	return f.bkt.Attributes(ctx, name)
}

// Upload implements objstore.Bucket. A failed upload reads none of r.
func (f *FaultBucket) Upload(ctx context.Context, name string, r io.Reader, opts ...objstore.ObjectUploadOption) error {
	if err := f.inject(ctx, OpUpload, name); err != nil {
		return err
	}
	return f.bkt.Upload(ctx, name, r, opts...)
}

// Delete implements objstore.Bucket.
func (f *FaultBucket) Delete(ctx context.Context, name string) error {
	if err := f.inject(ctx, OpDelete, name); err != nil {
		return err
	}
	return f.bkt.Delete(ctx, name)
}

// SupportedIterOptions implements objstore.Bucket.
func (f *FaultBucket) SupportedIterOptions() []objstore.IterOptionType {
	return f.bkt.SupportedIterOptions()
}

// IsObjNotFoundErr implements objstore.Bucket. An injected error is never
// "not found": it stands for the store failing, not for a missing object.
func (f *FaultBucket) IsObjNotFoundErr(err error) bool { return f.bkt.IsObjNotFoundErr(err) }

// IsAccessDeniedErr implements objstore.Bucket.
func (f *FaultBucket) IsAccessDeniedErr(err error) bool { return f.bkt.IsAccessDeniedErr(err) }

// Provider implements objstore.Bucket.
func (f *FaultBucket) Provider() objstore.ObjProvider { return f.bkt.Provider() }

// Name implements objstore.Bucket.
func (f *FaultBucket) Name() string { return f.bkt.Name() }

// Close implements objstore.Bucket.
func (f *FaultBucket) Close() error { return f.bkt.Close() }

// FaultState is what the HTTP handler answers with.
type FaultState struct {
	// Faults are the active faults, in the order they are checked.
	Faults []Fault `json:"faults"`
	// Injected counts injected failures per operation since start.
	Injected map[Op]int64 `json:"injected"`
}

// maxFaultBody bounds a request body; a fault list is a few hundred bytes.
const maxFaultBody = 64 << 10

// ServeHTTP lets a running process be broken from outside, by a scenario
// or by hand with curl:
//
//	GET            the active faults and injected counts: {"faults":[...],"injected":{"upload":3,...}}
//	PUT or POST    replace the active faults with the body, one fault or
//	               an array of them (JSON shape on Fault.UnmarshalJSON)
//	DELETE         clear every fault
//
// Every method answers 200 with the resulting state; a body that does not
// parse is 400 and changes nothing.
func (f *FaultBucket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPut, http.MethodPost:
		faults, err := decodeFaults(http.MaxBytesReader(w, r.Body, maxFaultBody))
		if err == nil {
			err = f.Set(faults...)
		}
		if err != nil {
			http.Error(w, "storage faults: "+err.Error(), http.StatusBadRequest)
			return
		}
	case http.MethodDelete:
		f.Clear()
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(FaultState{Faults: f.Faults(), Injected: f.Injected()}) // an error means the client left
}

// decodeFaults reads one fault object or an array of them.
func decodeFaults(r io.Reader) ([]Fault, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New(`empty body: want a fault such as {"ops":["upload"],"rate":1}, or an array of them; DELETE clears`)
	}
	if body[0] == '[' {
		var fs []Fault
		if err := json.Unmarshal(body, &fs); err != nil {
			return nil, err
		}
		return fs, nil
	}
	var ft Fault
	if err := json.Unmarshal(body, &ft); err != nil {
		return nil, err
	}
	return []Fault{ft}, nil
}
