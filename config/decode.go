package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// lineError is one problem in a config file. line 0 means the problem has no
// line of its own (a required key that is absent altogether).
type lineError struct {
	file string
	line int
	err  error
}

func (e *lineError) Error() string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.err)
	}
	return fmt.Sprintf("%s: %s", e.file, e.err)
}

func (e *lineError) Unwrap() error { return e.err }

// keyPath is a key split into its parts; quoted parts may contain dots, so
// the parts are joined with NUL for lookups and with "." only for people.
// An element of an array of tables is a part of its own, "[N]" (counted
// from 0), so each [[rbl.list]] has its own keys and lines.
type keyPath []string

func (k keyPath) id() string { return strings.Join(k, "\x00") }

func (k keyPath) String() string {
	var b strings.Builder
	for i, part := range k {
		if i > 0 && !isIndex(part) {
			b.WriteByte('.')
		}
		b.WriteString(part)
	}
	return b.String()
}

func (k keyPath) child(name string) keyPath {
	return append(slices.Clip(k), name)
}

// index is the path of element i of the array of tables at k.
func (k keyPath) index(i int) keyPath { return k.child(fmt.Sprintf("[%d]", i)) }

func isIndex(part string) bool {
	return len(part) > 2 && part[0] == '[' && part[len(part)-1] == ']'
}

// positions records where each key of a document is written, because the
// go-toml decoder only reports positions for syntax errors.
type positions struct {
	lineStarts []int          // byte offset of every line after the first
	keys       map[string]int // keyPath.id() -> line of the key or [table] header
	elems      map[elemID]int // array elements -> line of the element
	arrays     map[string]int // keyPath.id() of an array of tables -> [[headers]] seen so far
}

type elemID struct {
	key   string
	index int
}

// indexDocument maps every key, table and array element of data to its line.
// The first definition of a table wins: that is where a reader looks for it.
func indexDocument(data []byte) (*positions, error) {
	pos := &positions{keys: map[string]int{}, elems: map[elemID]int{}, arrays: map[string]int{}}
	for i, b := range data {
		if b == '\n' {
			pos.lineStarts = append(pos.lineStarts, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var table keyPath
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = pos.header(e.Key(), e.Kind == unstable.ArrayTable)
		case unstable.KeyValue:
			pos.keyValue(table, e)
		}
	}
	return pos, p.Error()
}

// key records the line of a (possibly dotted) key and of each table its dots
// imply, and returns the full path.
func (pos *positions) key(prefix keyPath, it unstable.Iterator) keyPath {
	path := slices.Clip(prefix)
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = pos.lineOf(n.Raw)
		}
		path = path.child(string(n.Data))
		pos.note(path, line)
	}
	return path
}

// header records a [table] or [[array]] header and returns the path its
// keys live under. A header inside an array of tables ([[a]] then [a.b])
// belongs to the array's latest element, as in TOML; an [[array]] header
// starts a new element.
func (pos *positions) header(it unstable.Iterator, array bool) keyPath {
	var path keyPath
	line := 0
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = pos.lineOf(n.Raw)
		}
		path = path.child(string(n.Data))
		pos.note(path, line)
		switch count, seen := pos.arrays[path.id()]; {
		case array && it.IsLast():
			pos.arrays[path.id()] = count + 1
			pos.elems[elemID{path.id(), count}] = line
			path = path.index(count)
			pos.note(path, line)
		case seen:
			path = path.index(count - 1)
		}
	}
	return path
}

// note records the line of key unless an earlier line holds it.
func (pos *positions) note(key keyPath, line int) {
	if _, seen := pos.keys[key.id()]; !seen {
		pos.keys[key.id()] = line
	}
}

func (pos *positions) keyValue(table keyPath, kv *unstable.Node) {
	path := pos.key(table, kv.Key())
	pos.value(path, kv.Value(), pos.keys[path.id()])
}

