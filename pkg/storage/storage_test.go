package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
	"go.uber.org/goleak"

	"github.com/lokilab/lokilab/internal/metricstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// backends builds one Store per backend a test should pass on.
func backends(t *testing.T) map[string]func(t *testing.T, reg prometheus.Registerer) *Store {
	return map[string]func(t *testing.T, reg prometheus.Registerer) *Store{
		"memory": func(t *testing.T, reg prometheus.Registerer) *Store {
			return NewInMemory("test", reg)
		},
		"filesystem": func(t *testing.T, reg prometheus.Registerer) *Store {
			s, err := New(Config{Backend: BackendFilesystem, Filesystem: FilesystemConfig{Dir: t.TempDir()}}, "test", reg, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func upload(t *testing.T, b objstore.Bucket, key, body string) {
	t.Helper()
	if err := b.Upload(context.Background(), key, strings.NewReader(body)); err != nil {
		t.Fatalf("upload %s: %v", key, err)
	}
}

func get(t *testing.T, b objstore.BucketReader, key string) string {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return string(data)
}

func list(t *testing.T, b objstore.BucketReader, dir string, opts ...objstore.IterOption) []string {
	t.Helper()
	var names []string
	if err := b.Iter(context.Background(), dir, func(name string) error {
		names = append(names, name)
		return nil
	}, opts...); err != nil {
		t.Fatalf("iter %q: %v", dir, err)
	}
	slices.Sort(names)
	return names
}

func TestStoreRoundTrip(t *testing.T) {
	for name, build := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b := build(t, nil).Bucket

			upload(t, b, "fake/chunks/1/a", "hello object store")
			upload(t, b, "fake/chunks/2/b", "second")
			upload(t, b, "index/19000/fake/seg", "idx")

			if got := get(t, b, "fake/chunks/1/a"); got != "hello object store" {
				t.Errorf("get = %q", got)
			}
			rc, err := b.GetRange(ctx, "fake/chunks/1/a", 6, 6)
			if err != nil {
				t.Fatal(err)
			}
			part, _ := io.ReadAll(rc)
			rc.Close()
			if string(part) != "object" {
				t.Errorf("get range = %q, want %q", part, "object")
			}
			attrs, err := b.Attributes(ctx, "fake/chunks/2/b")
			if err != nil || attrs.Size != int64(len("second")) {
				t.Errorf("attributes = %+v, %v", attrs, err)
			}

			if got, want := list(t, b, ""), []string{"fake/", "index/"}; !slices.Equal(got, want) {
				t.Errorf("iter root = %q, want %q", got, want)
			}
			if got, want := list(t, b, "fake/chunks/"), []string{"fake/chunks/1/", "fake/chunks/2/"}; !slices.Equal(got, want) {
				t.Errorf("iter fake/chunks/ = %q, want %q", got, want)
			}
			if got, want := list(t, b, "fake/", objstore.WithRecursiveIter()), []string{"fake/chunks/1/a", "fake/chunks/2/b"}; !slices.Equal(got, want) {
				t.Errorf("recursive iter = %q, want %q", got, want)
			}

			// Overwrite replaces the object whole.
			upload(t, b, "fake/chunks/2/b", "replaced")
			if got := get(t, b, "fake/chunks/2/b"); got != "replaced" {
				t.Errorf("after overwrite get = %q", got)
			}

			if err := b.Delete(ctx, "fake/chunks/1/a"); err != nil {
				t.Fatal(err)
			}
			if ok, err := b.Exists(ctx, "fake/chunks/1/a"); ok || err != nil {
				t.Errorf("exists after delete = %v, %v", ok, err)
			}
			if ok, err := b.Exists(ctx, "fake/chunks/2/b"); !ok || err != nil {
				t.Errorf("exists of a kept object = %v, %v", ok, err)
			}
			_, err = b.Get(ctx, "fake/chunks/1/a")
			if err == nil || !b.IsObjNotFoundErr(err) {
				t.Errorf("get after delete: err %v, want one IsObjNotFoundErr accepts", err)
			}
			if got, want := list(t, b, "fake/chunks/"), []string{"fake/chunks/2/"}; !slices.Equal(got, want) {
				t.Errorf("iter after delete = %q, want %q", got, want)
			}
		})
	}
}

func TestMetricsFollowOperations(t *testing.T) {
	for name, build := range backends(t) {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			s := build(t, reg)
			ctx := context.Background()
			body := strings.Repeat("x", 1000)

			upload(t, s.Bucket, "t/obj", body)
			upload(t, s.Bucket, "t/obj2", body)
			if got := get(t, s.Bucket, "t/obj"); got != body {
				t.Fatalf("get returned %d bytes", len(got))
			}
			s.Bucket.Exists(ctx, "t/obj")

			ops := func(op string) float64 {
				return metricstest.Value(t, reg, "loki_objstore_bucket_operations_total", "bucket", "test", "operation", op)
			}
			if ops("upload") != 2 || ops("get") != 1 || ops("exists") != 1 || ops("delete") != 0 {
				t.Errorf("operations: upload %v get %v exists %v delete %v, want 2 1 1 0", ops("upload"), ops("get"), ops("exists"), ops("delete"))
			}
			if n := metricstest.HistogramCount(t, reg, "loki_objstore_bucket_operation_duration_seconds", "operation", "upload"); n != 2 {
				t.Errorf("upload duration observations = %d, want 2", n)
			}
			if got := metricstest.HistogramSum(t, reg, "loki_objstore_bucket_operation_transferred_bytes", "operation", "upload"); got != 2000 {
				t.Errorf("upload bytes = %v, want 2000", got)
			}
			if got := metricstest.HistogramSum(t, reg, "loki_objstore_bucket_operation_transferred_bytes", "operation", "get"); got != 1000 {
				t.Errorf("get bytes = %v, want 1000", got)
			}

			// A failure the caller did not expect counts as one.
			if _, err := s.Bucket.Get(ctx, "t/missing"); err == nil {
				t.Fatal("get of a missing object succeeded")
			}
			if got := metricstest.Value(t, reg, "loki_objstore_bucket_operation_failures_total", "operation", "get"); got != 1 {
				t.Errorf("get failures = %v, want 1", got)
			}
			// One it declared expected does not.
			quiet := s.Bucket.WithExpectedErrs(s.Bucket.IsObjNotFoundErr)
			if _, err := quiet.Get(ctx, "t/missing"); err == nil {
				t.Fatal("get of a missing object succeeded")
			}
			if got := metricstest.Value(t, reg, "loki_objstore_bucket_operation_failures_total", "operation", "get"); got != 1 {
				t.Errorf("get failures after an expected one = %v, want still 1", got)
			}
		})
	}
}

