package config

import "testing"

// TestInstalledDefaults: an installed build (the packaging script's -X
// flags) puts the spool and the logs of a file that names neither in the
// system's places, not beside the file in /etc; what a file says wins.
func TestInstalledDefaults(t *testing.T) {
	defer func(d, l string) { installedDataDir, installedLogDir = d, l }(installedDataDir, installedLogDir)
	installedDataDir, installedLogDir = "/var/spool/mxgate", "/var/log/mxgate"
	for _, tt := range []struct {
		name, text       string
		wantData, wantLg string
	}{
		{"neither", "", "/var/spool/mxgate", "/var/log/mxgate"},
		{"data_dir given", "data_dir = \"/srv/mx\"\n", "/srv/mx", "/var/log/mxgate"},
		{"both given", "data_dir = \"/srv/mx\"\nlog.dir = \"/srv/mx/log\"\n", "/srv/mx", "/srv/mx/log"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("i.toml", []byte(tt.text+"relay.domains = [\"example.test\"]\ndownstream.url = \"smtp://127.0.0.1:25\"\n"))
			if err != nil {
				t.Fatal(err)
			}
			if c.DataDir != tt.wantData || c.Log.Dir != tt.wantLg {
				t.Errorf("data_dir %q, log.dir %q; want %q, %q", c.DataDir, c.Log.Dir, tt.wantData, tt.wantLg)
			}
		})
	}
}
