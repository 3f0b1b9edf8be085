package storage

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
)

// Backend names accepted by Config.Backend.
const (
	BackendFilesystem = "filesystem"
	BackendS3         = "s3"
	BackendMemory     = "memory"
)

// Config chooses and configures the object store. The keys follow Loki's
// and Mimir's object-store configuration (backend, filesystem.dir,
// s3.bucket_name, ...), so a block copied from one of them needs few edits.
type Config struct {
	// Backend is filesystem, s3 or memory. Default filesystem: nothing to
	// run, and the objects are plain files a user can look at. s3 is what
	// production uses (and MinIO in docker compose); memory loses
	// everything when the process exits and exists for tests and
	// throw-away experiments.
	Backend string `yaml:"backend"`
	// Filesystem configures the filesystem backend.
	Filesystem FilesystemConfig `yaml:"filesystem"`
	// S3 configures the s3 backend.
	S3 S3Config `yaml:"s3"`
}

// FilesystemConfig configures the filesystem backend: one directory whose
// tree mirrors the object keys.
type FilesystemConfig struct {
	// Dir is the root directory of the store; it is created if missing.
	// Default lokilab-data/store, beside the embedded broker's
	// lokilab-data/kafka, so one -data.dir holds everything the lab
	// persists. Several processes on one machine may share it.
	Dir string `yaml:"dir"`
}

// S3Config configures the s3 backend: AWS S3 or anything speaking its API
// (MinIO, Ceph RGW, R2). The bucket must exist; lokilab never creates one.
type S3Config struct {
	// Endpoint is the S3 host[:port], e.g. s3.eu-west-1.amazonaws.com or
	// minio:9000. A leading http:// or https:// is accepted and decides
	// Insecure. No default: there is no sensible one.
	Endpoint string `yaml:"endpoint"`
	// BucketName is the bucket holding every tenant's objects.
	BucketName string `yaml:"bucket_name"`
	// Region is the bucket's region. Empty lets the client ask the
	// endpoint once (one GetBucketLocation request before the first
	// operation); set it for AWS to save that round trip.
	Region string `yaml:"region"`
	// AccessKeyID and SecretAccessKey are static credentials. Leave both
	// empty to use the usual AWS chain instead: AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, then the instance's IAM
	// role. Setting one without the other is an error.
	AccessKeyID string `yaml:"access_key_id"`
	// SecretAccessKey pairs with AccessKeyID. /config prints "<secret>";
	// prefer -config.expand-env with ${VAR} in the file over the flag,
	// which other users of the machine can read in the process list.
	SecretAccessKey Secret `yaml:"secret_access_key"`
	// Insecure talks plain HTTP instead of HTTPS. Default false; MinIO in
	// docker compose needs true (or an http:// endpoint).
	Insecure bool `yaml:"insecure"`
	// BucketLookupType is how the bucket is addressed: auto,
	// virtual-hosted (bucket.host/key) or path (host/bucket/key). Default
	// auto, which picks virtual-hosted for AWS and path for everything else,
	// so MinIO works without changing it.
	BucketLookupType string `yaml:"bucket_lookup_type"`
}

// RegisterFlags registers the storage flags, prefixed "storage.".
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Backend, "storage.backend", BackendFilesystem, "Object store backend: filesystem, s3 or memory.")
	fs.StringVar(&c.Filesystem.Dir, "storage.filesystem.dir", "lokilab-data/store", "Root directory of the filesystem object store.")
	fs.StringVar(&c.S3.Endpoint, "storage.s3.endpoint", "", "S3 endpoint host[:port]; an http:// or https:// prefix sets -storage.s3.insecure.")
	fs.StringVar(&c.S3.BucketName, "storage.s3.bucket-name", "", "S3 bucket name; the bucket must exist.")
	fs.StringVar(&c.S3.Region, "storage.s3.region", "", "S3 region; empty asks the endpoint.")
	fs.StringVar(&c.S3.AccessKeyID, "storage.s3.access-key-id", "", "S3 access key ID; empty uses the AWS environment, credentials file or IAM role.")
	fs.Var(&c.S3.SecretAccessKey, "storage.s3.secret-access-key", "S3 secret access key; prefer ${VAR} in the config file with -config.expand-env.")
	fs.BoolVar(&c.S3.Insecure, "storage.s3.insecure", false, "Use plain HTTP to reach the S3 endpoint.")
	fs.StringVar(&c.S3.BucketLookupType, "storage.s3.bucket-lookup-type", "auto", "S3 bucket addressing: auto, virtual-hosted or path.")
}

