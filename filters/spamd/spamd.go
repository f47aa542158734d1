// Package spamd is mxgate's SpamAssassin filter: a SPAMC/1.5 client that
// sends each message to spamd once (REPORT, as Exim does), turns the score
// into a verdict by the configured tag, quarantine and reject thresholds,
// and stamps the X-Spam-* header set a cPanel Exim writes.
package spamd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"mxgate/filters"
	"mxgate/spool"
)

// connectTimeout bounds each connection attempt, well below the
// per-message timeout of the filter chain, so that the next address is
// still tried when one is dead.
const connectTimeout = 5 * time.Second

// maxReplySize bounds what is read from spamd. A REPORT answer is a few KiB;
// more is a broken or hostile peer.
const maxReplySize = 1 << 20

// ErrUnavailable means no address accepted a connection.
var ErrUnavailable = errors.New("no spamd server reachable")

// Options configures a Filter. They are taken as given: package config
// ([spamd]) fills in every default and checks every value.
type Options struct {
	// Addresses are tried in order until one accepts the connection:
	// "host:port" or "unix:/path/to/socket".
	Addresses []string
	// User is sent as spamd's User header (whose preferences apply);
	// empty sends none.
	User string
	// MaxSize: larger messages (spooled LF size) are not sent and are
	// stamped "No, skipped".
	MaxSize int64
	// TagScore: at or above it a message is spam (X-Spam-Flag: YES).
	// nil = the threshold spamd reports (the user's required_score).
	TagScore *float64
	// QuarantineScore: at or above it the message is quarantined. nil =
	// never (0 is a score like any other).
	QuarantineScore *float64
	// RejectScore: at or above it DATA is refused with 550 5.7.1;
	// math.Inf(1) never rejects.
	RejectScore float64
	// Report adds X-Spam-Report (SpamAssassin's report, folded).
	Report bool
	// SubjectTag, when not empty, is put in front of the Subject of spam
	// (score at or above the tag score), as SpamAssassin's
	// "rewrite_header Subject" does: see subjectEdits. One line of
	// printable ASCII (config checks it).
	SubjectTag string
}

// Filter is the spamd filter. It is safe for concurrent use.
type Filter struct {
	opt Options
}

var (
	_ filters.Filter      = (*Filter)(nil)
	_ filters.Uncheckable = (*Filter)(nil)
)

// New returns a Filter for opt.
func New(opt Options) *Filter {
	return &Filter{opt: opt}
}

// Name implements filters.Filter.
func (f *Filter) Name() string { return "spamd" }

// Check implements filters.Filter: one REPORT request per message.
func (f *Filter) Check(ctx context.Context, m *filters.Message) (filters.Verdict, error) {
	if m.Size > f.opt.MaxSize {
		return filters.Verdict{
			Action:  filters.Accept,
			Headers: []spool.Header{header(fmt.Sprintf("X-Spam-Status: No, skipped, size=%d limit=%d", m.Size, f.opt.MaxSize))},
			Log:     fmt.Sprintf("spamd skipped size=%d limit=%d", m.Size, f.opt.MaxSize),
		}, nil
	}
	r, err := f.Scan(ctx, m)
	if err != nil {
		return filters.Verdict{}, err
	}
	return f.verdict(r, m.Headers), nil
}

// Scan sends m to the first spamd that accepts a connection and returns
// its parsed answer. Only a failed connect moves on to the next address: a
// server that accepted and then failed has seen the message, and trying
// another would double the scanning cost of a message that breaks spamd.
func (f *Filter) Scan(ctx context.Context, m *filters.Message) (*Reply, error) {
	if len(f.opt.Addresses) == 0 {
		return nil, fmt.Errorf("spamd: %w: no address configured", ErrUnavailable)
	}
	var dialErrs []error
	for _, addr := range f.opt.Addresses {
		conn, err := f.dial(ctx, addr)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("spamd %s: %w", addr, err)
			}
			dialErrs = append(dialErrs, err)
			continue
		}
		r, err := exchange(ctx, conn, f.opt.User, m)
		if err != nil {
			return nil, fmt.Errorf("spamd %s: message %s: %w", addr, m.ID, err)
		}
		return r, nil
	}
	return nil, fmt.Errorf("spamd: %w: %w", ErrUnavailable, errors.Join(dialErrs...))
}

