package spamd

import (
	"strings"

	"mxgate/filters"
	"mxgate/spool"
)

// maxLine is RFC 5322's limit on a header line, CRLF not counted.
const maxLine = 998

// subjectEdits puts tag in front of the Subject of a spam message, the way
// SpamAssassin 4's "rewrite_header Subject TAG" does it (report_safe 0,
// Mail::SpamAssassin::PerMsgStatus::rewrite_no_report_safe), which is what
// cPanel users know:
//
//   - "Subject: old" becomes "Subject: TAG old": the whitespace after the
//     colon becomes one space, the field name keeps its spelling, a folded
//     value keeps its continuation lines as they are.
//   - A Subject whose value already starts with the tag (compared without
//     regard to case, as SpamAssassin's /i match does, and followed by
//     whitespace or the end) is left alone, so a message scanned twice (a
//     re-scan, or a second gateway) is never tagged twice.
//   - A message without a Subject gets one, "Subject: TAG", returned as
//     add (SpamAssassin also creates one; it writes "Subject: TAG " with a
//     trailing space, which is left out here).
//
// Every Subject field is tagged, as SpamAssassin does; fields marked
// deleted ('*') do not count. The edits index headers.
func subjectEdits(headers []spool.Header, tag string) (edits []filters.HeaderEdit, add *spool.Header) {
	found := false
	for i, h := range headers {
		if h.Type == '*' {
			continue
		}
		name, value, ok := strings.Cut(h.Text, ":")
		if !ok || !strings.EqualFold(strings.TrimRight(name, " \t"), "Subject") {
			continue
		}
		found = true
		if tagged(value, tag) {
			continue
		}
		edits = append(edits, filters.HeaderEdit{Index: i, Text: tagField(name+":", value, tag)})
	}
	if !found {
		add = &spool.Header{Type: ' ', Text: "Subject: " + tag + "\n"}
	}
	return edits, add
}

// tagged reports whether the field value (folded, LF line ends) starts
// with tag as a word of its own.
func tagged(value, tag string) bool {
	v := strings.TrimLeft(strings.ReplaceAll(value, "\n", ""), " \t") // unfolded
	if len(v) < len(tag) || !strings.EqualFold(v[:len(tag)], tag) {
		return false
	}
	return len(v) == len(tag) || v[len(tag)] == ' ' || v[len(tag)] == '\t'
}

// tagField is the field "name value" with tag in front of the value.
func tagField(name, value, tag string) string {
	first, rest, _ := strings.Cut(value, "\n") // rest: the continuation lines, each ending in LF
	first = strings.TrimLeft(first, " \t")
	head := name + " " + tag
	switch {
	case first == "":
		// "Subject:" alone, or with the value on continuation lines.
		return head + "\n" + rest
	case len(head)+1+len(first) > maxLine && len(head) <= maxLine:
		// The tag would push the line past the limit: fold after it.
		return head + "\n " + first + "\n" + rest
	}
	return head + " " + first + "\n" + rest
}
