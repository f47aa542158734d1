package config

import "testing"

func TestRouteErrors(t *testing.T) {
	const base = "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"smtp://h:25\"\n"
	tests := []struct{ name, extra, want string }{
		{"route without domains", "[[route]]\nurl = \"smtp://a:25\"\n",
			`e.toml:4: missing required key "route[0].domains": the recipient domains this route takes`},
		{"route without url", "[[route]]\ndomains = [\"a.test\"]\n",
			`e.toml:4: missing required key "route[0].url"`},
		{"domain in two routes", "[[route]]\ndomains = [\"a.test\"]\nurl = \"smtp://a:25\"\n[[route]]\ndomains = [\"A.test\"]\nurl = \"smtp://b:25\"\n",
			`e.toml:8: key "route[1].domains": domain "a.test" is already routed by route[0]`},
		{"reserved name", "[[route]]\nname = \"dnslookup\"\ndomains = [\"a.test\"]\nurl = \"smtp://a:25\"\n",
			`e.toml:5: key "route[0].name": name "dnslookup" is reserved (the routers ["downstream" "dnslookup" "smarthost"] are built in)`},
		{"domains in downstream", "downstream.domains = [\"a.test\"]\n",
			`e.toml:4: key "downstream.domains": is only valid in a [[route]]; [downstream] takes every relay domain no route names`},
		{"maildir key on smtp", "downstream.maildir_layout = \"{local}\"\n",
			`e.toml:4: key "downstream.maildir_layout": is only read for a maildir:// url, and this store is smtp://`},
		{"callout to a maildir", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nverify_recipients = \"callout\"\n",
			`e.toml:7: key "route[0].verify_recipients": callout asks the store by RCPT TO, and a maildir:// store has no server to ask: use "file:PATH" or "dovecot:PATH"`},
		{"relative verify file", "downstream.verify_recipients = \"file:recipients\"\n",
			`e.toml:4: key "downstream.verify_recipients": invalid source "file:recipients": the path must be absolute (want "none", "callout", "file:/PATH" or "dovecot:/PATH")`},
		{"unknown verify source", "downstream.verify_recipients = \"ldap:/x\"\n",
			`e.toml:4: key "downstream.verify_recipients": invalid source "ldap:/x" (want "none", "callout", "file:/PATH" or "dovecot:/PATH")`},
		{"layout without local", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nmaildir_layout = \"{domain}\"\n",
			`e.toml:7: key "route[0].maildir_layout": invalid layout "{domain}": it must contain {local}, or every recipient shares one Maildir`},
		{"layout escapes", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nmaildir_layout = \"../{local}\"\n",
			`e.toml:7: key "route[0].maildir_layout": invalid layout "../{local}": empty, "." and ".." segments are not allowed`},
		{"user without users file", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nmaildir_layout = \"/home/{user}/mail/{domain}/{local}\"\n",
			`e.toml:7: key "route[0].maildir_layout": uses {user}, which needs route[0].maildir_users (a file of "domain: user" lines such as /etc/userdomains)`},
		{"mode without owner rwx", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nmaildir_mode = \"0500\"\n",
			`e.toml:7: key "route[0].maildir_mode": invalid mode "0500" (want octal between "0700" and "0777": the owner needs rwx)`},
		{"unknown owner", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nmaildir_owner = \"no-such-user-xyz:root\"\n",
			`e.toml:7: key "route[0].maildir_owner": invalid owner "no-such-user-xyz:root": no user "no-such-user-xyz" on this system`},
		{"smarthost mode without host", "outbound.mode = \"smarthost\"\n",
			`e.toml:4: outbound.mode = "smarthost" needs outbound.smarthost`},
		{"password in the URL", "outbound.mode = \"smarthost\"\noutbound.smarthost = \"smtp://u:p@relay:587\"\n",
			`e.toml:5: key "outbound.smarthost": invalid URL "smtp://u:xxxxx@relay:587": put the user in outbound.auth_user and the password in outbound.auth_password_file`},
		{"auth in clear", "outbound.mode = \"smarthost\"\noutbound.smarthost = \"smtp://relay:587\"\noutbound.starttls = \"opportunistic\"\noutbound.auth_user = \"u\"\noutbound.auth_password_file = \"../testdata/config/smarthost.password\"\n",
			`e.toml:6: key "outbound.starttls": is "opportunistic", and a password is sent only over TLS: set starttls = "required" or use smtps://`},
		{"user without password", "outbound.auth_user = \"u\"\n",
			`e.toml:4: key "outbound.auth_user": is set but outbound.auth_password_file is not`},
		{"owner {user} without {user} in the layout", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nmaildir_owner = \"{user}\"\n",
			`e.toml:7: key "route[0].maildir_owner": is "{user}", and route[0].maildir_layout has no {user} to take the owner from`},
		{"owner without group", "[[route]]\ndomains = [\"a.test\"]\nurl = \"maildir:///m\"\nmaildir_owner = \"root\"\n",
			`e.toml:7: key "route[0].maildir_owner": invalid owner "root" (want "user:group", or "{user}" with a {user} layout)`},
		{"bad over_quota", "downstream.over_quota = \"keep\"\n",
			`e.toml:4: key "downstream.over_quota": invalid value "keep" (want "defer", "bounce" or "discard")`},
		{"delimiter with a letter", "downstream.recipient_delimiter = \"x\"\n",
			`e.toml:4: key "downstream.recipient_delimiter": invalid delimiter "x": punctuation characters only, such as "+" or "+-"; "" for none`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("e.toml", []byte(base+tt.extra))
			if err == nil || err.Error() != tt.want {
				t.Errorf("error = %v\nwant    %s", err, tt.want)
			}
		})
	}
}

// maildir_owner sets the owner as data for the transport: a fixed
// "user:group" looked up once, "{user}" left to each delivery.
func TestMaildirOwner(t *testing.T) {
	const base = "hostname = \"h\"\nrelay.domains = [\"h\"]\ndownstream.url = \"maildir:///m\"\n" +
		"downstream.maildir_layout = \"/home/{user}/mail/{domain}/{local}\"\ndownstream.maildir_users = \"/etc/userdomains\"\n"
	tests := []struct {
		owner    string
		uid, gid int
		user     bool
	}{
		{"", -1, -1, false},
		{"root:root", 0, 0, false},
		{"0:0", 0, 0, false},
		{"{user}", -1, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.owner, func(t *testing.T) {
			text := base
			if tt.owner != "" {
				text += "downstream.maildir_owner = \"" + tt.owner + "\"\n"
			}
			c, err := Parse("o.toml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			d := c.Downstream
			if d.MaildirUID != tt.uid || d.MaildirGID != tt.gid || d.MaildirOwnerUser != tt.user {
				t.Errorf("maildir_owner %q: uid %d gid %d user %v; want %d %d %v", tt.owner, d.MaildirUID, d.MaildirGID, d.MaildirOwnerUser, tt.uid, tt.gid, tt.user)
			}
		})
	}
}
