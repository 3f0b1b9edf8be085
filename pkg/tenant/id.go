// Package tenant scopes every read and write to a tenant: it reads the
// tenant ID from a request, validates it before it can reach a storage key,
// holds each tenant's limits (defaults plus runtime overrides reloaded from
// a file) and rate-limits each tenant's ingestion.
//
// Isolation starts here. A tenant ID becomes part of Kafka record keys and
// object-store paths (<tenant>/chunks/...), so an ID such as "../other" or
// "a/b" must never get past FromRequest; the character rules below are
// Cortex's and Loki's, so an ID valid for Loki is valid here.
package tenant

import (
	"errors"
	"fmt"
	"net/http"
)

const (
	// Header carries the tenant ID on every request, as in Loki.
	Header = "X-Scope-OrgID"
	// DefaultTenant is the tenant used when authentication is disabled,
	// Loki's "fake".
	DefaultTenant = "fake"
	// MaxIDLength is the longest tenant ID accepted.
	MaxIDLength = 150
)

// ErrNoOrgID is returned when authentication is enabled and the request
// carries no tenant ID; the HTTP answer is 401 with Loki's text "no org id".
var ErrNoOrgID = errors.New("no org id")

// FromRequest returns the request's tenant ID. With auth enabled the header
// is required; with auth disabled it is ignored and every request belongs to
// DefaultTenant, as in Loki.
func FromRequest(r *http.Request, authEnabled bool) (string, error) {
	if !authEnabled {
		return DefaultTenant, nil
	}
	id := r.Header.Get(Header)
	if id == "" {
		return "", ErrNoOrgID
	}
	if err := ValidateID(id); err != nil {
		return "", err
	}
	return id, nil
}

// ValidateID checks a tenant ID: 1 to 150 characters from [a-zA-Z0-9] and
// !-_.*'(), and never "." or "..". Everything that could act as a path
// separator, a control character or a query-string delimiter is excluded,
// which is what makes the ID safe inside an object key.
func ValidateID(id string) error {
	switch {
	case id == "":
		return ErrNoOrgID
	case len(id) > MaxIDLength:
		return fmt.Errorf("tenant ID is too long: max %d characters", MaxIDLength)
	case id == "." || id == "..":
		return errors.New("tenant ID is '.' or '..'")
	}
	for i := 0; i < len(id); i++ {
		if !validIDByte(id[i]) {
			return fmt.Errorf("tenant ID '%s' contains unsupported character '%s'", sanitize(id), sanitize(id[i:i+1]))
		}
	}
	return nil
}

func validIDByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '-', '_', '.', '*', '\'', '(', ')':
		return true
	}
	return false
}

// sanitize makes an invalid ID safe to echo in an error message and a log
// line: non-printable bytes are escaped and the length is capped.
func sanitize(id string) string {
	if len(id) > MaxIDLength {
		id = id[:MaxIDLength] + "..."
	}
	q := fmt.Sprintf("%q", id)
	return q[1 : len(q)-1]
}
