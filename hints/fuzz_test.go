package hints

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeRecord reads cache file values, which a crash or another
// version may have left in any state.
func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"verdict":2,"reply":"550 5.1.1 no","host":"mx [192.0.2.1]","stored":"2025-01-01T00:00:00Z","expires":"2025-01-01T02:00:00Z"}`))
	f.Add([]byte(`{"verdict":9,"stored":"2025-01-01T00:00:00Z","expires":"2025-01-01T02:00:00Z"}`))
	f.Add([]byte(`{"verdict":1,"stored":"2025-01-02T00:00:00Z","expires":"2025-01-01T02:00:00Z"}`))
	f.Add([]byte(`nul`))
	const maxVerdict = 2
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRecord(b, maxVerdict)
		if err != nil {
			return
		}
		if r.Verdict < 0 || r.Verdict > maxVerdict || r.Expires.Before(r.Stored) {
			t.Errorf("accepted %+v", r)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if r2, err := DecodeRecord(again, maxVerdict); err != nil || !r2.Expires.Equal(r.Expires) || r2.Verdict != r.Verdict || r2.Reply != r.Reply {
			t.Errorf("round trip %+v → %s → %+v, %v", r, again, r2, err)
		}
	})
}
