package msgauth

import (
	"strings"
	"testing"

	"mxgate/spool"
)

func TestAuthservID(t *testing.T) {
	tests := []struct {
		value  string
		want   string
		wantOK bool
	}{
		{" mx.example.test; spf=pass smtp.mailfrom=a@b", "mx.example.test", true},
		{" mx.example.test 1; none", "mx.example.test", true},
		{" mx.example.test;", "mx.example.test", true},
		{" mx.example.test", "mx.example.test", true},
		{"\n\tmx.example.test;\n\tdkim=pass", "mx.example.test", true},
		// opendkim's comment, with a ";" that breaks authres.Parse.
		{" (mx.example.test; 1024-bit key) other.test; dkim=pass", "other.test", true},
		{" (nested (comment) \\) here) mx.example.test; none", "mx.example.test", true},
		{" mx.example.test(comment); none", "mx.example.test", true},
		{` "mx.example.test"; none`, "mx.example.test", true},
		{` "mx.exa\mple.test"; none`, "mx.example.test", true},
		{" ; spf=pass", "", false},
		{"", "", false},
		{" (unclosed mx.example.test; none", "", false},
		{` "unclosed; none`, "", false},
		{` mx"x"; none`, "", false},
	}
	for _, tt := range tests {
		got, ok := AuthservID(tt.value)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("AuthservID(%q) = %q, %v; want %q, %v", tt.value, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestClaims(t *testing.T) {
	headers := []spool.Header{
		{Type: 'P', Text: "Received: from x\n"},
		{Type: ' ', Text: "Authentication-Results: MX.example.test; spf=pass smtp.mailfrom=a@example.test\n"},
		{Type: ' ', Text: "authentication-results : (forged; really) mx.example.test;\n\tdkim=pass header.d=bank.test\n"},
		{Type: ' ', Text: "Authentication-Results: mx.upstream.test; dkim=pass header.d=example.test\n"},
		{Type: ' ', Text: "Authentication-Results: mx.example.test.evil; none\n"},
		{Type: ' ', Text: "X-Authentication-Results: mx.example.test; none\n"},
		{Type: '*', Text: "Authentication-Results: mx.example.test; none\n"},
	}
	var claims strings.Builder
	for _, h := range headers {
		if Claims(h.Name(), h.UnfoldedValue(), "mx.example.test") {
			claims.WriteByte('y')
		} else {
			claims.WriteByte('n')
		}
	}
	// The deleted one claims the id too: the pipeline skips deleted fields.
	if got, want := claims.String(), "nyynnny"; got != want {
		t.Errorf("claims %q, want %q", got, want)
	}
}

func TestFold(t *testing.T) {
	tests := []struct{ value, want string }{
		{"mx.example.test; none", "Authentication-Results: mx.example.test; none\n"},
		{"mx.example.test; dkim=none ; dmarc=none ", "Authentication-Results: mx.example.test; dkim=none; dmarc=none\n"},
		{"mx.example.test; dkim=fail reason=\"" + strings.Repeat("x", 80) + "\"; spf=pass",
			"Authentication-Results: mx.example.test;\n\tdkim=fail reason=\"" + strings.Repeat("x", 80) + "\";\n\tspf=pass\n"},
	}
	for _, tt := range tests {
		if got := fold("Authentication-Results", tt.value); got != tt.want {
			t.Errorf("fold(%q) =\n%q\nwant\n%q", tt.value, got, tt.want)
		}
	}
}

// FuzzAuthservID: any header value from the network gives an id without
// the characters that end or hide one, or none.
func FuzzAuthservID(f *testing.F) {
	for _, s := range []string{" mx.example.test; none", " (a; b) c; d", `"q\"x"; y`, " (((", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		id, ok := AuthservID(value)
		if ok == (id == "") {
			t.Fatalf("AuthservID(%q) = %q, %v", value, id, ok)
		}
		if ok && !strings.HasPrefix(strings.TrimLeft(value, " \t\r\n"), "\"") && !strings.ContainsAny(value, "(\"\\") && strings.ContainsAny(id, " \t\r\n;") {
			t.Fatalf("AuthservID(%q) = %q: id holds a separator", value, id)
		}
		h := spool.Header{Type: ' ', Text: "Authentication-Results:" + value + "\n"}
		if ok && !Claims(h.Name(), h.Value(), id) {
			t.Fatalf("Claims(%q) is false for its own id %q", value, id)
		}
	})
}
