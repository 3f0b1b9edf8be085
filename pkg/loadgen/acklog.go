package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lokilab/lokilab/pkg/labels"
	"github.com/lokilab/lokilab/pkg/tenant"
)

// AckRecord is one stream's share of an acknowledged push: the lines
// Run-Worker-FirstSeq … FirstSeq+len(Timestamps)-1, with their timestamps.
// The format on disk is in the package doc.
type AckRecord struct {
	Tenant string
	// Labels is the stream's label set in canonical form.
	Labels   string
	Run      string
	Worker   int
	FirstSeq uint64
	// Timestamps are the lines' Unix nanoseconds, in sequence order.
	Timestamps []int64
}

// ID is the identity of the record's i-th line.
func (r *AckRecord) ID(i int) LineID {
	return LineID{Run: r.Run, Worker: r.Worker, Seq: r.FirstSeq + uint64(i)}
}

// ackHeader starts every ack log; the version changes if the format does.
const ackHeader = "# lokilab ack log v1"

// maxAckLine bounds one record on read: a push of 100,000 lines to one
// stream takes about 1MB.
const maxAckLine = 64 << 20

// AppendAckRecord appends r's line, newline included, to b.
func AppendAckRecord(b []byte, r *AckRecord) []byte {
	b = append(b, r.Tenant...)
	b = append(b, '\t')
	b = append(b, r.Labels...)
	b = append(b, '\t')
	b = append(b, r.Run...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(r.Worker), 10)
	b = append(b, '\t')
	b = strconv.AppendUint(b, r.FirstSeq, 10)
	b = append(b, '\t')
	if len(r.Timestamps) > 0 {
		b = strconv.AppendInt(b, r.Timestamps[0], 10)
	}
	b = append(b, '\t')
	for i := 1; i < len(r.Timestamps); i++ {
		if i > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, r.Timestamps[i]-r.Timestamps[i-1], 10)
	}
	return append(b, '\n')
}

// ParseAckRecord reads one record line (without its newline) into r,
// reusing r.Timestamps. It checks everything Verify relies on: a valid
// tenant ID (or none), a label set, a run ID, bounded worker and sequence
// numbers, and timestamps that never decrease and stay within int64.
func ParseAckRecord(line []byte, r *AckRecord) error {
	var f [6][]byte
	rest := line
	for i := range f {
		if i == len(f)-1 {
			f[i] = rest
			break
		}
		j := bytes.IndexByte(rest, '\t')
		if j < 0 {
			return fmt.Errorf("ack record has %d fields, want 6", i+1)
		}
		f[i], rest = rest[:j], rest[j+1:]
	}
	if bytes.IndexByte(f[5], '\t') >= 0 {
		return errors.New("ack record has more than 6 fields")
	}
	r.Tenant = string(f[0])
	if r.Tenant != "" {
		if err := tenant.ValidateID(r.Tenant); err != nil {
			return fmt.Errorf("ack record tenant: %w", err)
		}
	}
	ls, err := labels.Parse(string(f[1]))
	if err != nil || len(ls) == 0 {
		return fmt.Errorf("ack record labels %q: want a non-empty label set", f[1])
	}
	r.Labels = ls.String()
	rw := string(f[2])
	dash := strings.LastIndexByte(rw, '-')
	if dash < 0 || !validRun(rw[:dash]) {
		return fmt.Errorf("ack record %q: want <run>-<worker>", rw)
	}
	w, err := parseDecimal(rw[dash+1:], maxWorker)
	if err != nil {
		return fmt.Errorf("ack record worker: %w", err)
	}
	r.Run, r.Worker = rw[:dash], int(w)
	if r.FirstSeq, err = parseDecimal(string(f[3]), maxSeq); err != nil {
		return fmt.Errorf("ack record first sequence number: %w", err)
	}
	ts, err := strconv.ParseInt(string(f[4]), 10, 64)
	if err != nil {
		return fmt.Errorf("ack record timestamp %q: %w", f[4], err)
	}
	r.Timestamps = append(r.Timestamps[:0], ts)
	if len(f[5]) > 0 {
		for d := range bytes.SplitSeq(f[5], []byte{','}) {
			delta, err := strconv.ParseInt(string(d), 10, 64)
			if err != nil || delta < 0 || ts > math.MaxInt64-delta {
				return fmt.Errorf("ack record timestamp delta %q: want a non-negative integer that keeps the timestamp within int64", d)
			}
			ts += delta
			r.Timestamps = append(r.Timestamps, ts)
		}
	}
	if r.FirstSeq+uint64(len(r.Timestamps))-1 > maxSeq {
		return fmt.Errorf("ack record sequence numbers run past %d", uint64(maxSeq))
	}
	return nil
}

// AckReader reads an ack log record by record.
type AckReader struct {
	sc     *bufio.Scanner
	lineNo int
	rec    AckRecord
	err    error
}

// NewAckReader reads the ack log in r.
func NewAckReader(r io.Reader) *AckReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxAckLine)
	return &AckReader{sc: sc}
}

// Next reads the next record; false at the end or on an error (see Err).
// The record is valid until the next call.
func (a *AckReader) Next() (*AckRecord, bool) {
	for a.err == nil && a.sc.Scan() {
		a.lineNo++
		line := a.sc.Bytes()
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			if v, ok := bytes.CutPrefix(line, []byte("# lokilab ack log ")); ok && string(v) != "v1" {
				a.err = fmt.Errorf("line %d: ack log format %s, this reader knows v1", a.lineNo, v)
			}
			continue
		}
		if err := ParseAckRecord(line, &a.rec); err != nil {
			a.err = fmt.Errorf("line %d: %w", a.lineNo, err)
			return nil, false
		}
		return &a.rec, true
	}
	if a.err == nil {
		a.err = a.sc.Err()
	}
	return nil, false
}

// Err is the error that stopped Next, if any.
func (a *AckReader) Err() error { return a.err }

// ackWriter appends records to an ack log, buffered, for all workers.
type ackWriter struct {
	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	records int64
	err     error
}

// openAckLog opens path for appending, writing the header if the file is
// new, and a comment naming the run.
func openAckLog(path, comment string) (*ackWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	a := &ackWriter{f: f, w: bufio.NewWriterSize(f, 256<<10)}
	if st.Size() == 0 {
		a.w.WriteString(ackHeader + "\n")
	}
	a.w.WriteString("# " + comment + "\n")
	if err := a.w.Flush(); err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

// write appends encoded records (whole lines).
func (a *ackWriter) write(b []byte, records int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return
	}
	if _, err := a.w.Write(b); err != nil {
		a.err = err
	}
	a.records += int64(records)
}

func (a *ackWriter) flush() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err == nil {
		a.err = a.w.Flush()
	}
	return a.err
}

func (a *ackWriter) close() error {
	err := a.flush()
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// runComment is the comment a run starts its records with.
func runComment(run string, seed uint64, url string, start time.Time) string {
	return fmt.Sprintf("run %s seed %d url %s started %s", run, seed, url, start.UTC().Format(time.RFC3339))
}
