package config

import (
	"path/filepath"
	"testing"
	"time"
)

func TestTracking(t *testing.T) {
	const base = "hostname = \"mx.example.test\"\nrelay.domains = [\"example.test\"]\ndownstream.url = \"smtp://h:25\"\ndata_dir = \"/d\"\n"
	dir := t.TempDir()
	tests := []struct {
		src     string
		want    Tracking
		wantErr string
	}{
		{"", Tracking{URL: "sqlite:/d/tracking.db", Retention: Duration(30 * 24 * time.Hour), Queue: 10000}, ""},
		{"[tracking]\nurl = \"none\"\nretention = \"1w\"\nqueue = 5", Tracking{URL: "none", Retention: Duration(7 * 24 * time.Hour), Queue: 5}, ""},
		{"[tracking]\nurl = \"sqlite:t.db\"", Tracking{URL: "sqlite:" + filepath.Join(dir, "t.db"), Retention: Duration(30 * 24 * time.Hour), Queue: 10000}, ""},
		{"[tracking]\nurl = \"sqlite:/abs/t.db\"", Tracking{URL: "sqlite:/abs/t.db", Retention: Duration(30 * 24 * time.Hour), Queue: 10000}, ""},
		{"[tracking]\nurl = \"postgres://mx:pw@db.example.test/mxgate\"", Tracking{URL: "postgres://mx:pw@db.example.test/mxgate", Retention: Duration(30 * 24 * time.Hour), Queue: 10000}, ""},
		{"[tracking]\nurl = \"postgresql://db/mxgate\"", Tracking{URL: "postgresql://db/mxgate", Retention: Duration(30 * 24 * time.Hour), Queue: 10000}, ""},
		{"[tracking]\nurl = \"mysql://db/mxgate\"", Tracking{}, `t.toml:6: key "tracking.url": invalid url "mysql://db/mxgate": want sqlite:PATH, postgres://... or "none"`},
		{"[tracking]\nurl = \"sqlite:\"", Tracking{}, `t.toml:6: key "tracking.url": invalid url "sqlite:": sqlite: needs a file path`},
		{"[tracking]\nurl = \"postgres:db\"", Tracking{}, `t.toml:6: key "tracking.url": invalid url "postgres:db": want postgres://user:pass@host/db`},
		{"[tracking]\nretention = \"-1h\"", Tracking{}, `t.toml:6: key "tracking.retention": must not be negative, got "-1h"`},
		{"[tracking]\nqueue = -1", Tracking{}, `t.toml:6: key "tracking.queue": must not be negative, got -1`},
	}
	for _, tt := range tests {
		c, err := parse("t.toml", dir, []byte(base+tt.src), true)
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
		if c.Tracking != tt.want {
			t.Errorf("%q: %+v, want %+v", tt.src, c.Tracking, tt.want)
		}
	}
}
