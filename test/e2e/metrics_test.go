package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mxgate/internal/peertest"
)

// scrapeTimeout bounds the wait for Prometheus to have scraped what the
// test sent (it scrapes every second).
const scrapeTimeout = 30 * time.Second

// TestPrometheusScrape: a real Prometheus scrapes the admin listener of the
// built mxgate, and PromQL over what it stored counts the messages the test
// sent, the accepted ones and the recipient refused at RCPT.
func TestPrometheusScrape(t *testing.T) {
	requirePrograms(t, "smtp-sink", "prometheus")
	s := startSink(t)
	admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	g := startMxgateConfig(t, adminTemplate(t, admin), s.URL())

	for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
		if code, body := httpGet(t, "http://"+admin+path); code != 200 || body != want {
			t.Errorf("GET %s = %d %q, want 200 %q", path, code, body, want)
		}
	}

	const n = 4
	msg := dataBytes(readTestdata(t, "message.eml"))
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	var ids []string
	for i := range n {
		ids = append(ids, c.send(t, "alice@sender.test", []string{fmt.Sprintf("user%d@example.test", i)}, msg))
	}
	c.expect(t, "QUIT", 221)
	// 127.0.0.1 may not relay: the foreign recipient is refused.
	if r := rcptReply(t, "127.0.0.1", g.addr, "alice@sender.test", "victim@foreign.test"); r.Code != 550 {
		t.Fatalf("RCPT to a foreign domain -> %v, want 550", r)
	}
	g.waitCompleted(ids...)

	prom := peertest.Prometheus(t, admin)
	for _, q := range []struct {
		query string
		want  float64
	}{
		{`up{job="mxgate"}`, 1},
		{`sum(mxgate_messages_total{action="accepted"})`, n},
		{`sum(mxgate_rcpt_refused_total{stage="rcpt"})`, 1},
		{`sum(mxgate_deliveries_total{outcome="delivered"})`, n},
		{`count(mxgate_build_info)`, 1},
		{`mxgate_queue_messages`, 0},
	} {
		waitFor(t, scrapeTimeout, func() string {
			got, err := promQuery(prom, q.query)
			if err == nil && got == q.want {
				return ""
			}
			return fmt.Sprintf("Prometheus to answer %s = %v (it says %v, %v)", q.query, q.want, got, err)
		})
	}

	// No label carries an address: the scrape names neither the sender,
	// the recipients nor the client.
	_, body := httpGet(t, "http://"+admin+"/metrics")
	for _, leak := range []string{"alice@", "example.test", "foreign.test", "127.0.0.1"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics holds %q", leak)
		}
	}
}

// TestReadyz: /readyz of the running daemon names the part that keeps
// it from taking mail: a required scanner that does not answer (spamd
// with on_error = "tempfail", nothing on its port), a required milter
// that does not (on_error defaults to tempfail; one with "accept" is not
// required), or a spool below its reserve (every MAIL answered 452);
// /healthz still says the process is alive. A milter that negotiates
// (Debian's opendkim) is ready.
func TestReadyz(t *testing.T) {
	requirePrograms(t, "smtp-sink")
	down := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	for _, tt := range []struct {
		name, section, want string
	}{
		{"scanner down", fmt.Sprintf("[spamd]\naddress = %q\non_error = \"tempfail\"\ntimeout = \"2s\"\n", down), "not ready:\nspamd: "},
		{"spool reserve", "[spool]\nmin_free_space = \"1000000GiB\"\n", "not ready:\nspool: spool directory space = "},
		{"milter down", fmt.Sprintf("[[milter]]\nname = \"rspamd\"\naddress = \"inet:%s\"\nconnect_timeout = \"2s\"\n\n[[milter]]\nname = \"optional\"\naddress = \"inet:%s\"\non_error = \"accept\"\n", down, down), "not ready:\nmilter rspamd: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startSink(t)
			admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
			startMxgateConfig(t, adminTemplate(t, admin, tt.section), s.URL())
			code, body := httpGet(t, "http://"+admin+"/readyz")
			if code != 503 || !strings.HasPrefix(body, tt.want) || strings.Count(body, "\n") != 2 {
				t.Errorf("GET /readyz = %d %q, want 503 and one line %q...", code, body, tt.want)
			}
			if tt.name != "spool reserve" && !strings.Contains(body, down) {
				t.Errorf("GET /readyz = %q does not name the peer's address %s", body, down)
			}
			if code, body := httpGet(t, "http://"+admin+"/healthz"); code != 200 || body != "ok\n" {
				t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
			}
		})
	}
	t.Run("milter up", func(t *testing.T) {
		opendkim, _ := startScannerIn(t, "opendkim")
		s := startSink(t)
		admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
		startMxgateConfig(t, adminTemplate(t, admin, fmt.Sprintf("[[milter]]\nname = \"opendkim\"\naddress = \"inet:%s\"\n", opendkim)), s.URL())
		if code, body := httpGet(t, "http://"+admin+"/readyz"); code != 200 || body != "ready\n" {
			t.Errorf("GET /readyz = %d %q, want 200 ready", code, body)
		}
	})
}

// adminTemplate is the e2e config template with [admin] listen = addr and
// the sections in more.
func adminTemplate(t *testing.T, addr string, more ...string) string {
	t.Helper()
	b, err := os.ReadFile(testdata("mxgate.toml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin.toml.tmpl")
	b = append(b, fmt.Sprintf("\n[admin]\nlisten = %q\n", addr)...)
	for _, m := range more {
		b = append(b, "\n"+m...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// promQuery asks Prometheus' HTTP API for an instant query whose answer
// is one sample, and returns its value.
func promQuery(base, query string) (float64, error) {
	resp, err := httpClient.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, fmt.Errorf("%s: %w", resp.Status, err)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", query, r.Error)
	}
	if len(r.Data.Result) != 1 {
		return 0, fmt.Errorf("%d samples", len(r.Data.Result))
	}
	v, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(v, 64)
}

// TestQueueGauges: mail that cannot be delivered (nothing listens at the
// downstream) stays in the queue, and /metrics counts it and ages the
// oldest from its arrival.
func TestQueueGauges(t *testing.T) {
	admin := fmt.Sprintf("127.0.0.1:%d", peertest.FreePort(t, false))
	down := fmt.Sprintf("smtp://127.0.0.1:%d", peertest.FreePort(t, false))
	g := startMxgateConfig(t, adminTemplate(t, admin), down)
	msg := dataBytes(readTestdata(t, "message.eml"))
	c := mustDial(t, "127.0.0.1", g.addr)
	c.expect(t, "EHLO client.test", 250)
	for i := range 3 {
		c.send(t, "alice@sender.test", []string{fmt.Sprintf("user%d@example.test", i)}, msg)
	}
	c.expect(t, "QUIT", 221)
	time.Sleep(1100 * time.Millisecond) // the oldest is a second old
	_, body := httpGet(t, "http://"+admin+"/metrics")
	if !strings.Contains(body, "\nmxgate_queue_messages 3\n") {
		t.Errorf("/metrics lacks mxgate_queue_messages 3:\n%s", grepLines(body, "mxgate_queue_"))
	}
	age := -1.0
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, "mxgate_queue_oldest_age_seconds "); ok {
			age, _ = strconv.ParseFloat(v, 64)
		}
	}
	if age < 1 || age > 60 {
		t.Errorf("mxgate_queue_oldest_age_seconds = %v, want 1 to 60", age)
	}
}

// grepLines is the lines of text that hold s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
