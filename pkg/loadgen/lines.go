package loadgen

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Shape is a kind of log line.
type Shape int

// The shapes a Generator writes, each in its own file.
const (
	Nginx      Shape = iota // nginx access log (shape_nginx.go)
	Logfmt                  // logfmt application log (shape_logfmt.go)
	JSON                    // JSON application log (shape_json.go)
	StackTrace              // multi-line Go panic (shape_stacktrace.go)
	numShapes
)

var shapeNames = [numShapes]string{"nginx", "logfmt", "json", "stacktrace"}

func (s Shape) String() string {
	if s >= 0 && s < numShapes {
		return shapeNames[s]
	}
	return "shape(" + strconv.Itoa(int(s)) + ")"
}

// Mix is the relative weight of each shape: a line is drawn with
// probability weight/sum.
type Mix [numShapes]int

// DefaultMix is mostly access and application logs, with one line in ten a
// stack trace.
var DefaultMix = Mix{Nginx: 4, Logfmt: 3, JSON: 2, StackTrace: 1}

// String writes the mix as ParseMix reads it: "nginx=4,logfmt=3,…".
func (m Mix) String() string {
	var parts []string
	for s, w := range m {
		if w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", Shape(s), w))
		}
	}
	return strings.Join(parts, ",")
}

// ParseMix reads "nginx=4,json=1": shapes not named get weight 0; a shape
// without "=N" gets weight 1.
func ParseMix(s string) (Mix, error) {
	var m Mix
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, weight, hasWeight := strings.Cut(part, "=")
		i := slices.Index(shapeNames[:], strings.TrimSpace(name))
		if i < 0 {
			return m, fmt.Errorf("unknown line shape %q: want %s", name, strings.Join(shapeNames[:], ", "))
		}
		w := 1
		if hasWeight {
			var err error
			if w, err = strconv.Atoi(strings.TrimSpace(weight)); err != nil || w < 0 || w > 1_000_000 {
				return m, fmt.Errorf("line shape %s: weight %q is not an integer from 0 to 1000000", name, weight)
			}
		}
		m[i] = w
		total += w
	}
	if total == 0 {
		return m, fmt.Errorf("line shapes %q: at least one shape needs a positive weight", s)
	}
	return m, nil
}

// Set implements flag.Value.
func (m *Mix) Set(s string) error {
	v, err := ParseMix(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// MarshalYAML writes the mix in its flag form.
func (m Mix) MarshalYAML() (any, error) { return m.String(), nil }

// UnmarshalYAML reads the mix in its flag form.
func (m *Mix) UnmarshalYAML(unmarshal func(any) error) error {
	var s string
	if err := unmarshal(&s); err != nil {
		return err
	}
	return m.Set(s)
}

// LineID is a line's identity: which run, which worker of the run, and the
// worker's sequence number for the line. Written as <run>-<worker>-<seq>.
type LineID struct {
	Run    string
	Worker int
	Seq    uint64
}

func (id LineID) String() string {
	return id.Run + "-" + strconv.Itoa(id.Worker) + "-" + strconv.FormatUint(id.Seq, 10)
}

// maxRunLen bounds a run ID: a short ID keeps every line's identity cheap.
const maxRunLen = 32

// validRun reports whether s can be a run ID: 1 to 32 of [0-9a-z]. No '-',
// so a LineID splits unambiguously.
func validRun(s string) bool {
	if len(s) == 0 || len(s) > maxRunLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isRunByte(s[i]) {
			return false
		}
	}
	return true
}

func isRunByte(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' }

// NewRunID returns a run ID of 6 characters drawn from r; it always holds
// a digit, so it never reads as a word in a line.
func NewRunID(r *rand.Rand) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 6)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	b[r.IntN(len(b))] = alphabet[r.IntN(10)]
	return string(b)
}

// ParseLineID reads "<run>-<worker>-<seq>".
func ParseLineID(s string) (LineID, error) {
	run, rest, ok := strings.Cut(s, "-")
	if !ok || !validRun(run) {
		return LineID{}, fmt.Errorf("line ID %q: want <run>-<worker>-<seq> with a run of 1 to %d of [0-9a-z]", s, maxRunLen)
	}
	w, seq, ok := strings.Cut(rest, "-")
	if !ok {
		return LineID{}, fmt.Errorf("line ID %q: want <run>-<worker>-<seq>", s)
	}
	worker, err := parseDecimal(w, maxWorker)
	if err != nil {
		return LineID{}, fmt.Errorf("line ID %q: worker: %w", s, err)
	}
	n, err := parseDecimal(seq, maxSeq)
	if err != nil {
		return LineID{}, fmt.Errorf("line ID %q: sequence: %w", s, err)
	}
	return LineID{Run: run, Worker: int(worker), Seq: n}, nil
}

// Bounds on the parts of a LineID that a reader accepts. They keep a
// corrupt ack log from making Verify allocate without bound (it keeps a bit
// per sequence number).
const (
	maxWorker = 1 << 20
	maxSeq    = 1 << 40
)

