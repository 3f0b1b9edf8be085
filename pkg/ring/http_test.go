package ring_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/lokilab/lokilab/pkg/ring"
)

func TestRingHandler(t *testing.T) {
	const evil = `<script>alert("x")</script>`
	cfg := testConfig()
	good, err := ring.New(cfg, ring.InstanceDesc{ID: "ingester-0", Role: ring.RoleIngester, Addr: "127.0.0.1:3100"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.JoinMembers = []string{good.Addr()}
	bad, err := ring.New(cfg, ring.InstanceDesc{ID: evil, Role: ring.RoleIngester, Addr: "127.0.0.1:3101"}, nil, nil)
	if err != nil {
		good.Kill()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	for _, r := range []*ring.Ring{good, bad} {
		go func() { done <- r.Run(ctx) }()
	}
	defer func() {
		good.Kill()
		bad.Kill()
		cancel()
		<-done
		<-done
	}()
	good.SetOwner(0, ring.OwnerActive)
	eventually(t, "the two instances seeing each other", func() bool { return len(good.HealthyInstances("")) == 2 })
	bad.Kill()
	eventually(t, "the killed instance unhealthy", func() bool { return len(good.HealthyInstances("")) == 1 })

	h := good.RingHandler()
	get := func(target string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		for i := 0; i < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", target, w.Code, w.Body)
		}
		return w
	}

	page := get("/ring").Body.String()
	for _, want := range []string{"ingester-0", "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;", `name="forget"`, "ingester-0 (ACTIVE)"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, evil) {
		t.Error("page contains the instance ID unescaped")
	}
	if n := strings.Count(page, `name="forget"`); n != 1 {
		t.Errorf("%d forget buttons, want 1 (for the unhealthy instance only)", n)
	}

	for _, w := range []*httptest.ResponseRecorder{get("/ring?format=json"), get("/ring", "Accept", "application/json")} {
		var v struct {
			Instances []struct {
				ID      string `json:"id"`
				State   string `json:"state"`
				Healthy bool   `json:"healthy"`
			} `json:"instances"`
			Partitions []struct {
				ID         int32  `json:"id"`
				State      string `json:"state"`
				AssignedTo string `json:"assigned_to"`
				Owners     []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"owners"`
			} `json:"partitions"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("JSON: %v", err)
		}
		if len(v.Instances) != 2 || v.Instances[0].ID != evil || v.Instances[0].Healthy || !v.Instances[1].Healthy {
			t.Errorf("instances: %+v", v.Instances)
		}
		if len(v.Partitions) != 12 || v.Partitions[0].AssignedTo != "ingester-0" || len(v.Partitions[0].Owners) != 1 || v.Partitions[0].Owners[0].State != "ACTIVE" {
			t.Errorf("partitions: %+v", v.Partitions[:1])
		}
	}

	post := func(id string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/ring", strings.NewReader(url.Values{"forget": {id}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	if w := post("ingester-0"); w.Code != http.StatusBadRequest {
		t.Errorf("forgetting itself: %d, want 400", w.Code)
	}
	if w := post("nobody"); w.Code != http.StatusBadRequest {
		t.Errorf("forgetting an unknown instance: %d, want 400", w.Code)
	}
	if w := post(evil); w.Code != http.StatusSeeOther {
		t.Fatalf("forget: %d %s", w.Code, w.Body)
	}
	if in := good.Instances(""); len(in) != 1 || in[0].ID != "ingester-0" {
		t.Errorf("after forget: %+v", in)
	}
	if page := get("/ring").Body.String(); strings.Contains(page, "script") {
		t.Error("forgotten instance still on the page")
	}
	if d := good.Desc(); d.Instances[evil].State != ring.InstanceLeft {
		t.Errorf("forget left %+v, want a LEFT tombstone", d.Instances[evil])
	}

	req := httptest.NewRequest(http.MethodDelete, "/ring", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", w.Code)
	}
}

func TestMemberlistHandler(t *testing.T) {
	nodes := startCluster(t, testConfig(), ring.RoleDistributor, ring.RoleIngester)
	eventually(t, "converged", func() bool { return len(nodes[0].HealthyInstances("")) == 2 })
	eventually(t, "a broadcast received", func() bool {
		w := httptest.NewRecorder()
		nodes[0].MemberlistHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/memberlist?format=json", nil))
		var v struct {
			Local struct {
				Name string `json:"name"`
				Addr string `json:"addr"`
			} `json:"local"`
			Members []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"members"`
			Messages map[string]struct {
				Received uint64 `json:"received"`
			} `json:"messages"`
			Desc ring.Desc `json:"desc"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatalf("JSON: %v", err)
		}
		if v.Local.Name != "distributor-0" || v.Local.Addr != nodes[0].Addr() || len(v.Desc.Instances) != 2 || len(v.Members) != 2 {
			t.Fatalf("memberlist view: %+v", v)
		}
		return v.Messages["broadcast"].Received > 0
	})

	w := httptest.NewRecorder()
	nodes[0].MemberlistHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/memberlist", nil))
	page := w.Body.String()
	for _, want := range []string{"distributor-0", "ingester-1", nodes[0].Addr(), "push_pull", "&#34;heartbeat&#34;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}
