package miltersrv

import (
	"slices"
	"strings"

	"mxgate/spool"
)

// headerOp is one header modification as milter 6 defines it: a change
// names the field by its name and its 1-based index among the fields of
// that name (an empty value deletes it); an insertion by its position
// from the top (0: first).
type headerOp struct {
	insert      bool
	index       int
	name, value string
}

// headerOps are the modifications that turn orig, the fields the MTA
// sent, into final, what the checks left of them: the same fields in the
// same order, some marked deleted ('*') or given a new text, with new
// ones in between. A field of final is orig's next one if its text is
// the same, or else its name (as written); otherwise it is new. Changes and deletions
// come first, the last of each name first, so none moves the index of
// another; then the insertions, from the top, at their final positions.
func headerOps(orig, final []spool.Header) []headerOp {
	var changes, inserts []headerOp
	j, pos := 0, 0
	for _, h := range final {
		switch {
		case j < len(orig) && h.Type != '*' && h.Text == orig[j].Text:
			j++
			pos++
		case j < len(orig) && h.Name() == orig[j].Name() && (h.Type == '*' || fieldValue(h.Text) != ""):
			// (An empty value would read as a deletion: such a field is
			// inserted instead.)
			op := headerOp{name: orig[j].Name(), index: nameIndex(orig, j)}
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
	for ; j < len(orig); j++ {
		changes = append(changes, headerOp{name: orig[j].Name(), index: nameIndex(orig, j)})
	}
	slices.SortStableFunc(changes, func(a, b headerOp) int { return b.index - a.index })
	return append(changes, inserts...)
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
