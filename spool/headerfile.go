package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Header is one message header as the -H file keeps it.
type Header struct {
	Type byte   // ' ' other, 'P' Received, 'F' From, 'T' To, 'C' Cc, 'B' Bcc, 'I' Message-Id, 'R' Reply-To, 'S' Sender, '*' deleted
	Text string // raw "Name: value\n" including folded continuation lines, LF endings
}

// Name is the field name: the text before the first colon, without the
// white space the obsolete syntax allows before it ("Subject" for
// "Subject : hi"). It is "" when Text has no colon.
func (h Header) Name() string {
	name, _, ok := strings.Cut(h.Text, ":")
	if !ok {
		return ""
	}
	return strings.TrimRight(name, " \t")
}

// Value is the field body as written, the way a milter sees it without
// SMFIP_HDR_LEADSPC (sendmail's convention): the text after the colon
// without one leading space and without the final LF. Folds stay as they
// are (LF followed by white space), so Name() + ": " + Value() + "\n"
// gives back a field written with one space after the colon.
// UnfoldedValue is the one-line form.
func (h Header) Value() string {
	_, value, _ := strings.Cut(h.Text, ":")
	value = strings.TrimSuffix(value, "\n")
	return strings.TrimPrefix(value, " ")
}

// UnfoldedValue is Value on one line, as a parser of the field wants it:
// the line breaks of folds removed (RFC 5322 unfolding: the white space
// after them stays) and white space trimmed at both ends.
func (h Header) UnfoldedValue() string {
	v := h.Value()
	if strings.ContainsAny(v, "\r\n") {
		v = lineBreaks.Replace(v)
	}
	return strings.Trim(v, " \t")
}

// lineBreaks removes CR and LF; built once, as a Replacer's tables cost
// more than its use.
var lineBreaks = strings.NewReplacer("\r", "", "\n", "")

// HeaderType returns the Exim type letter for a header name (any case).
func HeaderType(name string) byte {
	switch strings.ToLower(name) {
	case "received":
		return 'P'
	case "from":
		return 'F'
	case "to":
		return 'T'
	case "cc":
		return 'C'
	case "bcc":
		return 'B'
	case "message-id":
		return 'I'
	case "reply-to":
		return 'R'
	case "sender":
		return 'S'
	}
	return ' '
}

func validHeaderType(t byte) bool {
	return strings.IndexByte(" PFTCBIRS*", t) >= 0
}

