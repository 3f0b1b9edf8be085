package storage

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/config"
)

func newTextLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func defaults(t *testing.T) Config {
	t.Helper()
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDefaultsAreAValidFilesystemStore(t *testing.T) {
	c := defaults(t)
	if c.Backend != BackendFilesystem || c.Filesystem.Dir != "lokilab-data/store" || c.S3.BucketLookupType != "auto" {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestFlagsSetEveryField(t *testing.T) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	err := fs.Parse([]string{
		"-storage.backend=s3",
		"-storage.filesystem.dir=/d",
		"-storage.s3.endpoint=minio:9000",
		"-storage.s3.bucket-name=loki",
		"-storage.s3.region=eu-west-1",
		"-storage.s3.access-key-id=id",
		"-storage.s3.secret-access-key=sekrit",
		"-storage.s3.insecure",
		"-storage.s3.bucket-lookup-type=path",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Backend: "s3", Filesystem: FilesystemConfig{Dir: "/d"}, S3: S3Config{
		Endpoint: "minio:9000", BucketName: "loki", Region: "eu-west-1", AccessKeyID: "id",
		SecretAccessKey: "sekrit", Insecure: true, BucketLookupType: "path",
	}}
	if c != want {
		t.Errorf("parsed %+v\nwant   %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestValidate(t *testing.T) {
	s3 := func(mod func(*S3Config)) Config {
		c := Config{Backend: BackendS3, S3: S3Config{Endpoint: "minio:9000", BucketName: "loki", AccessKeyID: "id", SecretAccessKey: "key"}}
		mod(&c.S3)
		return c
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // "" = valid
	}{
		{"filesystem", Config{Backend: BackendFilesystem, Filesystem: FilesystemConfig{Dir: "d"}}, ""},
		{"filesystem without a dir", Config{Backend: BackendFilesystem}, "filesystem.dir is empty"},
		{"memory", Config{Backend: BackendMemory}, ""},
		{"unknown backend", Config{Backend: "gcs"}, `unknown backend "gcs"`},
		{"empty backend", Config{}, `unknown backend ""`},
		{"s3", s3(func(*S3Config) {}), ""},
		{"s3 with the AWS credential chain", s3(func(c *S3Config) { c.AccessKeyID, c.SecretAccessKey = "", "" }), ""},
		{"s3 with an http endpoint", s3(func(c *S3Config) { c.Endpoint = "http://minio:9000" }), ""},
		{"s3 with an https endpoint and slash", s3(func(c *S3Config) { c.Endpoint = "https://s3.amazonaws.com/" }), ""},
		{"s3 without endpoint", s3(func(c *S3Config) { c.Endpoint = "" }), "s3.endpoint is empty"},
		{"s3 endpoint with a path", s3(func(c *S3Config) { c.Endpoint = "minio:9000/loki" }), "no path"},
		{"s3 endpoint with another scheme", s3(func(c *S3Config) { c.Endpoint = "ftp://minio" }), `scheme "ftp"`},
		{"s3 without bucket", s3(func(c *S3Config) { c.BucketName = "" }), "bucket_name is empty"},
		{"s3 key id without secret", s3(func(c *S3Config) { c.SecretAccessKey = "" }), "secret_access_key is empty"},
		{"s3 secret without key id", s3(func(c *S3Config) { c.AccessKeyID = "" }), "access_key_id is empty"},
		{"s3 secret copied from /config", s3(func(c *S3Config) { c.SecretAccessKey = "<secret>" }), "redacted"},
		{"s3 bad lookup type", s3(func(c *S3Config) { c.BucketLookupType = "dns" }), `bucket_lookup_type "dns"`},
		// Only the chosen backend's section matters.
		{"filesystem ignores a broken s3 section", Config{Backend: BackendFilesystem, Filesystem: FilesystemConfig{Dir: "d"}, S3: S3Config{AccessKeyID: "x"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestS3EndpointSchemeDecidesInsecure(t *testing.T) {
	for _, tc := range []struct {
		endpoint string
		insecure bool
		host     string
		want     bool
	}{
		{"minio:9000", false, "minio:9000", false},
		{"minio:9000", true, "minio:9000", true},
		{"http://minio:9000", false, "minio:9000", true},
		{"https://s3.amazonaws.com", true, "s3.amazonaws.com", false},
	} {
		c := S3Config{Endpoint: tc.endpoint, Insecure: tc.insecure}
		host, err := c.hostPort()
		if err != nil || host != tc.host || c.insecure() != tc.want {
			t.Errorf("%q insecure=%v: host %q err %v insecure %v; want %q %v", tc.endpoint, tc.insecure, host, err, c.insecure(), tc.host, tc.want)
		}
	}
}

// The secret must not leak through any way a config or a value is printed.
func TestSecretNeverPrints(t *testing.T) {
	const key = "wJalrXUtnFEMI-K7MDENG"
	c := Config{Backend: BackendS3, S3: S3Config{Endpoint: "minio:9000", BucketName: "b", AccessKeyID: "id", SecretAccessKey: key}}

	y, err := config.YAML(&c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	newTextLogger(&logged).Info("cfg", "secret", c.S3.SecretAccessKey, "s3", c.S3)
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	var reg Config
	reg.RegisterFlags(fs)
	fs.Set("storage.s3.secret-access-key", key)

	for what, out := range map[string]string{
		"yaml":   string(y),
		"json":   string(j),
		"%v":     fmt.Sprintf("%v", c),
		"%+v":    fmt.Sprintf("%+v", c),
		"%#v":    fmt.Sprintf("%#v", c),
		"Sprint": fmt.Sprint(c.S3.SecretAccessKey),
		"%q":     fmt.Sprintf("%q", c.S3.SecretAccessKey),
		"slog":   logged.String(),
		"flag":   fs.Lookup("storage.s3.secret-access-key").Value.String(),
		"error":  fmt.Sprint(c.Validate()),
	} {
		if strings.Contains(out, key) {
			t.Errorf("%s output contains the secret: %s", what, out)
		}
	}
	if !strings.Contains(string(y), "secret_access_key: <secret>") {
		t.Errorf("YAML does not show that a secret is set:\n%s", y)
	}
	if c.S3.SecretAccessKey.Reveal() != key {
		t.Errorf("Reveal() = %q", c.S3.SecretAccessKey.Reveal())
	}
	// An unset secret prints empty, so /config tells set from unset.
	y, _ = config.YAML(&Config{})
	if !strings.Contains(string(y), `secret_access_key: ""`) {
		t.Errorf("unset secret in YAML:\n%s", y)
	}
}

func TestSecretReadsFromYAML(t *testing.T) {
	var c Config
	if err := config.DecodeYAML([]byte("backend: s3\ns3:\n  secret_access_key: abc\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.S3.SecretAccessKey.Reveal() != "abc" {
		t.Errorf("secret = %q", c.S3.SecretAccessKey.Reveal())
	}
}
