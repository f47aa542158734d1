package miltersrv

import (
	"slices"
	"strings"

	"mxgate/spool"
)

// headerOp is one header modification as milter 6 defines it: a change
// names the field by its name and its 1-based index among the fields of
// that name shown to the milter (an empty value deletes it); an
// insertion by its position from the top, the MTA's own Received line
// (never shown) counted: 0 is above it, 1 just below it.
type headerOp struct {
	insert      bool
	index       int
	name, value string
}

// headerOps are the modifications that turn orig, the fields the MTA
// sent, into final, what the checks left of recv (the stand-in of the
// MTA's own Received line, first) and orig: the same fields in the same
// order, some marked deleted ('*') or given a new text, with new ones in
// between. recv is never sent back: the MTA keeps its own line where it
// is, whatever the checks did to the stand-in. A field of final is the
// MTA's next one if its text is the same, or else (not for recv) its
// name (as written); otherwise it is new. Changes and deletions come
// first, the last of each name first, so none moves the index of
// another; then the insertions, from the top, at their final positions.
func headerOps(recv spool.Header, orig, final []spool.Header) []headerOp {
	var changes, inserts []headerOp
	// mta is the MTA's header block as it counts insertions.
	mta := append([]spool.Header{recv}, orig...)
	j, pos := 0, 0
	k := standIn(recv, orig, final)
	if k < 0 {
		j, pos = 1, 1 // the stand-in is gone: the MTA's line stays on top
	}
	for i, h := range final {
		switch {
		case i == k:
			j++
			pos++
		case j == 0:
			if h.Type != '*' {
				inserts = append(inserts, headerOp{insert: true, index: pos, name: h.Name(), value: fieldValue(h.Text)})
				pos++
			}
		case j < len(mta) && h.Type != '*' && h.Text == mta[j].Text:
			j++
			pos++
		case j < len(mta) && h.Name() == mta[j].Name() && (h.Type == '*' || fieldValue(h.Text) != ""):
			// (An empty value would read as a deletion: such a field is
			// inserted instead.)
			op := headerOp{name: mta[j].Name(), index: nameIndex(orig, j-1)}
			if h.Type != '*' {
				op.value = fieldValue(h.Text)
				pos++
			}
			changes = append(changes, op)
			j++
		case h.Type == '*':
			// Added by one check, removed by another.
		default:
			inserts = append(inserts, headerOp{insert: true, index: pos, name: h.Name(), value: fieldValue(h.Text)})
			pos++
		}
	}
	for ; j < len(mta); j++ {
		changes = append(changes, headerOp{name: mta[j].Name(), index: nameIndex(orig, j-1)})
	}
	slices.SortStableFunc(changes, func(a, b headerOp) int { return b.index - a.index })
	return append(changes, inserts...)
}

// standIn is the index of recv in final: the field of its text, else
// (a check edited it) the first Received field that is none of orig's;
// -1 if there is none.
func standIn(recv spool.Header, orig, final []spool.Header) int {
	if k := slices.IndexFunc(final, func(h spool.Header) bool { return h.Text == recv.Text }); k >= 0 {
		return k
	}
	return slices.IndexFunc(final, func(h spool.Header) bool {
		return strings.EqualFold(h.Name(), "Received") &&
			!slices.ContainsFunc(orig, func(o spool.Header) bool { return o.Text == h.Text })
	})
}

// nameIndex is field j's 1-based index among the fields of its name.
func nameIndex(hs []spool.Header, j int) int {
	n := 0
	for _, h := range hs[:j+1] {
		if strings.EqualFold(h.Name(), hs[j].Name()) {
			n++
		}
	}
	return n
}

// fieldValue is the value of a field's text as the MTA takes it with
// SMFIP_HDR_LEADSPC: everything after the colon, the leading space
// included, without the final line end.
func fieldValue(text string) string {
	_, v, _ := strings.Cut(text, ":")
	return strings.TrimSuffix(v, "\n")
}
