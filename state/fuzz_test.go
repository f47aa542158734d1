package state

import (
	"testing"
	"time"
)

// FuzzDecodeRate: a rate record read back from Redis or the file, which
// another version or a hand with redis-cli may have written, never
// panics, and what encodes decodes to itself.
func FuzzDecodeRate(f *testing.F) {
	f.Add([]byte("1.5 1796612400000000"))
	f.Add([]byte("NaN -1"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		rate, at, err := decodeRate(b)
		if err != nil {
			return
		}
		r2, at2, err := decodeRate(encodeRate(rate, at))
		if err != nil || !at2.Equal(at) || (r2 != rate && rate == rate) {
			t.Fatalf("%q: %v %v, round trip %v %v %v", b, rate, at, r2, at2, err)
		}
	})
}

// FuzzDecodeEntry: a record of the embedded store's file never panics
// the load, and what encodes decodes to itself.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(entry{val: []byte("7"), expires: time.Unix(1796612400, 0)}))
	f.Add(encodeEntry(entry{val: []byte("x")}))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, ok := decodeEntry(b)
		if !ok {
			return
		}
		e2, ok := decodeEntry(encodeEntry(e))
		if !ok || string(e2.val) != string(e.val) || !e2.expires.Equal(e.expires) {
			t.Fatalf("%q: round trip %+v, %+v", b, e, e2)
		}
	})
}
