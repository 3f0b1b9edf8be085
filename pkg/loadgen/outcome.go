package loadgen

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"syscall"
)

// Outcome is how a push was answered: the HTTP status (0 when no answer
// came) and the reason, named as the reason label of Loki's
// loki_discarded_samples_total where the target gave one of those
// ("rate_limited", "stream_limit", "line_too_long", …), else a name for the
// status or the transport error.
type Outcome struct {
	Code   int
	Reason string
}

func (o Outcome) String() string {
	if o.Code == 0 {
		return "error " + o.Reason
	}
	return itoa(o.Code) + " " + o.Reason
}

// Accepted reports a 2xx answer: the target promises the lines are stored.
func (o Outcome) Accepted() bool { return o.Code >= 200 && o.Code < 300 }

// reasonRules map the messages the distributor (pkg/distributor) and Loki
// answer with to reasons, by status: the first rule whose text the body
// contains (case-insensitively) wins.
var reasonRules = map[int][]struct{ text, reason string }{
	http.StatusTooManyRequests: {
		{"ingestion rate limit exceeded", "rate_limited"},
		{"maximum active stream limit exceeded", "stream_limit"},
		{"per stream rate limit exceeded", "per_stream_rate_limit"},
	},
	http.StatusBadRequest: {
		{"max entry size", "line_too_long"},
		{"timestamp too old", "greater_than_max_sample_age"},
		{"timestamp too new", "too_far_in_future"},
		{"label names; limit", "max_label_names_per_series"},
		{"label name too long", "label_name_too_long"},
		{"label value too long", "label_value_too_long"},
		{"duplicate label name", "duplicate_label_names"},
		{"error parsing labels", "invalid_labels"},
		{"at least one label pair is required", "missing_labels"},
		{"structured metadata", "structured_metadata"},
		{"fits in a kafka record", "record_too_large"},
		{"error parsing push request", "bad_body"},
		{"tenant id", "bad_tenant"},
	},
	http.StatusServiceUnavailable: {
		{"circuit breaker", "breaker_open"},
		{"bytes in flight", "inflight_limit"},
		{"waiting for kafka", "kafka_timeout"},
		{"writing to kafka failed", "kafka_error"},
		{"no partition", "no_partition"},
	},
}

// statusReasons name a status without a more specific rule.
var statusReasons = map[int]string{
	http.StatusTooManyRequests:       "too_many_requests",
	http.StatusBadRequest:            "bad_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusRequestEntityTooLarge: "too_large",
	http.StatusUnprocessableEntity:   "no_streams",
	http.StatusServiceUnavailable:    "unavailable",
	http.StatusNotFound:              "not_found",
	http.StatusInternalServerError:   "server_error",
	http.StatusBadGateway:            "bad_gateway",
	http.StatusGatewayTimeout:        "gateway_timeout",
}

// Classify names the outcome of a push answered with status and body.
func Classify(status int, body string) Outcome {
	o := Outcome{Code: status}
	if o.Accepted() {
		o.Reason = "ok"
		return o
	}
	lower := strings.ToLower(body)
	for _, r := range reasonRules[status] {
		if strings.Contains(lower, r.text) {
			o.Reason = r.reason
			return o
		}
	}
	if r, ok := statusReasons[status]; ok {
		o.Reason = r
	} else {
		o.Reason = "other"
	}
	return o
}

// ClassifyError names the outcome of a push that got no answer.
func ClassifyError(err error) Outcome {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return Outcome{Reason: "canceled"}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Outcome{Reason: "timeout"}
	case errors.Is(err, syscall.ECONNREFUSED):
		return Outcome{Reason: "connection_refused"}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), strings.Contains(err.Error(), "EOF"):
		return Outcome{Reason: "connection_reset"}
	}
	return Outcome{Reason: "transport_error"}
}