func (pos *positions) value(path keyPath, v *unstable.Node, keyLine int) {
	switch v.Kind {
	case unstable.InlineTable:
		for it := v.Children(); it.Next(); {
			if n := it.Node(); n.Kind == unstable.KeyValue {
				pos.keyValue(path, n)
			}
		}
	case unstable.Array:
		i := 0
		for it := v.Children(); it.Next(); {
			n := it.Node()
			if n.Kind == unstable.Comment {
				continue
			}
			line := keyLine
			if n.Raw.Length > 0 {
				line = pos.lineOf(n.Raw)
			}
			pos.elems[elemID{path.id(), i}] = line
			if n.Kind == unstable.InlineTable {
				// An array of inline tables: each element has its keys.
				pos.note(path.index(i), line)
				pos.value(path.index(i), n, line)
			}
			i++
		}
	}
}

func (pos *positions) lineOf(r unstable.Range) int {
	return sort.SearchInts(pos.lineStarts, int(r.Offset)+1) + 1
}

// line is where key is written; for an absent key, the line of the nearest
// table that is written, so "missing key" points into the right section; 0
// when none of it is in the file.
func (pos *positions) line(key keyPath) int {
	for k := key; len(k) > 0; k = k[:len(k)-1] {
		if l, ok := pos.keys[k.id()]; ok {
			return l
		}
	}
	return 0
}

func (pos *positions) has(key keyPath) bool {
	_, ok := pos.keys[key.id()]
	return ok
}

// decoder fills a Config from the generic document go-toml produced, with
// strict types: every TOML value must match its field, and every key must
// name a field.
type decoder struct {
	file string
	// base is the directory relative paths are relative to; "" leaves
	// them relative to the working directory.
	base     string
	pos      *positions
	errs     []*lineError
	warnings []Warning
	written  map[string]writtenValue
	// skipFiles leaves the files the config names unread (LoadClient).
	skipFiles bool

	// The nameservers of resolvConf, read once for all sections.
	sysResolvers     []string
	sysResolversErr  error
	sysResolversRead bool
}

func (d *decoder) fail(line int, err error) {
	d.errs = append(d.errs, &lineError{file: d.file, line: line, err: err})
}

// failKey reports a bad value; elem >= 0 points at one element of an array
// value, so a bad entry on its own line of a long list is found at once.
func (d *decoder) failKey(key keyPath, elem int, format string, args ...any) {
	line := d.pos.line(key)
	if l, ok := d.pos.elems[elemID{key.id(), elem}]; ok && elem >= 0 {
		line = l
	}
	d.fail(line, fmt.Errorf("key %q: "+format, append([]any{key.String()}, args...)...))
}

// err returns every problem found, ordered by line.
func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *lineError) int { return a.line - b.line })
	errs := make([]error, len(d.errs))
	for i, e := range d.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
	listType     = reflect.TypeFor[StringList]()
)

func (d *decoder) table(key keyPath, doc map[string]any, v reflect.Value) {
	fields := map[string]int{}
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	names := make([]string, 0, len(doc))
	for name := range doc {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		k := key.child(name)
		i, ok := fields[name]
		if !ok {
			d.fail(d.pos.line(k), fmt.Errorf("unknown key %q%s", k.String(), didYouMean(k)))
			continue
		}
		d.value(k, -1, doc[name], v.Field(i))
	}
}

