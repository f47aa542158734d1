package config

import (
	"bytes"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// writtenValue is a size or duration as its file wrote it: text, which
// read as value.
type writtenValue struct {
	text  string
	value int64
}

// record keeps how the size or duration at key was written, when that is
// not how String would print its value anyway.
func (d *decoder) record(key keyPath, elem int, text string, value int64, natural string) {
	if elem >= 0 || text == natural {
		return
	}
	if d.written == nil {
		d.written = map[string]writtenValue{}
	}
	d.written[key.id()] = writtenValue{text: text, value: value}
}

// pruneWritten drops what check replaced since (a "0s" timeout that took
// its default), so a config and its printed form parse alike.
func (c *Config) pruneWritten() {
	if c.written == nil {
		return
	}
	keep := map[string]writtenValue{}
	walkQuantities(nil, reflect.ValueOf(c).Elem(), func(key keyPath, v reflect.Value) {
		if w, ok := c.written[key.id()]; ok && w.value == v.Int() {
			keep[key.id()] = w
		}
	})
	c.written = nil
	if len(keep) > 0 {
		c.written = keep
	}
}

// walkQuantities calls f with every Size and Duration of v and its key.
func walkQuantities(key keyPath, v reflect.Value, f func(keyPath, reflect.Value)) {
	switch {
	case v.Type() == sizeType || v.Type() == durationType:
		f(key, v)
	case v.Kind() == reflect.Struct && v.Type() != prefixType:
		for i := range v.NumField() {
			if name := tomlName(v.Type().Field(i)); name != "" {
				walkQuantities(key.child(name), v.Field(i), f)
			}
		}
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct:
		for i := range v.Len() {
			walkQuantities(key.index(i), v.Index(i), f)
		}
	}
}

// tomlName is the key of a printed field, "" for one that is not printed.
func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

// String is the effective configuration as TOML, every default included:
// what `mxgate config check` prints. Sizes and durations are printed as
// the file wrote them ("50MB" stays "50MB"), others, defaults included, in
// their natural unit ("50MiB", "5m"). Parse reads it back to an equal
// Config.
func (c *Config) String() string {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	if err := enc.Encode(c.printable(nil, reflect.ValueOf(c).Elem()).Interface()); err != nil {
		// Every field type of Config encodes; the round-trip test proves it.
		panic(fmt.Sprintf("config: encoding the configuration: %v", err))
	}
	return buf.String()
}

// printable is v with each Size and Duration replaced by its printed form:
// the text the file wrote, or the natural one. The copy has struct types
// of its own (the printed fields only, with their tags), so the encoder
// keeps the order and the sections of Config.
func (c *Config) printable(key keyPath, v reflect.Value) reflect.Value {
	t := v.Type()
	switch {
	case t == sizeType || t == durationType:
		text := fmt.Sprint(v.Interface())
		if w, ok := c.written[key.id()]; ok && w.value == v.Int() {
			text = w.text
		}
		// Typed any, so that a string in one element of an array of tables
		// and an integer in the next have one type.
		var out any = text
		if n, err := strconv.ParseInt(text, 10, 64); err == nil && t == sizeType {
			out = n // a number of bytes stays a TOML integer, as written
		}
		return reflect.ValueOf(&out).Elem()
	case t.Kind() == reflect.Struct && t != prefixType:
		var fields []reflect.StructField
		var values []reflect.Value
		for i := range t.NumField() {
			f := t.Field(i)
			name := tomlName(f)
			if name == "" {
				continue
			}
			pv := c.printable(key.child(name), v.Field(i))
			fields = append(fields, reflect.StructField{Name: f.Name, Type: pv.Type(), Tag: f.Tag})
			values = append(values, pv)
		}
		out := reflect.New(reflect.StructOf(fields)).Elem()
		for i, fv := range values {
			out.Field(i).Set(fv)
		}
		return out
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct && t.Elem() != prefixType:
		if v.Len() == 0 {
			return reflect.ValueOf([]struct{}(nil))
		}
		var elems []reflect.Value
		for i := range v.Len() {
			elems = append(elems, c.printable(key.index(i), v.Index(i)))
		}
		// The copies of the elements have the same fields, so StructOf
		// gave them one type.
		out := reflect.MakeSlice(reflect.SliceOf(elems[0].Type()), len(elems), len(elems))
		for i, e := range elems {
			out.Index(i).Set(e)
		}
		return out
	}
	return v
}

// quote writes s as a TOML basic string: Go's strconv.Quote would emit
// \x escapes, which TOML does not have.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
