package miltersrv

import (
	"slices"
	"strings"
	"testing"

	"mxgate/spool"
)

func fields(texts ...string) []spool.Header {
	hs := make([]spool.Header, len(texts))
	for i, t := range texts {
		hs[i] = spool.Header{Type: ' ', Text: t + "\n"}
		if strings.HasPrefix(t, "*") {
			hs[i] = spool.Header{Type: '*', Text: t[1:] + "\n"}
		}
	}
	return hs
}

// standInText is the stand-in of the MTA's own Received line in the tests.
const standInText = "Received: from h (h [192.0.2.1]) by mta"

func TestHeaderOps(t *testing.T) {
	tests := []struct {
		name        string
		orig, final []spool.Header
		want        []headerOp
	}{
		{"unchanged", fields("A: 1", "B: 2"), fields(standInText, "A: 1", "B: 2"), nil},
		{"stamp below the MTA's Received", fields("Received: x", "Subject: s"), fields(standInText, "X-Spam-Flag: YES", "Received: x", "Subject: s"),
			[]headerOp{{insert: true, index: 1, name: "X-Spam-Flag", value: " YES"}}},
		{"signature above the MTA's Received", fields("Subject: s"), fields("DKIM-Signature: v=1", standInText, "Subject: s"),
			[]headerOp{{insert: true, index: 0, name: "DKIM-Signature", value: " v=1"}}},
		{"second of a name deleted, first changed", fields("X-Spam: a", "Subject: s", "X-Spam: b"), fields(standInText, "X-Spam: new", "Subject: s", "*X-Spam: b"),
			[]headerOp{{index: 2, name: "X-Spam"}, {index: 1, name: "X-Spam", value: " new"}}},
		{"a shown Received changed: counted without the MTA's", fields("Received: x", "Received: y"), fields(standInText, "Received: x", "Received: z"),
			[]headerOp{{index: 2, name: "Received", value: " z"}}},
		{"added and removed again", fields("A: 1"), fields(standInText, "A: 1", "*B: 2"), nil},
		{"folded value", fields("Subject: a"), fields(standInText, "Subject: [SPAM] a\n\tb"),
			[]headerOp{{index: 1, name: "Subject", value: " [SPAM] a\n\tb"}}},
		{"stand-in deleted: never sent back", fields("A: 1"), fields("*"+standInText, "A: 1"), nil},
		{"stand-in changed: never sent back", fields("A: 1"), fields(standInText+" (edited)", "A: 1"), nil},
	}
	for _, tt := range tests {
		if got := headerOps(fields(standInText)[0], tt.orig, tt.final); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// TestHeaderOpsPostfix: the stamps land directly below Postfix's own
// Received line and a field added at the end lands at the end, in a
// header block kept as Postfix keeps it (its Received line on top,
// hidden from the milter).
func TestHeaderOpsPostfix(t *testing.T) {
	orig := fields("Received: from far (far [198.51.100.1])", "From: a@example.test", "Subject: s")
	final := fields(standInText, "X-Spam-Flag: YES", "X-Spam-Status: Yes, score=9.1", "Received: from far (far [198.51.100.1])",
		"From: a@example.test", "Subject: s", "X-End: 1")
	got := postfix(t, "Received: from h (h [192.0.2.1]) by postfix", orig, headerOps(fields(standInText)[0], orig, final))
	want := []string{"Received: from h (h [192.0.2.1]) by postfix\n", "X-Spam-Flag: YES\n", "X-Spam-Status: Yes, score=9.1\n",
		"Received: from far (far [198.51.100.1])\n", "From: a@example.test\n", "Subject: s\n", "X-End: 1\n"}
	if !slices.Equal(got, want) {
		t.Errorf("Postfix has\n%q\nwant\n%q", got, want)
	}
}

// postfix applies ops as Postfix's cleanup does to its header block:
// own (its Received line, never shown to the milter) on top of orig; an
// insertion's index counts own, a change's or deletion's per-name index
// does not.
func postfix(t *testing.T, own string, orig []spool.Header, ops []headerOp) []string {
	t.Helper()
	type field struct{ name, text string }
	mta := []field{{"Received", own + "\n"}}
	for _, h := range orig {
		mta = append(mta, field{h.Name(), h.Text})
	}
	for _, o := range ops {
		if o.insert {
			if o.index > len(mta) {
				t.Fatalf("insertion at %d of %d fields", o.index, len(mta))
			}
			mta = slices.Insert(mta, o.index, field{o.name, o.name + ":" + o.value + "\n"})
			continue
		}
		n := 0
		for i := 1; i < len(mta); i++ {
			if strings.EqualFold(mta[i].name, o.name) {
				if n++; n == o.index {
					if o.value == "" {
						mta = slices.Delete(mta, i, i+1)
					} else {
						mta[i].text = o.name + ":" + o.value + "\n"
					}
					break
				}
			}
		}
	}
	got := make([]string, len(mta))
	for i, f := range mta {
		got[i] = f.text
	}
	return got
}

// FuzzHeaderOps: whatever the checks do to the fields (keep, delete,
// change, insert, in any mix), the modifications make the MTA's copy
// (Postfix's: its own Received line on top, hidden from the milter) what
// the checks left, with the MTA's line where the stand-in was.
func FuzzHeaderOps(f *testing.F) {
	f.Add("Received: x\nSubject: s\nX-Spam-Status: no\n", []byte{0, 3, 1, 2})
	f.Add("A: 1\nA: 2\nA: 3\n", []byte{1, 2, 1, 3, 3})
	f.Fuzz(func(t *testing.T, block string, script []byte) {
		var orig []spool.Header
		for _, line := range strings.Split(block, "\n") {
			name, _, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t\r*") || len(orig) > 50 {
				continue
			}
			orig = append(orig, spool.Header{Type: ' ', Text: line + "\n"})
		}
		names := []string{"A", "Subject", "X-Spam-Flag", "Received"}
		// The checks see the stand-in first; the first script byte may
		// put a field above it (a signature), never change or delete it.
		recv := spool.Header{Type: ' ', Text: "Received: stand-in\n"}
		var final []spool.Header
		for i, h := range append([]spool.Header{recv}, orig...) {
			op := byte(0)
			if i < len(script) {
				op = script[i]
			}
			switch op % 4 {
			case 1:
				if i > 0 {
					h.Type = '*'
				}
			case 2:
				if i > 0 {
					h.Text = h.Name() + ": changed " + string(rune('a'+i%26)) + "\n"
				}
			case 3:
				final = append(final, spool.Header{Type: ' ', Text: names[int(op/4)%len(names)] + ": new\n"})
			}
			final = append(final, h)
		}
		got := postfix(t, "Received: by postfix", orig, headerOps(recv, orig, final))
		var want []string
		for _, h := range final {
			switch {
			case h.Type == '*':
			case h.Text == recv.Text:
				want = append(want, "Received: by postfix\n")
			default:
				want = append(want, h.Text)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("the MTA has\n%q\nthe checks left\n%q", got, want)
		}
	})
}