// value stores one TOML value into v. elem is the index within the array
// the value came from, or -1.
func (d *decoder) value(key keyPath, elem int, raw any, v reflect.Value) {
	switch v.Type() {
	case durationType:
		switch x := raw.(type) {
		case string:
			var dur Duration
			if err := dur.UnmarshalText([]byte(x)); err != nil {
				d.failKey(key, elem, "%w", err)
				return
			}
			v.SetInt(int64(dur))
			d.record(key, elem, x, int64(dur), dur.String())
		case int64:
			// A bare number has no unit; only 0 is unambiguous.
			if x != 0 {
				d.failKey(key, elem, "expected a duration string such as \"30s\" or \"5m\", got integer %d", x)
				return
			}
			v.SetInt(0)
			d.record(key, elem, "0", 0, Duration(0).String())
		default:
			d.typeError(key, elem, "a duration string such as \"30s\" or \"5m\"", raw)
		}
		return
	case sizeType:
		switch x := raw.(type) {
		case string:
			var s Size
			if err := s.UnmarshalText([]byte(x)); err != nil {
				d.failKey(key, elem, "%w", err)
				return
			}
			v.SetInt(int64(s))
			d.record(key, elem, x, int64(s), s.String())
		case int64:
			v.SetInt(x) // the range is checked with the other limits
			d.record(key, elem, strconv.FormatInt(x, 10), x, Size(x).String())
		default:
			d.typeError(key, elem, "a size (bytes, or a string such as \"50M\")", raw)
		}
		return
	case listType:
		if s, ok := raw.(string); ok {
			v.Set(reflect.ValueOf(StringList{s}))
			return
		}
		if _, ok := raw.([]any); !ok {
			d.typeError(key, elem, "a string or an array of strings", raw)
			return
		}
	case prefixType:
		s, ok := raw.(string)
		if !ok {
			d.typeError(key, elem, "a CIDR string such as \"10.0.0.0/8\"", raw)
			return
		}
		p, err := parsePrefix(s)
		if err != nil {
			d.failKey(key, elem, "%w", err)
			return
		}
		if written, err := netip.ParsePrefix(s); err == nil && written != p {
			d.warn(key, elem, "%s has host bits set: it means %s", s, p)
		}
		v.Set(reflect.ValueOf(p))
		return
	}

	switch v.Kind() {
	case reflect.String:
		if s, ok := raw.(string); ok {
			v.SetString(s)
			return
		}
		d.typeError(key, elem, "a string", raw)
	case reflect.Bool:
		if b, ok := raw.(bool); ok {
			v.SetBool(b)
			return
		}
		d.typeError(key, elem, "a boolean", raw)
	case reflect.Int:
		n, ok := raw.(int64)
		if !ok {
			d.typeError(key, elem, "an integer", raw)
			return
		}
		if v.OverflowInt(n) {
			d.failKey(key, elem, "integer %d is too large", n)
			return
		}
		v.SetInt(n)
	case reflect.Float64:
		var f float64
		switch x := raw.(type) {
		case float64:
			f = x
		case int64:
			// "reject_score = 15" means 15.0; TOML only calls it an integer.
			f = float64(x)
		default:
			d.typeError(key, elem, "a number", raw)
			return
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.failKey(key, elem, "expected a finite number, got %v", f)
			return
		}
		v.SetFloat(f)
	case reflect.Pointer:
		// An optional value: nil while the key is absent.
		p := reflect.New(v.Type().Elem())
		d.value(key, elem, raw, p.Elem())
		v.Set(p)
	case reflect.Slice:
		list, ok := raw.([]any)
		if !ok {
			d.typeError(key, elem, "an array", raw)
			return
		}
		if len(list) == 0 {
			// Stored as nil, like an absent key, so a printed `[]` parses back equal.
			v.SetZero()
			return
		}
		s := reflect.MakeSlice(v.Type(), len(list), len(list))
		elemType := v.Type().Elem()
		tables := elemType.Kind() == reflect.Struct && elemType != prefixType
		for i, item := range list {
			if tables {
				// An array of tables: each element is a table of its own.
				d.value(key.index(i), -1, item, s.Index(i))
				continue
			}
			d.value(key, i, item, s.Index(i))
		}
		v.Set(s)
	case reflect.Struct:
		doc, ok := raw.(map[string]any)
		if !ok {
			d.typeError(key, elem, "a table", raw)
			return
		}
		d.table(key, doc, v)
	default:
		// Only reachable when a field of a type this decoder does not know
		// is added to Config; the tests decode every field.
		d.failKey(key, elem, "field type %s is not supported by the config decoder", v.Type())
	}
}

func (d *decoder) typeError(key keyPath, elem int, want string, got any) {
	d.failKey(key, elem, "expected %s, got %s", want, describe(got))
}

// describe names a TOML value the way the file spells it, so the user can
// find it.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		return fmt.Sprintf("string %q", x)
	case int64:
		return fmt.Sprintf("integer %d", x)
	case float64:
		return fmt.Sprintf("float %v", x)
	case bool:
		return fmt.Sprintf("boolean %v", x)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time, toml.LocalDate, toml.LocalTime, toml.LocalDateTime:
		return fmt.Sprintf("date/time %v", x)
	default:
		return fmt.Sprintf("%T", v)
	}
}

// parsePrefix reads a CIDR network, or a bare address as the network of just
// that host (/32 or /128), as admins write trusted hosts. Host bits are
// masked off, so "10.1.2.3/8" means 10.0.0.0/8 (and the decoder warns).
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
}
