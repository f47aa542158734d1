package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// TestREADMEReference keeps the configuration reference of README.md in
// step with the code: every key `mxgate config check` prints for a config
// with every section present (good.toml) is documented there as `key =`
// in its own section, the reference documents no key the code does not
// read, and its example values load.
func TestREADMEReference(t *testing.T) {
	c, err := Load(testdataDir + "good.toml")
	if err != nil {
		t.Fatal(err)
	}
	printed := printedKeys(t, c.String())
	ref := readmeReference(t, "../README.md")
	// The example values are a config that loads, so none is stale; the
	// files it names are this machine's test fixtures.
	files := strings.NewReplacer(
		`"/etc/mxgate/cert.pem"`, `"`+testdataDir+`cert.pem"`,
		`"/etc/mxgate/key.pem"`, `"`+testdataDir+`key.pem"`,
		`"/etc/mxgate/other.example.pem"`, `"`+testdataDir+`cert.pem"`,
		`"/etc/mxgate/other.example.key"`, `"`+testdataDir+`key.pem"`,
		`"/etc/mxgate/dkim/example.test.pem"`, `"`+testdataDir+`dkim.pem"`,
		`"/etc/mxgate/sender-logins"`, `"`+testdataDir+`sender-logins"`,
		`"/etc/mxgate/admins"`, `"`+testdataDir+`admins"`)
	if _, err := Parse("README.md", []byte(files.Replace(ref))); err != nil {
		t.Errorf("README.md's configuration reference does not load: %v", err)
	}
	documented := readmeKeys(ref)
	for _, k := range printed {
		if !slices.Contains(documented, k) {
			t.Errorf("README.md's configuration reference lacks %s", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(printed, k) {
			t.Errorf("README.md's configuration reference documents %s, which config does not print for good.toml", k)
		}
	}
}

// printedKeys lists every key of a printed config as "[section] key", the
// elements of an array of tables under the array's name.
func printedKeys(t *testing.T, text string) []string {
	t.Helper()
	var doc map[string]any
	if err := toml.Unmarshal([]byte(text), &doc); err != nil {
		t.Fatalf("printed config: %v\n%s", err, text)
	}
	var keys []string
	var walk func(section string, m map[string]any)
	walk = func(section string, m map[string]any) {
		for k, v := range m {
			name := k
			if section != "" {
				name = section + "." + k
			}
			switch v := v.(type) {
			case map[string]any:
				walk(name, v)
				continue
			case []any:
				if len(v) > 0 && isTable(v[0]) {
					for _, e := range v {
						walk(name, e.(map[string]any))
					}
					continue
				}
			}
			if key := "[" + section + "] " + k; !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
	}
	walk("", doc)
	slices.Sort(keys)
	return keys
}

func isTable(v any) bool {
	_, ok := v.(map[string]any)
	return ok
}

var (
	readmeHeader = regexp.MustCompile(`^\[\[?([a-z_.]+)\]\]?`)
	readmeKey    = regexp.MustCompile(`^([a-z_]+)\s*=`)
)

// readmeReference is the TOML block of README.md's "Configuration
// reference".
func readmeReference(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(string(data), "\n## Configuration reference\n")
	if ok {
		ref, _, _ = strings.Cut(ref, "\n## ")
		_, ref, ok = strings.Cut(ref, "\n```toml\n")
	}
	if ok {
		ref, _, ok = strings.Cut(ref, "\n```\n")
	}
	if !ok {
		t.Fatalf("%s: no ```toml block under \"## Configuration reference\"", path)
	}
	return ref + "\n"
}

// readmeKeys lists the keys of a reference block as "[section] key".
func readmeKeys(ref string) []string {
	var keys []string
	section := ""
	for line := range strings.Lines(ref) {
		line = strings.TrimSpace(line)
		if m := readmeHeader.FindStringSubmatch(line); m != nil {
			section = m[1]
		} else if m := readmeKey.FindStringSubmatch(line); m != nil {
			if key := "[" + section + "] " + m[1]; !slices.Contains(keys, key) {
				keys = append(keys, key)
			}
		}
	}
	slices.Sort(keys)
	return keys
}
