package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lokilab/lokilab/pkg/kafka"
	"github.com/lokilab/lokilab/pkg/netcut"
	"github.com/lokilab/lokilab/pkg/ring"
	"github.com/lokilab/lokilab/pkg/server"
)

// The lab's fault endpoints for processes started on their own (`lokilab
// run -processes` children, or by hand). A fault matrix or a scenario
// that breaks one process from outside can signal it (kill, stop) and
// reach its object-store faults over its HTTP port, but two faults live
// inside a process where nothing outside can reach them: the embedded
// broker's kfake controls and an ingester's connections to its peers.
// With LabFaultsEnv set in its environment a process serves those:
//
//   - the broker (`lokilab kafka`), on a loopback port of its own whose
//     address it writes to <broker data dir>/lab-faults.addr:
//     PUT/DELETE/GET kafka.FaultPath (produce errors, stalls);
//   - an ingester (`lokilab ingester`), on its HTTP port:
//     POST/DELETE/GET netcut.Path, which cuts it off its peers (its Kafka
//     connections, its memberlist gossip, the querier's requests) and
//     heals it.
//
// Why an environment variable and not a flag: `lokilab run -processes`
// writes each child's configuration from its own, and every child inherits
// its environment; one variable set where the lab starts reaches every
// process without a configuration field that production would carry. Off
// (unset) nothing is served and nothing is wrapped.

// LabFaultsEnv turns the lab's fault endpoints on in the processes that
// inherit it when set to "1".
const LabFaultsEnv = "LOKILAB_LAB_FAULTS"

// LabFaultsAddrFile is the file in the broker's data directory holding its
// fault endpoint's address (host:port).
const LabFaultsAddrFile = "lab-faults.addr"

// BrokerLabFaultsURL is the URL of the fault endpoint of the broker whose
// data directory is dataDir, as the broker wrote it when it started (each
// restart writes a new one, so callers read it for every request).
func BrokerLabFaultsURL(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, LabFaultsAddrFile))
	if err != nil {
		return "", fmt.Errorf("the broker's fault endpoint (is %s=1 in the lab's environment?): %w", LabFaultsEnv, err)
	}
	return "http://" + strings.TrimSpace(string(b)) + kafka.FaultPath, nil
}

// labFaultsOn reports whether this process was started with the lab's
// faults on.
func labFaultsOn() bool { return os.Getenv(LabFaultsEnv) == "1" }

// serveBrokerLabFaults serves the broker's fault endpoint when the lab's
// faults are on; the returned function stops it. Off, it does nothing.
func serveBrokerLabFaults(cfg BrokerProcessConfig, b *kafka.Broker, logger *slog.Logger) (stop func(), err error) {
	if !labFaultsOn() {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kafka lab faults: %w", err)
	}
	addr := ln.Addr().String()
	if cfg.Broker.DataDir != "" {
		if err := os.WriteFile(filepath.Join(cfg.Broker.DataDir, LabFaultsAddrFile), []byte(addr+"\n"), 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("kafka lab faults: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.Handle(kafka.FaultPath, kafka.NewFaultInjector(b).Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("kafka lab faults endpoint failed", "err", err)
		}
	}()
	logger.Warn("lab faults on: the broker takes injected faults", "endpoint", "http://"+addr+kafka.FaultPath, "env", LabFaultsEnv)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// enableLabNetcut gives an ingester process its network cut when the
// lab's faults are on, served on srv at netcut.Path.
func (c *IngesterConfig) enableLabNetcut(srv *server.Server, logger *slog.Logger) {
	if !labFaultsOn() {
		return
	}
	c.netcut = netcut.New()
	srv.Handle(netcut.Path, c.netcut.AdminHandler())
	logger.Warn("lab faults on: this ingester can be cut off its peers", "endpoint", "http://"+srv.Addr()+netcut.Path, "env", LabFaultsEnv)
}

// labKafkaOpts are the ingester's Kafka client options for its cut: a
// dialer that fails while cut.
func (c *IngesterConfig) labKafkaOpts() []kgo.Opt {
	if c.netcut == nil {
		return nil
	}
	return []kgo.Opt{kgo.Dialer(c.netcut.Dialer(&net.Dialer{Timeout: c.Kafka.DialTimeout}))}
}

// labRingOpts are the ingester's ring options for its cut: gossip through
// the cut's transport.
func (c *IngesterConfig) labRingOpts() []ring.Option {
	if c.netcut == nil {
		return nil
	}
	return []ring.Option{ring.WithTransportWrapper(c.netcut.Transport)}
}

// peerHandler wraps a handler peers call (the querier's) with the cut.
func (c *IngesterConfig) peerHandler(h http.Handler) http.Handler {
	if c.netcut == nil {
		return h
	}
	return c.netcut.Handler(h)
}
