package config

import (
	"os/user"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestRelativePaths: every path of a config file written relative is
// relative to the file's directory, whatever the working directory; the
// embedded default's stay relative to the working directory.
func TestRelativePaths(t *testing.T) {
	path := absTestdata(t, "relative/mxgate.toml")
	// A file without data_dir: the default is relative to the file's
	// directory too (testdata/config/, not config/).
	minimal := absTestdata(t, "minimal.toml")
	m, err := Load(testdataDir + "minimal.toml")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(minimal), "var"); m.DataDir != want {
		t.Errorf("default data_dir of a file = %q, want %q", m.DataDir, want)
	}

	t.Chdir(t.TempDir())
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(path)
	in := func(name string) string { return filepath.Join(dir, name) }
	for _, p := range []struct{ key, got, want string }{
		{"data_dir", c.DataDir, in("data")},
		{"log.dir", c.Log.Dir, in("logs")},
		{"tls.cert", c.TLS.Cert, in("tls/cert.pem")},
		{"tls.key", c.TLS.Key, in("tls/key.pem")},
		{"spamd.address[0]", c.Spamd.Address[0], "unix:" + in("run/spamd.sock")},
		{"spamd.address[1]", c.Spamd.Address[1], "127.0.0.1:783"},
		{"clamd.address", c.Clamd.Address[0], "unix:" + in("run/clamd.ctl")},
		{"milter[0].address", c.Milters[0].Address, "unix:" + in("run/opendkim.sock")},
		{"msgauth.dkim_sign[0].key_file", c.MsgAuth.DKIMSign[0].KeyFile, in("dkim/example.test.pem")},
		{"downstream.verify_recipients", c.Downstream.VerifyRecipients, "file:" + in("recipients")},
		{"downstream.verify_recipients path", c.Downstream.Verify.Path, in("recipients")},
		{"downstream.maildir_users", c.Downstream.MaildirUsers, in("userdomains")},
		{"downstream.url", c.Downstream.Target.Path, "/srv/mail"},
		{"route[0].verify_recipients", c.Routes[0].VerifyRecipients, "dovecot:" + in("run/auth-userdb")},
		{"outbound.auth_password_file", c.Outbound.AuthPasswordFile, in("password")},
		{"outbound.ca_file", c.Outbound.CAFile, in("ca.pem")},
	} {
		if p.got != p.want {
			t.Errorf("%s = %q, want %q", p.key, p.got, p.want)
		}
	}
	if c.Outbound.AuthPassword != "s3cret" {
		t.Errorf("outbound.auth_password_file was not read from the file's directory: password %q", c.Outbound.AuthPassword)
	}

	// Parse (and the embedded default) leave them to the working directory.
	p, err := Parse("p.toml", []byte("hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\ndata_dir = \"d\"\noutbound.mode = \"none\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.DataDir != "d" || p.Log.Dir != "d/log" {
		t.Errorf("Parse: data_dir %q, log.dir %q, want them as written", p.DataDir, p.Log.Dir)
	}
	if d := Default(); d.DataDir != "var" {
		t.Errorf("embedded default data_dir = %q, want \"var\"", d.DataDir)
	}
}

// TestUser: user and group are looked up at load, group defaults to the
// user's primary group, and the unprivileged daemon's limits are errors
// naming file:line.
func TestUser(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	root, err := user.LookupGroupId("0")
	if err != nil {
		t.Fatal(err)
	}
	const base = "hostname = \"h\"\nrelay.domains = [\"h\"]\n"
	tests := []struct {
		name     string
		text     string
		uid, gid int
		err      string
	}{
		{"unset", base + "downstream.url = \"smtp://h:25\"\n", -1, -1, ""},
		{"user, primary group", base + "user = \"nobody\"\ndownstream.url = \"smtp://h:25\"\n", uid, gid, ""},
		{"user by uid", base + "user = \"" + nobody.Uid + "\"\ndownstream.url = \"smtp://h:25\"\n", uid, gid, ""},
		{"user and group", base + "user = \"nobody\"\ngroup = \"" + root.Name + "\"\ndownstream.url = \"smtp://h:25\"\n", uid, 0, ""},
		{"no such user", base + "user = \"no-such-user-mxgate\"\ndownstream.url = \"smtp://h:25\"\n", 0, 0,
			`t.toml:3: key "user": no user "no-such-user-mxgate" on this system`},
		{"no such group", base + "user = \"nobody\"\ngroup = \"no-such-group-mxgate\"\ndownstream.url = \"smtp://h:25\"\n", 0, 0,
			`t.toml:4: key "group": no group "no-such-group-mxgate" on this system`},
		{"group without user", base + "group = \"" + root.Name + "\"\ndownstream.url = \"smtp://h:25\"\n", 0, 0,
			`t.toml:3: key "group": is set but user is not`},
		{"maildir_owner with user", base + "user = \"nobody\"\n[downstream]\nurl = \"maildir:///srv/mail\"\nmaildir_owner = \"root:" + root.Name + "\"\n", 0, 0,
			`t.toml:6: key "downstream.maildir_owner": is set, and the daemon runs as user "nobody", which cannot give files to other users: deliver to the users' mailboxes by Dovecot LMTP (lmtp+unix://) instead, or unset user`},
		{"maildir_owner in a route with user", base + "user = \"nobody\"\ndownstream.url = \"smtp://h:25\"\n[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///srv/a\"\nmaildir_owner = \"root:" + root.Name + "\"\n", 0, 0,
			`t.toml:8: key "route[0].maildir_owner": is set`},
		{"maildir_owner with user root", base + "user = \"root\"\n[downstream]\nurl = \"maildir:///srv/mail\"\nmaildir_owner = \"root:" + root.Name + "\"\n", 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.toml", []byte(tt.text))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tt.text, "user = \"root\"") {
				tt.uid, tt.gid = 0, 0
			}
			if got := [2]int{c.UID, c.GID}; !reflect.DeepEqual(got, [2]int{tt.uid, tt.gid}) {
				t.Errorf("uid, gid = %v, want %v", got, [2]int{tt.uid, tt.gid})
			}
		})
	}
}

// TestDefaultRunsAsRoot: the embedded default is the README's trial,
// which whoever runs it, root too, must be able to start.
func TestDefaultRunsAsRoot(t *testing.T) {
	if c := Default(); !c.RunAsRoot || c.User != "" {
		t.Errorf("embedded default: run_as_root %v, user %q; want true and unset", c.RunAsRoot, c.User)
	}
}

// TestLoadClient: sendmail, run by any local user, loads the daemon's
// config without reading the files it names (the daemon's keys and
// password), which Load reads, and refuses when they are absent.
func TestLoadClient(t *testing.T) {
	path := testdataDir + "absent-files.toml"
	_, err := Load(path)
	for _, key := range []string{"tls.cert", "tls.certificate[0].cert", "outbound.auth_password_file", "outbound.ca_file", "msgauth.dkim_sign[0].key_file"} {
		if err == nil || !strings.Contains(err.Error(), `key "`+key+`": open `) && !strings.Contains(err.Error(), `key "`+key+`": stat `) {
			t.Errorf("Load error %v, want one naming %s's missing file", err, key)
		}
	}
	c, err := LoadClient(path)
	if err != nil {
		t.Fatalf("LoadClient: %v", err)
	}
	if want := filepath.Join(filepath.Dir(absTestdata(t, "absent-files.toml")), "data"); c.DataDir != want || c.Outbound.AuthPassword != "" {
		t.Errorf("LoadClient: data_dir %q, password %q; want %q and none", c.DataDir, c.Outbound.AuthPassword, want)
	}
}
