package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"mxgate/config"
	"mxgate/starttls"
)

// greeting is an SMTP or LMTP server to greet.
type greeting struct {
	target   config.Target
	hostname string // said in EHLO/LHLO
	startTLS string // "none", "opportunistic" or "required"
	verify   bool   // verify the server's certificate
	roots    string // a CA bundle for verify; "": the system's
}

// greet connects, reads the greeting, says EHLO (LHLO for LMTP) and, unless
// starttls is "none", starts TLS where offered (a server that does not
// offer it fails a "required" store), then QUITs: what delivery does up to
// its first MAIL. go-smtp speaks the protocol, package starttls the
// upgrade, as in deliver.
func greet(ctx context.Context, g greeting) (string, error) {
	network, addr := "tcp", net.JoinHostPort(g.target.Host, strconv.Itoa(g.target.Port))
	if g.target.Scheme == "lmtp+unix" {
		network, addr = "unix", g.target.Path
	}
	var d net.Dialer
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return "", err
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { _ = raw.Close() })
	defer stop()
	deadline, _ := ctx.Deadline()
	var conn net.Conn = raw
	var notes []string
	if g.target.Scheme == "smtps" {
		cfg, err := tlsConfig(g)
		if err != nil {
			return "", err
		}
		tc, err := starttls.Handshake(ctx, raw, cfg, time.Until(deadline))
		if err != nil {
			return "", err
		}
		conn = tc
		notes = append(notes, "TLS "+tls.VersionName(tc.ConnectionState().Version))
	}
	first := &firstLine{Conn: conn}
	var c *smtp.Client
	verb := "EHLO"
	if strings.HasPrefix(g.target.Scheme, "lmtp") {
		c, verb = smtp.NewClientLMTP(first), "LHLO"
	} else {
		c = smtp.NewClient(first)
	}
	c.CommandTimeout = time.Until(deadline)
	if err := c.Hello(g.hostname); err != nil {
		switch line := first.line(); {
		case line == "":
			return "", fmt.Errorf("no greeting: %w", err)
		case !strings.HasPrefix(line, "220"):
			return "", fmt.Errorf("greeting %q: %w", line, err)
		}
		return "", fmt.Errorf("%s: %w", verb, err)
	}
	notes = append([]string{first.line(), verb + " ok"}, notes...)
	if offered, _ := c.Extension("STARTTLS"); g.target.Scheme != "smtps" && g.startTLS != "none" {
		switch {
		case offered:
			cfg, err := tlsConfig(g)
			if err != nil {
				return "", err
			}
			tc, err := starttls.Client(ctx, raw, cfg, time.Until(deadline))
			if err != nil {
				return "", fmt.Errorf("STARTTLS: %w", err)
			}
			notes = append(notes, "STARTTLS ok, "+tls.VersionName(tc.ConnectionState().Version))
			_, _ = tc.Write([]byte("QUIT\r\n"))
			return strings.Join(notes, "; "), nil
		case g.startTLS == "required":
			return "", fmt.Errorf("STARTTLS is required and %s does not offer it", addr)
		default:
			notes = append(notes, "no STARTTLS")
		}
	}
	_ = c.Quit()
	return strings.Join(notes, "; "), nil
}

func tlsConfig(g greeting) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: g.target.Host, InsecureSkipVerify: !g.verify, MinVersion: tls.VersionTLS12}
	if g.roots != "" {
		pem, err := os.ReadFile(g.roots)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		cfg.RootCAs.AppendCertsFromPEM(pem)
	}
	return cfg, nil
}

// firstLine remembers the first line read from the connection: the
// server's greeting, which go-smtp reads but does not hand out.
type firstLine struct {
	net.Conn
	buf  []byte
	done bool
}

func (f *firstLine) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	if !f.done {
		f.buf = append(f.buf, p[:n]...)
		if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
			f.buf, f.done = f.buf[:i], true
		} else if len(f.buf) > 512 {
			f.done = true
		}
	}
	return n, err
}

func (f *firstLine) line() string {
	s := strings.TrimRight(string(f.buf), "\r\n")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}
