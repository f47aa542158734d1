package deliver

import (
	"context"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestOverQuota: a mailbox-full reply (RFC 3463 X.2.2) in a 552 or 452,
// at RCPT or in LMTP's per-recipient replies, is OverQuota, with the
// status its class gives; other codes keep their usual reason.
func TestOverQuota(t *testing.T) {
	tests := []struct {
		name   string
		lmtp   bool // the reply comes after the dot, per recipient
		reply  error
		status Status
		reason Reason
	}{
		{"SMTP RCPT 552 5.2.2", false, smtpErr(552, smtp.EnhancedCode{5, 2, 2}, "Mailbox full"), Failed, OverQuota},
		{"SMTP RCPT 452 4.2.2", false, smtpErr(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full"), Deferred, OverQuota},
		{"LMTP data 552 5.2.2", true, smtpErr(552, smtp.EnhancedCode{5, 2, 2}, "Quota exceeded"), Failed, OverQuota},
		{"LMTP data 452 4.2.2", true, smtpErr(452, smtp.EnhancedCode{4, 2, 2}, "Quota exceeded"), Deferred, OverQuota},
		{"552 5.3.4 is a size limit", false, smtpErr(552, smtp.EnhancedCode{5, 3, 4}, "Message too big"), Failed, RemotePerm},
		{"550 5.2.2 is not the quota pair", false, smtpErr(550, smtp.EnhancedCode{5, 2, 2}, "Mailbox full"), Failed, RemotePerm},
		{"552 without an enhanced code", false, smtpErr(552, smtp.NoEnhancedCode, "Mailbox full"), Failed, RemotePerm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := &fakeBackend{rcptErr: map[string]error{"full@example.test": tt.reply}}
			var lmtp func(*smtp.Server)
			if tt.lmtp {
				be = &fakeBackend{lmtpStatus: map[string]error{"full@example.test": tt.reply}}
				lmtp = func(s *smtp.Server) { s.LMTP = true }
			}
			u, _ := startServer(t, "tcp", be, lmtp)
			got := newTransport(t, u, testOptions()).Deliver(context.Background(), msg("s@example.test", "x\n", "full@example.test"))
			if len(got) != 1 || got[0].Status != tt.status || got[0].Reason != tt.reason {
				t.Errorf("got %+v, want status %v reason %v", got, tt.status, tt.reason)
			}
		})
	}
}
