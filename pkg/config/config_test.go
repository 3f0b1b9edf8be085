package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Name    string        `yaml:"name"`
	Timeout time.Duration `yaml:"timeout"`
	Size    ByteSize      `yaml:"size"`
	Nested  struct {
		Count int `yaml:"count"`
	} `yaml:"nested"`
}

func (c *testConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "name", "default-name", "")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Second, "")
	c.Size = 256 << 10
	fs.Var(&c.Size, "size", "")
	fs.IntVar(&c.Nested.Count, "nested.count", 3, "")
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePrecedence(t *testing.T) {
	file := writeFile(t, "name: from-file\nnested:\n  count: 7\nsize: 1MB\n")
	tests := []struct {
		name      string
		args      []string
		wantName  string
		wantCount int
		wantSize  ByteSize
		wantTime  time.Duration
	}{
		{"defaults only", nil, "default-name", 3, 256 << 10, 5 * time.Second},
		{"file overrides defaults", []string{"-config.file", file}, "from-file", 7, 1 << 20, 5 * time.Second},
		{"flag overrides file", []string{"-config.file", file, "-name", "from-flag"}, "from-flag", 7, 1 << 20, 5 * time.Second},
		{"flag before config.file still wins", []string{"-nested.count", "9", "-config.file", file}, "from-file", 9, 1 << 20, 5 * time.Second},
		{"flag without file", []string{"-timeout", "1m"}, "default-name", 3, 256 << 10, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c testConfig
			if err := Parse(flag.NewFlagSet("t", flag.ContinueOnError), tt.args, &c); err != nil {
				t.Fatal(err)
			}
			if c.Name != tt.wantName || c.Nested.Count != tt.wantCount || c.Size != tt.wantSize || c.Timeout != tt.wantTime {
				t.Errorf("got name=%q count=%d size=%d timeout=%s; want %q %d %d %s",
					c.Name, c.Nested.Count, c.Size, c.Timeout, tt.wantName, tt.wantCount, tt.wantSize, tt.wantTime)
			}
		})
	}
}

func TestParseRejectsUnknownFields(t *testing.T) {
	file := writeFile(t, "name: x\nnmae: typo\n")
	var c testConfig
	err := Parse(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-config.file", file}, &c)
	if err == nil || !strings.Contains(err.Error(), "nmae") {
		t.Fatalf("want an error naming the unknown field, got %v", err)
	}
}

func TestParseExpandEnv(t *testing.T) {
	t.Setenv("LOKILAB_TEST_NAME", "from-env")
	file := writeFile(t, "name: ${LOKILAB_TEST_NAME}\n")
	var c testConfig
	if err := Parse(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-config.file", file, "-config.expand-env"}, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "from-env" {
		t.Fatalf("name = %q, want from-env", c.Name)
	}
}

func TestParseEmptyFile(t *testing.T) {
	var c testConfig
	if err := Parse(flag.NewFlagSet("t", flag.ContinueOnError), []string{"-config.file", writeFile(t, "")}, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "default-name" {
		t.Fatalf("an empty file changed the defaults: %q", c.Name)
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr bool
	}{
		{"0", 0, false},
		{"1024", 1024, false},
		{"256KB", 262144, false}, // Loki's max_line_size default
		{"256kb", 262144, false},
		{"64KiB", 65536, false},
		{"1.5MB", 1572864, false},
		{"100MB", 100 << 20, false},
		{" 2 GB ", 2 << 30, false},
		{"10B", 10, false},
		{"1T", 1 << 40, false},
		{"", 0, true},
		{"KB", 0, true},
		{"-1KB", 0, true},
		{"ten", 0, true},
		{"1e30TB", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseByteSize(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestByteSizeStringRoundTrips(t *testing.T) {
	for _, b := range []ByteSize{0, 1, 1000, 1024, 262144, 100 << 20, 1536 << 10, 1<<30 + 1} {
		s := b.String()
		back, err := ParseByteSize(s)
		if err != nil || back != b {
			t.Errorf("%d printed as %q parsed back as %d (%v)", b, s, back, err)
		}
	}
	if got := ByteSize(256 << 10).String(); got != "256KB" {
		t.Errorf("256KiB prints as %q, want 256KB", got)
	}
}

func TestYAMLRoundTrip(t *testing.T) {
	var in testConfig
	in.RegisterFlags(flag.NewFlagSet("t", flag.ContinueOnError))
	raw, err := YAML(&in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), "size: 256KB") || !strings.Contains(string(raw), "timeout: 5s") {
		t.Errorf("YAML does not print units people read:\n%s", raw)
	}
	var out testConfig
	if err := DecodeYAML(raw, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Errorf("round trip changed the config: %+v != %+v", out, in)
	}
}
