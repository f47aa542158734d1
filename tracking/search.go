package tracking

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Query selects attempts; every field set must match.
type Query struct {
	Sender, Recipient string // exact address (case-insensitive), or "@domain" for the domain
	ID                string // spool ID
	MessageID         string // Message-ID header, with or without <>
	Client            string // IP, or CIDR
	Verdict           string // one of the Verdicts; "" any
	Since, Until      time.Time
	Limit             int // default 100, max 1000
	// Before pages: the rows after the row whose Key is Before in the
	// order of the results, newest (Time, then Key) first; 0 starts at
	// the newest. The next page's Before is the last row's Key.
	Before int64
}

const (
	defaultLimit = 100
	maxLimit     = 1000
)

const messageColumns = `key, id, time, node, client, host_name, helo, auth_user, sender, size, subject, message_id,
	verdict, reason, reason_code, check_name, list, score, scored, virus`

// where builds the conditions of a query on messages (alias m).
func (q Query) where() (string, []any, error) {
	var conds []string
	var args []any
	add := func(c string, a ...any) {
		conds = append(conds, c)
		args = append(args, a...)
	}
	if q.Sender != "" {
		if d, ok := strings.CutPrefix(q.Sender, "@"); ok {
			add("m.sender_domain = ?", strings.ToLower(d))
		} else {
			add("m.sender = ?", strings.ToLower(q.Sender))
		}
	}
	if q.Recipient != "" {
		col, v := "address", strings.ToLower(q.Recipient)
		if d, ok := strings.CutPrefix(v, "@"); ok {
			col, v = "domain", d
		}
		sub := "SELECT r.msg FROM recipients r WHERE r." + col + " = ?"
		a := []any{v}
		if !q.Since.IsZero() {
			sub += " AND r.time >= ?"
			a = append(a, q.Since.UnixMilli())
		}
		if !q.Until.IsZero() {
			sub += " AND r.time < ?"
			a = append(a, q.Until.UnixMilli())
		}
		add("m.key IN ("+sub+")", a...)
	}
	if q.ID != "" {
		add("m.id = ?", q.ID)
	}
	if q.MessageID != "" {
		add("m.message_id = ?", trimAngle(q.MessageID))
	}
	if q.Client != "" {
		lo, hi, err := clientRange(q.Client)
		if err != nil {
			return "", nil, err
		}
		if string(lo) == string(hi) {
			add("m.client_bin = ?", lo)
		} else {
			add("m.client_bin BETWEEN ? AND ?", lo, hi)
		}
	}
	if q.Verdict != "" {
		add("m.verdict = ?", q.Verdict)
	}
	if !q.Since.IsZero() {
		add("m.time >= ?", q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		add("m.time < ?", q.Until.UnixMilli())
	}
	if q.Before > 0 {
		// Keyset paging in the order of the results, (time, key) newest
		// first: the rows after row Before.
		const at = "(SELECT b.time FROM messages b WHERE b.key = ?)"
		add("m.time <= "+at+" AND (m.time < "+at+" OR m.key < ?)", q.Before, q.Before, q.Before)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// clientRange is the 16-byte range an IP or CIDR covers.
func clientRange(s string) (lo, hi []byte, err error) {
	if a, err := netip.ParseAddr(s); err == nil {
		b := a.As16()
		return b[:], b[:], nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return nil, nil, fmt.Errorf("tracking: client %q is neither an IP address nor a CIDR", s)
	}
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	l := p.Addr().As16()
	h := l
	for i := bits; i < 128; i++ {
		h[i/8] |= 1 << (7 - i%8)
	}
	return l[:], h[:], nil
}

// searchSQL is the query of Search.
func (q Query) searchSQL() (string, []any, error) {
	where, args, err := q.where()
	if err != nil {
		return "", nil, err
	}
	return "SELECT " + messageColumns + " FROM messages m" + where + " ORDER BY m.time DESC, m.key DESC LIMIT " + strconv.Itoa(q.PageSize()), args, nil
}

// PageSize is how many rows Search answers q with at most: Limit, or
// its default, within the maximum. A full page may have more after it.
func (q Query) PageSize() int {
	if q.Limit <= 0 {
		return defaultLimit
	}
	return min(q.Limit, maxLimit)
}

// Search returns the attempts matching q, newest first (by Time, then
// Key).
func (s *Store) Search(ctx context.Context, q Query) ([]Message, error) {
	query, args, err := q.searchSQL()
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.d.q(query), args...)
	if err != nil {
		return nil, fmt.Errorf("tracking: search: %w", err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, fmt.Errorf("tracking: search: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tracking: search: %w", err)
	}
	if err := s.recipients(ctx, out); err != nil {
		return nil, err
	}
	return out, nil
}

func scanMessage(r interface{ Scan(...any) error }) (Message, error) {
	var m Message
	var t int64
	var scored int
	err := r.Scan(&m.Key, &m.ID, &t, &m.Node, &m.Client, &m.HostName, &m.Helo, &m.AuthUser, &m.Sender, &m.Size,
		&m.Subject, &m.MessageID, &m.Verdict, &m.Reason, &m.ReasonCode, &m.Check, &m.List, &m.Score, &scored, &m.Virus)
	m.Time = time.UnixMilli(t).UTC()
	m.Scored = scored != 0
	return m, err
}

// recipients fills the recipients of ms, in one query.
func (s *Store) recipients(ctx context.Context, ms []Message) error {
	if len(ms) == 0 {
		return nil
	}
	idx := make(map[int64]int, len(ms))
	marks := make([]string, len(ms))
	args := make([]any, len(ms))
	for i, m := range ms {
		idx[m.Key] = i
		marks[i] = "?"
		args[i] = m.Key
	}
	rows, err := s.db.QueryContext(ctx, s.d.q("SELECT msg, address, status, reason FROM recipients WHERE msg IN ("+strings.Join(marks, ",")+")"), args...)
	if err != nil {
		return fmt.Errorf("tracking: recipients: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k int64
		var r Recipient
		if err := rows.Scan(&k, &r.Address, &r.Status, &r.Reason); err != nil {
			return fmt.Errorf("tracking: recipients: %w", err)
		}
		m := &ms[idx[k]]
		m.Recipients = append(m.Recipients, r)
	}
	return rows.Err()
}

// Get returns one message and its timeline; key is a spool ID (its newest
// row) or "#<Key>".
func (s *Store) Get(ctx context.Context, key string) (*Message, []Step, error) {
	var row *sql.Row
	if k, ok := strings.CutPrefix(key, "#"); ok {
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("tracking: bad key %q: %w", key, ErrNotFound)
		}
		row = s.db.QueryRowContext(ctx, s.d.q("SELECT "+messageColumns+" FROM messages m WHERE key = ?"), n)
	} else {
		row = s.db.QueryRowContext(ctx, s.d.q("SELECT "+messageColumns+" FROM messages m WHERE id = ? ORDER BY key DESC LIMIT 1"), key)
	}
	m, err := scanMessage(row)
	if err == sql.ErrNoRows {
		return nil, nil, fmt.Errorf("tracking: %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tracking: get %s: %w", key, err)
	}
	ms := []Message{m}
	if err := s.recipients(ctx, ms); err != nil {
		return nil, nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.d.q("SELECT time, kind, text FROM steps WHERE msg = ? ORDER BY time, seq"), m.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("tracking: get %s: %w", key, err)
	}
	defer rows.Close()
	var steps []Step
	for rows.Next() {
		var st Step
		var t int64
		if err := rows.Scan(&t, &st.Kind, &st.Text); err != nil {
			return nil, nil, fmt.Errorf("tracking: get %s: %w", key, err)
		}
		st.Time = time.UnixMilli(t).UTC()
		steps = append(steps, st)
	}
	return &ms[0], steps, rows.Err()
}

// expireChunk is how many messages one transaction of Expire deletes, so
// that the writer never waits long.
const expireChunk = 1000

// Expire deletes the messages older than before, with their recipients
// and steps, in chunks so that the writer never waits long, then the
// recipients and steps whose message no longer exists: the writer may
// have added to a row while it was being deleted. The writer forgets the
// row keys it remembers after each chunk.
func (s *Store) Expire(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.expireMessages(ctx, before)
	if err != nil {
		return n, err
	}
	return n, s.deleteOrphans(ctx)
}

// deleteOrphans deletes the recipients and steps of messages no row has
// any more, those of up to expireChunk messages a statement.
func (s *Store) deleteOrphans(ctx context.Context) error {
	for _, table := range []string{"steps", "recipients"} {
		q := "DELETE FROM " + table + " WHERE msg IN (SELECT DISTINCT msg FROM " + table +
			" o WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.key = o.msg) LIMIT " + strconv.Itoa(expireChunk) + ")"
		for {
			res, err := s.db.ExecContext(ctx, q)
			if err != nil {
				return fmt.Errorf("tracking: expire: %s of deleted messages: %w", table, err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				break
			}
		}
	}
	return nil
}

// expireMessages is Expire's deletion of the messages before before.
func (s *Store) expireMessages(ctx context.Context, before time.Time) (int64, error) {
	const chunk = expireChunk
	var total int64
	for {
		rows, err := s.db.QueryContext(ctx, s.d.q("SELECT key FROM messages WHERE time < ? ORDER BY time LIMIT "+strconv.Itoa(chunk)), before.UnixMilli())
		if err != nil {
			return total, fmt.Errorf("tracking: expire: %w", err)
		}
		var keys []any
		for rows.Next() {
			var k int64
			if err := rows.Scan(&k); err != nil {
				rows.Close()
				return total, fmt.Errorf("tracking: expire: %w", err)
			}
			keys = append(keys, k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("tracking: expire: %w", err)
		}
		if len(keys) == 0 {
			return total, nil
		}
		in := "(" + strings.Repeat("?,", len(keys)-1) + "?)"
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return total, fmt.Errorf("tracking: expire: %w", err)
		}
		for _, q := range []string{"DELETE FROM steps WHERE msg IN ", "DELETE FROM recipients WHERE msg IN ", "DELETE FROM messages WHERE key IN "} {
			if _, err := tx.ExecContext(ctx, s.d.q(q+in), keys...); err != nil {
				tx.Rollback()
				return total, fmt.Errorf("tracking: expire: %w", err)
			}
		}
		if err := tx.Commit(); err != nil {
			return total, fmt.Errorf("tracking: expire: %w", err)
		}
		s.expired.Add(1)
		total += int64(len(keys))
		if len(keys) < chunk {
			return total, nil
		}
	}
}
