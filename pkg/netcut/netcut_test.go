package netcut

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"go.uber.org/goleak"
)

// echoServer accepts connections and echoes what they send, until the
// test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// TestMain checks that no test leaves a goroutine behind: the transport's
// forwarders end with Shutdown.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDialerCutClosesConnectionsAndRefusesDials(t *testing.T) {
	addr := echoServer(t)
	s := New()
	dial := s.Dialer(&net.Dialer{Timeout: time.Second})
	c, err := dial(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("write before the cut: %v", err)
	}
	if got := s.Status().OpenConns; got != 1 {
		t.Fatalf("open conns %d, want 1", got)
	}

	s.Cut()
	if _, err := c.Write([]byte("y")); !errors.Is(err, ErrCut) {
		t.Errorf("write on a cut connection: %v, want ErrCut", err)
	}
	if _, err := dial(context.Background(), "tcp", addr); !errors.Is(err, ErrCut) {
		t.Errorf("dial while cut: %v, want ErrCut", err)
	}
	if st := s.Status(); !st.Cut || st.Cuts != 1 || st.OpenConns != 0 || st.Since.IsZero() {
		t.Errorf("status while cut: %+v", st)
	}

	s.Heal()
	c2, err := dial(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("dial after the heal: %v", err)
	}
	defer c2.Close()
	if _, err := c2.Write([]byte("z")); err != nil {
		t.Fatalf("write after the heal: %v", err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(c2, buf); err != nil || buf[0] != 'z' {
		t.Fatalf("echo after the heal: %q, %v", buf, err)
	}
	if st := s.Status(); st.Cut || !st.Since.IsZero() {
		t.Errorf("status after the heal: %+v", st)
	}
}

func TestHandlerResetsConnectionsWhileCut(t *testing.T) {
	s := New()
	srv := httptest.NewServer(s.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() (string, error) {
		resp, err := client.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if body, err := get(); err != nil || body != "ok" {
		t.Fatalf("healed: %q, %v", body, err)
	}
	s.Cut()
	if body, err := get(); err == nil {
		t.Fatalf("cut: answered %q, want the connection reset", body)
	}
	s.Heal()
	if body, err := get(); err != nil || body != "ok" {
		t.Fatalf("healed again: %q, %v", body, err)
	}
}

func TestAdminHandler(t *testing.T) {
	s := New()
	h := s.AdminHandler()
	for _, tc := range []struct {
		method string
		code   int
		cut    bool
	}{
		{http.MethodGet, http.StatusOK, false},
		{http.MethodPost, http.StatusOK, true},
		{http.MethodGet, http.StatusOK, true},
		{http.MethodDelete, http.StatusOK, false},
		{http.MethodPut, http.StatusMethodNotAllowed, false},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, Path, nil))
		if w.Code != tc.code || s.IsCut() != tc.cut {
			t.Errorf("%s: %d, cut %v; want %d, cut %v", tc.method, w.Code, s.IsCut(), tc.code, tc.cut)
		}
	}
}

// TestTransportDropsGossipWhileCut runs two memberlist nodes, one behind
// the cut: joined while healed, the other node declares it dead while it
// is cut, and it is alive to the other again after the heal.
func TestTransportDropsGossipWhileCut(t *testing.T) {
	s := New()
	node := func(name string, wrap bool) *memberlist.Memberlist {
		c := memberlist.DefaultLocalConfig()
		c.Name, c.BindAddr, c.BindPort, c.AdvertisePort = name, "127.0.0.1", 0, 0
		c.LogOutput = io.Discard
		c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = 100*time.Millisecond, 50*time.Millisecond, 1
		c.GossipInterval, c.PushPullInterval = 50*time.Millisecond, 0
		if wrap {
			nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
			if err != nil {
				t.Fatal(err)
			}
			c.BindPort = nt.GetAutoBindPort()
			c.AdvertisePort = c.BindPort
			c.Transport = s.Transport(nt)
		}
		m, err := memberlist.Create(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Shutdown() })
		return m
	}
	a, b := node("a", false), node("b", true)
	if _, err := b.Join([]string{a.LocalNode().Address()}); err != nil {
		t.Fatal(err)
	}
	alive := func(m *memberlist.Memberlist, name string) bool {
		for _, n := range m.Members() {
			if n.Name == name {
				return true
			}
		}
		return false
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s", what)
			}
		}
	}
	waitFor("a sees b", func() bool { return alive(a, "b") })
	s.Cut()
	waitFor("a declares the cut b dead", func() bool { return !alive(a, "b") })
	s.Heal()
	if _, err := b.Join([]string{a.LocalNode().Address()}); err != nil {
		t.Fatalf("rejoin after the heal: %v", err)
	}
	waitFor("a sees b again", func() bool { return alive(a, "b") })
}

// Shutdown returns even when packets arrived that nobody read: memberlist's
// transport waits in Shutdown for its listener, which is blocked handing a
// packet over. Stopping the forwarders first hung ingesters at SIGTERM in
// processes mode (the lab's fault endpoints are on there).
func TestTransportShutdownWithUnreadPackets(t *testing.T) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0})
	if err != nil {
		t.Fatal(err)
	}
	tr := New().Transport(nt)
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(nt.GetAutoBindPort())))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for range 3 { // one held by the forwarder, one by the listener, one queued
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // let them arrive; nobody reads PacketCh
	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return within 10s with unread packets")
	}
}
