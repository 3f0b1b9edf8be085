package netcut

import (
	"encoding/json"
	"net/http"
)

// Path is where a process with the lab's faults on serves its Switch.
const Path = "/debug/fault/netcut"

// AdminHandler serves the Switch: POST cuts, DELETE heals, GET reports;
// each answers the Status as JSON.
func (s *Switch) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPost:
			s.Cut()
		case http.MethodDelete:
			s.Heal()
		case http.MethodGet:
		default:
			w.Header().Set("Allow", "GET, POST, DELETE")
			http.Error(w, "POST cuts, DELETE heals, GET reports", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Status())
	})
}