// checkHeaderText enforces what OpenMessage relies on to rebuild a message:
// a "Name:" first line, continuation lines that start with white space,
// and a final LF, so no header can end the header block early.
func checkHeaderText(text string) error {
	if !strings.HasSuffix(text, "\n") {
		return errors.New("header text does not end with a newline")
	}
	lines := strings.Split(text[:len(text)-1], "\n")
	name, _, ok := strings.Cut(lines[0], ":")
	if !ok || name == "" || name[0] == ' ' || name[0] == '\t' {
		return fmt.Errorf("header %q does not start with \"Name:\"", truncate(lines[0]))
	}
	for _, l := range lines[1:] {
		if l == "" || (l[0] != ' ' && l[0] != '\t') {
			return fmt.Errorf("header %q has a continuation line that is not folded", truncate(lines[0]))
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// Envelope is what the -H file records about a message.
type Envelope struct {
	ID               ID
	Sender           string   // "" is the null sender <>
	Recipients       []string // all envelope recipients, in RCPT order
	Done             []string // recipients delivered or failed for good (never tried again)
	Received         time.Time
	HeloName         string
	HostAddress      string // client "ip:port" (net.JoinHostPort form); written as Exim's "[ip]:port"
	ReceivedProtocol string
	BodyLinecount    int
	// BodySize is the body's bytes in the -D file (after its "ID-D"
	// line), mxgate's -body_size: with BodyLinecount what VerifyData
	// checks the -D against. 0 in files written before it was recorded.
	BodySize   int64
	Frozen     time.Time // zero: not frozen
	ManualThaw bool
	// Hold is the rate limit's hold key ("NAME:VALUE") a held message is
	// frozen under, for `mxgate hold`: mxgate's -mxgate_hold line.
	Hold             string
	FirstFailed      time.Time // first deferral; zero: never deferred
	NextTry          time.Time // do not retry before; zero: due now
	Attempts         int
	WarningCount     int // delay warnings sent to the sender (line 4 of -H, as Exim)
	DeliverFirstTime bool
	Headers          []Header
}

// Pending returns the recipients not yet in Done, in RCPT order.
func (e *Envelope) Pending() []string {
	done := make(map[string]bool, len(e.Done))
	for _, d := range e.Done {
		done[d] = true
	}
	var p []string
	for _, r := range e.Recipients {
		if !done[r] {
			p = append(p, r)
		}
	}
	return p
}

// HeaderSize returns the bytes of the headers that are transmitted (all
// but the deleted ones).
func (e *Envelope) HeaderSize() int64 { return HeaderSize(e.Headers) }

// HeaderSize is the bytes of hs that are transmitted: every header but
// the deleted ones ('*'), in LF form. Envelope.HeaderSize and the
// pipeline's Message.HeaderSize are this.
func HeaderSize(hs []Header) int64 {
	var n int64
	for _, h := range hs {
		if h.Type != '*' {
			n += int64(len(h.Text))
		}
	}
	return n
}

// WriteHeaderFile writes env in Exim's -H format with one Write call. It
// refuses an envelope that could not be read back: an invalid id, an
// address or option value containing a line break, an empty recipient, or
// a malformed header.
func WriteHeaderFile(w io.Writer, env *Envelope) error {
	b, err := appendHeaderFile(nil, env)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func appendHeaderFile(b []byte, env *Envelope) ([]byte, error) {
	if !ValidID(string(env.ID)) {
		return nil, fmt.Errorf("spool: invalid message id %q", env.ID)
	}
	fail := func(format string, a ...any) ([]byte, error) {
		return nil, fmt.Errorf("spool: message %s: "+format, append([]any{env.ID}, a...)...)
	}
	if err := checkValue(env.Sender, true); err != nil {
		return fail("sender: %w", err)
	}
	for _, r := range env.Recipients {
		if err := checkValue(r, false); err != nil {
			return fail("recipient: %w", err)
		}
	}
	for _, r := range env.Done {
		if err := checkValue(r, false); err != nil {
			return fail("done recipient: %w", err)
		}
	}
	for name, v := range map[string]string{"HELO name": env.HeloName, "protocol": env.ReceivedProtocol, "hold key": env.Hold} {
		if err := checkValue(v, true); err != nil {
			return fail("%s: %w", name, err)
		}
	}
	hostAddr, err := formatHostAddress(env.HostAddress)
	if err != nil {
		return fail("%w", err)
	}
	if env.Received.IsZero() || env.Received.Unix() < 0 {
		return fail("no received time")
	}
	for name, t := range map[string]time.Time{"frozen": env.Frozen, "first failed": env.FirstFailed, "next try": env.NextTry} {
		if !t.IsZero() && t.Unix() < 0 {
			return fail("%s time %v is before 1970", name, t)
		}
	}
	if env.BodyLinecount < 0 || env.BodySize < 0 || env.Attempts < 0 {
		return fail("negative body line count, body size or attempts")
	}
	for i, h := range env.Headers {
		if !validHeaderType(h.Type) {
			return fail("header %d: invalid type %q", i+1, h.Type)
		}
		if err := checkHeaderText(h.Text); err != nil {
			return fail("header %d: %w", i+1, err)
		}
	}

	b = fmt.Appendf(b, "%s-H\nmxgate %d %d\n<%s>\n%d %d\n", env.ID, os.Getuid(), os.Getgid(), env.Sender, env.Received.Unix(), env.WarningCount)
	b = fmt.Appendf(b, "-received_time_usec .%06d\n", env.Received.Nanosecond()/1000)
	if env.HeloName != "" {
		b = fmt.Appendf(b, "-helo_name %s\n", env.HeloName)
	}
	if hostAddr != "" {
		b = fmt.Appendf(b, "-host_address %s\n", hostAddr)
	}
	if env.ReceivedProtocol != "" {
		b = fmt.Appendf(b, "-received_protocol %s\n", env.ReceivedProtocol)
	}
	b = fmt.Appendf(b, "-body_linecount %d\n", env.BodyLinecount)
	if env.BodySize > 0 {
		b = fmt.Appendf(b, "-body_size %d\n", env.BodySize)
	}
	if env.DeliverFirstTime {
		b = append(b, "-deliver_firsttime\n"...)
	}
	if !env.Frozen.IsZero() {
		b = fmt.Appendf(b, "-frozen %d\n", env.Frozen.Unix())
	}
	if env.ManualThaw {
		b = append(b, "-manual_thaw\n"...)
	}
	if env.Hold != "" {
		b = fmt.Appendf(b, "-mxgate_hold %s\n", env.Hold)
	}
	if !env.FirstFailed.IsZero() {
		b = fmt.Appendf(b, "-retry_first_failed %d\n", env.FirstFailed.Unix())
	}
	if !env.NextTry.IsZero() {
		b = fmt.Appendf(b, "-retry_next %d\n", env.NextTry.Unix())
	}
	if env.Attempts > 0 {
		b = fmt.Appendf(b, "-retry_attempts %d\n", env.Attempts)
	}

	// Exim's non-recipients tree is a binary search tree read back by
	// shape; a chain of right children in ascending byte order is one.
	done := slices.Clone(env.Done)
	slices.Sort(done)
	done = slices.Compact(done)
	if len(done) == 0 {
		b = append(b, "XX\n"...)
	}
	for i, d := range done {
		flags := "NY "
		if i == len(done)-1 {
			flags = "NN "
		}
		b = append(append(append(b, flags...), d...), '\n')
	}
	b = fmt.Appendf(b, "%d\n", len(env.Recipients))
	for _, r := range env.Recipients {
		b = append(append(b, r...), '\n')
	}
	b = append(b, '\n')
	for _, h := range env.Headers {
		b = fmt.Appendf(b, "%03d%c %s", len(h.Text), h.Type, h.Text)
	}
	return b, nil
}

// checkValue refuses what would break the line-based format.
func checkValue(v string, emptyOK bool) error {
	if v == "" && !emptyOK {
		return errors.New("empty address")
	}
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("%q contains a line break", v)
	}
	return nil
}

// formatHostAddress turns "ip:port" (or a bare ip) into Exim's "[ip]:port".
func formatHostAddress(hp string) (string, error) {
	if hp == "" {
		return "", nil
	}
	if ip, err := netip.ParseAddr(hp); err == nil {
		return "[" + ip.String() + "]", nil
	}
	host, port, err := net.SplitHostPort(hp)
	if err == nil {
		var ip netip.Addr
		if ip, err = netip.ParseAddr(host); err == nil {
			if _, err = strconv.ParseUint(port, 10, 16); err == nil {
				return "[" + ip.String() + "]:" + port, nil
			}
		}
	}
	return "", fmt.Errorf("host address %q is not ip:port", hp)
}

// parseHostAddress is the inverse of formatHostAddress.
func parseHostAddress(v string) (string, error) {
	rest, ok := strings.CutPrefix(v, "[")
	if !ok {
		return "", errors.New("does not start with [")
	}
	host, port, ok := strings.Cut(rest, "]")
	if !ok {
		return "", errors.New("has no ]")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.String() != host {
		return "", fmt.Errorf("%q is not an IP address", host)
	}
	if port == "" {
		return host, nil
	}
	port, ok = strings.CutPrefix(port, ":")
	if !ok || !isDigits(port) || len(port) > 5 {
		return "", errors.New("bad port")
	}
	if n, _ := strconv.Atoi(port); n > 65535 || strconv.Itoa(n) != port {
		return "", errors.New("bad port")
	}
	return net.JoinHostPort(host, port), nil
}

// ParseError is a malformed -H file; Line is 1-based.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

type lineReader struct {
	r    *bufio.Reader
	line int // number of the line last returned
}

// next returns the next line without its LF; a final line without LF is
// an error, since every writer ends lines with one.
func (lr *lineReader) next(what string) (string, error) {
	s, err := lr.r.ReadString('\n')
	lr.line++
	if err == io.EOF {
		if s == "" {
			return "", lr.errorf("file ends where %s was expected", what)
		}
		return "", lr.errorf("%s: no newline at end of file", what)
	}
	if err != nil {
		return "", fmt.Errorf("line %d: %w", lr.line, err)
	}
	s = s[:len(s)-1]
	if strings.IndexByte(s, '\r') >= 0 {
		// WriteHeaderFile never writes one; a CR is damage or an attack.
		return "", lr.errorf("%s: carriage return in line", what)
	}
	return s, nil
}

func (lr *lineReader) errorf(format string, a ...any) error {
	return &ParseError{Line: lr.line, Msg: fmt.Sprintf(format, a...)}
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseCount parses a non-negative decimal without sign or leading zeros
// (other than "0" itself), small enough for any count or epoch here.
func parseCount(s string) (int64, bool) {
	if !isDigits(s) || len(s) > 18 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// maxCount bounds line counts and attempts so they fit an int everywhere.
const maxCount = 1<<31 - 1

// ParseHeaderFile reads an -H file. It is strict: any line that is not
// exactly what WriteHeaderFile writes is a *ParseError naming the line,
// and memory use is bounded by the input, whatever lengths it declares.
func ParseHeaderFile(r io.Reader) (*Envelope, error) {
	lr := &lineReader{r: bufio.NewReader(r)}
	env := &Envelope{}

	l, err := lr.next("the id line")
	if err != nil {
		return nil, err
	}
	id, ok := strings.CutSuffix(l, "-H")
	if !ok || !ValidID(id) {
		return nil, lr.errorf("%q is not a message id followed by -H", truncate(l))
	}
	env.ID = ID(id)

	if l, err = lr.next("the owner line"); err != nil {
		return nil, err
	}
	if f := strings.Split(l, " "); len(f) != 3 || f[0] == "" || !isDigits(f[1]) || !isDigits(f[2]) {
		return nil, lr.errorf("%q is not \"login uid gid\"", truncate(l))
	}

	if l, err = lr.next("the sender line"); err != nil {
		return nil, err
	}
	if len(l) < 2 || l[0] != '<' || l[len(l)-1] != '>' {
		return nil, lr.errorf("sender %q is not in <>", truncate(l))
	}
	env.Sender = l[1 : len(l)-1]

	if l, err = lr.next("the received time line"); err != nil {
		return nil, err
	}
	sec, warn, ok := strings.Cut(l, " ")
	secs, ok1 := parseCount(sec)
	warnings, ok2 := parseCount(warn)
	if !ok || !ok1 || !ok2 || warnings > maxCount {
		return nil, lr.errorf("%q is not \"epoch warning-count\"", truncate(l))
	}
	env.Received = time.Unix(secs, 0)
	env.WarningCount = int(warnings)

	if l, err = parseOptions(lr, env); err != nil {
		return nil, err
	}
	if err := parseTree(lr, l, env); err != nil {
		return nil, err
	}

	if l, err = lr.next("the recipient count"); err != nil {
		return nil, err
	}
	n, ok := parseCount(l)
	if !ok {
		return nil, lr.errorf("recipient count %q is not a number", truncate(l))
	}
	for i := int64(0); i < n; i++ {
		if l, err = lr.next(fmt.Sprintf("recipient %d of %d", i+1, n)); err != nil {
			return nil, err
		}
		if l == "" {
			return nil, lr.errorf("recipient %d of %d is empty", i+1, n)
		}
		env.Recipients = append(env.Recipients, l)
	}

	if l, err = lr.next("the blank line before the headers"); err != nil {
		return nil, err
	}
	if l != "" {
		return nil, lr.errorf("%q where the blank line before the headers was expected (recipient count %d wrong?)", truncate(l), n)
	}
	if err := parseHeaders(lr, env); err != nil {
		return nil, err
	}
	return env, nil
}

func parseOptions(lr *lineReader, env *Envelope) (string, error) {
	seen := map[string]bool{}
	for {
		l, err := lr.next("the non-recipients tree")
		if err != nil || !strings.HasPrefix(l, "-") {
			return l, err
		}
		name, value, hasValue := strings.Cut(l, " ")
		if seen[name] {
			return "", lr.errorf("option %s appears twice", truncate(name))
		}
		seen[name] = true
		bad := func() (string, error) {
			return "", lr.errorf("bad option line %q", truncate(l))
		}
		epoch := func(t *time.Time) bool {
			v, ok := parseCount(value)
			*t = time.Unix(v, 0)
			return ok && hasValue
		}
		count := func(n *int) bool {
			v, ok := parseCount(value)
			*n = int(v)
			return ok && hasValue && v <= maxCount
		}
		flag := func(b *bool) bool {
			*b = true
			return !hasValue
		}
		text := func(s *string) bool {
			*s = value
			return hasValue && value != ""
		}
		var ok bool
		switch name {
		case "-received_time_usec":
			frac, isFrac := strings.CutPrefix(value, ".")
			usec, _ := strconv.Atoi(frac)
			ok = hasValue && isFrac && len(frac) == 6 && isDigits(frac)
			env.Received = time.Unix(env.Received.Unix(), int64(usec)*1000)
		case "-helo_name":
			ok = text(&env.HeloName)
		case "-host_address":
			var perr error
			if env.HostAddress, perr = parseHostAddress(value); perr != nil {
				return "", lr.errorf("bad option line %q: host address %v", truncate(l), perr)
			}
			ok = hasValue
		case "-received_protocol":
			ok = text(&env.ReceivedProtocol)
		case "-body_linecount":
			ok = count(&env.BodyLinecount)
		case "-body_size":
			env.BodySize, ok = parseCount(value)
			ok = ok && hasValue
		case "-deliver_firsttime":
			ok = flag(&env.DeliverFirstTime)
		case "-frozen":
			ok = epoch(&env.Frozen)
		case "-manual_thaw":
			ok = flag(&env.ManualThaw)
		case "-mxgate_hold":
			ok = text(&env.Hold)
		case "-retry_first_failed":
			ok = epoch(&env.FirstFailed)
		case "-retry_next":
			ok = epoch(&env.NextTry)
		case "-retry_attempts":
			ok = count(&env.Attempts)
		default:
			return "", lr.errorf("unknown option %q", truncate(name))
		}
		if !ok {
			return bad()
		}
	}
}

// parseTree reads Exim's non-recipients tree, whose first line is first:
// "XX" when empty, else nodes in pre-order, each "LR address" where L and
// R say whether a left and a right subtree follow. Counting the subtrees
// still owed reads any shape without recursion.
func parseTree(lr *lineReader, first string, env *Envelope) error {
	if first == "XX" {
		return nil
	}
	l := first
	for owed := 1; ; {
		if len(l) < 4 || l[2] != ' ' || !strings.ContainsRune("YN", rune(l[0])) || !strings.ContainsRune("YN", rune(l[1])) {
			return lr.errorf("%q is not a non-recipients tree node (YY, YN, NY or NN and an address)", truncate(l))
		}
		env.Done = append(env.Done, l[3:])
		owed--
		if l[0] == 'Y' {
			owed++
		}
		if l[1] == 'Y' {
			owed++
		}
		if owed == 0 {
			return nil
		}
		var err error
		if l, err = lr.next("a non-recipients tree node"); err != nil {
			return err
		}
	}
}

// parseHeaders reads "%03d<type> <text>" records up to the end of input.
// A declared length is only trusted as far as bytes actually arrive.
func parseHeaders(lr *lineReader, env *Envelope) error {
	for i := 1; ; i++ {
		start := lr.line + 1
		herr := func(format string, a ...any) error {
			return &ParseError{Line: start, Msg: fmt.Sprintf("header %d: ", i) + fmt.Sprintf(format, a...)}
		}
		var digits []byte
		for {
			c, err := lr.r.ReadByte()
			if err == io.EOF && len(digits) == 0 {
				return nil
			}
			if err != nil {
				return herr("file ends inside the length prefix")
			}
			if c < '0' || c > '9' {
				lr.r.UnreadByte()
				break
			}
			if digits = append(digits, c); len(digits) > 18 {
				return herr("length prefix too long")
			}
		}
		n, err := strconv.ParseInt(string(digits), 10, 64)
		if err != nil || fmt.Sprintf("%03d", n) != string(digits) || n == 0 {
			return herr("bad length prefix %q", digits)
		}
		typ, err1 := lr.r.ReadByte()
		sp, err2 := lr.r.ReadByte()
		if err1 != nil || err2 != nil || sp != ' ' || !validHeaderType(typ) {
			return herr("no valid type letter and space after the length")
		}
		var text bytes.Buffer
		if got, err := io.CopyN(&text, lr.r, n); err != nil {
			return herr("declares %d bytes but the file ends after %d", n, got)
		}
		lr.line += bytes.Count(text.Bytes(), []byte{'\n'})
		if err := checkHeaderText(text.String()); err != nil {
			return herr("%v", err)
		}
		env.Headers = append(env.Headers, Header{Type: typ, Text: text.String()})
	}
}
