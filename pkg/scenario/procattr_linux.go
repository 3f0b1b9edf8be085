package scenario

import "syscall"

// supervisorProcAttr puts `lokilab run -processes` in a process group of
// its own (a Ctrl-C meant for `lokilab scenario` reaches only this
// process, which stops the system in order) and has Linux SIGKILL it if
// this process dies; its own children die with it in turn (pkg/app's
// Pdeathsig), so a crashed scenario leaves no processes holding ports or
// memory.
func supervisorProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
