package app

import (
	"os"
	"syscall"
)

// childProcAttr puts a child in a process group of its own, so that Ctrl-C
// in the terminal (SIGINT to the foreground group) reaches only the
// supervisor, which stops the children in order; and asks Linux to SIGKILL
// the child if the supervisor dies (Pdeathsig), so that a supervisor killed
// with SIGKILL leaves no orphans holding the lab's ports. SIGKILL rather
// than SIGTERM: the supervisor dying is a crash, the children crash with
// it, and Kafka replays what they had not flushed; a graceful stop could
// outlast a restart of the supervisor, which would then find its ports
// taken. See startSpawner for the thread Pdeathsig is tied to.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// removeCgroupDir removes a memory cgroup: rmdir on cgroupfs, whose
// control files are not files to delete; a plain directory (a test's fake
// root) is removed with its files.
func removeCgroupDir(dir string) error {
	err := os.Remove(dir)
	if err == nil || os.IsNotExist(err) {
		return err
	}
	var st syscall.Statfs_t
	if serr := syscall.Statfs(dir, &st); serr == nil && st.Type != cgroupSuperMagic {
		return os.RemoveAll(dir)
	}
	return err
}

// cgroupSuperMagic is cgroup v1's filesystem type (CGROUP_SUPER_MAGIC).
const cgroupSuperMagic = 0x27e0eb
