package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/thanos-io/objstore"
	"github.com/thanos-io/objstore/providers/filesystem"
)

// tempPrefix starts the name of an upload in progress. "~" is outside the
// tenant ID alphabet and the hex of chunk keys, so no object shares it.
const tempPrefix = ".upload~"

// fsBucket is objstore's filesystem bucket made to keep S3's promises,
// which the rest of lokilab relies on and the plain provider does not:
//
//   - An upload is all or nothing. The provider writes the final file in
//     place, so a reader (or a process restarted after kill -9 mid-flush)
//     could see half an object. Here the bytes go to a hidden temporary
//     file in the same directory, renamed over the key once complete;
//     rename is atomic on POSIX filesystems. Nothing is fsynced: an
//     upload survives the process dying, not the machine losing power.
//   - Delete removes one object. The provider's RemoveAll would delete a
//     whole tree when given a prefix, and it prunes emptied parent
//     directories with RemoveAll too, which races with a concurrent upload
//     into the same directory and can delete it. Here a prefix is refused
//     and parents are pruned with os.Remove, which fails on a directory
//     that is no longer empty.
//   - Keys stay inside the root: "a/../../etc" is refused, not joined.
//
// Reads are passed through unchanged, apart from the key check and hiding
// temporary files from listings.
type fsBucket struct {
	*filesystem.Bucket
	root string // absolute
}

func newFilesystem(dir string) (*fsBucket, error) {
	// Creating the root now turns a bad path or missing permission into a
	// start-up error rather than a failed flush minutes later.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: filesystem: %w", err)
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: filesystem: %w", err)
	}
	b, err := filesystem.NewBucket(root)
	if err != nil {
		return nil, fmt.Errorf("storage: filesystem: %w", err)
	}
	return &fsBucket{Bucket: b, root: root}, nil
}

// checkKey refuses a key that would leave the root or collide with an
// upload in progress.
func checkKey(name string) error {
	if !filepath.IsLocal(filepath.FromSlash(name)) {
		return fmt.Errorf("storage: object key %q is not a relative path inside the store", name)
	}
	if strings.HasPrefix(path.Base(name), tempPrefix) {
		return fmt.Errorf("storage: object key %q uses the reserved prefix %q", name, tempPrefix)
	}
	return nil
}

func (b *fsBucket) file(name string) string {
	return filepath.Join(b.root, filepath.FromSlash(name))
}

// Upload writes r to a temporary file beside the key and renames it into
// place, so readers see the old object or the new one, never a part.
func (b *fsBucket) Upload(ctx context.Context, name string, r io.Reader, _ ...objstore.ObjectUploadOption) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(name); err != nil {
		return err
	}
	dst := b.file(name)
	tmp, err := b.createTemp(filepath.Dir(dst))
	if err != nil {
		return fmt.Errorf("storage: upload %s: %w", name, err)
	}
	defer func() {
		// After a successful rename the file is gone and this is a no-op.
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if _, err := io.Copy(tmp, r); err != nil {
		return fmt.Errorf("storage: upload %s: %w", name, err)
	}
	// CreateTemp makes the file 0600; objects are as readable as the
	// directories holding them, like the provider's.
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("storage: upload %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("storage: upload %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("storage: upload %s: %w", name, err)
	}
	return nil
}

// createTemp creates the temporary file in dir, creating dir first. A
// concurrent Delete may prune dir between the two steps if it was empty;
// a few retries win that race, since a directory holding the temporary
// file is no longer empty and cannot be pruned.
func (b *fsBucket) createTemp(dir string) (f *os.File, err error) {
	for range 5 {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			if f, err = os.CreateTemp(dir, tempPrefix+"*"); err == nil {
				return f, nil
			}
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return nil, err
}

// Delete removes one object and then every parent directory it leaves
// empty. Deleting a missing object succeeds, as on S3.
func (b *fsBucket) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkKey(name); err != nil {
		return err
	}
	file := b.file(name)
	if fi, err := os.Lstat(file); err == nil && fi.IsDir() {
		return fmt.Errorf("storage: delete %s: a prefix, not an object", name)
	}
	if err := os.Remove(file); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("storage: delete %s: %w", name, err)
	}
	for dir := filepath.Dir(file); dir != b.root && strings.HasPrefix(dir, b.root); dir = filepath.Dir(dir) {
		// os.Remove fails on a directory that is not empty: exactly the
		// check needed, made atomically by the kernel.
		if err := os.Remove(dir); err != nil {
			if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) || errors.Is(err, os.ErrNotExist) {
				break
			}
			return fmt.Errorf("storage: delete %s: pruning %s: %w", name, dir, err)
		}
	}
	return nil
}

// Get implements objstore.Bucket.
func (b *fsBucket) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkKey(name); err != nil {
		return nil, err
	}
	return b.Bucket.Get(ctx, name)
}

// GetRange implements objstore.Bucket.
func (b *fsBucket) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	if err := checkKey(name); err != nil {
		return nil, err
	}
	return b.Bucket.GetRange(ctx, name, off, length)
}

// Exists implements objstore.Bucket.
func (b *fsBucket) Exists(ctx context.Context, name string) (bool, error) {
	if err := checkKey(name); err != nil {
		return false, err
	}
	return b.Bucket.Exists(ctx, name)
}

// Attributes implements objstore.Bucket.
func (b *fsBucket) Attributes(ctx context.Context, name string) (objstore.ObjectAttributes, error) {
	if err := checkKey(name); err != nil {
		return objstore.ObjectAttributes{}, err
	}
	return b.Bucket.Attributes(ctx, name)
}

// Iter implements objstore.Bucket, hiding uploads in progress.
func (b *fsBucket) Iter(ctx context.Context, dir string, f func(string) error, opts ...objstore.IterOption) error {
	if dir != "" && !filepath.IsLocal(filepath.FromSlash(dir)) {
		return fmt.Errorf("storage: iter %q: not a relative path inside the store", dir)
	}
	return b.Bucket.Iter(ctx, dir, func(name string) error {
		if isTemp(name) {
			return nil
		}
		return f(name)
	}, opts...)
}

// IterWithAttributes implements objstore.Bucket, hiding uploads in
// progress.
func (b *fsBucket) IterWithAttributes(ctx context.Context, dir string, f func(objstore.IterObjectAttributes) error, opts ...objstore.IterOption) error {
	if dir != "" && !filepath.IsLocal(filepath.FromSlash(dir)) {
		return fmt.Errorf("storage: iter %q: not a relative path inside the store", dir)
	}
	return b.Bucket.IterWithAttributes(ctx, dir, func(a objstore.IterObjectAttributes) error {
		if isTemp(a.Name) {
			return nil
		}
		return f(a)
	}, opts...)
}

// isTemp reports whether a listed name is an upload in progress.
// Directories end in "/" and are never temporary.
func isTemp(name string) bool {
	return !strings.HasSuffix(name, "/") && strings.HasPrefix(path.Base(name), tempPrefix)
}
