// Package policysrv is Postfix's policy delegation server
// (check_policy_service): it answers each RCPT request with the verdict
// of the pipeline's MAIL and RCPT stage checks, logging and emitting
// events as a gateway session does, so that a Postfix site gets mxgate's
// DNS lists, rate limits, greylisting, callouts and recipient
// verification without a milter.
package policysrv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"mxgate/address"
	"mxgate/event"
	"mxgate/filters"
	"mxgate/gateway"
	"mxgate/mainlog"
	"mxgate/smtptext"
)

// Options are a Server's. config fills them; the server trusts them.
type Options struct {
	// Pipeline is the pipeline of the generation serving (a reload
	// changes it for the transactions that start after it).
	Pipeline func() *filters.Pipeline
	Log      gateway.Logger
	Bus      *event.Bus // nil emits nothing
	// DryRun logs what a refusal would have been and answers DUNNO.
	DryRun bool
	// Timeout closes a connection silent that long, between requests or
	// in one.
	Timeout time.Duration
	// TransactionTimeout ends a transaction (an instance) no request
	// named for that long: Postfix never said END-OF-MESSAGE (the client
	// quit after RCPT).
	TransactionTimeout time.Duration
	// Trace, when set, gets every stage's decisions: the checks' own
	// trace lines, then "STAGE: ACTION" (`mxgate policy -bh`).
	Trace func(string)
}

// Server answers policy requests on its listeners.
type Server struct {
	o Options

	mu     sync.Mutex
	txns   map[string]*txn
	swept  time.Time
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New returns a server of o; Serve starts it on a listener.
func New(o Options) *Server {
	return &Server{o: o, txns: map[string]*txn{}, lns: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}}
}

// Serve answers the connections of ln until Close. It returns nil after
// Close, the listener's error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return nil
			}
			return fmt.Errorf("policy server on %s: %w", ln.Addr(), err)
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// Close stops the listeners, closes the connections, waits for their
// requests and ends every transaction's checks.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	txns := s.txns
	s.txns = map[string]*txn{}
	s.mu.Unlock()
	for _, t := range txns {
		t.end()
	}
	return nil
}

// serveConn answers the requests of one connection, which Postfix keeps
// open for many.
func (s *Server) serveConn(c net.Conn) {
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	r := NewReader(c)
	w := bufio.NewWriter(c)
	// instance is the transaction of the connection's last request. An
	// smtpd process asks over its own connection, one request at a time
	// and one session at a time: a request of another instance means it
	// is done with that one, whether or not END-OF-MESSAGE came (it comes
	// only with check_policy_service in smtpd_end_of_data_restrictions,
	// and never for a client that quit after RCPT).
	var instance string
	for {
		c.SetDeadline(time.Now().Add(s.o.Timeout))
		req, err := ReadRequest(r)
		if err == nil && req["instance"] != instance {
			if instance != "" {
				s.finish(instance)
			}
			instance = req["instance"]
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case errors.As(err, &ne) && ne.Timeout():
				s.o.Log.Main("", fmt.Sprintf("policy connection from %s silent for %v: closed", c.RemoteAddr(), s.o.Timeout))
			default:
				s.o.Log.Main("", fmt.Sprintf("policy request from %s: %v: connection closed", c.RemoteAddr(), err))
			}
			return
		}
		action := s.Answer(req)
		fmt.Fprintf(w, "action=%s\n\n", action)
		if err := w.Flush(); err != nil {
			s.o.Log.Main("", fmt.Sprintf("policy answer to %s: %v", c.RemoteAddr(), err))
			return
		}
	}
}

// dunno is Postfix's "no opinion": the next restriction decides.
const dunno = "DUNNO"