func TestInjectedFailuresCountAsFailures(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	s := NewInMemory("ingester", reg)
	if err := s.Faults.Set(Fault{Ops: []Op{OpUpload}, Rate: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		err := s.Bucket.Upload(context.Background(), "a", strings.NewReader("x"))
		if !errors.Is(err, ErrInjected) {
			t.Fatalf("upload err = %v, want ErrInjected", err)
		}
	}
	if got := metricstest.Value(t, reg, "loki_objstore_bucket_operation_failures_total", "bucket", "ingester", "operation", "upload"); got != 3 {
		t.Errorf("loki upload failures = %v, want 3", got)
	}
	if got := metricstest.Value(t, reg, "lokilab_objstore_faults_injected_total", "bucket", "ingester", "operation", "upload"); got != 3 {
		t.Errorf("injected upload faults = %v, want 3", got)
	}
	if got := s.Faults.Injected()[OpUpload]; got != 3 {
		t.Errorf("Injected()[upload] = %d, want 3", got)
	}
}

func TestNewReportsMetricCollisionsAsErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := Config{Backend: BackendMemory}
	if _, err := New(cfg, "ingester", reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, "ingester", reg, nil); err == nil || !strings.Contains(err.Error(), `"ingester"`) {
		t.Errorf("second store with the same component: err %v, want a registration error naming it", err)
	}
	// Another component, or another instance with its own name, is fine.
	for _, component := range []string{"querier", "ingester-1"} {
		if _, err := New(cfg, component, reg, nil); err != nil {
			t.Errorf("store for %s: %v", component, err)
		}
	}
}

func TestNewBucketIsInstrumentedWithoutFaults(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	b, err := NewBucket(Config{Backend: BackendFilesystem, Filesystem: FilesystemConfig{Dir: t.TempDir()}}, "tool", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(objstore.InstrumentedBucket); !ok {
		t.Errorf("NewBucket returned %T, want an instrumented bucket", b)
	}
	upload(t, b, "x", "y")
	if got := metricstest.Value(t, reg, "loki_objstore_bucket_operations_total", "bucket", "tool", "operation", "upload"); got != 1 {
		t.Errorf("uploads = %v, want 1", got)
	}
	if got := metricstest.Sum(t, reg, "lokilab_objstore_faults_injected_total"); got != 0 {
		t.Errorf("fault counter registered by NewBucket")
	}
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	_, err := New(Config{Backend: "gcs"}, "x", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "gcs") {
		t.Errorf("err = %v, want one naming the unknown backend", err)
	}
}

// Building an S3 bucket makes no request, so an unreachable endpoint is not
// an error until the first operation, which then fails within its context
// rather than hanging.
func TestS3BucketBuildsOfflineAndFailsOnUse(t *testing.T) {
	cfg := Config{Backend: BackendS3, S3: S3Config{
		Endpoint:        "http://127.0.0.1:1", // nothing listens on port 1
		BucketName:      "loki",
		Region:          "us-east-1",
		AccessKeyID:     "id",
		SecretAccessKey: "key",
	}}
	reg := prometheus.NewPedanticRegistry()
	s, err := New(cfg, "ingester", reg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	if s.Bucket.Provider() != objstore.S3 || s.Bucket.Name() != "loki" {
		t.Errorf("provider %s name %s", s.Bucket.Provider(), s.Bucket.Name())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.Bucket.Exists(ctx, "a")
	if err == nil {
		t.Fatal("exists against an unreachable endpoint succeeded")
	}
	t.Logf("exists against an unreachable endpoint: %v", err)
	if got := metricstest.Value(t, reg, "loki_objstore_bucket_operation_failures_total", "operation", "exists"); got != 1 {
		t.Errorf("exists failures = %v, want 1", got)
	}
}

func TestKitLoggerMapsLevelsAndMessage(t *testing.T) {
	var buf bytes.Buffer
	l := kitLogger{newTextLogger(&buf)}
	l.Log("level", "warn", "msg", "could not guess size", "name", "a/b")
	got := buf.String()
	for _, want := range []string{"level=WARN", `msg="could not guess size"`, "name=a/b"} {
		if !strings.Contains(got, want) {
			t.Errorf("log line %q lacks %q", got, want)
		}
	}
}
