package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// runHealthcheck is `lokilab healthcheck URL`: one probe, exit status 0 when
// healthy. It exists for container health checks. The runtime image is FROM
// scratch, with no shell, curl or wget, so Docker's HEALTHCHECK and compose's
// healthcheck run the lokilab binary itself; a probe written in Go also
// works the same on every base image a user might pick instead.
//
// Three kinds of target:
//
//	http://host:port/ready   GET; healthy on a 2xx answer (lokilab's /ready
//	                         answers 503 with the reason until it is ready)
//	kafka://host:port        a Kafka metadata request: the broker answers the
//	                         protocol, not merely accepts connections
//	tcp://host:port          a TCP connect, for anything else
func runHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lokilab healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 3*time.Second, "Give up on the probe after this long.")
	quiet := fs.Bool("quiet", false, "Print nothing when healthy.")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: lokilab healthcheck [flags] URL\n\n"+
			"Probes URL once and exits 0 when it is healthy, for container health checks\n"+
			"in images without a shell. URL is http(s)://host:port/path (healthy on 2xx),\n"+
			"kafka://host:port (the broker answers a metadata request) or tcp://host:port.\n"+
			"Default http://127.0.0.1:3100/ready.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	target := "http://127.0.0.1:3100/ready"
	switch fs.NArg() {
	case 0:
	case 1:
		target = fs.Arg(0)
	default:
		fs.Usage()
		return errors.New("healthcheck takes one URL")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	msg, err := probe(ctx, target)
	if err != nil {
		return fmt.Errorf("unhealthy: %s: %w", target, err)
	}
	if !*quiet {
		fmt.Fprintf(stdout, "healthy: %s: %s\n", target, msg)
	}
	return nil
}

// probe checks target once and says what it saw.
func probe(ctx context.Context, target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", errors.New("no host:port in the URL")
	}
	switch u.Scheme {
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return "", err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		text := strings.TrimSpace(string(body))
		if resp.StatusCode/100 != 2 {
			return "", fmt.Errorf("%s: %s", resp.Status, text)
		}
		return resp.Status, nil
	case "tcp":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return "", err
		}
		conn.Close()
		return "connected", nil
	case "kafka":
		// A connect alone would pass while the broker is still starting;
		// a metadata answer means it speaks Kafka. Only the bootstrap
		// address is contacted, so this works before any topic exists.
		cl, err := kgo.NewClient(kgo.SeedBrokers(u.Host), kgo.DialTimeout(2*time.Second))
		if err != nil {
			return "", err
		}
		defer cl.Close()
		if err := cl.Ping(ctx); err != nil {
			return "", err
		}
		return "broker answered", nil
	default:
		return "", fmt.Errorf("scheme %q: want http, https, kafka or tcp", u.Scheme)
	}
}
