// Package compose holds no code: it is the docker compose deployment
// (docker-compose.yml, the offline override, Prometheus' configuration and
// rules, Grafana's provisioning and dashboards) and the tests that keep those
// files honest.
//
// Deployment files rot silently: a renamed metric leaves a dashboard panel
// saying "No data", a rule that never fires looks exactly like a rule whose
// incident never happened, and a compose file breaks only on the day someone
// runs it. So the tests here run the real tools on the shipped files:
// promtool on the configuration and rules; docker-compose on both compose
// files; Debian's Prometheus scraping `lokilab run -processes` with the
// shipped scrape configuration, after which every PromQL expression of every
// dashboard panel and rule must return data; and, where a Docker engine is
// present, the offline variant brought up for real, pushed to, one ingester
// container killed, and every acknowledged line read back.
//
// Where a tool is missing the tests skip and say which one (scripts/test
// installs them from Debian's packages): a skip is never a pass.
package compose
