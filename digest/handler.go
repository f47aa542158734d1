package digest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"path"
	"strings"
	"time"

	"mxgate/admin"
	"mxgate/spool"
)

// HandlerOptions are what the link page needs.
type HandlerOptions struct {
	// KeyFile is read at each request, so replacing it (key rotation)
	// takes effect at once: every link signed with the old key dies.
	KeyFile string
	// Queue acts and logs; its User is who the mainlog names ("digest
	// link").
	Queue *admin.Queue
	// Deliver starts the delivery of a released message (the runner's
	// Enqueue).
	Deliver func(spool.ID)
	// Log reports what a user cannot be told (a key that cannot be
	// read, a spool error) to the paniclog.
	Log     func(string)
	Now     func() time.Time
	Timeout time.Duration // of a release's spool commit
}

// Handler serves GET and POST /q/TOKEN (the last path element is the
// token, wherever it is mounted). GET shows what the link will do and a
// button that POSTs to the same URL, and changes nothing: mail clients
// and link scanners fetch links unasked. POST does it for the token's
// recipient alone and shows the outcome. No login, no script, nothing
// loaded from elsewhere; the URL is a credential, so nothing is cached
// and no Referer leaves the page.
func Handler(o HandlerOptions) http.Handler {
	return &handler{o: o}
}

type handler struct{ o HandlerOptions }

// page is one answer.
type page struct {
	Status  int
	Title   string
	Message string
	Button  string // "" for no form
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		render(w, page{Status: http.StatusMethodNotAllowed, Title: "Not allowed", Message: "This link is opened, not " + r.Method + "ed."})
		return
	}
	now := time.Now()
	if h.o.Now != nil {
		now = h.o.Now()
	}
	key, err := LoadKey(h.o.KeyFile)
	if err != nil {
		h.o.Log(fmt.Sprintf("digest link: %v", err))
		render(w, page{Status: http.StatusServiceUnavailable, Title: "Unavailable", Message: "Quarantine links cannot be checked at the moment. Please try again later."})
		return
	}
	tok, err := Verify(key, path.Base(r.URL.Path), now)
	switch {
	case errors.Is(err, ErrExpired):
		render(w, page{Status: http.StatusGone, Title: "Link expired", Message: "This link has expired. The next quarantine report has new links; or ask your mail administrator."})
		return
	case err != nil:
		render(w, page{Status: http.StatusForbidden, Title: "Invalid link", Message: "This link is not valid. Copy the whole link from the quarantine report."})
		return
	}
	if r.Method == http.MethodPost {
		h.act(w, r.Context(), tok)
		return
	}
	e, err := h.o.Queue.Spool.QuarantineLoad(tok.ID)
	if err == nil && !pending(e.Envelope, tok.Recipient) {
		err = spool.ErrNotFound
	}
	if err != nil {
		h.failed(w, tok, err)
		return
	}
	env := e.Envelope
	what := fmt.Sprintf("the message from %s, subject %q, received %s", senderText(env.Sender), Subject(env.Headers), env.Received.Local().Format(dateLayout))
	p := page{Status: http.StatusOK}
	if tok.Action == Release {
		p.Title, p.Button = "Release this message?", "Release"
		p.Message = fmt.Sprintf("Release %s, to you (%s)? It will be delivered to your mailbox.", what, tok.Recipient)
	} else {
		p.Title, p.Button = "Delete this message?", "Delete"
		p.Message = fmt.Sprintf("Delete %s, for you (%s)? It will not be delivered to you.", what, tok.Recipient)
	}
	render(w, p)
}

func pending(env *spool.Envelope, rcpt string) bool {
	for _, r := range env.Pending() {
		if strings.EqualFold(r, rcpt) {
			return true
		}
	}
	return false
}

// act does what the token says, for its recipient alone.
func (h *handler) act(w http.ResponseWriter, ctx context.Context, tok Token) {
	q := h.o.Queue
	if tok.Action == Delete {
		if _, err := q.QuarantineDeleteFor(tok.ID, tok.Recipient); err != nil {
			h.failed(w, tok, err)
			return
		}
		render(w, page{Status: http.StatusOK, Title: "Deleted", Message: fmt.Sprintf("The message has been deleted for you (%s). It will not be delivered to you.", tok.Recipient)})
		return
	}
	if h.o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.o.Timeout)
		defer cancel()
	}
	id, _, err := q.QuarantineReleaseFor(ctx, tok.ID, tok.Recipient)
	if err != nil {
		h.failed(w, tok, err)
		return
	}
	if h.o.Deliver != nil {
		h.o.Deliver(id)
	}
	render(w, page{Status: http.StatusOK, Title: "Released", Message: fmt.Sprintf("The message has been released: it is on its way to your mailbox (%s).", tok.Recipient)})
}

// failed answers a message that is not (or no longer) in quarantine for
// the recipient, or that cannot be handled now.
func (h *handler) failed(w http.ResponseWriter, tok Token, err error) {
	var ref *admin.Refusal
	switch {
	case errors.Is(err, spool.ErrNotFound), errors.Is(err, admin.ErrNotQuarantined):
		render(w, page{Status: http.StatusNotFound, Title: "Not in quarantine", Message: "This message is no longer in quarantine: it has already been released or deleted."})
	case errors.As(err, &ref), errors.Is(err, spool.ErrLocked):
		render(w, page{Status: http.StatusServiceUnavailable, Title: "Busy", Message: "This message is being handled at the moment. Please try again in a minute."})
	default:
		h.o.Log(fmt.Sprintf("digest link %s %s for %s: %v", tok.Action, tok.ID, tok.Recipient, err))
		render(w, page{Status: http.StatusInternalServerError, Title: "Error", Message: "Something went wrong; your mail administrator has been told. Please try again later."})
	}
}

// style is the page's only style sheet, allowed by its hash: the
// Content-Security-Policy allows nothing else (no script at all).
const style = `body{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em;line-height:1.4}button{font-size:1.1em;padding:.4em 1.2em}`

var csp = func() string {
	sum := sha256.Sum256([]byte(style))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

var pageTmpl = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}}</title><style>{{.Style}}</style></head>
<body>
<h1 id="title">{{.Title}}</h1>
<p id="message">{{.Message}}</p>
{{if .Button}}<form method="post"><button type="submit" id="confirm">{{.Button}}</button></form>
{{end}}</body></html>
`))

func render(w http.ResponseWriter, p page) {
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", csp)
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	w.WriteHeader(p.Status)
	pageTmpl.Execute(w, struct {
		page
		Style template.CSS
	}{p, template.CSS(style)})
}
