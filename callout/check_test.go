package callout

import "testing"

func TestExemptDomain(t *testing.T) {
	list := []string{"partner.test", "example.net"}
	for domain, want := range map[string]string{
		"partner.test": "partner.test", "Sub.Partner.TEST": "partner.test", "example.net": "example.net",
		"notpartner.test": "", "partner.test.evil": "", "users.test": "",
	} {
		if got := exemptDomain(list, domain); got != want {
			t.Errorf("exemptDomain(%q) = %q, want %q", domain, got, want)
		}
	}
}
