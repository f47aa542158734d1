package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Warning is something in a config file that works but is probably not
// what its author meant (a CIDR with host bits set, a certificate about to
// expire). config check prints it on stderr, serve logs it at start; it
// never stops either.
type Warning struct {
	File string
	Line int // 0: the warning has no line of its own
	Msg  string
}

// String is "FILE:LINE: warning: MSG", as a compiler writes it.
func (w Warning) String() string {
	if w.Line > 0 {
		return fmt.Sprintf("%s:%d: warning: %s", w.File, w.Line, w.Msg)
	}
	return fmt.Sprintf("%s: warning: %s", w.File, w.Msg)
}

func (d *decoder) warn(key keyPath, elem int, format string, args ...any) {
	line := d.pos.line(key)
	if l, ok := d.pos.elems[elemID{key.id(), elem}]; ok && elem >= 0 {
		line = l
	}
	d.warnings = append(d.warnings, Warning{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// knownKeys is every key and table of Config written as a person would,
// "relay.domains" (array-of-table elements without their index), sorted.
var knownKeys = func() []string {
	var keys []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			full := prefix + name
			keys = append(keys, full)
			ft := t.Field(i).Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != prefixType {
				walk(full+".", ft)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	// [downstream] shares its type with [[route]] but not these keys.
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == "downstream.name" || k == "downstream.domains" })
	slices.Sort(keys)
	return keys
}()

// suggest names the known keys an unknown one was probably meant to be: a
// near miss of the whole dotted key ("smtp.max_recipents"), else a near
// miss of its last part in another table (top-level "domains" is
// "relay.domains"). At most three, nearest first; none when nothing is
// near.
func suggest(unknown keyPath) []string {
	var parts []string
	for _, p := range unknown {
		if !isIndex(p) {
			parts = append(parts, p)
		}
	}
	full := strings.Join(parts, ".")
	leaf := parts[len(parts)-1]
	type cand struct {
		key  string
		dist int
	}
	var near []cand
	for _, k := range knownKeys {
		if d := editDistance(full, k); d <= tolerance(full) {
			near = append(near, cand{k, d})
		}
	}
	if len(near) == 0 {
		for _, k := range knownKeys {
			kLeaf := k[strings.LastIndexByte(k, '.')+1:]
			if d := editDistance(leaf, kLeaf); d <= tolerance(leaf) {
				near = append(near, cand{k, d})
			}
		}
	}
	slices.SortStableFunc(near, func(a, b cand) int { return a.dist - b.dist })
	var out []string
	for _, c := range near {
		if len(out) == 3 || c.dist > near[0].dist {
			break
		}
		out = append(out, c.key)
	}
	return out
}

// tolerance is how many edits still make a near miss of s: one per four
// characters, at least one, so "tls" does not suggest "log".
func tolerance(s string) int { return max(1, len(s)/4) }

// editDistance is the number of insertions, deletions, substitutions and
// swaps of neighbours that turn a into b (optimal string alignment, in
// bytes: keys are ASCII); a swap counts once, as "smpt" is one slip.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// didYouMean is the hint appended to an unknown-key error, "" for none.
func didYouMean(unknown keyPath) string {
	s := suggest(unknown)
	switch len(s) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf(" (did you mean %s?)", s[0])
	}
	return fmt.Sprintf(" (did you mean %s or %s?)", strings.Join(s[:len(s)-1], ", "), s[len(s)-1])
}
