package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a byte count that reads 52428800, "50M", "50MiB", "500K".
type Size int64

// sizeUnits are binary multiples whatever the spelling: mail size limits
// have always been counted in KiB/MiB (Exim's message_size_limit, Postfix),
// and "50M" meaning 50,000,000 would surprise every admin.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
}

// UnmarshalText reads a non-negative whole number of bytes with an optional
// unit: "52428800", "500K", "50M", "50MiB", "1G" (K = 1024; units are not
// case-sensitive and may follow a space).
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
