package server

import (
	"flag"
	"fmt"
	"time"

	"github.com/lokilab/lokilab/pkg/tracing"
)

// Config is the HTTP server and logging configuration every component shares.
type Config struct {
	// HTTPListenAddress is the interface to bind. Default 127.0.0.1: the lab
	// runs on a laptop and should not be reachable from the network unless
	// asked (containers set 0.0.0.0).
	HTTPListenAddress string `yaml:"http_listen_address"`
	// HTTPListenPort is the port to bind; 0 picks a free port (tests). Default
	// 3100, Loki's.
	HTTPListenPort int `yaml:"http_listen_port"`
	// ReadTimeout bounds reading a whole request, body included. Default
	// 30s: a push body of max_recv_msg_size must arrive within it; lowering
	// it frees connections held by slow clients sooner.
	ReadTimeout time.Duration `yaml:"http_server_read_timeout"`
	// WriteTimeout bounds handling plus writing a response. Default 30s. It
	// must exceed the distributor's Kafka write timeout, or a slow produce
	// would be cut off without its 5xx reaching the client.
	WriteTimeout time.Duration `yaml:"http_server_write_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration `yaml:"http_server_idle_timeout"`
	// GracefulShutdownTimeout is how long in-flight requests may take to
	// finish after SIGTERM before connections are closed. Default 30s.
	GracefulShutdownTimeout time.Duration `yaml:"graceful_shutdown_timeout"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `yaml:"log_level"`
	// LogFormat is logfmt (for people) or json (for log pipelines). Default
	// logfmt.
	LogFormat string `yaml:"log_format"`
	// Tracing switches OpenTelemetry spans on (OTLP export, the in-memory
	// recorder at /debug/traces); off by default. One provider serves the
	// whole process (pkg/tracing).
	Tracing tracing.Config `yaml:"tracing"`
}

// RegisterFlags registers the server flags with Loki's names.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTPListenAddress, "server.http-listen-address", "127.0.0.1", "HTTP server listen address.")
	fs.IntVar(&c.HTTPListenPort, "server.http-listen-port", 3100, "HTTP server listen port; 0 picks a free port.")
	fs.DurationVar(&c.ReadTimeout, "server.http-read-timeout", 30*time.Second, "Read timeout for an entire HTTP request, including the body.")
	fs.DurationVar(&c.WriteTimeout, "server.http-write-timeout", 30*time.Second, "Write timeout for HTTP responses; must exceed the slowest handler.")
	fs.DurationVar(&c.IdleTimeout, "server.http-idle-timeout", 120*time.Second, "Idle timeout for keep-alive connections.")
	fs.DurationVar(&c.GracefulShutdownTimeout, "server.graceful-shutdown-timeout", 30*time.Second, "How long in-flight requests may run after shutdown begins.")
	fs.StringVar(&c.LogLevel, "log.level", "info", "Log level: debug, info, warn, error.")
	fs.StringVar(&c.LogFormat, "log.format", "logfmt", "Log format: logfmt or json.")
	c.Tracing.RegisterFlags(fs)
}

// Validate reports a configuration the server cannot run with.
func (c *Config) Validate() error {
	if c.HTTPListenPort < 0 || c.HTTPListenPort > 65535 {
		return fmt.Errorf("server: http_listen_port %d out of range", c.HTTPListenPort)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if c.LogFormat != "logfmt" && c.LogFormat != "json" {
		return fmt.Errorf("server: log_format %q: want logfmt or json", c.LogFormat)
	}
	return c.Tracing.Validate()
}
