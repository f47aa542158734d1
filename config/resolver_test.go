package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The system resolvers of every test are testdata/resolv.conf's, so the
// effective configs the tests pin do not depend on the machine.
func TestMain(m *testing.M) {
	resolvConf = "testdata/resolv.conf"
	os.Exit(m.Run())
}

var testSystemResolvers = StringList{"192.0.2.53:53", "[2001:db8::53]:53"}

func TestResolversNormalised(t *testing.T) {
	text := `hostname = "h"
relay.domains = ["h"]
downstream.url = "smtp://h:25"
rbl.resolver = "10.0.0.1"
callout.resolver = ["10.0.0.2:5353", "::1"]
msgauth.resolver = ["[::1]:5300", "10.0.0.3"]
`
	c, err := Parse("r.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want StringList
	}{
		{"rbl", c.RBL.Resolver, StringList{"10.0.0.1:53"}},
		{"callout", c.Callout.Resolver, StringList{"10.0.0.2:5353", "[::1]:53"}},
		{"msgauth", c.MsgAuth.Resolver, StringList{"[::1]:5300", "10.0.0.3:53"}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s.resolver = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestResolversFromSystem(t *testing.T) {
	text := "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\noutbound.mode = \"none\"\n"
	c, err := Parse("r.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]StringList{"rbl": c.RBL.Resolver, "callout": c.Callout.Resolver, "msgauth": c.MsgAuth.Resolver} {
		if !reflect.DeepEqual(got, testSystemResolvers) {
			t.Errorf("%s.resolver = %q, want the system's %q", name, got, testSystemResolvers)
		}
	}
	// Each section has its own list: changing one leaves the others.
	c.RBL.Resolver[0] = "x"
	if c.Callout.Resolver[0] == "x" || c.MsgAuth.Resolver[0] == "x" {
		t.Error("the sections share one resolver slice")
	}
}

// Without system resolvers a section that asks the DNS must name its own;
// one that does not stays empty.
func TestResolversNoSystem(t *testing.T) {
	for _, tt := range []struct {
		name, conf string
	}{
		{"absent", filepath.Join(t.TempDir(), "absent")},
		{"empty", writeFile(t, "resolv.conf", "search example.test\n# nameserver 10.0.0.1\n")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			saved := resolvConf
			resolvConf = tt.conf
			t.Cleanup(func() { resolvConf = saved })

			base := "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\noutbound.mode = \"none\"\n"
			c, err := Parse("r.toml", []byte(base))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.RBL.Resolver)+len(c.Callout.Resolver)+len(c.MsgAuth.Resolver) != 0 {
				t.Errorf("resolvers %q %q %q, want none", c.RBL.Resolver, c.Callout.Resolver, c.MsgAuth.Resolver)
			}

			text := base + "\n[[rbl.list]]\nzone = \"bl.example.test\"\n\n[callout]\nenabled = true\n\n[msgauth]\nenabled = true\nresolver = \"10.0.0.1\"\n"
			_, err = Parse("r.toml", []byte(text))
			if err == nil {
				t.Fatal("accepted without resolvers")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], `r.toml:6: key "rbl.resolver": is not set and `) ||
				!strings.HasPrefix(lines[1], `r.toml:9: key "callout.resolver": is not set and `) ||
				!strings.HasSuffix(lines[1], "; set callout.resolver") {
				t.Errorf("error =\n%v", err)
			}
		})
	}
}

func TestSystemResolvers(t *testing.T) {
	got, err := systemResolvers("testdata/resolv.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(StringList(got), testSystemResolvers) {
		t.Errorf("systemResolvers = %q, want %q", got, testSystemResolvers)
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
