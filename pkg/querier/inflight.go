package querier

import "github.com/prometheus/client_golang/prometheus"

// inFlight counts the subqueries — one split interval's fetch and
// evaluation — running right now, over every query of this querier.
//
// It is what makes the fan-out visible from outside: a metric query runs
// up to max_query_parallelism of its intervals at once, so while one wide
// query runs alone the gauge sits at that limit; when the query is
// cancelled (client gone, query_timeout) it must fall back to zero, or
// workers are still reading for nobody. A log query's intervals run one at
// a time and count while they fetch.
type inFlight struct {
	subqueries prometheus.Gauge
}

func newInFlight(reg prometheus.Registerer) (*inFlight, error) {
	f := &inFlight{subqueries: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lokilab_querier_subqueries_in_flight",
		Help: "Split intervals of queries being fetched and evaluated now (a metric query runs up to max_query_parallelism at once).",
	})}
	if err := reg.Register(f.subqueries); err != nil {
		return nil, err
	}
	return f, nil
}

// start counts one subquery until the returned func is called.
func (f *inFlight) start() (done func()) {
	f.subqueries.Inc()
	return f.subqueries.Dec
}