func (f *Filter) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: connectTimeout}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return d.DialContext(ctx, "unix", path)
	}
	return d.DialContext(ctx, "tcp", addr)
}

// exchange runs one request on conn and closes it. The context's deadline
// and cancellation reach the blocking reads and writes through the
// connection's deadline and an early Close.
func exchange(ctx context.Context, conn net.Conn, user string, m *filters.Message) (*Reply, error) {
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	if err := request(conn, user, m); err != nil {
		return nil, ctxErr(ctx, err)
	}
	r, err := readReply(conn)
	return r, ctxErr(ctx, err)
}

// request writes the REPORT request and half-closes the connection, as
// spamc and Exim do. When spamd refuses early (a bad header) the write
// fails; its error reply, if any, says why, so it is preferred to the
// write error.
func request(conn net.Conn, user string, m *filters.Message) error {
	n, err := m.OpenSize(true)
	if err != nil {
		return fmt.Errorf("reading message: %w", err)
	}
	body, err := m.Open(true)
	if err != nil {
		return fmt.Errorf("reading message: %w", err)
	}
	defer body.Close()
	var hdr strings.Builder
	hdr.WriteString("REPORT SPAMC/1.5\r\n")
	if user != "" {
		hdr.WriteString("User: " + user + "\r\n")
	}
	hdr.WriteString("Content-length: " + strconv.FormatInt(n, 10) + "\r\n\r\n")
	if _, err = io.WriteString(conn, hdr.String()); err == nil {
		var sent int64
		sent, err = io.Copy(conn, body)
		if err == nil && sent != n {
			// The spool file changed under us: spamd would wait for the
			// missing bytes or misparse the extra ones.
			return fmt.Errorf("message is %d bytes, announced %d", sent, n)
		}
	}
	if err != nil {
		var se *ServerError
		if _, rerr := readReply(conn); errors.As(rerr, &se) {
			return se
		}
		return fmt.Errorf("sending message: %w", err)
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("half-closing: %w", err)
		}
	}
	return nil
}

func readReply(conn net.Conn) (*Reply, error) {
	b, err := io.ReadAll(io.LimitReader(conn, maxReplySize+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if len(b) > maxReplySize {
		return nil, fmt.Errorf("%w: reply longer than %d bytes", ErrBadReply, maxReplySize)
	}
	return ParseReply(b)
}

// ctxErr reports a failure caused by the context ending as that, rather
// than as the "use of closed connection" or i/o timeout it produced.
func ctxErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
	}
	return err
}

// verdict applies the thresholds to spamd's answer.
func (f *Filter) verdict(r *Reply, headers []spool.Header) filters.Verdict {
	score := round1(r.Score)
	tag := r.Threshold
	if f.opt.TagScore != nil {
		tag = *f.opt.TagScore
	}
	spam := score >= tag
	v := filters.Verdict{
		Action:  filters.Accept,
		Score:   score,
		Scored:  true,
		Headers: f.stamp(r, score, spam),
		Log:     fmt.Sprintf("spamd score=%s required=%s", formatScore(score), formatScore(tag)),
	}
	if spam && f.opt.SubjectTag != "" {
		var add *spool.Header
		v.Edits, add = subjectEdits(headers, f.opt.SubjectTag)
		if add != nil {
			v.Headers = append(v.Headers, *add)
		}
	}
	if len(r.Rules) > 0 {
		v.Log += " tests=" + strings.Join(r.Rules, ",")
	}
	switch {
	case score >= f.opt.RejectScore:
		v.Action, v.ReasonCode = filters.Reject, "spam-score"
		v.Code, v.Enhanced = 550, [3]int{5, 7, 1}
		v.Text = fmt.Sprintf("Message scored %s spam points (threshold %s); rejected as spam",
			formatScore(score), formatScore(f.opt.RejectScore))
		v.Reason = fmt.Sprintf("spam score %s >= reject %s", formatScore(score), formatScore(f.opt.RejectScore))
	case f.opt.QuarantineScore != nil && score >= *f.opt.QuarantineScore:
		v.Action, v.ReasonCode = filters.Quarantine, "spam-score"
		v.Reason = fmt.Sprintf("spam score %s >= quarantine %s", formatScore(score), formatScore(*f.opt.QuarantineScore))
	}
	return v
}

