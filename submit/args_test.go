package submit

import (
	"errors"
	"slices"
	"testing"
)

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args      []string
		extract   bool // the default, as for -t
		want      Options
		queueOnly bool
	}{
		{args: []string{"u@x"}, want: Options{DotEnds: true, Recipients: []string{"u@x"}}},
		{args: []string{"-bm", "-i", "u@x", "v@x"}, want: Options{Recipients: []string{"u@x", "v@x"}}},
		{args: []string{"-oi", "-t"}, want: Options{ExtractRecipients: true}},
		{args: []string{"-ti"}, want: Options{ExtractRecipients: true}},
		{args: []string{"-it", "u@x"}, want: Options{ExtractRecipients: true, Recipients: []string{"u@x"}}},
		{args: nil, extract: true, want: Options{ExtractRecipients: true, DotEnds: true}},
		{args: []string{"-f", "me@x", "-F", "Me Myself", "u@x"}, want: Options{DotEnds: true, Sender: "me@x", Name: "Me Myself", Recipients: []string{"u@x"}}},
		{args: []string{"-fme@x", "-FMe", "u@x"}, want: Options{DotEnds: true, Sender: "me@x", Name: "Me", Recipients: []string{"u@x"}}},
		{args: []string{"-r", "old@x"}, want: Options{DotEnds: true, Sender: "old@x"}},
		{args: []string{"-f", "", "u@x"}, want: Options{DotEnds: true, Sender: "<>", Recipients: []string{"u@x"}}},
		{args: []string{"-odq", "u@x"}, want: Options{DotEnds: true, Recipients: []string{"u@x"}}, queueOnly: true},
		{args: []string{"-odqs", "-odi", "u@x"}, want: Options{DotEnds: true, Recipients: []string{"u@x"}}},
		{args: []string{"-oem", "u@x"}, want: Options{DotEnds: true, Recipients: []string{"u@x"}}},
		{args: []string{"--", "-notanoption@x"}, want: Options{DotEnds: true, Recipients: []string{"-notanoption@x"}}},
		{args: []string{"u@x", "-i"}, want: Options{DotEnds: true, Recipients: []string{"u@x", "-i"}}},
		{args: []string{"-", "u@x"}, want: Options{DotEnds: true, Recipients: []string{"-", "u@x"}}},
	}
	for _, tt := range tests {
		o := Options{DotEnds: true, ExtractRecipients: tt.extract}
		queueOnly, err := ParseArgs(tt.args, &o)
		if err != nil || queueOnly != tt.queueOnly || o.ExtractRecipients != tt.want.ExtractRecipients || o.DotEnds != tt.want.DotEnds ||
			o.Sender != tt.want.Sender || o.Name != tt.want.Name || !slices.Equal(o.Recipients, tt.want.Recipients) {
			t.Errorf("ParseArgs(%q) = %+v, queueOnly %v, %v; want %+v, queueOnly %v", tt.args, o, queueOnly, err, tt.want, tt.queueOnly)
		}
	}
	for _, args := range [][]string{{"-X"}, {"-f"}, {"-F"}, {"-oemx"}, {"-bp"}} {
		o := Options{}
		if _, err := ParseArgs(args, &o); !errors.Is(err, ErrUsage) {
			t.Errorf("ParseArgs(%q): %v, want ErrUsage", args, err)
		}
	}
}
