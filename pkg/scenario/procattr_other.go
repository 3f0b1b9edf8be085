//go:build !linux

package scenario

import "syscall"

// supervisorProcAttr sets nothing outside Linux, which has no Pdeathsig:
// a killed scenario may leave `lokilab run -processes` running there.
func supervisorProcAttr() *syscall.SysProcAttr { return nil }
