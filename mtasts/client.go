package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"

	"mxgate/dnsclient"
)

// maxPolicySize bounds a policy file (RFC 8461 3.3 lets the sender limit
// it; 64 KiB is what the RFC's examples are measured against).
const maxPolicySize = 64 << 10

// Options are taken as given: the MX transport fills them from its own.
type Options struct {
	DNS            *dnsclient.Client // the TXT record and the policy host's addresses
	Port           int               // HTTPS port of mta-sts.DOMAIN: 443 (tests use another)
	RootCAs        *x509.CertPool    // verifies the policy host; nil = the system's roots
	ConnectTimeout time.Duration     // one TCP connect to the policy host
	Timeout        time.Duration     // one whole lookup: TXT record and policy fetch
	CachePath      string            // "" = the cache lives in memory only
	Log            func(text string) // trouble saving the cache; nil = none
}

// Client finds policies and caches them. It is safe for concurrent use.
type Client struct {
	o    Options
	http *http.Client
	sf   singleflight.Group

	mu    sync.Mutex
	cache map[string]entry // by domain
}

// entry is one cached policy, as it is saved: the policy file's text
// (parsed again when loaded) under its id, until it expires.
type entry struct {
	ID      string    `json:"id"`
	Text    string    `json:"policy"`
	Expires time.Time `json:"expires"`
	policy  *Policy
}

// New returns a Client, its cache loaded from o.CachePath when that file
// exists.
func New(o Options) (*Client, error) {
	c := &Client{o: o, cache: make(map[string]entry)}
	if o.CachePath != "" {
		if err := c.load(); err != nil {
			return nil, err
		}
	}
	dialer := &net.Dialer{Timeout: o.ConnectTimeout}
	c.http = &http.Client{
		Timeout: o.Timeout,
		Transport: &http.Transport{
			Proxy: nil, // the policy host is asked directly
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return c.dial(ctx, dialer, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		},
		// RFC 8461 3.3: redirects must not be followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// dial connects to the policy host at an address the program's DNS
// client (hosts file first) gives, each in turn.
func (c *Client) dial(ctx context.Context, d *net.Dialer, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := c.o.DNS.LookupIP(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("address of %s: %s", host, dnsclient.Reason(err))
	}
	var last error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		last = err
	}
	return nil, last
}

// Policy returns domain's policy, nil when it has none (RFC 8461 5.1):
// the cached one while it has not expired and the TXT record's id is
// unchanged (or cannot be read, or a new policy cannot be fetched);
// otherwise the one fetched, cached under the new id. With neither a
// cached nor a fetched policy the error says what failed (for the
// log): a domain that publishes a TXT record but whose policy cannot be
// had is delivered to as if it had none, as the RFC says.
func (c *Client) Policy(ctx context.Context, domain string) (*Policy, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	v, err, _ := c.sf.Do(domain, func() (any, error) { return c.policy(ctx, domain) })
	p, _ := v.(*Policy)
	return p, err
}

func (c *Client) policy(ctx context.Context, domain string) (*Policy, error) {
	if c.o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.o.Timeout)
		defer cancel()
	}
	cached, haveCached := c.cached(domain)
	txt, err := c.o.DNS.Lookup(ctx, "_mta-sts."+domain, dns.TypeTXT)
	if err != nil {
		if haveCached {
			return cached.policy, nil
		}
		return nil, fmt.Errorf("MTA-STS TXT lookup for _mta-sts.%s failed: %s", domain, dnsclient.Reason(err))
	}
	var records []string
	for _, rr := range txt.Records {
		records = append(records, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	id, err := ParseRecord(records)
	switch {
	case err != nil && haveCached:
		return cached.policy, nil
	case errors.Is(err, ErrNoRecord):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("MTA-STS TXT record of _mta-sts.%s: %w", domain, err)
	case haveCached && cached.ID == id:
		return cached.policy, nil
	}
	text, p, err := c.fetch(ctx, domain)
	if err != nil {
		if haveCached {
			return cached.policy, nil
		}
		return nil, err
	}
	c.store(domain, entry{ID: id, Text: text, Expires: time.Now().Add(p.MaxAge), policy: p})
	return p, nil
}

// fetch gets and parses https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
func (c *Client) fetch(ctx context.Context, domain string) (string, *Policy, error) {
	host := "mta-sts." + domain
	if c.o.Port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(c.o.Port))
	}
	u := "https://" + host + "/.well-known/mta-sts.txt"
	fail := func(err error) (string, *Policy, error) {
		return "", nil, fmt.Errorf("MTA-STS policy %s: %w", u, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL again
		}
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("HTTP status %s", resp.Status))
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		return fail(fmt.Errorf("Content-Type %q, want text/plain", resp.Header.Get("Content-Type")))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	if err != nil {
		return fail(err)
	}
	if len(b) > maxPolicySize {
		return fail(fmt.Errorf("longer than %d bytes", maxPolicySize))
	}
	p, err := Parse(b)
	if err != nil {
		return fail(err)
	}
	return string(b), p, nil
}

// cached is domain's cache entry unless it has expired.
func (c *Client) cached(domain string) (entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[domain]
	if ok && time.Now().After(e.Expires) {
		delete(c.cache, domain)
		ok = false
	}
	return e, ok
}

// store caches e for domain, and saves the cache when it has a file.
func (c *Client) store(domain string, e entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	maps.DeleteFunc(c.cache, func(_ string, e entry) bool { return now.After(e.Expires) })
	c.cache[domain] = e
	if c.o.CachePath == "" {
		return
	}
	if err := c.save(); err != nil && c.o.Log != nil {
		c.o.Log("MTA-STS policy cache not saved: " + err.Error())
	}
}

// save writes the cache to a new file and renames it over the old one, so
// that a crash leaves one or the other. The caller holds mu.
func (c *Client) save() error {
	b, err := json.Marshal(c.cache)
	if err != nil {
		return err
	}
	// The directory (data_dir/db) exists only once some cache was saved.
	if err := os.MkdirAll(filepath.Dir(c.o.CachePath), 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.o.CachePath), filepath.Base(c.o.CachePath)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), c.o.CachePath)
}

// load reads the cache file; a missing one is an empty cache, expired
// entries and entries that no longer parse are dropped.
func (c *Client) load() error {
	b, err := os.ReadFile(c.o.CachePath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mtasts: policy cache: %w", err)
	}
	var saved map[string]entry
	if err := json.Unmarshal(b, &saved); err != nil {
		return fmt.Errorf("mtasts: policy cache %s: %w", c.o.CachePath, err)
	}
	now := time.Now()
	for domain, e := range saved {
		p, err := Parse([]byte(e.Text))
		if err != nil || now.After(e.Expires) {
			continue
		}
		e.policy = p
		c.cache[domain] = e
	}
	return nil
}
