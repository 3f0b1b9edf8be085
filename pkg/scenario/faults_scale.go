package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/lokilab/lokilab/pkg/app"
)

// The scaling hooks of Faults: AddIngester and RemoveComponent.
//
// In processes mode they are the supervisor's scaling endpoints
// (pkg/app/processes_scale.go): POST /processes/ingesters starts
// ingester-<n+1> on free ports, DELETE /processes/{name} stops one with
// SIGTERM and stops supervising it. In one process, RunAllInOne starts a
// fixed set of ingesters in one errgroup: none can be added while it runs,
// and stopping one (POST /ingester/shutdown) already is for good, so
// RemoveComponent is StopComponent there.

const whyAdd = "RunAllInOne starts a fixed set of ingesters in one errgroup, and app.AllInOneHooks has no hook to start another while it runs. Needs the processes mode (the supervisor's POST /processes/ingesters)."

func (f inProcessFaults) AddIngester(context.Context) (string, error) {
	return "", &NotBuiltError{"AddIngester", whyAdd}
}

// RemoveComponent is StopComponent: an in-process ingester that shut
// down is never started again.
func (f inProcessFaults) RemoveComponent(ctx context.Context, name string) error {
	return f.StopComponent(ctx, name)
}

// AddIngester asks the supervisor for one more ingester; it answers once
// the new process's /ready does.
func (f processesFaults) AddIngester(ctx context.Context) (string, error) {
	var st app.ProcessStatus
	if err := f.sys.scaleRequest(ctx, http.MethodPost, f.sys.API+app.ScaleIngestersPath, http.StatusCreated, &st); err != nil {
		return "", fmt.Errorf("adding an ingester: %w", err)
	}
	return st.Name, nil
}

// RemoveComponent asks the supervisor to stop an ingester for good; it
// answers once the process has exited, cleanly or not (an error then).
func (f processesFaults) RemoveComponent(ctx context.Context, name string) error {
	var res app.RemovedProcess
	if err := f.sys.scaleRequest(ctx, http.MethodDelete, f.sys.API+app.ScaleRemovePath+name, http.StatusOK, &res); err != nil {
		return fmt.Errorf("removing %s: %w", name, err)
	}
	return nil
}

// scaleRequest sends a scaling request to the supervisor and decodes its
// answer. Scaling waits for processes to start or flush, longer than the
// system's usual client timeout: ctx bounds it instead.
func (s *System) scaleRequest(ctx context.Context, method, url string, want int, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (r recordingFaults) AddIngester(ctx context.Context) (string, error) {
	name, err := r.inner.AddIngester(ctx)
	return name, r.record("AddIngester", name, err)
}

func (r recordingFaults) RemoveComponent(ctx context.Context, name string) error {
	return r.record("RemoveComponent", name, r.inner.RemoveComponent(ctx, name))
}

// waitIngesters waits until the ring shows exactly want ingesters ACTIVE
// and ready with every partition owned, and refreshes s.Ingesters: after a
// scaling step, the set the scenario scrapes and the Faults address.
func (s *System) waitIngesters(ctx context.Context, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := s.checkReady(ctx, want)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d ingesters not ready within %s: %w", want, timeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scaleCapabilities are the scaling hooks' entries of Capabilities.
func scaleCapabilities(processes bool) []Capability {
	if !processes {
		return []Capability{
			{"AddIngester", false, whyAdd},
			{"RemoveComponent", true, "as StopComponent: an in-process ingester that shut down (POST /ingester/shutdown) is never started again"},
		}
	}
	return []Capability{
		{"AddIngester", true, "POST /processes/ingesters on the gateway: the supervisor starts ingester-<n+1> on free ports, joining the ring through every live node, and answers once its /ready does (ring ownership only)"},
		{"RemoveComponent", true, "DELETE /processes/{name} on the gateway: SIGTERM (flush, commit, hand over, leave the ring), wait for the exit, and stop supervising it: no restart"},
	}
}
