package rbl

import (
	"fmt"
	"net/netip"
	"strings"
)

// matcher is one compiled List.Match item, over the A record as a 32-bit
// number.
type matcher struct {
	lo, hi uint32 // inclusive range; lo == hi for an exact address
	mask   uint32 // bitmask item when non-zero: all mask bits must be set
}

func (m matcher) matches(v uint32) bool {
	if m.mask != 0 {
		return v&m.mask == m.mask
	}
	return m.lo <= v && v <= m.hi
}

// parseMatch compiles one Match item: "127.0.0.2", "127.0.0.4-127.0.0.11"
// or "&0.0.0.4".
func parseMatch(item string) (matcher, error) {
	s := strings.TrimSpace(item)
	if mask, ok := strings.CutPrefix(s, "&"); ok {
		a, err := parseV4(mask)
		if err != nil {
			return matcher{}, err
		}
		if a == 0 {
			return matcher{}, fmt.Errorf("bitmask 0.0.0.0 would match every answer")
		}
		return matcher{mask: a}, nil
	}
	from, to, isRange := strings.Cut(s, "-")
	lo, err := parseV4(from)
	if err != nil {
		return matcher{}, err
	}
	hi := lo
	if isRange {
		if hi, err = parseV4(to); err != nil {
			return matcher{}, err
		}
		if hi < lo {
			return matcher{}, fmt.Errorf("range ends before it starts")
		}
	}
	// Codes outside 127/8 and Spamhaus's error codes are never a listing,
	// so an item naming them could never match: a configuration mistake.
	// A range covering 127.255.255.0/24 ends inside it or outside 127/8.
	if !listingCode(lo) || !listingCode(hi) {
		return matcher{}, fmt.Errorf("not a listing code (must be in 127.0.0.0/8 outside 127.255.255.0/24)")
	}
	return matcher{lo: lo, hi: hi}, nil
}

func parseV4(s string) (uint32, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return v4(a), nil
}

func v4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// errNet is 127.255.255.0/24: Spamhaus's error codes (typo in the zone,
// public resolver, too many queries), which must not reject mail.
const errNet = 0x7fffff00

// listingCode reports whether an A record may be a listing at all: inside
// 127.0.0.0/8 and outside the error codes.
func listingCode(v uint32) bool {
	return v>>24 == 127 && v&^0xff != errNet
}
