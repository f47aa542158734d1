package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"mxgate/config"
	"mxgate/tracking"
)

func init() {
	register("track", "[--sender A] [--rcpt A] [--id ID] [--msgid M] [--client IP/CIDR] [--verdict V] [--since T] [--until T] [--limit N] [--before KEY] [--json] [ID|#KEY]\tsearch the message tracking database, or show one message's timeline",
		track,
		withDoc(`Every attempt, refused or accepted, is a row of [tracking]: its client, sender, recipients, verdict (`+strings.Join(tracking.Verdicts, ", ")+`) and the reason that decided. With flags, the matching rows are listed, newest first: time, ID (or #KEY for a refused attempt, which has none), client, sender, recipients, verdict, reason. With one ID or #KEY, that message's details and its timeline: connection, each check's answer, refusals, acceptance, quarantine, each delivery attempt, admins' actions.

An address matches case-insensitively; "@domain" matches the whole domain. T is a duration back from now ("24h", "7d") or a time in UTC ("2006-01-02", "2006-01-02T15:04", RFC 3339). The command reads the database beside a running daemon (SQLite's WAL lets it); as root it runs as the daemon's user.`),
		withFlag("--sender", "ADDR", `the envelope sender, or "@domain"`),
		withFlag("--rcpt", "ADDR", `a recipient, or "@domain"`),
		withFlag("--id", "ID", "the spool ID"),
		withFlag("--msgid", "MSGID", "the Message-ID header, with or without <>"),
		withFlag("--client", "IP|CIDR", "the client's address, or a network"),
		withFlag("--verdict", "VERDICT", "one of "+strings.Join(tracking.Verdicts, ", ")),
		withFlag("--since", "T", "from T on"),
		withFlag("--until", "T", "before T"),
		withFlag("--limit", "N", "at most N rows (default 100, at most 1000)"),
		withFlag("--before", "KEY", "the rows before KEY (the next page: the last row's #KEY)"),
		withFlag("--json", "", "print JSON: an array of messages, or the message with its steps"),
		withExample(`mxgate track --sender @example.com --since 24h	why didn't I get the mail from example.com?`),
		withExample(`mxgate track --verdict rejected --client 192.0.2.0/24	what was refused from that network`),
		withExample(`mxgate track 1tXyZa-000AbC-Qr	the timeline of one message`))
	register("stats", "[--since T] [--until T] [--json]\tprint message statistics from the tracking database (as eximstats does)", stats,
		withDoc(`Counted from the tracking database over the range (default: the last 24 hours): totals by verdict; a table per hour (up to 3 days) or per day; the top 10 senders, sender domains, recipients and sending hosts; rejections by reason and by DNS list; the spam score distribution; virus names; delivery delays. T as for track.`),
		withFlag("--since", "T", "from T on (default 24h)"),
		withFlag("--until", "T", "before T (default now)"),
		withFlag("--json", "", "print the statistics as JSON"),
		withExample(`mxgate stats --since 7d	a week, per day`))
}

// trackArgs is a track command line parsed.
type trackArgs struct {
	q    tracking.Query
	key  string // one message: an ID or "#KEY"
	json bool
}

// parseTrack parses track's arguments; times are relative to now.
func parseTrack(args []string, now time.Time) (trackArgs, error) {
	var a trackArgs
	fs := flag.NewFlagSet("track", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&a.q.Sender, "sender", "", "")
	fs.StringVar(&a.q.Recipient, "rcpt", "", "")
	fs.StringVar(&a.q.ID, "id", "", "")
	fs.StringVar(&a.q.MessageID, "msgid", "", "")
	fs.StringVar(&a.q.Client, "client", "", "")
	fs.StringVar(&a.q.Verdict, "verdict", "", "")
	fs.IntVar(&a.q.Limit, "limit", 0, "")
	fs.Int64Var(&a.q.Before, "before", 0, "")
	fs.BoolVar(&a.json, "json", false, "")
	since := fs.String("since", "", "")
	until := fs.String("until", "", "")
	if err := fs.Parse(args); err != nil {
		return a, fmt.Errorf("track: %v: %w", err, errUsage)
	}
	var err error
	if a.q.Since, err = parseWhen(*since, now); err != nil {
		return a, fmt.Errorf("track: --since: %v: %w", err, errUsage)
	}
	if a.q.Until, err = parseWhen(*until, now); err != nil {
		return a, fmt.Errorf("track: --until: %v: %w", err, errUsage)
	}
	if a.q.Verdict != "" && !slicesContains(tracking.Verdicts, a.q.Verdict) {
		return a, fmt.Errorf("track: unknown verdict %q (want one of %s): %w", a.q.Verdict, strings.Join(tracking.Verdicts, ", "), errUsage)
	}
	if a.q.Limit < 0 || a.q.Limit > 1000 {
		return a, fmt.Errorf("track: --limit must be 1 to 1000: %w", errUsage)
	}
	switch fs.NArg() {
	case 0:
	case 1:
		a.key = fs.Arg(0)
		if a.q != (tracking.Query{}) {
			return a, fmt.Errorf("track: give an ID or search flags, not both: %w", errUsage)
		}
	default:
		return a, fmt.Errorf("track: unexpected argument %q: %w", fs.Arg(1), errUsage)
	}
	return a, nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// parseWhen is a time given as a duration back from now ("24h", "7d") or
// as a UTC time; "" is the zero time (open).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	var d config.Duration
	if err := d.UnmarshalText([]byte(s)); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q is negative", s)
		}
		return now.Add(-time.Duration(d)), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h, 7d) nor a time (2006-01-02T15:04)", s)
}

