package tracking

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"mxgate/event"
)

// Bounds of the writer's memory: the attempts of open connections, and
// the spool IDs it remembers the row of.
const (
	maxConns   = 50000
	maxIDCache = 100000
	// staleConn is how long a connection whose Disconnect never came
	// (a dropped event) is kept.
	staleConn = 2 * time.Hour
	// maxSteps bounds the timeline an attempt keeps in memory (a client
	// looping on RCPT); the steps past it are left out.
	maxSteps = 200
	// maxCheckText bounds a step that joins checks' answers.
	maxCheckText = 2000
)

// writer turns events into rows. Only the writer goroutine uses it.
type writer struct {
	s     *Store
	conns map[string]*conn
	ids   map[string]int64 // spool ID -> row key
	// expired is Store.expired when ids was last cleared: a row Expire
	// deleted since must not be written to by a remembered key.
	expired uint64
	ctx     context.Context
	tx      *sql.Tx
	stmts   map[string]*sql.Stmt // prepared in tx: a batch parses each statement once
	last    time.Time
}

// conn is an open SMTP connection: who the client is, and its attempts
// that have not ended.
type conn struct {
	seen     time.Time // the writer's clock at its last event
	client   netip.Addr
	host     string
	helo     string
	auth     string
	pre      []step // connect-stage lines, given to its first attempt
	attempts map[int]*attempt
}

// attempt is one transaction until it ends.
type attempt struct {
	m       Message
	steps   []step
	refusal *event.Event // the first
}

// step adds a line to the attempt's timeline, up to maxSteps.
func (a *attempt) step(s step) {
	if len(a.steps) < maxSteps {
		a.steps = append(a.steps, s)
	}
}

type step struct {
	t    time.Time
	kind string
	text string
}

func newWriter(s *Store) *writer {
	return &writer{s: s, conns: map[string]*conn{}, ids: map[string]int64{}, stmts: map[string]*sql.Stmt{}, ctx: context.Background()}
}

