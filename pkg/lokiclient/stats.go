package lokiclient

import "encoding/json"

// Stats is the part of a query answer's stats object ("data.stats") that
// says what the query cost, in Loki's field names. lokilab fills these;
// Loki fills them and more (left out here). A field the server did not
// send is zero.
type Stats struct {
	Summary struct {
		BytesProcessedPerSecond int64   `json:"bytesProcessedPerSecond"`
		LinesProcessedPerSecond int64   `json:"linesProcessedPerSecond"`
		TotalBytesProcessed     int64   `json:"totalBytesProcessed"`
		TotalLinesProcessed     int64   `json:"totalLinesProcessed"`
		ExecTime                float64 `json:"execTime"` // seconds
		QueueTime               float64 `json:"queueTime"`
		Subqueries              int     `json:"subqueries"`
		TotalEntriesReturned    int     `json:"totalEntriesReturned"`
		Splits                  int     `json:"splits"`
		Shards                  int     `json:"shards"`
	} `json:"summary"`
	Querier struct {
		Store StoreStats `json:"store"`
	} `json:"querier"`
	Ingester struct {
		TotalReached   int        `json:"totalReached"`
		TotalLinesSent int        `json:"totalLinesSent"`
		Store          StoreStats `json:"store"`
	} `json:"ingester"`
	Cache struct {
		Chunk struct {
			EntriesFound     int `json:"entriesFound"`
			EntriesRequested int `json:"entriesRequested"`
		} `json:"chunk"`
	} `json:"cache"`
}

// StoreStats is what one side (the store read by the querier, or the
// ingesters' memory) contributed.
type StoreStats struct {
	TotalChunksRef        int `json:"totalChunksRef"`
	TotalChunksDownloaded int `json:"totalChunksDownloaded"`
	Chunk                 struct {
		CompressedBytes   int64 `json:"compressedBytes"`
		DecompressedBytes int64 `json:"decompressedBytes"`
		DecompressedLines int   `json:"decompressedLines"`
		TotalDuplicates   int   `json:"totalDuplicates"`
	} `json:"chunk"`
}

// ParseStats decodes a Result's Stats. Empty stats decode to zero.
func ParseStats(raw json.RawMessage) (Stats, error) {
	var s Stats
	if len(raw) == 0 || string(raw) == "null" {
		return s, nil
	}
	err := json.Unmarshal(raw, &s)
	return s, err
}
