package app

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lokilab/lokilab/pkg/config"
)

// This file gives a supervised process a real memory limit: a cgroup v1
// memory group of its own, /sys/fs/cgroup/memory/lokilab-<supervisor
// pid>-<process>, whose memory.limit_in_bytes the kernel enforces by
// killing the process (SIGKILL from the OOM killer) when it cannot reclaim
// enough, the way a container runtime enforces a pod's limit. It is
// written by hand rather than with a cgroup library because the mechanism
// is the lesson and it is five files: limit_in_bytes, memsw.limit_in_bytes,
// swappiness, cgroup.procs and oom_control.
//
// GOMEMLIMIT is not that: it is a soft target for Go's garbage collector,
// which collects harder as the heap approaches it and lets the heap grow
// past it when the live data needs the room. Nothing is killed; a process
// over it only burns CPU in GC. It is offered as a fallback where cgroups
// are not writable (-processes.memory-limit-mode=gomemlimit), named as what
// it is.

// DefaultCgroupMemoryRoot is where cgroup v1's memory controller is mounted
// on most Linux machines.
const DefaultCgroupMemoryRoot = "/sys/fs/cgroup/memory"

// Memory limit modes.
const (
	// MemoryLimitCgroup enforces a limit with a cgroup v1 memory group: a
	// real OOM kill. Default.
	MemoryLimitCgroup = "cgroup"
	// MemoryLimitGOMEMLIMIT only sets the child's GOMEMLIMIT: a soft GC
	// target, no kill.
	MemoryLimitGOMEMLIMIT = "gomemlimit"
)

// MemoryLimits maps process names (ingester-2, distributor, …) to a memory
// limit in bytes. As a flag it is repeatable and takes comma lists:
// -processes.memory-limit=ingester-2=256MiB,ingester-3=256MiB; the name
// "ingesters" stands for every ingester.
type MemoryLimits map[string]config.ByteSize

// String prints the limits sorted by name, as the flag reads them.
func (m MemoryLimits) String() string {
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, n+"="+m[n].String())
	}
	return strings.Join(parts, ",")
}

// Set adds name=size pairs, comma-separated.
func (m *MemoryLimits) Set(s string) error {
	if *m == nil {
		*m = MemoryLimits{}
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, size, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return fmt.Errorf("memory limit %q: want <process>=<size>, e.g. ingester-2=256MiB", part)
		}
		b, err := config.ParseByteSize(size)
		if err != nil {
			return fmt.Errorf("memory limit %q: %w", part, err)
		}
		if b < 16<<20 {
			return fmt.Errorf("memory limit %q: under 16MiB a Go process cannot even start", part)
		}
		(*m)[name] = b
	}
	return nil
}

// For returns the limit of the process named name, 0 for none.
func (m MemoryLimits) For(name string) int64 {
	if b, ok := m[name]; ok {
		return int64(b)
	}
	if strings.HasPrefix(name, "ingester-") {
		return int64(m["ingesters"])
	}
	return 0
}

// memCgroup is one process's cgroup v1 memory group.
type memCgroup struct {
	dir   string
	limit int64
	// oomBase is the oom_kill count already accounted for: a rise past it
	// at a process's exit is an OOM kill.
	oomBase uint64
	// failBase is memory.failcnt at the last start: on kernels without an
	// oom_kill line, a SIGKILL while it rose is taken for an OOM kill.
	failBase uint64
}

// cgroupName is the group of process name under a supervisor: unique per
// supervisor, so two labs on one machine do not share one.
func cgroupName(supervisorPID int, name string) string {
	return fmt.Sprintf("lokilab-%d-%s", supervisorPID, name)
}

// checkCgroupRoot says whether root is a writable cgroup v1 memory
// hierarchy, and if not, why, in words a user can act on.
func checkCgroupRoot(root string) error {
	if _, err := os.Stat(filepath.Join(root, "memory.limit_in_bytes")); err != nil {
		return fmt.Errorf("-processes.memory-limit needs cgroup v1's memory controller at %s (it has no memory.limit_in_bytes: %v); on a cgroup v2 machine or in a container without it, use -processes.memory-limit-mode=gomemlimit, which only sets GOMEMLIMIT, a soft GC target that never kills", root, err)
	}
	probe := filepath.Join(root, fmt.Sprintf("lokilab-probe-%d", os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return fmt.Errorf("-processes.memory-limit cannot create a memory cgroup under %s (%v): run as root, or use -processes.memory-limit-mode=gomemlimit (a soft GC target, not a kill)", root, err)
	}
	return os.Remove(probe)
}

// newMemCgroup creates (or reuses) the group dir under root and sets its
// limit. Swap is taken out of the picture: memsw.limit_in_bytes, where the
// kernel has it, gets the same value (memory plus swap may not exceed the
// limit), and swappiness is 0; otherwise a process over its limit would
// swap instead of being killed, slowly.
func newMemCgroup(root, name string, limit int64) (*memCgroup, error) {
	dir := filepath.Join(root, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("creating memory cgroup %s: %w", dir, err)
	}
	g := &memCgroup{dir: dir}
	// Charges made before a process moved in go with it (v1 only; the
	// child allocates little before the supervisor moves it, but it is
	// counted where it belongs).
	_ = g.write("memory.move_charge_at_immigrate", "1")
	_ = g.write("memory.swappiness", "0")
	if err := g.setLimit(limit); err != nil {
		_ = os.Remove(dir)
		return nil, err
	}
	g.oomBase, _ = g.oomKills()
	g.failBase, _ = g.readUint("memory.failcnt")
	return g, nil
}

func (g *memCgroup) write(file, value string) error {
	return os.WriteFile(filepath.Join(g.dir, file), []byte(value), 0o644)
}

func (g *memCgroup) readUint(file string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
}

// setLimit writes the limit, memory and memory+swap. Order matters to the
// kernel: memsw may not go below memory, so raising writes memory first
// after memsw, lowering the other way round; trying both orders is simpler
// than remembering the old value.
func (g *memCgroup) setLimit(limit int64) error {
	v := strconv.FormatInt(limit, 10)
	memsw := filepath.Join(g.dir, "memory.memsw.limit_in_bytes")
	_, statErr := os.Stat(memsw)
	hasMemsw := statErr == nil
	err := g.write("memory.limit_in_bytes", v)
	if hasMemsw {
		if err2 := g.write("memory.memsw.limit_in_bytes", v); err2 != nil {
			return fmt.Errorf("memory cgroup %s: memsw.limit_in_bytes=%s: %w", g.dir, v, err2)
		}
		if err != nil { // memory was above the old memsw: now it fits
			err = g.write("memory.limit_in_bytes", v)
		}
	}
	if err != nil {
		return fmt.Errorf("memory cgroup %s: limit_in_bytes=%s: %w", g.dir, v, err)
	}
	g.limit = limit
	return nil
}

// addPID moves a process into the group.
func (g *memCgroup) addPID(pid int) error {
	if err := g.write("cgroup.procs", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("moving pid %d into memory cgroup %s: %w", pid, g.dir, err)
	}
	g.failBase, _ = g.readUint("memory.failcnt")
	return nil
}

// oomKills reads the group's OOM kill count: the oom_kill line of
// memory.oom_control (Linux 4.13 and later). errNoOOMCount on older
// kernels.
func (g *memCgroup) oomKills() (uint64, error) {
	f, err := os.Open(filepath.Join(g.dir, "memory.oom_control"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "oom_kill "); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, errNoOOMCount
}

var errNoOOMCount = errors.New("memory.oom_control has no oom_kill count (Linux < 4.13)")

// oomKilled says whether the process that just exited with killedBySignal9
// was killed by this group's OOM killer, and accounts for it.
func (g *memCgroup) oomKilled(killedBySignal9 bool) bool {
	n, err := g.oomKills()
	if err == nil {
		killed := n > g.oomBase
		g.oomBase = n
		return killed
	}
	// No counter: a SIGKILL while the limit was being hit.
	fail, _ := g.readUint("memory.failcnt")
	rose := fail > g.failBase
	g.failBase = fail
	return killedBySignal9 && rose
}

// usage is the group's current and peak charge, in bytes.
func (g *memCgroup) usage() (cur, peak uint64) {
	cur, _ = g.readUint("memory.usage_in_bytes")
	peak, _ = g.readUint("memory.max_usage_in_bytes")
	return cur, peak
}

// remove deletes the group. A group can only go once empty, and a killed
// process leaves it a moment after its parent saw it exit: retry briefly.
func (g *memCgroup) remove(rmdir func(string) error) error {
	var err error
	for range 20 {
		if err = rmdir(g.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("removing memory cgroup %s: %w", g.dir, err)
}

// memoryCollector exports each limited process's cgroup figures at scrape
// time, so a plot of usage against the limit needs no other source.
type memoryCollector struct {
	s                  *supervisor
	usage, peak, limit *prometheus.Desc
}

func newMemoryCollector(s *supervisor) *memoryCollector {
	return &memoryCollector{s: s,
		usage: prometheus.NewDesc("lokilab_supervisor_memory_usage_bytes", "Memory charged to the process's cgroup (memory.usage_in_bytes: RSS plus page cache it caused).", []string{"process"}, nil),
		peak:  prometheus.NewDesc("lokilab_supervisor_memory_max_usage_bytes", "Peak memory charged to the process's cgroup since it was created (memory.max_usage_in_bytes).", []string{"process"}, nil),
		limit: prometheus.NewDesc("lokilab_supervisor_memory_limit_bytes", "The process's memory limit (memory.limit_in_bytes of its cgroup, or its GOMEMLIMIT in gomemlimit mode).", []string{"process"}, nil),
	}
}

func (m *memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.usage
	ch <- m.peak
	ch <- m.limit
}

func (m *memoryCollector) Collect(ch chan<- prometheus.Metric) {
	m.s.mu.Lock()
	kids := slices.Clone(m.s.kids)
	m.s.mu.Unlock()
	for _, c := range kids {
		c.mu.Lock()
		g, limit := c.cg, c.memLimit
		c.mu.Unlock()
		if g != nil { // the file, not the start value: a scenario may change it at runtime
			if v, err := g.readUint("memory.limit_in_bytes"); err == nil {
				limit = int64(v)
			}
		}
		if limit > 0 {
			ch <- prometheus.MustNewConstMetric(m.limit, prometheus.GaugeValue, float64(limit), c.name)
		}
		if g != nil {
			cur, peak := g.usage()
			ch <- prometheus.MustNewConstMetric(m.usage, prometheus.GaugeValue, float64(cur), c.name)
			ch <- prometheus.MustNewConstMetric(m.peak, prometheus.GaugeValue, float64(peak), c.name)
		}
	}
}

// SetCgroupMemoryLimit changes the limit of the memory cgroup at dir (as
// /processes reports it) while its process runs: lowered below its usage,
// the kernel reclaims what it can and OOM-kills the process if that is not
// enough.
func SetCgroupMemoryLimit(dir string, limit int64) error {
	return (&memCgroup{dir: dir}).setLimit(limit)
}