// Validate reports a configuration no bucket can be built from. Only the
// chosen backend's section is checked.
func (c *Config) Validate() error {
	switch c.Backend {
	case BackendFilesystem:
		if c.Filesystem.Dir == "" {
			return errors.New("storage: filesystem.dir is empty")
		}
	case BackendS3:
		return c.S3.validate()
	case BackendMemory:
	default:
		return fmt.Errorf("storage: unknown backend %q: want filesystem, s3 or memory", c.Backend)
	}
	return nil
}

func (c *S3Config) validate() error {
	var errs []error
	if _, err := c.hostPort(); err != nil {
		errs = append(errs, err)
	}
	if c.BucketName == "" {
		errs = append(errs, errors.New("s3.bucket_name is empty"))
	}
	switch {
	case c.AccessKeyID != "" && c.SecretAccessKey == "":
		errs = append(errs, errors.New("s3.access_key_id is set but s3.secret_access_key is empty; set both, or neither to use the AWS credential chain"))
	case c.AccessKeyID == "" && c.SecretAccessKey != "":
		errs = append(errs, errors.New("s3.secret_access_key is set but s3.access_key_id is empty; set both, or neither to use the AWS credential chain"))
	}
	if c.SecretAccessKey == redacted {
		errs = append(errs, fmt.Errorf("s3.secret_access_key is %q, the redacted value /config prints, not a key", redacted))
	}
	switch c.BucketLookupType {
	case "", "auto", "virtual-hosted", "path":
	default:
		errs = append(errs, fmt.Errorf("s3.bucket_lookup_type %q: want auto, virtual-hosted or path", c.BucketLookupType))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	return nil
}

// hostPort returns the endpoint without its scheme, the form the S3 client
// wants, or an error saying why the endpoint is unusable.
func (c *S3Config) hostPort() (string, error) {
	e := c.Endpoint
	if e == "" {
		return "", errors.New("s3.endpoint is empty: want host[:port], e.g. s3.eu-west-1.amazonaws.com or minio:9000")
	}
	if i := strings.Index(e, "://"); i >= 0 {
		if scheme := e[:i]; scheme != "http" && scheme != "https" {
			return "", fmt.Errorf("s3.endpoint %q: scheme %q, want http or https", c.Endpoint, scheme)
		}
		e = e[i+3:]
	}
	e = strings.TrimSuffix(e, "/")
	if e == "" || strings.ContainsAny(e, "/?#@ ") {
		return "", fmt.Errorf("s3.endpoint %q: want host[:port] with no path; the bucket goes in s3.bucket_name", c.Endpoint)
	}
	return e, nil
}

// insecure reports whether to use plain HTTP: an http:// endpoint says so,
// an https:// one says not, a bare host leaves it to Insecure.
func (c *S3Config) insecure() bool {
	switch {
	case strings.HasPrefix(c.Endpoint, "http://"):
		return true
	case strings.HasPrefix(c.Endpoint, "https://"):
		return false
	}
	return c.Insecure
}

// redacted is what a non-empty Secret prints as.
const redacted = "<secret>"

// Secret is a string that never prints: YAML (and so /config), JSON, fmt,
// slog and flag defaults all show "<secret>" when it is set and "" when it
// is not, so an operator can see whether a credential is configured without
// learning it. Reveal returns the value for the one place that needs it.
type Secret string

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String returns "<secret>", or "" when the secret is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return fmt.Sprintf("storage.Secret(%q)", s.String()) }

// Set implements flag.Value.
func (s *Secret) Set(v string) error {
	*s = Secret(v)
	return nil
}

// MarshalYAML prints the redacted form.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML reads the secret as a plain string.
func (s *Secret) UnmarshalYAML(unmarshal func(any) error) error {
	var v string
	if err := unmarshal(&v); err != nil {
		return err
	}
	*s = Secret(v)
	return nil
}

// MarshalJSON prints the redacted form.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue implements slog.LogValuer with the redacted form.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
