package console

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzSafeNext: whatever a client puts in next, the login sends the
// browser to a path of this console, never to another site.
func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/queue?q=a", "//evil.example/", "/\\evil", "https://evil.example/", "javascript:alert(1)", "", "/%2f%2fevil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := safeNext(next)
		u, err := url.Parse(got)
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\t\r\n") {
			t.Fatalf("safeNext(%q) = %q", next, got)
		}
		if err == nil && (u.Host != "" || u.Scheme != "") {
			t.Fatalf("safeNext(%q) = %q leaves the site", next, got)
		}
	})
}

// FuzzQuery: the tracking search form, as a client sends it, becomes a
// query or an error, never a panic; a time it accepts is not in the future
// for an age.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"sender=a@b&since=24h", "since=7d&until=2026-01-02T15:04", "before=12", "before=-1", "since=-5m", "since=99999999999d", "until=2026-13-45"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, form string) {
		v, err := url.ParseQuery(form)
		if err != nil {
			return
		}
		q, err := query(v, now)
		if err != nil {
			return
		}
		if q.Before < 0 || q.Limit != pageSize {
			t.Fatalf("query(%q) = %+v", form, q)
		}
	})
}
