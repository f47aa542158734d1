package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"mxgate/config"
)

func init() {
	register("-bP", "[NAME...]\tprint config options, name = value (all of them when no NAME)", printOptions,
		withDoc(`As Exim's -bP: one "name = value" line per option of the effective
configuration, defaults included, in name order. A section's options are
named with a dot (relay.domains), those of the Nth [[route]] or [[milter]]
with its index (route[0].domains). A NAME that is a section, or an entry
of an array of tables, prints all its options. Lists are printed comma
separated, an empty value as "name =". Passwords are never printed:
the files the config names (keys, outbound.auth_password_file, whose
name is shown) are not even read, so any user may ask. An unknown NAME: "mxgate: unknown option NAME", exit 1.`),
		withExample("mxgate -bP relay.domains\trelay.domains = example.com, example.net"),
		withExample("mxgate -bP queue\tevery queue.* option"))
}

func printOptions(e *env) error {
	// Any user may ask, as Exim's -bP: the files the config names (keys,
	// the password) are not read.
	cfg, err := loadClientConfig(e.configPath)
	if err != nil {
		return err
	}
	opts, err := options(cfg)
	if err != nil {
		return err
	}
	var b strings.Builder
	if len(e.args) == 0 {
		for _, o := range opts {
			writeOption(&b, o)
		}
		_, err := fmt.Fprint(e.stdout, b.String())
		return err
	}
	unknown := false
	for _, name := range e.args {
		found := false
		for _, o := range opts {
			if o.name == name || strings.HasPrefix(o.name, name+".") || strings.HasPrefix(o.name, name+"[") {
				writeOption(&b, o)
				found = true
			}
		}
		if !found {
			unknown = true
			fmt.Fprint(e.stdout, b.String())
			b.Reset()
			fmt.Fprintf(e.stderr, "mxgate: unknown option %s\n", name)
		}
	}
	fmt.Fprint(e.stdout, b.String())
	if unknown {
		return exitError{1}
	}
	return nil
}

// option is one printable config value.
type option struct{ name, value string }

func writeOption(b *strings.Builder, o option) {
	b.WriteString(o.name)
	b.WriteString(" =")
	if o.value != "" {
		b.WriteString(" ")
		b.WriteString(o.value)
	}
	b.WriteString("\n")
}

// options flattens the effective configuration as config check prints
// it, so a key the TOML leaves out (a password: toml:"-") cannot appear.
// Top-level options come first, then each section's.
func options(cfg *config.Config) ([]option, error) {
	var tree map[string]any
	if err := toml.Unmarshal([]byte(cfg.String()), &tree); err != nil {
		return nil, fmt.Errorf("reading back the effective configuration: %w", err)
	}
	var top, sections []option
	for k, v := range tree {
		if isTable(v) {
			flatten(&sections, k, v)
		} else {
			flatten(&top, k, v)
		}
	}
	byName := func(o []option) {
		sort.Slice(o, func(i, j int) bool { return o[i].name < o[j].name })
	}
	byName(top)
	byName(sections)
	return append(top, sections...), nil
}

// isTable reports a TOML table or a non-empty array of tables.
func isTable(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		return true
	case []any:
		if len(v) > 0 {
			_, ok := v[0].(map[string]any)
			return ok
		}
	}
	return false
}

func flatten(out *[]option, name string, v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			flatten(out, name+"."+k, sub)
		}
	case []any:
		if isTable(v) {
			for i, sub := range v {
				flatten(out, name+"["+strconv.Itoa(i)+"]", sub)
			}
			return
		}
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = scalar(x)
		}
		*out = append(*out, option{name, strings.Join(parts, ", ")})
	default:
		*out = append(*out, option{name, scalar(v)})
	}
}

func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}