// parseDecimal reads a plain decimal (no sign, no leading zeros except "0")
// up to max.
func parseDecimal(s string, max uint64) (uint64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q is not a plain decimal", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > max {
		return 0, fmt.Errorf("%q is not a decimal up to %d", s, max)
	}
	return n, nil
}

// FindLineID returns the identity embedded in a line, in any shape: the
// first " lid=X" or `"lid":"X"`, where X runs to the first byte that cannot
// be part of an ID. ok is false when the line has none.
func FindLineID(line string) (id string, ok bool) {
	start := -1
	if i := strings.Index(line, " lid="); i >= 0 {
		start = i + len(" lid=")
	}
	if i := strings.Index(line, `"lid":"`); i >= 0 && (start < 0 || i < start) {
		start = i + len(`"lid":"`)
	}
	if start < 0 {
		return "", false
	}
	end := start
	for end < len(line) && (isRunByte(line[end]) || line[end] == '-') {
		end++
	}
	if end == start {
		return "", false
	}
	return line[start:end], true
}

// generator writes lines. It is not safe for concurrent use: each worker
// has its own, seeded from the run's seed and the worker's index, so a run
// is reproducible.
type generator struct {
	r        *rand.Rand
	cum      [numShapes]int // cumulative weights
	total    int
	lineSize int
	// idPrefix is "<run>-<worker>-", the part of every LineID this
	// generator writes that does not change.
	idPrefix []byte
	id       []byte // scratch: the current line's ID
}

func newGenerator(mix Mix, lineSize int, run string, worker int, seed uint64) *generator {
	g := &generator{
		r:        rand.New(rand.NewPCG(seed, uint64(worker)^0x9e3779b97f4a7c15)),
		lineSize: lineSize,
		idPrefix: fmt.Appendf(nil, "%s-%d-", run, worker),
	}
	for s, w := range mix {
		g.total += w
		g.cum[s] = g.total
	}
	return g
}

// padSpot says where a shape takes padding, and how to write it so that
// the line keeps its shape: pad bytes go at at, between prefix and suffix.
type padSpot struct {
	at             int
	prefix, suffix string
}

// appendLine appends one line to b: its shape drawn from the mix, its time
// ts, its identity LineID{run, worker, seq}. It returns b and the shape.
//
// It allocates nothing once b has grown to its working size: shapes append
// with strconv and time.AppendFormat, and padding comes from a fixed text.
func (g *generator) appendLine(b []byte, ts time.Time, seq uint64) ([]byte, Shape) {
	g.id = strconv.AppendUint(append(g.id[:0], g.idPrefix...), seq, 10)
	n := g.r.IntN(g.total)
	shape := Shape(0)
	for n >= g.cum[shape] {
		shape++
	}
	start := len(b)
	var pad padSpot
	switch shape {
	case Nginx:
		b, pad = appendNginx(b, g.r, ts, g.id)
	case Logfmt:
		b, pad = appendLogfmt(b, g.r, ts, g.id)
	case JSON:
		b, pad = appendJSON(b, g.r, ts, g.id)
	default:
		b, pad = appendStackTrace(b, g.r, ts, g.id)
	}
	if g.lineSize > 0 {
		b = g.pad(b, start, pad)
	}
	return b, shape
}

// pad grows the line b[start:] towards a size drawn uniformly from
// [lineSize/2, 3·lineSize/2), so the average is lineSize and sizes vary as
// real logs do. A line already longer stays as it is.
func (g *generator) pad(b []byte, start int, spot padSpot) []byte {
	target := g.lineSize/2 + g.r.IntN(g.lineSize+1)
	need := target - (len(b) - start) - len(spot.prefix) - len(spot.suffix)
	if need <= 0 {
		return b
	}
	k := len(spot.prefix) + need + len(spot.suffix)
	at := start + spot.at
	old := len(b)
	b = slices.Grow(b, k)[:old+k]
	copy(b[at+k:], b[at:old])
	w := b[at:at]
	w = append(w, spot.prefix...)
	w = appendFiller(w, g.r, need)
	_ = append(w, spot.suffix...)
	return b
}

// filler is text to pad lines with: lowercase words and spaces, so padded
// lines compress about as well as real ones, and never a byte that would
// need escaping in JSON or quoting in logfmt.
var filler = func() string {
	words := strings.Fields(`the a request user order session cache retry upstream timeout token
		payment cart item price shipping address query index shard replica leader
		follower commit offset partition batch flush chunk block stream label tenant
		limit rate bytes lines latency error warning debug info trace span parent
		child queue worker job task schedule cron deploy rollout canary region zone`)
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for b.Len() < 8192 {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(' ')
	}
	return b.String()
}()

// appendFiller appends n bytes of filler from a random place in it.
func appendFiller(b []byte, r *rand.Rand, n int) []byte {
	for n > 0 {
		off := r.IntN(len(filler) / 2)
		k := min(n, len(filler)-off)
		b = append(b, filler[off:off+k]...)
		n -= k
	}
	return b
}

// pick returns a random element of s.
func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }
