package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a byte count that reads 52428800, "50M", "50MB", "50MiB", "500K".
type Size int64

// sizeUnits follow the SI and IEC: "KB", "MB", "GB" are powers of 1000,
// "KiB", "MiB", "GiB" powers of 1024. A bare "K", "M" or "G" is binary, as
// Exim reads message_size_limit = 50M: mail size limits have always been
// counted so, and a config copied from Exim must mean what it meant there.
// Units are not case-sensitive.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
}

// sizeNames are the units String prints, the biggest that divides the
// value exactly, binary before decimal.
var sizeNames = []struct {
	name string
	mult int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3},
}

// UnmarshalText reads a non-negative whole number of bytes with an optional
// unit: "52428800", "500K", "50M", "50MB", "50MiB", "1G" (the unit may
// follow a space).
func (s *Size) UnmarshalText(text []byte) error {
	str := string(text)
	bad := func(why string) error {
		return fmt.Errorf("invalid size %q: %s (want e.g. 52428800, \"500K\", \"50M\", \"50MiB\", \"1G\")", str, why)
	}
	i := 0
	for i < len(str) && str[i] >= '0' && str[i] <= '9' {
		i++
	}
	if i == 0 {
		return bad("expected a whole number of bytes")
	}
	n, err := strconv.ParseInt(str[:i], 10, 64)
	if err != nil {
		return bad("too large")
	}
	unit := strings.ToLower(strings.TrimPrefix(str[i:], " "))
	mult, ok := sizeUnits[unit]
	if !ok {
		return bad(fmt.Sprintf("unknown unit %q", str[i:]))
	}
	if n > math.MaxInt64/mult {
		return bad("too large")
	}
	*s = Size(n * mult)
	return nil
}

// String is the size in the biggest unit that divides it exactly: "50MiB",
// "500KB", or a bare number of bytes, "1234". UnmarshalText reads it back.
func (s Size) String() string {
	n := int64(s)
	if n > 0 {
		for _, u := range sizeNames {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.name
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// MarshalText is String.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
