package spamd

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ErrBadReply marks an answer that is not a SPAMD reply mxgate can use.
var ErrBadReply = errors.New("malformed spamd reply")

// ServerError is a SPAMD reply with a non-zero EX_ code
// ("SPAMD/1.0 75 EX_TEMPFAIL ..."): spamd could not scan the message.
type ServerError struct {
	Code int    // sysexits code, e.g. 75
	Text string // the rest of the response line
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("spamd answered %s (%d): %s", e.Name(), e.Code, e.Text)
}

// Name is the sysexits name of Code, e.g. "EX_TEMPFAIL".
func (e *ServerError) Name() string {
	if n, ok := exNames[e.Code]; ok {
		return n
	}
	return "EX_" + strconv.Itoa(e.Code)
}

var exNames = map[int]string{
	64: "EX_USAGE", 65: "EX_DATAERR", 66: "EX_NOINPUT", 67: "EX_NOUSER",
	68: "EX_NOHOST", 69: "EX_UNAVAILABLE", 70: "EX_SOFTWARE", 71: "EX_OSERR",
	72: "EX_OSFILE", 73: "EX_CANTCREAT", 74: "EX_IOERR", 75: "EX_TEMPFAIL",
	76: "EX_PROTOCOL", 77: "EX_NOPERM", 78: "EX_CONFIG", 79: "EX_TIMEOUT",
}

// Reply is spamd's answer to a REPORT request.
type Reply struct {
	Protocol  string  // "1.1" from "SPAMD/1.1 0 EX_OK"
	Spam      bool    // spamd's own verdict (score >= its threshold)
	Score     float64 // one decimal, as spamd prints it
	Threshold float64 // the user's required_score
	Report    string  // the report body, as sent
	Rules     []string
}

// ruleLine is one row of the report's "Content analysis details" table.
var ruleLine = regexp.MustCompile(`^\s*(-?\d+\.\d)\s+([A-Z0-9_]+)\s`)

// ParseReply parses a whole SPAMD response (up to EOF). A reply with a
// non-zero EX_ code is a *ServerError; anything unusable wraps ErrBadReply.
// Missing or extra line ends after the body are tolerated, as the protocol
// description asks; a body shorter than its Content-length is not (spamd
// closed early).
func ParseReply(b []byte) (*Reply, error) {
	line, rest, ok := cutLine(b)
	if !ok {
		return nil, fmt.Errorf("%w: no complete response line in %d bytes", ErrBadReply, len(b))
	}
	proto, code, text, err := parseResponseLine(line)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, &ServerError{Code: code, Text: text}
	}
	r := &Reply{Protocol: proto}
	contentLength := -1
	sawSpam := false
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return nil, fmt.Errorf("%w: headers not terminated by an empty line", ErrBadReply)
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok {
			return nil, fmt.Errorf("%w: bad header line %q", ErrBadReply, clip(line))
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%w: bad Content-length %q", ErrBadReply, clip([]byte(value)))
			}
			contentLength = n
		case "spam":
			if err := r.parseSpam(value); err != nil {
				return nil, err
			}
			sawSpam = true
		}
	}
	if !sawSpam {
		return nil, fmt.Errorf("%w: no Spam header", ErrBadReply)
	}
	body := rest
	if contentLength >= 0 {
		if len(body) < contentLength {
			return nil, fmt.Errorf("%w: body has %d of %d bytes (connection closed early)", ErrBadReply, len(body), contentLength)
		}
		body = body[:contentLength]
	}
	r.Report = string(body)
	r.Rules = parseRules(r.Report)
	return r, nil
}

// cutLine splits off the first line, ending in LF or CRLF.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, b, false
	}
	return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:], true
}

func parseResponseLine(line []byte) (proto string, code int, text string, err error) {
	fields := strings.SplitN(string(line), " ", 3)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "SPAMD/") {
		return "", 0, "", fmt.Errorf("%w: response line %q", ErrBadReply, clip(line))
	}
	code, convErr := strconv.Atoi(fields[1])
	if convErr != nil || code < 0 {
		return "", 0, "", fmt.Errorf("%w: response line %q", ErrBadReply, clip(line))
	}
	if len(fields) == 3 {
		text = fields[2]
	}
	return strings.TrimPrefix(fields[0], "SPAMD/"), code, text, nil
}

// parseSpam parses "True ; 12.1 / 5.0". spamc only tests for "true", but
// REPORT_IFSPAM answers Yes/No, so both spellings count.
func (r *Reply) parseSpam(v string) error {
	flag, nums, ok := strings.Cut(v, ";")
	score, threshold, ok2 := strings.Cut(nums, "/")
	if !ok || !ok2 {
		return fmt.Errorf("%w: bad Spam header %q", ErrBadReply, clip([]byte(v)))
	}
	switch strings.ToLower(strings.TrimSpace(flag)) {
	case "true", "yes":
		r.Spam = true
	case "false", "no":
	default:
		return fmt.Errorf("%w: bad Spam header %q", ErrBadReply, clip([]byte(v)))
	}
	var err error
	if r.Score, err = parseScore(score); err != nil {
		return fmt.Errorf("%w: bad score in Spam header %q", ErrBadReply, clip([]byte(v)))
	}
	if r.Threshold, err = parseScore(threshold); err != nil {
		return fmt.Errorf("%w: bad threshold in Spam header %q", ErrBadReply, clip([]byte(v)))
	}
	return nil
}

// maxScore bounds scores to what SpamAssassin can produce; beyond it the
// header and bar arithmetic would be meaningless.
const maxScore = 1e6

func parseScore(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, err
	}
	// ParseFloat accepts "NaN" and "Inf"; spamd never sends them.
	if math.IsNaN(f) || math.Abs(f) > maxScore {
		return 0, fmt.Errorf("score %q out of range", s)
	}
	return f, nil
}

// parseRules collects the rule names of the report table: the rows after
// the "---- ----" separator. Rows before it (the content preview) can look
// like rules and are ignored. The names are sorted: spamd lists rules of
// equal score in varying order, and log lines should not vary.
func parseRules(report string) []string {
	var rules []string
	inTable := false
	for line := range strings.Lines(report) {
		line = strings.TrimRight(line, "\r\n")
		if !inTable {
			inTable = strings.HasPrefix(line, "----")
			continue
		}
		if m := ruleLine.FindStringSubmatch(line); m != nil {
			rules = append(rules, m[2])
		}
	}
	slices.Sort(rules)
	return rules
}

// clip shortens untrusted bytes quoted in an error message.
func clip(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