// commit writes one batch in one transaction.
func (w *writer) commit(batch []item) error {
	if n := w.s.expired.Load(); n != w.expired {
		clear(w.ids)
		w.expired = n
	}
	tx, err := w.s.db.BeginTx(w.ctx, nil)
	if err != nil {
		return err
	}
	w.tx = tx
	defer func() {
		for _, st := range w.stmts {
			st.Close()
		}
		clear(w.stmts)
		w.tx = nil
	}()
	for i := range batch {
		if err := w.apply(&batch[i]); err != nil {
			tx.Rollback()
			clear(w.ids)
			return fmt.Errorf("%s event of %s: %w", batch[i].ev.Kind, cmpStr(batch[i].ev.ID, batch[i].ev.Conn), err)
		}
	}
	if err := tx.Commit(); err != nil {
		clear(w.ids)
		return err
	}
	return nil
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// expireState forgets connections whose Disconnect was lost.
func (w *writer) expireState(now time.Time) {
	if now.Sub(w.last) < time.Minute {
		return
	}
	w.last = now
	for k, c := range w.conns {
		if now.Sub(c.seen) > staleConn {
			delete(w.conns, k)
		}
	}
}

// stmt is q prepared in the batch's transaction.
func (w *writer) stmt(q string) (*sql.Stmt, error) {
	if st := w.stmts[q]; st != nil {
		return st, nil
	}
	st, err := w.tx.PrepareContext(w.ctx, w.s.d.q(q))
	if err != nil {
		return nil, err
	}
	w.stmts[q] = st
	return st, nil
}

func (w *writer) exec(q string, args ...any) (int64, error) {
	st, err := w.stmt(q)
	if err != nil {
		return 0, err
	}
	r, err := st.ExecContext(w.ctx, args...)
	if err != nil {
		return 0, err
	}
	return r.RowsAffected()
}

// scan runs a one-row query into dest.
func (w *writer) scan(q string, args []any, dest ...any) error {
	st, err := w.stmt(q)
	if err != nil {
		return err
	}
	return st.QueryRowContext(w.ctx, args...).Scan(dest...)
}

func (w *writer) apply(it *item) error {
	e := &it.ev
	switch e.Kind {
	case event.Connect:
		c := w.conn(e)
		if c != nil {
			c.pre = append(c.pre, step{e.Time, "connect", connectText(e)})
		}
	case event.ConnRefused:
		m := w.message(e, nil)
		m.Verdict = verdictOf(e.Code)
		m.Reason = replyText(e)
		m.ReasonCode, m.Check, m.List = e.ReasonCode, e.Check, e.List
		_, err := w.insert(m, nil, []step{{e.Time, "refused", "connection refused: " + m.Reason}})
		return err
	case event.Disconnect:
		if c := w.conns[e.Conn]; c != nil {
			delete(w.conns, e.Conn)
			for _, txn := range sortedTxns(c) {
				if err := w.end(c, txn); err != nil {
					return err
				}
			}
		}
	case event.Check:
		return w.check(e, it.err)
	case event.Refused:
		c, a := w.attempt(e)
		if a == nil {
			return nil
		}
		a.step(step{e.Time, "refused", refusedText(e)})
		if a.refusal == nil {
			cp := *e
			a.refusal = &cp
		}
		if e.Sender != "" || e.Stage == "mail" {
			a.m.Sender = e.Sender
		}
		switch {
		case e.Recipient != "":
			a.m.Recipients = append(a.m.Recipients, Recipient{e.Recipient, RcptRejected, replyText(e)})
		case e.Stage == "data":
			for _, r := range e.Recipients {
				a.m.Recipients = append(a.m.Recipients, Recipient{r, RcptRejected, replyText(e)})
			}
		}
		_ = c
	case event.Accepted:
		return w.accepted(e)
	case event.Quarantined, event.Discarded:
		return w.kept(e)
	case event.Delivery:
		return w.delivery(e)
	case event.Bounce:
		return w.stepByID(e.Parent, e.Time, "bounce", fmt.Sprintf("bounce %s sent to <%s>", e.ID, e.Recipient))
	case event.Completed:
		return w.stepByID(e.ID, e.Time, "completed", "completed")
	case event.Admin:
		return w.admin(e)
	}
	return nil
}

// conn returns the connection an event is on, made at its first event.
func (w *writer) conn(e *event.Event) *conn {
	if e.Conn == "" {
		return nil
	}
	c := w.conns[e.Conn]
	if c == nil {
		if len(w.conns) >= maxConns {
			return nil
		}
		c = &conn{attempts: map[int]*attempt{}}
		w.conns[e.Conn] = c
	}
	c.seen = time.Now() // not e.Time: a replayed or skewed clock must not expire it
	if e.Client.IsValid() {
		c.client = e.Client
	}
	if e.HostName != "" {
		c.host = e.HostName
	}
	if e.Helo != "" {
		c.helo = e.Helo
	}
	if e.AuthUser != "" {
		c.auth = e.AuthUser
	}
	return c
}

// attempt returns the open attempt (Conn, Txn) of an event; a new Txn
// ends the connection's earlier ones.
func (w *writer) attempt(e *event.Event) (*conn, *attempt) {
	c := w.conn(e)
	if c == nil {
		return nil, nil
	}
	if a := c.attempts[e.Txn]; a != nil {
		w.fill(&a.m, e)
		return c, a
	}
	for _, txn := range sortedTxns(c) {
		if txn < e.Txn {
			if err := w.end(c, txn); err != nil {
				w.s.panicf("tracking: %v", err)
			}
		}
	}
	a := &attempt{}
	a.m = *w.message(e, c)
	if len(c.pre) > 0 {
		a.steps, c.pre = c.pre, nil
	}
	c.attempts[e.Txn] = a
	return c, a
}

func sortedTxns(c *conn) []int {
	var t []int
	for k := range c.attempts {
		t = append(t, k)
	}
	for i := 1; i < len(t); i++ {
		for j := i; j > 0 && t[j] < t[j-1]; j-- {
			t[j], t[j-1] = t[j-1], t[j]
		}
	}
	return t
}

// end writes an attempt that ended without being accepted: refused, or
// abandoned (nothing refused, nothing accepted: no row).
func (w *writer) end(c *conn, txn int) error {
	a := c.attempts[txn]
	delete(c.attempts, txn)
	if a == nil || a.refusal == nil {
		return nil
	}
	r := a.refusal
	a.m.Verdict = verdictOf(r.Code)
	a.m.Reason = replyText(r)
	a.m.ReasonCode, a.m.Check, a.m.List = r.ReasonCode, r.Check, r.List
	_, err := w.insert(&a.m, a.m.Recipients, a.steps)
	return err
}

// message starts a row from an event and its connection.
func (w *writer) message(e *event.Event, c *conn) *Message {
	m := &Message{Time: e.Time, Node: w.s.o.Node}
	if c != nil {
		if c.client.IsValid() {
			m.Client = c.client.String()
		}
		m.HostName, m.Helo, m.AuthUser = c.host, c.helo, c.auth
	}
	w.fill(m, e)
	return m
}

// fill copies what an event knows of the message into m.
func (w *writer) fill(m *Message, e *event.Event) {
	if e.Client.IsValid() {
		m.Client = e.Client.String()
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&m.HostName, e.HostName)
	set(&m.Helo, e.Helo)
	set(&m.AuthUser, e.AuthUser)
	set(&m.ID, e.ID)
	if e.Kind == event.Accepted || e.Kind == event.Quarantined || e.Kind == event.Discarded {
		m.Sender = e.Sender
		set(&m.Subject, e.Subject)
		set(&m.MessageID, e.MessageID)
		if e.Size > 0 {
			m.Size = e.Size
		}
	}
	if e.Scored {
		m.Score, m.Scored = e.Score, true
	}
	set(&m.Virus, e.Virus)
}

// check adds a check's answer to the timeline. The answers of one stage
// share one step ("at rcpt: rbl accept, spamd tag (spamd score=6.1)"):
// a message passes a dozen checks, most of them saying nothing but
// "accept".
func (w *writer) check(e *event.Event, errText string) error {
	st := step{e.Time, "check", "at " + cmpStr(e.Stage, "?") + ": " + checkText(e, errText)}
	if e.Conn != "" {
		if e.Txn == 0 {
			if c := w.conn(e); c != nil {
				c.pre = mergeCheck(c.pre, st)
			}
			return nil
		}
		if c := w.conns[e.Conn]; c != nil && c.attempts[e.Txn] != nil || e.ID == "" {
			_, a := w.attempt(e)
			if a != nil {
				a.steps = mergeCheck(a.steps, st)
			}
			return nil
		}
	}
	return w.stepByID(e.ID, e.Time, st.kind, st.text)
}

// mergeCheck appends a check's step, or joins it to the last step when
// that is a check of the same stage.
func mergeCheck(steps []step, st step) []step {
	if n := len(steps); n > 0 && steps[n-1].kind == "check" {
		last := &steps[n-1]
		at, text, _ := strings.Cut(st.text, ": ")
		if strings.HasPrefix(last.text, at+": ") && len(last.text) < maxCheckText {
			last.text += ", " + text
			return steps
		}
	}
	if len(steps) >= maxSteps {
		return steps
	}
	return append(steps, st)
}

// accepted ends an attempt with its 250 and the spool ID, or starts the
// row of a message that came without SMTP (local, bounce, digest, a
// release).
func (w *writer) accepted(e *event.Event) error {
	text := fmt.Sprintf("accepted as %s: <%s> for %s, %d bytes", e.ID, e.Sender, angle(e.Recipients), e.Size)
	if e.Source != "" && e.Source != event.SourceSMTP {
		text += " (" + e.Source + ")"
	}
	if e.Conn == "" {
		if e.Source == event.SourceRelease {
			if key, err := w.keyOf(e.ID); err != nil || key != 0 {
				if err != nil {
					return err
				}
				return w.addSteps(key, []step{{e.Time, "accepted", text}})
			}
			if e.Parent != "" {
				return w.releasedCopy(e, text)
			}
		}
		m := w.message(e, nil)
		m.Verdict = Accepted
		_, err := w.insert(m, rcpts(e.Recipients, nil), []step{{e.Time, "accepted", text}})
		return err
	}
	c, a := w.attempt(e)
	if a == nil {
		m := w.message(e, nil)
		m.Verdict = Accepted
		_, err := w.insert(m, rcpts(e.Recipients, nil), []step{{e.Time, "accepted", text}})
		return err
	}
	delete(c.attempts, e.Txn)
	a.m.Verdict = Accepted
	a.steps = append(a.steps, step{e.Time, "accepted", text})
	_, err := w.insert(&a.m, rcpts(e.Recipients, a.m.Recipients), a.steps)
	return err
}

// releasedCopy starts the row of a copy a release for one recipient
// queued under a new ID: the client and the scanners' findings are the
// quarantined message's, and each row's timeline names the other, so
// that a search by client or a look at the quarantined message finds
// the delivered copy.
func (w *writer) releasedCopy(e *event.Event, text string) error {
	m := w.message(e, nil)
	m.Verdict = Accepted
	parent, err := w.keyOf(e.Parent)
	if err != nil {
		return err
	}
	if parent != 0 {
		var client, host, helo, auth, virus string
		var score float64
		var scored int
		err := w.scan("SELECT client, host_name, helo, auth_user, score, scored, virus FROM messages WHERE key = ?", []any{parent},
			&client, &host, &helo, &auth, &score, &scored, &virus)
		switch {
		case err == sql.ErrNoRows: // expired since
		case err != nil:
			return err
		default:
			m.Client, m.HostName, m.Helo, m.AuthUser, m.Virus = client, host, helo, auth, virus
			if scored != 0 {
				m.Score, m.Scored = score, true
			}
			if err := w.addSteps(parent, []step{{e.Time, "accepted", fmt.Sprintf("released for %s as %s", angle(e.Recipients), e.ID)}}); err != nil {
				return err
			}
		}
	}
	_, err = w.insert(m, rcpts(e.Recipients, nil), []step{{e.Time, "accepted", text + " of " + e.Parent}})
	return err
}

// rcpts is the accepted recipients before the refused ones.
func rcpts(accepted []string, refused []Recipient) []Recipient {
	r := make([]Recipient, 0, len(accepted)+len(refused))
	for _, a := range accepted {
		r = append(r, Recipient{Address: a, Status: RcptAccepted})
	}
	return append(r, refused...)
}

// kept sets Quarantined or Discarded on the message's row, or ends its
// attempt with it when no Accepted came before.
func (w *writer) kept(e *event.Event) error {
	verdict := Quarantined
	if e.Kind == event.Discarded {
		verdict = Discarded
	}
	text := verdict
	if e.Check != "" {
		text += " by " + e.Check
	}
	if r := cmpStr(e.Reason, e.ReasonCode); r != "" {
		text += ": " + r
	}
	key, err := w.keyOf(e.ID)
	if err != nil {
		return err
	}
	if key != 0 {
		if _, err := w.exec("UPDATE messages SET verdict = ?, reason = ?, reason_code = ?, check_name = ? WHERE key = ?",
			verdict, e.Reason, e.ReasonCode, e.Check, key); err != nil {
			return err
		}
		if e.Virus != "" {
			if _, err := w.exec("UPDATE messages SET virus = ? WHERE key = ?", e.Virus, key); err != nil {
				return err
			}
		}
		if e.Scored {
			if _, err := w.exec("UPDATE messages SET score = ?, scored = 1 WHERE key = ?", e.Score, key); err != nil {
				return err
			}
		}
		return w.addSteps(key, []step{{e.Time, e.Kind.String(), text}})
	}
	var m *Message
	var steps []step
	var refused []Recipient
	if c, a := w.attempt(e); a != nil {
		delete(c.attempts, e.Txn)
		m, steps, refused = &a.m, a.steps, a.m.Recipients
	} else {
		m = w.message(e, nil)
	}
	m.Verdict, m.Reason, m.ReasonCode, m.Check = verdict, e.Reason, e.ReasonCode, e.Check
	_, err = w.insert(m, rcpts(e.Recipients, refused), append(steps, step{e.Time, e.Kind.String(), text}))
	return err
}

func (w *writer) delivery(e *event.Event) error {
	key, err := w.keyOf(e.ID)
	if err != nil || key == 0 {
		return err
	}
	status := RcptDeferred
	switch e.Outcome {
	case event.Delivered, event.Blackhole:
		status = RcptDelivered
	case event.Failed:
		status = RcptFailed
	}
	addr := strings.ToLower(e.Recipient)
	delay := int64(-1)
	if status == RcptDelivered {
		delay = e.Delay.Milliseconds()
	}
	n, err := w.exec("UPDATE recipients SET status = ?, reason = ?, delay_ms = ? WHERE msg = ? AND address = ?",
		status, e.Reply, delay, key, addr)
	if err != nil {
		return err
	}
	if n == 0 {
		// A recipient the message did not have at RCPT (an alias's).
		if _, err := w.exec(`INSERT INTO recipients (msg, time, address, domain, status, reason, delay_ms)
			SELECT key, time, ?, ?, ?, ?, CAST(? AS BIGINT) FROM messages WHERE key = ?`, addr, domainOf(addr), status, e.Reply, delay, key); err != nil {
			return err
		}
	}
	if err := w.addSteps(key, []step{{e.Time, "delivery", deliveryText(e)}}); err != nil {
		return err
	}
	return w.settle(key)
}

// settle sets a delivered message's verdict from its recipients: any
// failed is Bounced, all delivered Delivered, any deferred Deferred.
func (w *writer) settle(key int64) error {
	n, err := w.statuses(key)
	if err != nil {
		return err
	}
	failed, deferred, pending, delivered := n[RcptFailed], n[RcptDeferred], n[RcptAccepted], n[RcptDelivered]
	var v string
	switch {
	case failed > 0:
		v = Bounced
	case deferred > 0:
		v = Deferred
	case pending == 0 && delivered > 0:
		v = Delivered
	default:
		return nil
	}
	_, err = w.exec("UPDATE messages SET verdict = ? WHERE key = ?", v, key)
	return err
}

func (w *writer) admin(e *event.Event) error {
	key, err := w.keyOf(e.ID)
	if err != nil || key == 0 {
		return err
	}
	text := "admin"
	if e.User != "" {
		text += " " + e.User
	}
	text += ": " + e.Action
	if e.Recipient != "" {
		text += " for <" + e.Recipient + ">"
	}
	if e.Reason != "" {
		text += " (" + e.Reason + ")"
	}
	if err := w.addSteps(key, []step{{e.Time, "admin", text}}); err != nil {
		return err
	}
	v := map[string]string{"release": Released, "delete": Deleted, "remove": Removed}[e.Action]
	if v == "" {
		return nil
	}
	if e.Recipient != "" && e.Action != "remove" {
		return w.quarantineFor(key, e.Recipient, v)
	}
	_, err = w.exec("UPDATE messages SET verdict = ? WHERE key = ?", v, key)
	return err
}

// quarantineFor records a quarantined message released or deleted for
// one recipient (a digest's link): that recipient's status is the
// action's, and the message stays quarantined while a recipient is
// still held; after the last one it is released when any was.
func (w *writer) quarantineFor(key int64, rcpt, v string) error {
	status := RcptReleased
	if v == Deleted {
		status = RcptDeleted
	}
	if _, err := w.exec("UPDATE recipients SET status = ? WHERE msg = ? AND address = ? AND status = ?",
		status, key, strings.ToLower(rcpt), RcptAccepted); err != nil {
		return err
	}
	n, err := w.statuses(key)
	if err != nil {
		return err
	}
	held, released := n[RcptAccepted], n[RcptReleased]
	if held > 0 {
		return nil
	}
	if released == 0 {
		v = Deleted
	} else {
		v = Released
	}
	_, err = w.exec("UPDATE messages SET verdict = ? WHERE key = ?", v, key)
	return err
}

// statuses counts the message's recipients by status.
func (w *writer) statuses(key int64) (map[string]int, error) {
	st, err := w.stmt("SELECT status FROM recipients WHERE msg = ?")
	if err != nil {
		return nil, err
	}
	rows, err := st.QueryContext(w.ctx, key)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	n := map[string]int{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		n[s]++
	}
	return n, rows.Err()
}

func (w *writer) stepByID(id string, t time.Time, kind, text string) error {
	key, err := w.keyOf(id)
	if err != nil || key == 0 {
		return err
	}
	return w.addSteps(key, []step{{t, kind, text}})
}

// keyOf is the row of a spool ID this node wrote, 0 when none. Spool IDs
// are unique on one host only (time, pid, sequence: every container's
// daemon may be pid 1), and several nodes write into one PostgreSQL.
func (w *writer) keyOf(id string) (int64, error) {
	if id == "" {
		return 0, nil
	}
	if k, ok := w.ids[id]; ok {
		return k, nil
	}
	var k int64
	err := w.scan("SELECT key FROM messages WHERE id = ? AND node = ? ORDER BY key DESC LIMIT 1", []any{id, w.s.o.Node}, &k)
	if err == sql.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	w.remember(id, k)
	return k, nil
}

func (w *writer) remember(id string, k int64) {
	if id == "" {
		return
	}
	if len(w.ids) >= maxIDCache {
		clear(w.ids)
	}
	w.ids[id] = k
}

// insert writes a row, its recipients and its steps.
func (w *writer) insert(m *Message, rs []Recipient, steps []step) (int64, error) {
	sender := strings.ToLower(m.Sender)
	var bin []byte
	if a, err := netip.ParseAddr(m.Client); err == nil {
		b := a.As16()
		bin = b[:]
	}
	scored := 0
	if m.Scored {
		scored = 1
	}
	var key int64
	err := w.scan(`INSERT INTO messages (id, time, node, client, client_bin, host_name, helo, auth_user,
		sender, sender_domain, size, subject, message_id, verdict, reason, reason_code, check_name, list, score, scored, virus)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING key`, []any{
		m.ID, m.Time.UnixMilli(), m.Node, m.Client, bin, m.HostName, m.Helo, m.AuthUser,
		sender, domainOf(sender), m.Size, m.Subject, trimAngle(m.MessageID), m.Verdict, m.Reason, m.ReasonCode, m.Check, m.List,
		m.Score, scored, m.Virus}, &key)
	if err != nil {
		return 0, err
	}
	w.remember(m.ID, key)
	for _, r := range rs {
		a := strings.ToLower(r.Address)
		if _, err := w.exec("INSERT INTO recipients (msg, time, address, domain, status, reason) VALUES (?, ?, ?, ?, ?, ?)",
			key, m.Time.UnixMilli(), a, domainOf(a), r.Status, r.Reason); err != nil {
			return 0, err
		}
	}
	return key, w.addSteps(key, steps)
}

func (w *writer) addSteps(key int64, steps []step) error {
	for _, s := range steps {
		if _, err := w.exec("INSERT INTO steps (msg, time, kind, text) VALUES (?, ?, ?, ?)", key, s.t.UnixMilli(), s.kind, s.text); err != nil {
			return err
		}
	}
	return nil
}

// verdictOf is the verdict of a refusal's reply code. A connection
// closed without a reply (code 0: shutting down, the connection limit on
// the implicit TLS port) is retried by the client, as a 4xx is.
func verdictOf(code int) string {
	if code < 500 {
		return Tempfailed
	}
	return Rejected
}

// replyText is a refusal as the client saw it: "550 5.7.1 text".
func replyText(e *event.Event) string {
	var b strings.Builder
	if e.Code != 0 {
		b.WriteString(strconv.Itoa(e.Code))
	}
	if e.Enhanced != "" {
		b.WriteString(" " + e.Enhanced)
	}
	if e.Text != "" {
		b.WriteString(" " + e.Text)
	}
	if b.Len() == 0 {
		return e.Reason
	}
	return strings.TrimSpace(b.String())
}

func connectText(e *event.Event) string {
	t := "connection from "
	if e.HostName != "" {
		t += e.HostName + " "
	}
	t += "[" + e.Client.String() + "]"
	if e.Listener != "" {
		t += " on " + e.Listener
	}
	return t
}

func refusedText(e *event.Event) string {
	switch {
	case e.Recipient != "":
		return fmt.Sprintf("rcpt <%s> refused: %s", e.Recipient, replyText(e))
	case e.Stage == "mail":
		return fmt.Sprintf("mail from <%s> refused: %s", e.Sender, replyText(e))
	case e.Stage != "":
		return e.Stage + " refused: " + replyText(e)
	}
	return "refused: " + replyText(e)
}

// checkText is one check's answer: "spamd tag (spamd score=6.1
// required=5.0)", with the time it took when that was 1 ms or more.
func checkText(e *event.Event, errText string) string {
	t := e.Check + " " + cmpStr(e.Action, "answer")
	var facts []string
	if e.Reason != "" {
		// The verdict's facts as logged ("spamd score=12.1 required=5.0").
		facts = append(facts, e.Reason)
	} else {
		if e.Scored {
			facts = append(facts, "score="+strconv.FormatFloat(e.Score, 'f', -1, 64))
		}
		if e.List != "" {
			facts = append(facts, "list="+e.List)
		}
		if e.Virus != "" {
			facts = append(facts, "virus="+e.Virus)
		}
		if e.ReasonCode != "" {
			facts = append(facts, e.ReasonCode)
		}
	}
	if errText != "" {
		facts = append(facts, "error: "+errText)
	}
	if e.Duration >= time.Millisecond {
		facts = append(facts, e.Duration.Round(time.Millisecond).String())
	}
	if len(facts) > 0 {
		t += " (" + strings.Join(facts, "; ") + ")"
	}
	return t
}

func deliveryText(e *event.Event) string {
	var t string
	switch e.Outcome {
	case event.Delivered, event.Blackhole:
		t = "delivered to " + e.Recipient
	case event.Failed:
		t = "failed for " + e.Recipient
	default:
		t = "deferred for " + e.Recipient
	}
	if e.Transport != "" {
		t += " via " + e.Transport
	}
	if e.Host != "" {
		t += " " + e.Host
	}
	if e.Reply != "" {
		t += ": " + e.Reply
	}
	return t
}

func angle(rs []string) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = "<" + r + ">"
	}
	return strings.Join(s, ", ")
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

func trimAngle(s string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "<"), ">")
}
