package app

import (
	"flag"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lokilab/lokilab/pkg/config"
)

func parse(t *testing.T, cfg config.Registerer, args ...string) error {
	t.Helper()
	return config.Parse(flag.NewFlagSet("test", flag.ContinueOnError), args, cfg)
}

func TestZeroConfigIsValid(t *testing.T) {
	var d DistributorConfig
	if err := parse(t, &d); err != nil {
		t.Fatal(err)
	}
	if err := d.Validate(); err != nil {
		t.Fatalf("the distributor's defaults do not validate: %v", err)
	}
	var a AllInOneConfig
	if err := parse(t, &a); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("lokilab run's defaults do not validate: %v", err)
	}
	if a.EmbeddedKafka.DataDir != filepath.Join("lokilab-data", "kafka") {
		t.Fatalf("broker data dir %q, want it under -data.dir", a.EmbeddedKafka.DataDir)
	}
}

func TestBrokerDataDirFollowsDataDir(t *testing.T) {
	var a AllInOneConfig
	if err := parse(t, &a, "-data.dir", "/tmp/x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.EmbeddedKafka.DataDir != "/tmp/x/kafka" {
		t.Fatalf("broker data dir %q", a.EmbeddedKafka.DataDir)
	}
	var b AllInOneConfig
	if err := parse(t, &b, "-data.dir", "/tmp/x", "-kafka.broker.data-dir", "/elsewhere"); err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(); err != nil || b.EmbeddedKafka.DataDir != "/elsewhere" {
		t.Fatalf("explicit broker data dir not kept: %q %v", b.EmbeddedKafka.DataDir, err)
	}
}

func TestWriteTimeoutMustFitTheServerTimeout(t *testing.T) {
	var d DistributorConfig
	if err := parse(t, &d, "-kafka.write-timeout", "40s"); err != nil {
		t.Fatal(err)
	}
	err := d.Validate()
	if err == nil || !strings.Contains(err.Error(), "must exceed kafka_config.write_timeout") {
		t.Fatalf("Validate = %v", err)
	}
	d.Server.WriteTimeout = time.Minute
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestYAMLLayoutIsLokis(t *testing.T) {
	var d DistributorConfig
	if err := parse(t, &d); err != nil {
		t.Fatal(err)
	}
	out, err := config.YAML(&d)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"auth_enabled:", "server:", "distributor:", "kafka_config:", "limits_config:", "runtime_config:",
		"ingestion_rate_mb: 4", "max_line_size: 256KB", "reject_old_samples_max_age: 1w", "http_listen_port: 3100"} {
		if !strings.Contains(string(out), key) {
			t.Errorf("config YAML lacks %q", key)
		}
	}
	// What /config prints is a valid config file.
	var back DistributorConfig
	if err := config.DecodeYAML(out, &back); err != nil {
		t.Fatalf("the printed config does not load back: %v", err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Fatalf("the printed config loads back different:\n%+v\n%+v", back, d)
	}
}
