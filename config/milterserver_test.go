package config

import (
	"testing"
	"time"
)

func TestMilterServer(t *testing.T) {
	const base = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://h:25\"\ndata_dir = \"/d\"\n"
	tests := []struct {
		src     string
		want    MilterServer
		wantErr string
	}{
		{"", MilterServer{Timeout: Duration(10 * time.Minute)}, ""},
		{"[milter_server]\nlisten = \"inet:127.0.0.1:8891\"\ndry_run = true", MilterServer{Listen: "inet:127.0.0.1:8891", DryRun: true, Timeout: Duration(10 * time.Minute)}, ""},
		{"[milter_server]\nlisten = \"unix:/run/mxgate/milter.sock\"\ntimeout = \"6m\"", MilterServer{Listen: "unix:/run/mxgate/milter.sock", Timeout: Duration(6 * time.Minute)}, ""},
		{"[milter_server]\nlisten = \"127.0.0.1:8891\"", MilterServer{}, `t.toml:6: key "milter_server.listen": invalid address "127.0.0.1:8891" (want inet:HOST:PORT such as "inet:127.0.0.1:11332" or unix:/PATH such as "unix:/run/opendkim.sock")`},
		{"[milter_server]\nlisten = \"unix:milter.sock\"", MilterServer{}, `t.toml:6: key "milter_server.listen": invalid address "unix:milter.sock": the socket path must be absolute (want inet:HOST:PORT such as "inet:127.0.0.1:11332" or unix:/PATH such as "unix:/run/opendkim.sock")`},
		{"[milter_server]\ntimeout = \"-1s\"", MilterServer{}, `t.toml:6: key "milter_server.timeout": must not be negative, got "-1s"`},
	}
	for _, tt := range tests {
		c, err := parse("t.toml", t.TempDir(), []byte(base+tt.src), true)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%q: error %v, want %s", tt.src, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.src, err)
			continue
		}
		if c.MilterServer != tt.want {
			t.Errorf("%q: %+v, want %+v", tt.src, c.MilterServer, tt.want)
		}
	}
}
