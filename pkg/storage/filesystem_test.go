package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/thanos-io/objstore"
)

func newFS(t *testing.T) (*fsBucket, string) {
	t.Helper()
	dir := t.TempDir()
	b, err := newFilesystem(dir)
	if err != nil {
		t.Fatal(err)
	}
	return b, dir
}

// failingReader yields some bytes and then an error, as a client killed
// mid-upload would.
type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "partial"), nil
	}
	return 0, errors.New("connection reset")
}

func TestFilesystemUploadIsAllOrNothing(t *testing.T) {
	b, dir := newFS(t)
	ctx := context.Background()

	if err := b.Upload(ctx, "t/chunks/1/a", &failingReader{}); err == nil {
		t.Fatal("upload from a failing reader succeeded")
	}
	if ok, _ := b.Exists(ctx, "t/chunks/1/a"); ok {
		t.Error("a failed upload left an object behind")
	}

	upload(t, b, "t/chunks/1/a", "version 1")
	if err := b.Upload(ctx, "t/chunks/1/a", &failingReader{}); err == nil {
		t.Fatal("upload from a failing reader succeeded")
	}
	if got := get(t, b, "t/chunks/1/a"); got != "version 1" {
		t.Errorf("a failed overwrite changed the object to %q", got)
	}

	// No temporary file survives, on disk or in listings.
	var files []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	if !slices.Equal(files, []string{"t/chunks/1/a"}) {
		t.Errorf("files on disk = %q, want only the object", files)
	}
}

func TestFilesystemHidesUploadsInProgress(t *testing.T) {
	b, dir := newFS(t)
	upload(t, b, "t/a", "x")
	// What an upload in progress (or one a crash interrupted) leaves.
	if err := os.WriteFile(filepath.Join(dir, "t", tempPrefix+"123"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := list(t, b, "t/"); !slices.Equal(got, []string{"t/a"}) {
		t.Errorf("iter = %q, want the temporary file hidden", got)
	}
	var names []string
	b.IterWithAttributes(context.Background(), "", func(a objstore.IterObjectAttributes) error {
		names = append(names, a.Name)
		return nil
	}, objstore.WithRecursiveIter())
	if !slices.Equal(names, []string{"t/a"}) {
		t.Errorf("recursive iter with attributes = %q, want the temporary file hidden", names)
	}
	if err := b.Upload(context.Background(), "t/"+tempPrefix+"x", strings.NewReader("x")); err == nil {
		t.Error("upload to a reserved temporary name succeeded")
	}
}

func TestFilesystemKeysStayInsideTheRoot(t *testing.T) {
	b, dir := newFS(t)
	outside := filepath.Join(filepath.Dir(dir), "escaped")
	ctx := context.Background()
	for _, key := range []string{"../escaped", "a/../../escaped", "/etc/passwd", ""} {
		if err := b.Upload(ctx, key, strings.NewReader("x")); err == nil {
			t.Errorf("upload %q succeeded", key)
		}
		if _, err := b.Get(ctx, key); err == nil {
			t.Errorf("get %q succeeded", key)
		}
		if _, err := b.GetRange(ctx, key, 0, 1); err == nil {
			t.Errorf("get range %q succeeded", key)
		}
		if _, err := b.Exists(ctx, key); err == nil {
			t.Errorf("exists %q succeeded", key)
		}
		if _, err := b.Attributes(ctx, key); err == nil {
			t.Errorf("attributes %q succeeded", key)
		}
		if err := b.Delete(ctx, key); err == nil {
			t.Errorf("delete %q succeeded", key)
		}
	}
	for _, dir := range []string{"..", "../", "a/../../"} {
		if err := b.Iter(ctx, dir, func(string) error { return nil }); err == nil {
			t.Errorf("iter %q succeeded", dir)
		}
		if err := b.IterWithAttributes(ctx, dir, func(objstore.IterObjectAttributes) error { return nil }); err == nil {
			t.Errorf("iter with attributes %q succeeded", dir)
		}
	}
	if _, err := os.Stat(outside); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was written outside the root: %v", err)
	}
}

func TestFilesystemDeleteRemovesOneObject(t *testing.T) {
	b, dir := newFS(t)
	ctx := context.Background()
	upload(t, b, "t/chunks/1/a", "a")
	upload(t, b, "t/chunks/2/b", "b")

	if err := b.Delete(ctx, "t/chunks"); err == nil {
		t.Error("delete of a prefix succeeded")
	}
	if err := b.Delete(ctx, "t/chunks/"); err == nil {
		t.Error("delete of a prefix with a slash succeeded")
	}
	if got := list(t, b, "", objstore.WithRecursiveIter()); len(got) != 2 {
		t.Fatalf("objects after refused prefix deletes = %q", got)
	}

	if err := b.Delete(ctx, "t/chunks/1/a"); err != nil {
		t.Fatal(err)
	}
	// The emptied directory goes, its non-empty parent stays.
	if _, err := os.Stat(filepath.Join(dir, "t/chunks/1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("emptied directory still there: %v", err)
	}
	if got := get(t, b, "t/chunks/2/b"); got != "b" {
		t.Errorf("sibling object = %q", got)
	}
	if err := b.Delete(ctx, "t/chunks/2/b"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("root not pruned back to empty: %v", entries)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("root itself removed: %v", err)
	}
	// As on S3, deleting what is not there succeeds.
	if err := b.Delete(ctx, "t/chunks/2/b"); err != nil {
		t.Errorf("delete of a missing object: %v", err)
	}
}

// Retention deletes the last chunk of a stream while the ingester uploads
// the stream's next chunk into the same directory. Every upload must
// survive; objstore's plain provider prunes with RemoveAll and can lose it.
func TestFilesystemConcurrentUploadAndDeleteLoseNothing(t *testing.T) {
	b, _ := newFS(t)
	ctx := context.Background()
	const rounds = 200
	var wg sync.WaitGroup
	errs := make(chan error, 2*rounds)
	for i := range rounds {
		old, next := fmt.Sprintf("t/chunks/%d/old", i%4), fmt.Sprintf("t/chunks/%d/new-%d", i%4, i)
		if err := b.Upload(ctx, old, strings.NewReader("old")); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := b.Delete(ctx, old); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			if err := b.Upload(ctx, next, strings.NewReader(next)); err != nil {
				errs <- err
			}
		})
		wg.Wait()
		if ok, err := b.Exists(ctx, next); !ok || err != nil {
			t.Fatalf("round %d: %s lost (exists %v, %v)", i, next, ok, err)
		}
		if err := b.Delete(ctx, next); err != nil {
			t.Fatal(err)
		}
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestFilesystemGetRangePastTheEnd(t *testing.T) {
	b, _ := newFS(t)
	upload(t, b, "a", "0123456789")
	rc, err := b.GetRange(context.Background(), "a", 8, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	if string(got) != "89" {
		t.Errorf("range = %q, want %q", got, "89")
	}
}

func TestFilesystemCreatesItsRoot(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if _, err := newFilesystem(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("root not created: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if _, err := newFilesystem(filepath.Join(file, "sub")); err == nil {
		t.Error("a root under a regular file was accepted")
	}
}