// Answer is the action of one request: DUNNO, or "NNN X.Y.Z text" with
// the code and text gateway mode would have answered.
func (s *Server) Answer(req Request) string {
	if req["request"] != "smtpd_access_policy" {
		s.o.Log.Main("", fmt.Sprintf("policy request %q not understood: DUNNO", req["request"]))
		return dunno
	}
	instance := req["instance"]
	switch strings.ToUpper(req["protocol_state"]) {
	case "RCPT":
	case "END-OF-MESSAGE":
		s.finish(instance)
		return dunno
	default:
		return dunno
	}
	ip, err := netip.ParseAddr(req["client_address"])
	if err != nil {
		s.o.Log.Main("", fmt.Sprintf("policy request with client_address %q: not an IP address: DUNNO", req["client_address"]))
		return dunno
	}
	t := s.txn(instance, ip, req)
	if instance == "" {
		defer t.end()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flow == nil {
		// Ended meanwhile (END-OF-MESSAGE beside it, or Close).
		return dunno
	}
	t.last = time.Now()
	return t.rcpt(req)
}

// txn is one transaction of Postfix's, by its instance: the checks'
// flow, which saw the MAIL stage once for all its recipients.
type txn struct {
	s      *Server
	mu     sync.Mutex
	ctx    context.Context
	cancel context.CancelFunc
	flow   *filters.Flow
	tx     filters.Tx
	host   string
	base   event.Event
	last   time.Time
	// mail is the answer of the stages before RCPT, once asked; refused
	// answers every recipient with it.
	mailAsked bool
	refused   string
}

func (t *txn) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flow != nil {
		t.flow.Reset(t.ctx)
		t.flow.Close()
		t.flow = nil
	}
	t.cancel()
}

// txn is the transaction of instance, made from req's client when it is
// new ("" is a transaction of its own).
func (s *Server) txn(instance string, ip netip.Addr, req Request) *txn {
	now := time.Now()
	s.mu.Lock()
	t := s.txns[instance]
	if t == nil || instance == "" {
		t = s.newTxn(instance, ip, req)
		if instance != "" {
			s.txns[instance] = t
		}
	}
	var stale []*txn
	if now.Sub(s.swept) > s.o.TransactionTimeout/4 {
		s.swept = now
		for k, o := range s.txns {
			if o != t && o.mu.TryLock() {
				old := now.Sub(o.last) > s.o.TransactionTimeout
				o.mu.Unlock()
				if old {
					delete(s.txns, k)
					stale = append(stale, o)
				}
			}
		}
	}
	s.mu.Unlock()
	for _, o := range stale {
		o.end()
	}
	return t
}

// finish ends instance's transaction: Postfix is done with the message.
func (s *Server) finish(instance string) {
	s.mu.Lock()
	t := s.txns[instance]
	delete(s.txns, instance)
	s.mu.Unlock()
	if t != nil {
		t.end()
	}
}

func (s *Server) newTxn(instance string, ip netip.Addr, req Request) *txn {
	ctx, cancel := context.WithCancel(context.Background())
	name, ptr := known(req["client_name"]), known(req["reverse_client_name"])
	resolve := "FAIL"
	switch {
	case name != "":
		resolve = "OK"
	case ptr != "":
		resolve = "FORGED"
	}
	helo := gateway.SafeHelo(req["helo_name"])
	t := &txn{s: s, ctx: ctx, cancel: cancel, last: time.Now(),
		flow: s.o.Pipeline().Open(ctx, &filters.Conn{IP: ip, HostName: name, HostPTR: ptr, HostResolve: resolve}),
		tx:   filters.Tx{Helo: helo, Sender: req["sender"], AuthUser: req["sasl_username"], AuthMech: strings.ToLower(req["sasl_method"])},
		host: mainlog.Host(name, helo, ip),
		base: event.Event{Conn: "policy-" + instance, Txn: 1, Client: ip, HostName: name, Listener: "policy", Helo: helo, AuthUser: req["sasl_username"]},
	}
	if instance == "" {
		t.base.Conn = "policy"
	}
	return t
}

// known is a Postfix client name, "" for its "unknown".
func known(name string) string {
	if name == "unknown" {
		return ""
	}
	return name
}