// stamp is the cPanel header set. X-Spam-Checker-Version is left out:
// spamd's REPORT answer does not say which version scanned, and a made-up
// one would mislead whoever reads it.
func (f *Filter) stamp(r *Reply, score float64, spam bool) []spool.Header {
	status, scoreInt, bar := Format(score, spam)
	hs := []spool.Header{
		header("X-Spam-Status: " + status),
		header("X-Spam-Score: " + scoreInt),
		header("X-Spam-Bar: " + bar),
	}
	if f.opt.Report {
		if rep := foldReport(r.Report); rep != "" {
			hs = append(hs, header("X-Spam-Report: "+rep))
		}
	}
	if spam {
		hs = append(hs, header("X-Spam-Flag: YES"))
	}
	return hs
}

// Format returns the values of X-Spam-Status, X-Spam-Score and X-Spam-Bar
// for score: "Yes, score=12.3", "123" (score×10 rounded, Exim's
// $spam_score_int), "++++++++++++" (one + per whole point, - for negative
// scores, / when the whole part is 0, at most 50).
func Format(score float64, spam bool) (status, scoreInt, bar string) {
	score = round1(score)
	yn := "No"
	if spam {
		yn = "Yes"
	}
	status = yn + ", score=" + formatScore(score)
	scoreInt = strconv.Itoa(int(math.Round(score * 10)))
	n := int(math.Abs(math.Trunc(score)))
	switch {
	case n == 0:
		bar = "/"
	case score > 0:
		bar = strings.Repeat("+", min(n, 50))
	default:
		bar = strings.Repeat("-", min(n, 50))
	}
	return status, scoreInt, bar
}

// round1 rounds to spamd's one decimal and turns -0.0 (spamd prints it for
// tiny negative scores) into 0.
func round1(s float64) float64 {
	r := math.Round(s*10) / 10
	if r == 0 {
		return 0
	}
	return r
}

func formatScore(s float64) string {
	if math.IsInf(s, 0) {
		return "off"
	}
	return strconv.FormatFloat(round1(s), 'f', 1, 64)
}

// foldReport turns the report into a header value in the form Exim gives
// $spam_report: every further line a continuation line. Blank lines are dropped
// (a whitespace-only line inside a header trips some parsers), non-ASCII
// and control bytes become "?", and over-long lines are cut to stay within
// SMTP's line limit.
func foldReport(report string) string {
	const maxLine = 900
	var lines []string
	for line := range strings.Lines(report) {
		line = strings.TrimRight(line, " \t\r\n")
		if strings.TrimSpace(line) == "" {
			continue
		}
		b := []byte(line)
		for i, c := range b {
			if (c < 0x20 && c != '\t') || c > 0x7e {
				b[i] = '?'
			}
		}
		if len(b) > maxLine {
			b = b[:maxLine]
		}
		lines = append(lines, string(b))
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n ")
}

// Unchecked implements filters.Uncheckable: the stamp of a message accepted
// without a scan. The reason is a short class, not the error text, which
// names internal hosts and ports the recipient has no business seeing.
func (f *Filter) Unchecked(err error) []spool.Header {
	return []spool.Header{header("X-Spam-Status: Unchecked (spamd: " + reason(err) + ")")}
}

func reason(err error) string {
	var se *ServerError
	switch {
	case errors.Is(err, filters.ErrBreakerOpen):
		return "circuit breaker open"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &se):
		return se.Name()
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrBadReply):
		return "malformed reply"
	}
	return "scan failed"
}

func header(text string) spool.Header {
	return spool.Header{Type: ' ', Text: text + "\n"}
}
