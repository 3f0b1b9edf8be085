//go:build !linux

package netns

import (
	"context"
	"errors"
	"net"
)

var errNotLinux = errors.New("netns: network namespaces are a Linux feature")

// DialContext fails outside Linux, where there are no namespaces to enter
// (Check says so first).
func (ns *Namespace) DialContext(context.Context, string, string) (net.Conn, error) {
	return nil, errNotLinux
}

func (ns *Namespace) listen(string, string) (net.Listener, error) { return nil, errNotLinux }

// pidAlive: without namespaces there is nothing to sweep; every owner
// counts as alive.
func pidAlive(int) bool { return true }
