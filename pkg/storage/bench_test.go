package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/objstore"
)

// BenchmarkUploadGet measures what the metrics and fault layers add to an
// upload and a full read of a 256KiB object (a chunk block's size) on the
// in-memory backend, where the store itself costs least. "store" is
// Store.Bucket with no faults set; "store+faults" has a fault that matches
// no key, so every operation walks the fault list.
func BenchmarkUploadGet(b *testing.B) {
	body := bytes.Repeat([]byte("lokilab "), 256<<10/8)
	faulty := NewInMemory("bench", prometheus.NewRegistry())
	faulty.Faults.Set(Fault{KeyPrefix: "elsewhere/", Rate: 1})
	for _, bc := range []struct {
		name string
		bkt  objstore.Bucket
	}{
		{"raw", objstore.NewInMemBucket()},
		{"store", NewInMemory("bench", prometheus.NewRegistry()).Bucket},
		{"store+faults", faulty.Bucket},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := bc.bkt.Upload(ctx, "t/chunks/1/a", bytes.NewReader(body)); err != nil {
					b.Fatal(err)
				}
				rc, err := bc.bkt.Get(ctx, "t/chunks/1/a")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}

// BenchmarkExists isolates per-operation overhead on the cheapest call.
func BenchmarkExists(b *testing.B) {
	faulty := NewInMemory("bench", prometheus.NewRegistry())
	faulty.Faults.Set(Fault{KeyPrefix: "elsewhere/", Rate: 1})
	raw := objstore.NewInMemBucket()
	for _, bc := range []struct {
		name string
		bkt  objstore.Bucket
	}{
		{"raw", raw},
		{"store", NewInMemory("bench", prometheus.NewRegistry()).Bucket},
		{"store+faults", faulty.Bucket},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.bkt.Exists(ctx, "t/chunks/1/a"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFilesystemUpload measures the atomic upload (temporary file and
// rename) against objstore's in-place write, for a 1.5MB chunk. "new-key"
// writes and deletes a fresh key each time, as flushing chunks does;
// "overwrite" rewrites one key, as a replayed flush does.
func BenchmarkFilesystemUpload(b *testing.B) {
	body := bytes.Repeat([]byte("lokilab "), 1536<<10/8)
	atomic, err := newFilesystem(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		bkt  objstore.Bucket
	}{
		{"in-place", atomic.Bucket}, // the embedded objstore provider
		{"atomic", atomic},
	} {
		b.Run(bc.name+"/new-key", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			i := 0
			for b.Loop() {
				key := fmt.Sprintf("t/chunks/%d/%s", i, bc.name)
				i++
				if err := bc.bkt.Upload(ctx, key, bytes.NewReader(body)); err != nil {
					b.Fatal(err)
				}
				if err := bc.bkt.Delete(ctx, key); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/overwrite", func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := bc.bkt.Upload(ctx, "t/chunks/x/"+bc.name, bytes.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
