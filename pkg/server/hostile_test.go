package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestOversizedHeadersAre431: a request whose headers pass
// MaxHeaderBytes is refused by the HTTP server itself (431) before any
// handler or tenant code sees it, and the server keeps serving.
func TestOversizedHeadersAre431(t *testing.T) {
	_, _, url := startServer(t, Options{}, nil)
	addr := strings.TrimPrefix(url, "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// 2 MiB of headers, written while the server may already answer.
	go func() {
		w := bufio.NewWriter(conn)
		_, _ = w.WriteString("GET /ready HTTP/1.1\r\nHost: x\r\nX-Scope-OrgID: " + strings.Repeat("a", 2<<20) + "\r\n\r\n")
		_ = w.Flush()
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
	if code, _ := get(t, url+"/ready"); code != http.StatusOK && code != http.StatusServiceUnavailable {
		t.Errorf("afterwards /ready answered %d", code)
	}
}

// TestSlowHeadersAreCutOff: a client that opens a connection and sends
// its headers a byte at a time (slowloris) is disconnected after the
// header read timeout instead of holding a connection and a goroutine
// forever.
func TestSlowHeadersAreCutOff(t *testing.T) {
	cfg := testConfig()
	cfg.ReadTimeout = 300 * time.Millisecond // header timeout: min(read timeout, 10s)
	_, _, url := startServerConfig(t, cfg, Options{}, nil)
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /ready HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	// Keep trickling; the server must close the connection well before
	// this loop's own limit.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if _, err := io.WriteString(conn, "X"); err != nil {
			return // closed by the server
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
		var b [1]byte
		var ne net.Error
		if _, err := conn.Read(b[:]); err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return // closed (EOF, reset) or answered and closed
		}
	}
	t.Fatal("a connection trickling its headers was still open after 10s; the header timeout is 300ms")
}
