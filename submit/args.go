package submit

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUsage marks a mistake in a sendmail command line: an unknown option,
// or -f/-F without its argument.
var ErrUsage = errors.New("usage")

// ParseArgs applies a sendmail command line (the arguments after -bm or
// -t, or all of them when invoked as sendmail) to o, which holds the
// caller's defaults (User, Name, ExtractRecipients for -t, DotEnds), and
// sets o.Recipients to the arguments after the options. It knows -bm, -t,
// -i, -oi, -ti/-it, -f/-r ADDR (joined or separate; empty means <>), -F
// NAME, -odi/-odf/-odb, -odq/-odqs (queueOnly: leave the delivery to the
// queue runner), -oeX (accepted: errors always go to stderr and the exit
// status) and "--". Anything else is an error wrapping ErrUsage.
func ParseArgs(args []string, o *Options) (queueOnly bool, err error) {
	for len(args) > 0 {
		a := args[0]
		if a == "--" {
			args = args[1:]
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			break
		}
		args = args[1:]
		// value returns the argument of -f/-F: joined ("-fme@x") or next.
		value := func() (string, error) {
			if len(a) > 2 {
				return a[2:], nil
			}
			if len(args) == 0 {
				return "", fmt.Errorf("%s needs an argument: %w", a, ErrUsage)
			}
			v := args[0]
			args = args[1:]
			return v, nil
		}
		var err error
		switch {
		case a == "-bm":
		case a == "-t":
			o.ExtractRecipients = true
		case a == "-i", a == "-oi":
			o.DotEnds = false
		case a == "-ti", a == "-it":
			o.ExtractRecipients, o.DotEnds = true, false
		case strings.HasPrefix(a, "-f"), strings.HasPrefix(a, "-r"):
			// -r is sendmail's old spelling of -f.
			if o.Sender, err = value(); err == nil && o.Sender == "" {
				o.Sender = "<>"
			}
		case strings.HasPrefix(a, "-F"):
			o.Name, err = value()
		case a == "-odi", a == "-odf", a == "-odb":
			queueOnly = false
		case a == "-odq", a == "-odqs":
			queueOnly = true
		case len(a) == 4 && strings.HasPrefix(a, "-oe"):
			// Error modes (mutt passes -oem): errors always go to
			// stderr and the exit status, which is -oem's behaviour.
		default:
			return false, fmt.Errorf("unknown option %q for submission: %w", a, ErrUsage)
		}
		if err != nil {
			return false, err
		}
	}
	o.Recipients = args
	return queueOnly, nil
}
