package logql

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber // digits with an optional fraction and unit suffix: 200, 1.5, 5m, 10KB
	tLBrace
	tRBrace
	tLParen
	tRParen
	tLBracket
	tRBracket
	tComma
	tPipe      // |
	tPipeExact // |=
	tPipeMatch // |~
	tNeq       // !=
	tNre       // !~
	tEq        // =
	tEqEq      // ==
	tRe        // =~
	tGt        // >
	tGte       // >=
	tLt        // <
	tLte       // <=
	tAdd       // +
	tSub       // -
	tMul       // *
	tDiv       // /
)

var tokNames = map[tokKind]string{
	tEOF: "end of query", tIdent: "identifier", tString: "string", tNumber: "number",
	tLBrace: "'{'", tRBrace: "'}'", tLParen: "'('", tRParen: "')'", tLBracket: "'['", tRBracket: "']'",
	tComma: "','", tPipe: "'|'", tPipeExact: "'|='", tPipeMatch: "'|~'", tNeq: "'!='", tNre: "'!~'",
	tEq: "'='", tEqEq: "'=='", tRe: "'=~'", tGt: "'>'", tGte: "'>='", tLt: "'<'", tLte: "'<='",
	tAdd: "'+'", tSub: "'-'", tMul: "'*'", tDiv: "'/'",
}

func (k tokKind) String() string { return tokNames[k] }

type token struct {
	kind tokKind
	pos  int    // byte offset in the query
	text string // the token as written (for strings: the unquoted value)
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of query"
	case tString:
		return strconv.Quote(t.text)
	default:
		return strconv.Quote(t.text)
	}
}

// lex splits a query into tokens. It reports the first malformed token
// (an unterminated string, a stray character) as a parse error.
func lex(q string) ([]token, error) {
	var toks []token
	i := 0
	for {
		for i < len(q) && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r') {
			i++
		}
		if i >= len(q) {
			return append(toks, token{kind: tEOF, pos: i}), nil
		}
		start := i
		c := q[i]
		two := ""
		if i+1 < len(q) {
			two = q[i : i+2]
		}
		emit := func(k tokKind, n int) {
			toks = append(toks, token{kind: k, pos: start, text: q[start : start+n]})
			i = start + n
		}
		switch {
		case two == "|=":
			emit(tPipeExact, 2)
		case two == "|~":
			emit(tPipeMatch, 2)
		case two == "!=":
			emit(tNeq, 2)
		case two == "!~":
			emit(tNre, 2)
		case two == "==":
			emit(tEqEq, 2)
		case two == "=~":
			emit(tRe, 2)
		case two == ">=":
			emit(tGte, 2)
		case two == "<=":
			emit(tLte, 2)
		case c == '|':
			emit(tPipe, 1)
		case c == '=':
			emit(tEq, 1)
		case c == '>':
			emit(tGt, 1)
		case c == '<':
			emit(tLt, 1)
		case c == '{':
			emit(tLBrace, 1)
		case c == '}':
			emit(tRBrace, 1)
		case c == '(':
			emit(tLParen, 1)
		case c == ')':
			emit(tRParen, 1)
		case c == '[':
			emit(tLBracket, 1)
		case c == ']':
			emit(tRBracket, 1)
		case c == ',':
			emit(tComma, 1)
		case c == '+':
			emit(tAdd, 1)
		case c == '-':
			emit(tSub, 1)
		case c == '*':
			emit(tMul, 1)
		case c == '/':
			emit(tDiv, 1)
		case c == '"' || c == '`':
			s, n, err := lexString(q[i:])
			if err != nil {
				return nil, &ParseError{Query: q, Pos: start, Msg: err.Error()}
			}
			toks = append(toks, token{kind: tString, pos: start, text: s})
			i += n
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(q) && q[i+1] >= '0' && q[i+1] <= '9':
			for i < len(q) && (q[i] >= '0' && q[i] <= '9' || q[i] == '.' || isIdentByte(q[i], true) || q[i] == 0xc2 || q[i] == 0xb5) {
				i++ // digits, fraction, and a unit suffix (ms, KB, µs, 1h30m)
			}
			toks = append(toks, token{kind: tNumber, pos: start, text: q[start:i]})
		case isIdentByte(c, false):
			for i < len(q) && isIdentByte(q[i], true) {
				i++
			}
			toks = append(toks, token{kind: tIdent, pos: start, text: q[start:i]})
		default:
			r, _ := utf8.DecodeRuneInString(q[i:])
			return nil, &ParseError{Query: q, Pos: start, Msg: fmt.Sprintf("unexpected character %q", r)}
		}
	}
}

func isIdentByte(c byte, rest bool) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || rest && c >= '0' && c <= '9'
}

// lexString reads a "double-quoted" (Go escapes) or `raw` string at the
// start of s, returning its value and length.
func lexString(s string) (string, int, error) {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == q:
			lit := s[:i+1]
			if q == '`' {
				return lit[1:i], i + 1, nil
			}
			v, err := strconv.Unquote(lit)
			if err != nil {
				return "", 0, fmt.Errorf("invalid string %s: %v", lit, err)
			}
			return v, i + 1, nil
		case s[i] == '\\' && q == '"':
			i++
		case s[i] == '\n' && q == '"':
			return "", 0, fmt.Errorf("newline in string")
		}
	}
	return "", 0, fmt.Errorf("unterminated string %s", strings.TrimSpace(s[:min(len(s), 20)]))
}
