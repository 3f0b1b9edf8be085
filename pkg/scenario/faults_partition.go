package scenario

import (
	"context"
	"fmt"
	"net/http"

	"github.com/lokilab/lokilab/pkg/app"
	"github.com/lokilab/lokilab/pkg/netcut"
)

// The network-cut hooks: a component cut off its peers while it keeps
// running (question 10). In processes mode each ingester serves its cut
// (pkg/netcut) on its HTTP port, because StartProcesses starts the lab
// with app.LabFaultsEnv; the in-process system's ingesters share one
// process and have no cut of their own.

const whyCutInProcess = "the in-process system's ingesters run in one process without a network cut each (pkg/netcut is wired into the ingester process, app.RunIngester); run the scenario in processes mode"

func (f inProcessFaults) CutOff(context.Context, string) error {
	return &NotBuiltError{"CutOff", whyCutInProcess}
}

func (f inProcessFaults) Heal(context.Context, string) error {
	return &NotBuiltError{"Heal", whyCutInProcess}
}

// cut sends method (POST cuts, DELETE heals) to the component's netcut
// endpoint. Only ingesters have one.
func (f processesFaults) cut(ctx context.Context, component, method string) error {
	p, err := f.sys.Process(ctx, component)
	if err != nil {
		return err
	}
	if p.PID == 0 || p.Addr == "" {
		return fmt.Errorf("%s is not running (state %s)", component, p.State)
	}
	err = f.sys.do(ctx, method, "http://"+p.Addr+netcut.Path, "", nil, http.StatusOK)
	if err != nil {
		return fmt.Errorf("%s's network cut (only ingesters have one, and only with %s=1): %w", component, app.LabFaultsEnv, err)
	}
	return nil
}

func (f processesFaults) CutOff(ctx context.Context, component string) error {
	return f.cut(ctx, component, http.MethodPost)
}

func (f processesFaults) Heal(ctx context.Context, component string) error {
	return f.cut(ctx, component, http.MethodDelete)
}

// netnsCut cuts (POST) or heals (DELETE) a process that runs in a network
// namespace of its own (app.ProcessesConfig.Netns), through the
// supervisor's /processes/{name}/partition: real packet loss on its veth
// pair (pkg/netns) rather than the in-process cut above.
func netnsCut(ctx context.Context, sys *System, component, method string) error {
	if !sys.InProcesses() {
		return &NotBuiltError{"netns cut", "only processes mode runs a process in a network namespace of its own"}
	}
	if err := sys.do(ctx, method, sys.API+app.ScaleRemovePath+component+app.PartitionPathSuffix, "", nil, http.StatusOK); err != nil {
		return fmt.Errorf("%s's network namespace cut (-processes.netns=%s): %w", component, component, err)
	}
	return nil
}

func (r recordingFaults) CutOff(ctx context.Context, component string) error {
	return r.record("CutOff", component, r.inner.CutOff(ctx, component))
}

func (r recordingFaults) Heal(ctx context.Context, component string) error {
	return r.record("Heal", component, r.inner.Heal(ctx, component))
}

// cutCapability describes the cut hooks for Capabilities.
func cutCapabilities(built bool) []Capability {
	if !built {
		return []Capability{{"CutOff", false, whyCutInProcess}, {"Heal", false, whyCutInProcess}}
	}
	note := "POST/DELETE " + netcut.Path + " on an ingester's HTTP port (pkg/netcut): its Kafka connections closed and refused, its memberlist gossip dropped both ways, the querier's requests to it reset; the process keeps running"
	return []Capability{{"CutOff", true, note}, {"Heal", true, note}}
}
