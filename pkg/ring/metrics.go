package ring

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type msgKind int

const (
	msgBroadcast msgKind = iota
	msgPushPull
	numMsgKinds
)

func (k msgKind) String() string {
	if k == msgPushPull {
		return "push_pull"
	}
	return "broadcast"
}

// metrics counts gossip in plain atomics, which /memberlist reads too, and
// exposes them, with gauges computed from the ring at scrape time, as one
// prometheus.Collector.
type metrics struct {
	r *Ring

	recvMsgs, recvBytes [numMsgKinds]atomic.Uint64
	sentMsgs, sentBytes [numMsgKinds]atomic.Uint64
	invalid             atomic.Uint64
	propagation         prometheus.Histogram

	recvMsgsDesc, recvBytesDesc *prometheus.Desc
	sentMsgsDesc, sentBytesDesc *prometheus.Desc
	invalidDesc                 *prometheus.Desc
	membersDesc                 *prometheus.Desc
	ringMembersDesc             *prometheus.Desc
	partitionsDesc              *prometheus.Desc
}

func newMetrics(r *Ring) *metrics {
	return &metrics{
		r: r,
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lokilab_ring_update_propagation_seconds",
			Help: "Time from another node writing a ring entry (its timestamp) to this node merging it, observed once per entry version. " +
				"Compares two clocks: exact on one machine, off by their skew across machines.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14), // 5ms … 41s
		}),
		recvMsgsDesc: prometheus.NewDesc("lokilab_memberlist_messages_received_total",
			"Ring messages received, by type: broadcast (a change, over UDP gossip) or push_pull (the full state, over TCP).", []string{"type"}, nil),
		recvBytesDesc: prometheus.NewDesc("lokilab_memberlist_received_bytes_total",
			"Bytes of ring messages received, by type.", []string{"type"}, nil),
		sentMsgsDesc: prometheus.NewDesc("lokilab_memberlist_messages_sent_total",
			"Ring messages sent, by type; a broadcast counts once per peer it is sent to.", []string{"type"}, nil),
		sentBytesDesc: prometheus.NewDesc("lokilab_memberlist_sent_bytes_total",
			"Bytes of ring messages sent, by type.", []string{"type"}, nil),
		invalidDesc: prometheus.NewDesc("lokilab_memberlist_invalid_messages_total",
			"Ring messages dropped because they did not decode.", nil, nil),
		membersDesc: prometheus.NewDesc("lokilab_memberlist_members",
			"Nodes this memberlist node considers alive, itself included.", nil, nil),
		ringMembersDesc: prometheus.NewDesc("lokilab_ring_members",
			"Instances in the ring by role and state; unhealthy ones count under state Unhealthy whatever their state.", []string{"role", "state"}, nil),
		partitionsDesc: prometheus.NewDesc("lokilab_ring_partitions",
			"Partitions by state.", []string{"state"}, nil),
	}
}

func (m *metrics) received(k msgKind, n int) {
	m.recvMsgs[k].Add(1)
	m.recvBytes[k].Add(uint64(n))
}

func (m *metrics) sent(k msgKind, n int) {
	m.sentMsgs[k].Add(1)
	m.sentBytes[k].Add(uint64(n))
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.recvMsgsDesc, m.recvBytesDesc, m.sentMsgsDesc, m.sentBytesDesc,
		m.invalidDesc, m.membersDesc, m.ringMembersDesc, m.partitionsDesc} {
		ch <- d
	}
	m.propagation.Describe(ch)
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for k := range numMsgKinds {
		ch <- prometheus.MustNewConstMetric(m.recvMsgsDesc, prometheus.CounterValue, float64(m.recvMsgs[k].Load()), k.String())
		ch <- prometheus.MustNewConstMetric(m.recvBytesDesc, prometheus.CounterValue, float64(m.recvBytes[k].Load()), k.String())
		ch <- prometheus.MustNewConstMetric(m.sentMsgsDesc, prometheus.CounterValue, float64(m.sentMsgs[k].Load()), k.String())
		ch <- prometheus.MustNewConstMetric(m.sentBytesDesc, prometheus.CounterValue, float64(m.sentBytes[k].Load()), k.String())
	}
	ch <- prometheus.MustNewConstMetric(m.invalidDesc, prometheus.CounterValue, float64(m.invalid.Load()))
	ch <- prometheus.MustNewConstMetric(m.membersDesc, prometheus.GaugeValue, float64(m.r.numMembers()))

	// Every role and state is reported, zeros included, so a series does
	// not vanish when its last instance changes state.
	states := []string{InstanceJoining.String(), InstanceActive.String(), InstanceLeaving.String(), "Unhealthy"}
	members := map[string]map[string]int{}
	for _, role := range []string{RoleDistributor, RoleIngester, RoleQuerier, RoleCompactor} {
		members[role] = map[string]int{}
	}
	partitions := map[string]int{}
	for s := PartitionPending; s <= PartitionInactive; s++ {
		partitions[s.String()] = 0
	}
	r := m.r
	now := r.now()
	r.mu.RLock()
	for _, in := range r.desc.Instances {
		if in.State == InstanceLeft {
			continue
		}
		state := in.State.String()
		if !r.IsHealthy(in, now) {
			state = "Unhealthy"
		}
		if members[in.Role] == nil {
			members[in.Role] = map[string]int{}
		}
		members[in.Role][state]++
	}
	for _, p := range r.desc.Partitions {
		partitions[p.State.String()]++
	}
	r.mu.RUnlock()
	for role, byState := range members {
		for _, s := range states {
			ch <- prometheus.MustNewConstMetric(m.ringMembersDesc, prometheus.GaugeValue, float64(byState[s]), role, s)
		}
	}
	for s, n := range partitions {
		ch <- prometheus.MustNewConstMetric(m.partitionsDesc, prometheus.GaugeValue, float64(n), s)
	}
	m.propagation.Collect(ch)
}
