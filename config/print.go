package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// String is the effective configuration as TOML, every default included:
// what `mxgate config check` prints. Parse reads it back to an equal Config.
func (c *Config) String() string {
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	if err := enc.Encode(c); err != nil {
		// Every field type of Config encodes; the round-trip test proves it.
		panic(fmt.Sprintf("config: encoding the configuration: %v", err))
	}
	return buf.String()
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
