package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// LagMetric is the gauge lokilab's ingesters export per partition they
// own: records in the partition not yet processed.
const LagMetric = "lokilab_ingester_partition_lag_records"

// GaugeSum returns a Lag function that scrapes every URL (Prometheus text
// format) and sums the samples of metric over all of them and all label
// sets. A target that does not export the metric yet counts 0.
func GaugeSum(client *http.Client, metric string, urls ...string) func(context.Context) (float64, error) {
	return func(ctx context.Context) (float64, error) {
		total := 0.0
		for _, u := range urls {
			v, err := scrapeSum(ctx, client, u, metric)
			if err != nil {
				return 0, err
			}
			total += v
		}
		return total, nil
	}
}

func scrapeSum(ctx context.Context, client *http.Client, url, metric string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue // another metric, or a comment
		}
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			rest = rest[i+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("scraping %s: %q: %w", url, line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scraping %s: %w", url, err)
	}
	return sum, nil
}