// withTracking opens the tracking database of the config for reading.
func withTracking(e *env, run func(ctx context.Context, s *tracking.Store) error) error {
	cfg, err := loadClientConfig(e.configPath)
	if err != nil {
		return err
	}
	if cfg.Tracking.URL == config.TrackingOff {
		return fmt.Errorf("message tracking is off ([tracking] url = %q)", config.TrackingOff)
	}
	if cfg.TrackingFile() != "" {
		// As the daemon's user, so that the -shm a reader may create is
		// the daemon's.
		if err := enterSpool(cfg); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := tracking.Open(ctx, trackingOptions(cfg, nil, true))
	if err != nil {
		return err
	}
	defer s.Close()
	return run(ctx, s)
}

func track(e *env) error {
	a, err := parseTrack(e.args, clock())
	if err != nil {
		return err
	}
	return withTracking(e, func(ctx context.Context, s *tracking.Store) error {
		if a.key != "" {
			m, steps, err := s.Get(ctx, a.key)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(e.stdout, struct {
					*tracking.Message
					Steps []tracking.Step `json:"steps"`
				}{m, steps})
			}
			writeTimeline(e.stdout, m, steps)
			return nil
		}
		ms, err := s.Search(ctx, a.q)
		if err != nil {
			return err
		}
		if a.json {
			if ms == nil {
				ms = []tracking.Message{}
			}
			return writeJSON(e.stdout, ms)
		}
		writeMatches(e.stdout, ms, len(ms) == a.q.PageSize())
		return nil
	})
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

const timeLayout = "2006-01-02 15:04:05"

func msgName(m *tracking.Message) string {
	if m.ID != "" {
		return m.ID
	}
	return "#" + strconv.FormatInt(m.Key, 10)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeMatches prints one line per message; full: the page is full, so
// there may be more, and the last line says how to ask for them.
func writeMatches(w io.Writer, ms []tracking.Message, full bool) {
	if len(ms) == 0 {
		fmt.Fprintln(w, "no messages match")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tID\tCLIENT\tSENDER\tRECIPIENTS\tVERDICT\tREASON")
	for i := range ms {
		m := &ms[i]
		rs := make([]string, len(m.Recipients))
		for j, r := range m.Recipients {
			rs[j] = r.Address
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t<%s>\t%s\t%s\t%s\n", m.Time.UTC().Format(timeLayout), msgName(m), orDash(m.Client),
			m.Sender, orDash(strings.Join(rs, ",")), m.Verdict, orDash(m.Reason))
	}
	tw.Flush()
	if full {
		fmt.Fprintf(w, "%d messages; the next page: --before %d\n", len(ms), ms[len(ms)-1].Key)
	} else {
		fmt.Fprintf(w, "%d messages\n", len(ms))
	}
}

// writeTimeline prints one message and its steps.
func writeTimeline(w io.Writer, m *tracking.Message, steps []tracking.Step) {
	name := msgName(m)
	if m.ID != "" {
		name += " (#" + strconv.FormatInt(m.Key, 10) + ")"
	}
	fmt.Fprintf(w, "Message %s on %s\n", name, orDash(m.Node))
	fmt.Fprintf(w, "  Time:       %s\n", m.Time.UTC().Format(timeLayout))
	client := orDash(m.Client)
	if m.HostName != "" {
		client = m.HostName + " [" + m.Client + "]"
	}
	if m.Helo != "" {
		client += " HELO " + m.Helo
	}
	if m.AuthUser != "" {
		client += " as " + m.AuthUser
	}
	fmt.Fprintf(w, "  Client:     %s\n", client)
	fmt.Fprintf(w, "  Sender:     <%s>\n", m.Sender)
	for i, r := range m.Recipients {
		label := "  Recipients:"
		if i > 0 {
			label = "             "
		}
		line := fmt.Sprintf("%s <%s> %s", label, r.Address, r.Status)
		if r.Reason != "" {
			line += ": " + r.Reason
		}
		fmt.Fprintln(w, line)
	}
	if m.Size > 0 || m.Subject != "" || m.MessageID != "" {
		fmt.Fprintf(w, "  Size:       %d\n  Subject:    %s\n  Message-ID: <%s>\n", m.Size, m.Subject, m.MessageID)
	}
	v := m.Verdict
	if m.Reason != "" {
		v += ": " + m.Reason
	}
	var facts []string
	for _, f := range [][2]string{{"check", m.Check}, {"reason", m.ReasonCode}, {"list", m.List}, {"virus", m.Virus}} {
		if f[1] != "" {
			facts = append(facts, f[0]+"="+f[1])
		}
	}
	if m.Scored {
		facts = append(facts, "score="+strconv.FormatFloat(m.Score, 'f', -1, 64))
	}
	if len(facts) > 0 {
		v += " (" + strings.Join(facts, " ") + ")"
	}
	fmt.Fprintf(w, "  Verdict:    %s\n", v)
	fmt.Fprintln(w, "Timeline:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range steps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.Time.UTC().Format(timeLayout), s.Kind, s.Text)
	}
	tw.Flush()
}

func stats(e *env) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	since := fs.String("since", "24h", "")
	until := fs.String("until", "", "")
	asJSON := fs.Bool("json", false, "")
	if err := fs.Parse(e.args); err != nil {
		return fmt.Errorf("stats: %v: %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	now := clock()
	from, err := parseWhen(*since, now)
	if err != nil {
		return fmt.Errorf("stats: --since: %v: %w", err, errUsage)
	}
	to, err := parseWhen(*until, now)
	if err != nil {
		return fmt.Errorf("stats: --until: %v: %w", err, errUsage)
	}
	if to.IsZero() {
		to = now
	}
	if !from.Before(to) {
		return fmt.Errorf("stats: --since must be before --until: %w", errUsage)
	}
	return withTracking(e, func(ctx context.Context, s *tracking.Store) error {
		st, err := s.Stats(ctx, from, to)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(e.stdout, st)
		}
		writeStats(e.stdout, st)
		return nil
	})
}

// writeStats prints the report, eximstats' way: a section per table.
func writeStats(w io.Writer, st *tracking.Stats) {
	fmt.Fprintf(w, "Message statistics from %s to %s (UTC)\n", st.Since.UTC().Format(timeLayout), st.Until.UTC().Format(timeLayout))
	var total int64
	for _, n := range st.Totals {
		total += n
	}
	section(w, "Totals by verdict")
	for _, v := range tracking.Verdicts {
		fmt.Fprintf(w, "  %-12s %8d\n", v, st.Totals[v])
	}
	fmt.Fprintf(w, "  %-12s %8d\n", "total", total)

	period, layout := "hour", "2006-01-02 15:00"
	if len(st.Series) > 1 && st.Series[1].Start.Sub(st.Series[0].Start) >= 24*time.Hour {
		period, layout = "day", "2006-01-02"
	}
	section(w, "Messages per "+period)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "  "+period+"\t")
	for _, v := range tracking.Verdicts {
		fmt.Fprint(tw, v+"\t")
	}
	fmt.Fprintln(tw)
	for _, b := range st.Series {
		fmt.Fprint(tw, "  "+b.Start.UTC().Format(layout)+"\t")
		for _, v := range tracking.Verdicts {
			fmt.Fprintf(tw, "%d\t", b.Counts[v])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	counts(w, "Top senders", st.TopSenders)
	counts(w, "Top sender domains", st.TopSenderDomains)
	counts(w, "Top recipients", st.TopRecipients)
	counts(w, "Top sending hosts", st.TopHosts)
	counts(w, "Rejections by reason", st.RejectReasons)
	counts(w, "Rejections by DNS list", st.RejectLists)
	counts(w, "Spam scores", st.Scores)
	counts(w, "Viruses", st.Viruses)
	counts(w, "Delivery delays", st.Delays)
}

func section(w io.Writer, title string) {
	fmt.Fprintf(w, "\n%s\n%s\n", title, strings.Repeat("-", len(title)))
}

func counts(w io.Writer, title string, cs []tracking.Count) {
	section(w, title)
	if len(cs) == 0 {
		fmt.Fprintln(w, "  none")
		return
	}
	for _, c := range cs {
		fmt.Fprintf(w, "  %8d  %s\n", c.N, c.Key)
	}
}
