package ring

import (
	"cmp"
	"encoding/json"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// wantsJSON reports a tool asking for JSON (Accept: application/json or
// ?format=json) rather than a person with a browser.
func wantsJSON(req *http.Request) bool {
	return req.URL.Query().Get("format") == "json" || strings.Contains(req.Header.Get("Accept"), "application/json")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ringView is what /ring shows: the Desc judged at one instant.
type ringView struct {
	Self             string          `json:"self"`
	Now              time.Time       `json:"now"`
	HeartbeatTimeout string          `json:"heartbeat_timeout"`
	Instances        []instanceView  `json:"instances"`
	Partitions       []partitionView `json:"partitions"`
}

type instanceView struct {
	InstanceDesc
	HeartbeatAge float64 `json:"heartbeat_age_seconds"`
	Healthy      bool    `json:"healthy"`
}

// Age is the heartbeat age rounded for people.
func (v instanceView) Age() time.Duration {
	return time.Duration(v.HeartbeatAge * float64(time.Second)).Round(time.Millisecond)
}

type partitionView struct {
	ID             int32          `json:"id"`
	State          PartitionState `json:"state"`
	StateChangedAt int64          `json:"state_changed_at"`
	Owners         []ownerView    `json:"owners"`
	// AssignedTo is the ingester AssignPartitions gives the partition to
	// now: where ownership is heading when it differs from Owners.
	AssignedTo string `json:"assigned_to,omitempty"`
}

type ownerView struct {
	ID        string     `json:"id"`
	State     OwnerState `json:"state"`
	UpdatedAt int64      `json:"updated_at"`
}

func (r *Ring) view() ringView {
	now := r.now()
	v := ringView{Self: r.Self().ID, Now: now, HeartbeatTimeout: r.cfg.HeartbeatTimeout.String()}
	for _, in := range r.Instances("") {
		v.Instances = append(v.Instances, instanceView{
			InstanceDesc: in,
			HeartbeatAge: time.Duration(now.UnixNano() - in.Heartbeat).Seconds(),
			Healthy:      r.IsHealthy(in, now),
		})
	}
	var ingesters []string
	for _, in := range v.Instances {
		if in.Role == RoleIngester && in.Healthy && (in.State == InstanceJoining || in.State == InstanceActive) {
			ingesters = append(ingesters, in.ID)
		}
	}
	parts := r.Partitions()
	ids := make([]int32, len(parts))
	for i, p := range parts {
		ids[i] = p.ID
	}
	assigned := AssignPartitions(ids, ingesters)
	for _, p := range parts {
		pv := partitionView{ID: p.ID, State: p.State, StateChangedAt: p.StateChangedAt, Owners: []ownerView{}, AssignedTo: assigned[p.ID]}
		for id, o := range p.Owners {
			pv.Owners = append(pv.Owners, ownerView{ID: id, State: o.State, UpdatedAt: o.UpdatedAt})
		}
		slices.SortFunc(pv.Owners, func(a, b ownerView) int { return cmp.Compare(a.ID, b.ID) })
		v.Partitions = append(v.Partitions, pv)
	}
	return v
}

// RingHandler serves /ring: the instances and partitions as this node
// sees them, as an HTML page or, for Accept: application/json or
// ?format=json, as JSON. A POST with form value forget=<id> forgets that
// instance (see Forget) and redirects back to the page.
func (r *Ring) RingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.Method {
		case http.MethodGet, http.MethodHead:
		case http.MethodPost:
			req.Body = http.MaxBytesReader(w, req.Body, 64<<10)
			if err := req.ParseForm(); err != nil {
				http.Error(w, "ring: bad form: "+err.Error(), http.StatusBadRequest)
				return
			}
			id := req.PostForm.Get("forget")
			if id == "" {
				http.Error(w, "ring: POST needs forget=<instance id>", http.StatusBadRequest)
				return
			}
			if err := r.Forget(id); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if wantsJSON(req) {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			http.Redirect(w, req, req.URL.Path, http.StatusSeeOther)
			return
		default:
			w.Header().Set("Allow", "GET, HEAD, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		v := r.view()
		if wantsJSON(req) {
			writeJSON(w, v)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := ringPage.Execute(w, v); err != nil {
			r.logger.Debug("ring: render /ring", "err", err)
		}
	})
}

// memberlistView is what /memberlist shows.
type memberlistView struct {
	Local    nodeEvent            `json:"local"`
	Members  []nodeEvent          `json:"members"`
	Messages map[string]msgCounts `json:"messages"`
	Invalid  uint64               `json:"invalid_messages"`
	Queued   int                  `json:"queued_broadcasts"`
	Desc     Desc                 `json:"desc"`
	DescJSON string               `json:"-"`
}

type msgCounts struct {
	Received      uint64 `json:"received"`
	ReceivedBytes uint64 `json:"received_bytes"`
	Sent          uint64 `json:"sent"`
	SentBytes     uint64 `json:"sent_bytes"`
}

// MemberlistHandler serves /memberlist: memberlist's nodes (the living
// with their probe state, and those recently gone), the local node, the
// gossip counters and the gossiped Desc exactly as it is merged, tombstones
// included. HTML, or JSON as for RingHandler.
func (r *Ring) MemberlistHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ml := r.ml.Load()
		local := ml.LocalNode()
		v := memberlistView{
			Local:    nodeEvent{Name: local.Name, Addr: local.Address(), State: "alive"},
			Messages: map[string]msgCounts{},
			Invalid:  r.m.invalid.Load(),
			Queued:   r.queue.len(),
			Desc:     r.Desc(),
		}
		nodes := r.events.snapshot()
		for _, n := range ml.Members() {
			e := nodes[n.Name]
			e.Name, e.Addr = n.Name, n.Address()
			if n.State == memberlist.StateSuspect {
				e.State = "suspect"
			} else {
				e.State = "alive"
			}
			nodes[n.Name] = e
		}
		for _, n := range nodes {
			v.Members = append(v.Members, n)
		}
		slices.SortFunc(v.Members, func(a, b nodeEvent) int { return cmp.Compare(a.Name, b.Name) })
		for k := range numMsgKinds {
			v.Messages[k.String()] = msgCounts{
				Received: r.m.recvMsgs[k].Load(), ReceivedBytes: r.m.recvBytes[k].Load(),
				Sent: r.m.sentMsgs[k].Load(), SentBytes: r.m.sentBytes[k].Load(),
			}
		}
		if wantsJSON(req) {
			writeJSON(w, v)
			return
		}
		b, _ := json.MarshalIndent(v.Desc, "", "  ")
		v.DescJSON = string(b)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := memberlistPage.Execute(w, v); err != nil {
			r.logger.Debug("ring: render /memberlist", "err", err)
		}
	})
}

