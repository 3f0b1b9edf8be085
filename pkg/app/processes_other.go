//go:build !linux

package app

import (
	"os"
	"syscall"
)

// childProcAttr sets nothing outside Linux: children share the terminal's
// process group, so Ctrl-C reaches them all at once (they still stop
// cleanly, just not in order), and without Linux's Pdeathsig the children
// of a supervisor killed with SIGKILL outlive it (pgrep lokilab finds
// them). processes_linux.go has both.
func childProcAttr() *syscall.SysProcAttr { return nil }

// removeCgroupDir removes a directory standing for a memory cgroup; there
// are no cgroups outside Linux, only a test's fake root.
func removeCgroupDir(dir string) error { return os.RemoveAll(dir) }
