package spamd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"mxgate/filters"
	"mxgate/spool"
)

// TestSubjectTag: the verdict of spam carries the Subject edit (or, without
// a Subject, a new one among its headers); ham and tagged mail get none.
func TestSubjectTag(t *testing.T) {
	const tag = "***SPAM***"
	long := strings.Repeat("x", maxLine-len("Subject: ")-5)
	tests := []struct {
		name    string
		opt     Options // SubjectTag is set to tag unless off
		off     bool    // no subject_tag configured
		spam    string  // the Spam header spamd answers
		headers string  // the message's header block
		edits   []filters.HeaderEdit
		added   string // a header the verdict adds besides the X-Spam-* stamp
	}{
		{name: "plain", spam: "True ; 12.1 / 5.0",
			headers: "From: a@example.test\nSubject: cheap pills\nTo: b@example.net\n",
			edits:   []filters.HeaderEdit{{Index: 1, Text: "Subject: ***SPAM*** cheap pills\n"}}},
		{name: "folded", spam: "True ; 12.1 / 5.0",
			headers: "Subject: cheap pills,\n\tbest prices\n  online\nFrom: a@example.test\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM*** cheap pills,\n\tbest prices\n  online\n"}}},
		{name: "value on the continuation line", spam: "True ; 12.1 / 5.0",
			headers: "Subject:\n cheap pills\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM***\n cheap pills\n"}}},
		{name: "spacing after the colon and the name's spelling", spam: "True ; 12.1 / 5.0",
			headers: "SUBJECT:\t  cheap pills\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "SUBJECT: ***SPAM*** cheap pills\n"}}},
		{name: "empty Subject", spam: "True ; 12.1 / 5.0",
			headers: "Subject:\nFrom: a@example.test\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM***\n"}}},
		{name: "already tagged: a re-scan leaves it", spam: "True ; 12.1 / 5.0",
			headers: "Subject: ***SPAM*** cheap pills\n"},
		{name: "already tagged, other case", spam: "True ; 12.1 / 5.0",
			headers: "Subject: ***spam*** cheap pills\n"},
		{name: "tagged Subject we created on an earlier scan", spam: "True ; 12.1 / 5.0",
			headers: "Subject: ***SPAM***\n"},
		{name: "tag folded onto the next line counts as tagged", spam: "True ; 12.1 / 5.0",
			headers: "Subject:\n ***SPAM***\n cheap pills\n"},
		{name: "the tag glued to a word is not the tag", spam: "True ; 12.1 / 5.0",
			headers: "Subject: ***SPAM***pills\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM*** ***SPAM***pills\n"}}},
		{name: "no Subject: one is added", spam: "True ; 12.1 / 5.0",
			headers: "From: a@example.test\n", added: "Subject: ***SPAM***\n"},
		{name: "a deleted Subject does not count", spam: "True ; 12.1 / 5.0",
			headers: "From: a@example.test\n*Subject: old\n", added: "Subject: ***SPAM***\n"},
		{name: "every Subject is tagged", spam: "True ; 12.1 / 5.0",
			headers: "Subject: one\nFrom: a@example.test\nsubject: two\n",
			edits: []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM*** one\n"},
				{Index: 2, Text: "subject: ***SPAM*** two\n"}}},
		{name: "a line the tag makes too long is folded after it", spam: "True ; 12.1 / 5.0",
			headers: "Subject: " + long + "\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM***\n " + long + "\n"}}},
		{name: "below tag_score: untouched", spam: "False ; 4.9 / 5.0",
			headers: "Subject: hello\n"},
		{name: "below our own tag_score, above spamd's", opt: Options{TagScore: score(8)}, spam: "True ; 6.0 / 5.0",
			headers: "Subject: hello\n"},
		{name: "at our own tag_score", opt: Options{TagScore: score(8)}, spam: "False ; 8.0 / 10.0",
			headers: "Subject: hello\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM*** hello\n"}}},
		{name: "quarantined spam is tagged too", opt: Options{QuarantineScore: score(10)}, spam: "True ; 12.1 / 5.0",
			headers: "Subject: hello\n",
			edits:   []filters.HeaderEdit{{Index: 0, Text: "Subject: ***SPAM*** hello\n"}}},
		{name: "off by default", off: true, spam: "True ; 12.1 / 5.0",
			headers: "Subject: hello\n"},
		{name: "off by default, no Subject added", off: true, spam: "True ; 12.1 / 5.0",
			headers: "From: a@example.test\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, "tcp", answer(fmt.Sprintf("SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: %s\r\n\r\n", tt.spam)))
			opt := tt.opt
			opt.Addresses = []string{fake.addr()}
			// What config fills: spamd takes its Options as given.
			opt.MaxSize = 512000
			if opt.RejectScore == 0 {
				opt.RejectScore = 15
			}
			if !tt.off {
				opt.SubjectTag = tag
			}
			m := rawMessage(tt.headers + "\nhi\n")
			for i, h := range m.Headers { // "*Name: ..." is a deleted field
				if strings.HasPrefix(h.Text, "*") {
					m.Headers[i] = spool.Header{Type: '*', Text: h.Text[1:]}
				}
			}
			v, err := New(opt).Check(context.Background(), m)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(v.Edits, tt.edits) {
				t.Errorf("edits\n got %+v\nwant %+v", v.Edits, tt.edits)
			}
			var added []string
			for _, h := range v.Headers {
				if !strings.HasPrefix(h.Text, "X-Spam-") {
					added = append(added, string(h.Type)+h.Text)
				}
			}
			var want []string
			if tt.added != "" {
				want = []string{" " + tt.added}
			}
			if !slices.Equal(added, want) {
				t.Errorf("added headers %q, want %q", added, want)
			}
			// Applied, every edit leaves one well-formed field whose
			// value starts with the tag exactly once.
			for _, e := range v.Edits {
				if e.Index < 0 || e.Index >= len(m.Headers) {
					t.Fatalf("edit index %d out of range", e.Index)
				}
				name, value, _ := strings.Cut(e.Text, ":")
				if !strings.EqualFold(name, "subject") || !strings.HasSuffix(e.Text, "\n") || strings.Contains(e.Text, "\n\n") {
					t.Errorf("malformed field %q", e.Text)
				}
				if un := strings.TrimSpace(strings.ReplaceAll(value, "\n", "")); !strings.HasPrefix(un, tag) ||
					strings.HasPrefix(strings.TrimSpace(un[len(tag):]), tag+" ") {
					t.Errorf("value %q does not start with the tag once", un)
				}
				for _, l := range strings.Split(strings.TrimSuffix(e.Text, "\n"), "\n") {
					if len(l) > maxLine {
						t.Errorf("line of %d bytes: %q...", len(l), l[:40])
					}
				}
			}
		})
	}
}

// Tagging is idempotent: the message as the edits leave it is not tagged
// again.
func TestSubjectTagTwice(t *testing.T) {
	const tag = "[SPAM]"
	for _, hdr := range []string{"Subject: hello\n", "Subject:\n\thello\n", "From: a@example.test\n", "Subject:\n"} {
		m := rawMessage(hdr + "\nhi\n")
		edits, add := subjectEdits(m.Headers, tag)
		for _, e := range edits {
			m.Headers[e.Index].Text = e.Text
		}
		if add != nil {
			m.Headers = append(m.Headers, *add)
		}
		if len(edits) == 0 && add == nil {
			t.Errorf("%q: not tagged", hdr)
		}
		if again, add := subjectEdits(m.Headers, tag); len(again) != 0 || add != nil {
			t.Errorf("%q: tagged twice: %+v, %v", hdr, again, add)
		}
	}
}
