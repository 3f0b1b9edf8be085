package app

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/pkg/server"
)

// The gateway is the front door of `lokilab run -processes`: one address,
// 127.0.0.1:3100 by default, that speaks the whole Loki API although no
// single process behind it does. Pushes go to the distributor, queries to
// the querier, the ring pages to the distributor's ring node. It is the
// part a Loki deployment in microservices mode puts in front of its
// components (an nginx there), here a reverse proxy in the supervisor:
// clients, Grafana and the lab's own tools keep one URL whichever way the
// lab runs, and each component keeps its own port for its /metrics,
// /ready and /config.
//
// The gateway routes by path only and holds no state: a request to a
// process that is down (killed, restarting) gets a 502 naming it.

// gatewayRoutes maps URL patterns (net/http ServeMux syntax) to the process
// that serves them. The longest pattern wins, so the push route takes
// precedence over the query API's prefix.
var gatewayRoutes = []struct{ pattern, process string }{
	{"/loki/api/v1/push", procDistributor},
	{"/loki/api/v1/", procQuerier}, // query, query_range, labels, label/…/values, series, index/stats, tail
	{"/distributor/status", procDistributor},
	{"/ring", procDistributor},
	{"/memberlist", procDistributor},
}

// newGateway builds the gateway's HTTP server: pkg/server's endpoints
// (/metrics, /ready, /config, pprof: the supervisor's own) plus the
// proxied routes. backends maps process names to HTTP addresses.
func newGateway(sc server.Config, backends map[string]string, reg *prometheus.Registry, logger *slog.Logger, configView, defaults any) (*server.Server, error) {
	srv, err := server.New(sc, server.Options{Registerer: reg, Gatherer: reg, Logger: logger, Config: configView, DefaultConfig: defaults})
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := registerGateway(srv.Handle, backends); err != nil {
		return nil, err
	}
	return srv, nil
}

// registerGateway registers a reverse proxy per route on handle. backends
// maps process names to their HTTP addresses (host:port).
func registerGateway(handle func(pattern string, h http.Handler), backends map[string]string) error {
	transport := &http.Transport{
		// Loopback only: no proxy from the environment, short dials (a
		// refused connection means the process is down, not slow), and
		// enough idle connections that load through the gateway does not
		// open one per request.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	proxies := make(map[string]http.Handler)
	for _, r := range gatewayRoutes {
		addr, ok := backends[r.process]
		if !ok {
			return fmt.Errorf("gateway: no address for %s", r.process)
		}
		p, ok := proxies[r.process]
		if !ok {
			p = newProxy(r.process, addr, transport)
			proxies[r.process] = p
		}
		handle(r.pattern, p)
	}
	return nil
}

// newProxy forwards requests to one process, websockets (/tail) included.
func newProxy(process, addr string, transport http.RoundTripper) http.Handler {
	target := &url.URL{Scheme: "http", Host: addr}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, fmt.Sprintf("gateway: %s at %s did not answer %s: %v (down or restarting? see /processes)",
				process, addr, r.URL.Path, err), http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The process behind enforces its own write timeout; the gateway's
		// would cut a slow answer (a long query, a push waiting for Kafka)
		// before the process's 5xx could reach the client. (A websocket,
		// /tail, needs nothing: hijacking the connection clears its
		// deadlines.)
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		rp.ServeHTTP(w, r)
	})
}

// dialAddr is where a client on this machine reaches a listener bound to
// host:port: an unspecified host (0.0.0.0, ::) is reached on loopback.
func dialAddr(host string, port int) string {
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(port))
}
