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

func TestHeaderOps(t *testing.T) {
	tests := []struct {
		name        string
		orig, final []spool.Header
		want        []headerOp
	}{
		{"unchanged", fields("A: 1", "B: 2"), fields("A: 1", "B: 2"), nil},
		{"stamp after the first field", fields("Received: x", "Subject: s"), fields("Received: x", "X-Spam-Flag: YES", "Subject: s"),
			[]headerOp{{insert: true, index: 1, name: "X-Spam-Flag", value: " YES"}}},
		{"signature on top", fields("Subject: s"), fields("DKIM-Signature: v=1", "Subject: s"),
			[]headerOp{{insert: true, index: 0, name: "DKIM-Signature", value: " v=1"}}},
		{"second of a name deleted, first changed", fields("X-Spam: a", "Subject: s", "X-Spam: b"), fields("X-Spam: new", "Subject: s", "*X-Spam: b"),
			[]headerOp{{index: 2, name: "X-Spam"}, {index: 1, name: "X-Spam", value: " new"}}},
		{"added and removed again", fields("A: 1"), fields("A: 1", "*B: 2"), nil},
		{"folded value", fields("Subject: a"), fields("Subject: [SPAM] a\n\tb"),
			[]headerOp{{index: 1, name: "Subject", value: " [SPAM] a\n\tb"}}},
	}
	for _, tt := range tests {
		if got := headerOps(tt.orig, tt.final); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// FuzzHeaderOps: whatever the checks do to the fields (keep, delete,
// change, insert, in any mix), the modifications make the MTA's copy what
// the checks left.
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
		var final []spool.Header
		for i, h := range orig {
			op := byte(0)
			if i < len(script) {
				op = script[i]
			}
			switch op % 4 {
			case 1:
				h.Type = '*'
			case 2:
				h.Text = h.Name() + ": changed " + string(rune('a'+i%26)) + "\n"
			case 3:
				final = append(final, spool.Header{Type: ' ', Text: names[int(op/4)%len(names)] + ": new\n"})
			}
			final = append(final, h)
		}
		type field struct{ name, text string }
		mta := make([]field, len(orig))
		for i, h := range orig {
			mta[i] = field{h.Name(), h.Text}
		}
		for _, o := range headerOps(orig, final) {
			if o.insert {
				if o.index > len(mta) {
					t.Fatalf("insertion at %d of %d fields", o.index, len(mta))
				}
				mta = slices.Insert(mta, o.index, field{o.name, o.name + ":" + o.value + "\n"})
				continue
			}
			n := 0
			for i := range mta {
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
		var want, got []string
		for _, h := range final {
			if h.Type != '*' {
				want = append(want, h.Text)
			}
		}
		for _, f := range mta {
			got = append(got, f.text)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("the MTA has\n%q\nthe checks left\n%q", got, want)
		}
	})
}
