package spamd

import "strings"

// Owns every X-Spam-* field: spamd's verdict is read from them downstream,
// so a client's are removed (no sender vouches for itself) and so is a
// milter's (the delivered message carries one verdict, ours).
func (f *Filter) Owns(name, _ string) bool {
	return strings.HasPrefix(strings.ToLower(name), "x-spam-")
}