const pageStyle = `<style>
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
tr.unhealthy td { background: #fde8e8; }
pre { background: #f7f7f7; padding: 1em; }
</style>`

var ringPage = template.Must(template.New("ring").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lokilab ring</title>` + pageStyle + `</head><body>
<h1>Ring</h1>
<p>As seen by <b>{{.Self}}</b> at {{.Now.Format "15:04:05.000"}}. Healthy: heartbeat younger than {{.HeartbeatTimeout}}.
<a href="?format=json">JSON</a></p>
<h2>Instances</h2>
<table>
<tr><th>ID</th><th>Role</th><th>Zone</th><th>Address</th><th>State</th><th>Heartbeat age</th><th>Healthy</th><th></th></tr>
{{range .Instances}}<tr{{if not .Healthy}} class="unhealthy"{{end}}>
<td>{{.ID}}</td><td>{{.Role}}</td><td>{{.Zone}}</td><td>{{.Addr}}</td><td>{{.State}}</td><td>{{.Age}}</td><td>{{.Healthy}}</td>
<td>{{if not .Healthy}}<form method="post"><input type="hidden" name="forget" value="{{.ID}}"><button type="submit">Forget</button></form>{{end}}</td>
</tr>
{{end}}</table>
<h2>Partitions</h2>
<table>
<tr><th>ID</th><th>State</th><th>Owners</th><th>Assigned to</th></tr>
{{range .Partitions}}<tr>
<td>{{.ID}}</td><td>{{.State}}</td>
<td>{{range $i, $o := .Owners}}{{if $i}}, {{end}}{{$o.ID}} ({{$o.State}}){{else}}none{{end}}</td>
<td>{{.AssignedTo}}</td>
</tr>
{{end}}</table>
</body></html>
`))

var memberlistPage = template.Must(template.New("memberlist").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lokilab memberlist</title>` + pageStyle + `</head><body>
<h1>Memberlist</h1>
<p>Local node <b>{{.Local.Name}}</b> at {{.Local.Addr}}. <a href="?format=json">JSON</a></p>
<h2>Nodes</h2>
<table>
<tr><th>Name</th><th>Address</th><th>State</th></tr>
{{range .Members}}<tr><td>{{.Name}}</td><td>{{.Addr}}</td><td>{{.State}}</td></tr>
{{end}}</table>
<h2>Gossip</h2>
<table>
<tr><th>Type</th><th>Received</th><th>Received bytes</th><th>Sent</th><th>Sent bytes</th></tr>
{{range $k, $c := .Messages}}<tr><td>{{$k}}</td><td>{{$c.Received}}</td><td>{{$c.ReceivedBytes}}</td><td>{{$c.Sent}}</td><td>{{$c.SentBytes}}</td></tr>
{{end}}</table>
<p>Invalid messages: {{.Invalid}}. Broadcasts queued: {{.Queued}}.</p>
<h2>Gossiped state</h2>
<pre>{{.DescJSON}}</pre>
</body></html>
`))