// rcpt answers one recipient: first, once per transaction, the stages
// before RCPT, then RCPT's. Called under t.mu.
func (t *txn) rcpt(req Request) string {
	s := t.s
	id := req["queue_id"]
	rep := gateway.Reporter{Log: s.o.Log, Bus: s.o.Bus}
	if !t.mailAsked {
		t.mailAsked = true
		if a, err := address.Parse(t.tx.Sender); err == nil {
			t.tx.Sender, t.tx.SenderDomain = a.String(), a.Domain
		} else if t.tx.Sender != "" {
			// Postfix took it: the checks run all the same (as the
			// milter server's do), or such a sender would pass them all.
			s.o.Log.Main(id, fmt.Sprintf("H=%s policy request with sender <%s>: %v", t.host, t.tx.Sender, err))
			if i := strings.LastIndexByte(t.tx.Sender, '@'); i >= 0 {
				t.tx.SenderDomain = strings.ToLower(t.tx.Sender[i+1:])
			}
		}
		for _, stage := range []func() filters.Outcome{
			func() filters.Outcome { return t.flow.Connect(t.ctx) },
			func() filters.Outcome { return t.flow.Helo(t.ctx, t.tx.Helo) },
			func() filters.Outcome { return t.flow.Mail(t.ctx, &t.tx) },
		} {
			out := stage()
			rep.Stage(out, id, t.host, t.base)
			t.trace(out)
			if out.Verdict.Refuses() {
				r := t.refuse(rep, out, id, "mail", "", fmt.Sprintf("H=%s", t.host), "MAIL <"+t.tx.Sender+">")
				if t.s.o.DryRun {
					// Logged only: the checks go on, as the milter
					// server's dry run does.
					continue
				}
				t.refused = r
				return r
			}
		}
	}
	if t.refused != "" {
		return t.refused
	}
	a, err := address.Parse(req["recipient"])
	if err != nil {
		s.o.Log.Main(id, fmt.Sprintf("H=%s F=<%s> policy request with recipient <%s>: %v: DUNNO", t.host, t.tx.Sender, req["recipient"], err))
		return dunno
	}
	rcpt := a.String()
	out := t.flow.Rcpt(t.ctx, &t.tx, rcpt)
	rep.Stage(out, id, t.host, t.base)
	t.trace(out)
	if out.Verdict.Refuses() {
		return t.refuse(rep, out, id, "rcpt", rcpt, fmt.Sprintf("H=%s F=<%s>", t.host, t.tx.Sender), "RCPT <"+rcpt+">")
	}
	t.tx.Rcpts = append(t.tx.Rcpts, rcpt)
	return dunno
}

// trace writes a stage's decisions to Options.Trace: each check's trace
// lines, then the stage's verdict.
func (t *txn) trace(out filters.Outcome) {
	tr := t.s.o.Trace
	if tr == nil {
		return
	}
	stage := ""
	for _, e := range out.Events {
		stage = e.Stage.String()
		for _, line := range e.Verdict.Trace {
			tr(line)
		}
	}
	if stage == "" {
		return // no check answered at this stage
	}
	v := out.Verdict
	if v.Refuses() {
		tr(fmt.Sprintf("%s: %s: %s", stage, v.Action, smtptext.Reply(v.Code, v.Enhanced, v.Text)))
		return
	}
	tr(fmt.Sprintf("%s: %s", stage, v.Action))
}

// refuse logs a stage's refusal as the gateway does ("H=... F=<...>
// rejected RCPT <...>: why"), emits its Refused event and returns its
// action; in a dry run it logs what it would have done and returns DUNNO.
func (t *txn) refuse(rep gateway.Reporter, out filters.Outcome, id, stage, rcpt, who, what string) string {
	v := out.Verdict
	code, enh := v.Code, v.Enhanced
	if code == 0 { // a refusal always says 4xx or 5xx to Postfix
		code, enh = 550, [3]int{5, 7, 1}
		if v.Action == filters.Tempfail {
			code, enh = 451, [3]int{4, 7, 1}
		}
	}
	reply := smtptext.Reply(code, enh, v.Text)
	if t.s.o.DryRun {
		t.s.o.Log.Main(id, fmt.Sprintf("%s dry run: would have %s (%s)", who, gateway.RefusalLog(v, what), reply))
		return dunno
	}
	t.s.o.Log.Reject(id, who+" "+gateway.RefusalLog(v, what))
	e := t.base
	e.ID, e.Stage, e.Sender, e.Recipient = id, stage, t.tx.Sender, rcpt
	rep.Refused(out, e)
	return reply
}
