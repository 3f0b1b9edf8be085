package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// DialContext opens a connection from inside the namespace, as the process
// in it would. To the namespace's own address (Addr) it is the side door a
// cut does not close: the packets stay on the namespace's loopback and
// never cross the pair — the operator's path to a partitioned process (a
// supervisor's readiness probe, a scrape of its /metrics), as a node agent
// reaches its pods. To anything outside, it crosses the pair like the
// process's own dials, cut or not.
func (ns *Namespace) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: dial %s from inside %s: %w", addr, ns.Name, err)
	}
	return c, nil
}

// listen listens inside the namespace (tests stand for a process in it).
func (ns *Namespace) listen(network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// do runs f inside the namespace. A socket belongs to the network
// namespace of the thread that creates it, and stays there whatever thread
// uses it later; so f runs on a goroutine locked to its OS thread, which
// enters the namespace (setns), runs f (which must create its sockets
// itself, not on goroutines it starts), and returns to its own namespace.
// If it cannot return, the thread stays locked and Go ends it with the
// goroutine rather than let it run other goroutines in the wrong
// namespace.
func (ns *Namespace) do(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err, back := doIn(nsPath(ns.Name), f)
		if back {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// doIn runs f inside the namespace at path on the calling, locked thread;
// back reports whether the thread is in its own namespace again.
func doIn(path string, f func() error) (err error, back bool) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err, true
	}
	defer self.Close()
	target, err := os.Open(path)
	if err != nil {
		return err, true
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering %s: %w", path, err), true
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return errors.Join(ferr, fmt.Errorf("returning from %s: %w", path, err)), false
	}
	return ferr, true
}

// pidAlive reports whether a process with pid exists (signal 0 reaches
// it, or it exists but is not ours to signal).
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
