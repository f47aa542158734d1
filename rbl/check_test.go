package rbl

import (
	"errors"
	"strings"
	"testing"
)

func TestDeferTextNotARejection(t *testing.T) {
	err := errors.New("resolver 127.0.0.1:1: read udp 127.0.0.1:5->127.0.0.1:1: connect: connection refused")
	if got := deferText(err); strings.Contains(got, "refused") || !strings.Contains(got, "connection REFUSED") {
		t.Errorf("deferText = %q: eximstats would count the line as a rejection", got)
	}
}
