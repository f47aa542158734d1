package main

import (
	"fmt"
	"sort"
	"strings"
)

// The manual page and the bash completion are made from the commands'
// registrations, so a command documents itself in one place. Both are
// committed under doc/ for the Debian package; a test fails when they
// are stale.

func init() {
	register("man", "\tprint the mxgate(8) manual page (roff): mxgate man | man -l -", printMan)
	register("completion bash", "\tprint the bash completion script (commands, flags, queue IDs, option names)", printCompletion,
		withDoc(`Installed as /usr/share/bash-completion/completions/mxgate by the
package. Queue IDs are completed from "mxgate -bpi" and option names
from "mxgate -bP", both run with the -config FILE of the command line.`),
		withExample("source <(mxgate completion bash)\tuse it in this shell"))
}

func printMan(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	_, err := fmt.Fprint(e.stdout, manPage())
	return err
}

func printCompletion(e *env) error {
	if err := noArgs(e); err != nil {
		return err
	}
	_, err := fmt.Fprint(e.stdout, bashCompletion())
	return err
}

// manDescription and manTail are the man page's fixed text around the
// generated COMMANDS, in roff; the description's paragraphs are separated
// by blank lines.
var manDescription = `mxgate is a mail-security gateway: a relaying MTA that stands in front of a
mail store. It accepts SMTP for the domains it protects, refuses what it can
refuse early (relay policy, DNS blocklists, sender callouts), scans what it
accepts (spamd, clamd, milters, SPF/DKIM/DMARC), keeps every accepted
message in a durable Exim-style spool and forwards it to the downstream
store over SMTP or LMTP, or into a Maildir.

One binary does everything: \fBmxgate serve\fR runs the daemon; the other
commands administer it, most of them with Exim's flags, and work on a live
spool beside the running daemon: every change takes the message's lock.

\fB\-config\fR \fIFILE\fR may stand anywhere on the command line; without it
\fB$MXGATE_CONFIG\fR is used, and without that the embedded default (listen
on 127.0.0.1:2525, accept mail for localhost, deliver into a Maildir under
\fI./var\fR); the Debian package's mxgate reads
\fI/etc/mxgate/mxgate.toml\fR instead. Every command takes \fB\-\-help\fR; \fBmxgate help\fR \fICOMMAND\fR
is the same.`

var manTail = `.SH EXIM COMPATIBILITY
Message IDs, the spool (\fI\-H\fR, \fI\-D\fR, \fI\-J\fR files and msglogs), the
mainlog, rejectlog and paniclog, and the admin flags are Exim's, so
exiqgrep, exiqsumm, exigrep and eximstats read what mxgate writes. A link
to the binary named \fBmailq\fR lists the queue (\fB\-bp\fR), \fBrunq\fR runs
it (\fB\-q\fR), and \fBsendmail\fR submits a message (\fB\-bm\fR) unless its
first argument is a command, so mxgate can stand at \fI/usr/sbin/sendmail\fR.
.PP
Where mxgate differs: \fB\-bpa\fR is \fB\-bp\fR (mxgate generates no addresses);
\fB\-R\fR and \fB\-qR\fR force a delivery attempt at every message selected,
as retry times are kept per message, not per host; \fB\-bP\fR prints
\fIsection.name = value\fR with lists comma separated and booleans as
true/false; \fB\-Mg\fR also logs one \fB**\fR line per recipient it fails;
\fBexinext\fR is a command of mxgate, not a separate program, and reads
the spool rather than a retry database.
.SH FILES
.TP
.I /etc/mxgate/
the configuration directory of the Debian package.
.TP
.IR data_dir /spool/input/ X / ID \-H ", " ID \-D ", " ID \-J
a queued message's envelope and headers, body, and delivery journal.
.TP
.IR data_dir /spool/msglog/ X / ID
the message's own log (\fB\-Mvl\fR).
.TP
.IR data_dir /mxgate.pid
the running daemon's process ID.
.TP
.IR data_dir /mxgate.lock
the daemon's lock on data_dir: a second \fBserve\fR exits 1.
.TP
.IR data_dir /submit.sock
local submission (\fBsendmail\fR of any user), while the daemon runs.
.TP
.IR data_dir /mxgate.reload
the outcome of the last reload, for \fBmxgate reload\fR.
.TP
.IR log.dir /mainlog ", " rejectlog ", " paniclog
the logs, in Exim's format.
.SH SIGNALS
.TP
.B SIGTERM\fR, \fBSIGINT
stop accepting connections, let the sessions in flight finish up to
\fBsmtp.shutdown_timeout\fR, let deliveries finish, exit 0.
.TP
.B SIGHUP
reload: re-read the config file and the TLS certificates and reopen the
logs (\fBmxgate reload\fR sends it and reports the result). New sessions
and deliveries use the new config, those in flight finish on the old one;
a config that does not load is refused with a paniclog line and the old
one keeps serving. With \fBuser\fR set the files are read as that user:
TLS and DKIM keys must be readable by it (\fBserve\fR warns at start
when one is not).
.TP
.B SIGUSR1
reopen the log files only (after log rotation; \fBmxgate log reopen\fR
sends it).
.SH EXIT STATUS
.TP
.B 0
success.
.TP
.B 1
an error (a bad config, a message that is not in the spool, a refused
operation such as "Message ID is locked"); \fB\-bt\fR: an address would be
deferred.
.TP
.B 2
a usage error; \fB\-bt\fR: an address is undeliverable.
.SH ENVIRONMENT
.TP
.B MXGATE_CONFIG
the configuration file when \fB\-config\fR is not given.
.TP
.B MXGATE_PPROF
a loopback \fIIP:PORT\fR where \fBserve\fR serves Go's profiles.
.SH SEE ALSO
.BR exim (8),
.BR exiqgrep (8),
.BR exiqsumm (8),
.BR exigrep (8),
.BR eximstats (8),
.BR sendmail (8)
`

// manPage is mxgate(8) in roff, made from the registered commands.
func manPage() string {
	var b strings.Builder
	b.WriteString(`.\" Generated by "mxgate man"; edit cmd/mxgate, then run: go run ./cmd/mxgate man > doc/mxgate.8
.TH MXGATE 8 "" "mxgate" "System Administration"
.SH NAME
mxgate \- mail-security gateway with Exim's spool, logs and admin flags
.SH SYNOPSIS
.B mxgate
.RB [ \-config
.IR FILE ]
.I COMMAND
.RI [ ARGS ]
.br
.B mailq
.RI [ ID ...]
.br
.B runq
.br
.B sendmail
.RI [ flags ]
.RI [ RCPT ...]
.SH DESCRIPTION
`)
	b.WriteString(roffParagraphs(manDescription))
	b.WriteString(".SH COMMANDS\n")
	for _, c := range sortedCommands() {
		fmt.Fprintf(&b, ".TP\n\\fB%s\\fR", roffCode(c.name))
		if c.args != "" {
			fmt.Fprintf(&b, " \\fI%s\\fR", roffCode(c.args))
		}
		b.WriteString("\n")
		b.WriteString(roffText(sentence(c.summary)) + "\n")
		if c.doc != "" {
			for _, p := range strings.Split(c.doc, "\n\n") {
				b.WriteString(".IP\n" + roffText(p) + "\n")
			}
		}
		if len(c.flags) > 0 {
			b.WriteString(".RS\n")
			for _, f := range c.flags {
				fmt.Fprintf(&b, ".TP\n\\fB%s\\fR", roffCode(f.name))
				if f.arg != "" {
					fmt.Fprintf(&b, " \\fI%s\\fR", roffCode(f.arg))
				}
				b.WriteString("\n" + roffText(f.help) + "\n")
			}
			b.WriteString(".RE\n")
		}
		if len(c.examples) > 0 {
			b.WriteString(".IP\nExamples:\n.RS\n")
			for _, ex := range c.examples {
				line, what, _ := strings.Cut(ex, "\t")
				fmt.Fprintf(&b, ".TP\n\\fB%s\\fR\n%s\n", roffCode(line), roffText(what))
			}
			b.WriteString(".RE\n")
		}
	}
	b.WriteString(manTail)
	return b.String()
}

// roffParagraphs joins paragraphs of roff source with .PP.
func roffParagraphs(text string) string {
	return strings.ReplaceAll(text, "\n\n", "\n.PP\n") + "\n"
}

// roffText makes plain text safe as roff input: backslashes escaped, and
// a line that starts with a control character (. or ') protected.
func roffText(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		l = strings.TrimLeft(l, " ")
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		lines[i] = l
	}
	return strings.Join(lines, "\n")
}

// roffCode is roffText for a command line, flag or argument: its hyphens
// are minus signs, as a reader copying it needs them.
func roffCode(s string) string {
	return strings.ReplaceAll(roffText(s), "-", `\-`)
}

// completionKind is what the words after a command complete to.
func completionKind(c *command) string {
	switch {
	case c.name == "-bP":
		return "options"
	case strings.HasPrefix(c.name, "quarantine "):
		// Quarantine IDs are not in the queue; nothing lists them cheaply.
		return ""
	case strings.HasPrefix(c.args, "ID...") || strings.HasPrefix(c.args, "[ID..."):
		return "ids"
	case strings.HasPrefix(c.args, "ID"):
		// One ID, then addresses (-Mar) or nothing (-Mvl).
		return "id"
	}
	return ""
}

// bashCompletion is the bash completion script, made from the commands.
func bashCompletion() string {
	var words, groups []string
	subs := map[string][]string{}
	for _, c := range sortedCommands() {
		first, second, two := strings.Cut(c.name, " ")
		if two {
			if len(subs[first]) == 0 {
				words = append(words, first)
				groups = append(groups, first)
			}
			subs[first] = append(subs[first], second)
			continue
		}
		words = append(words, first)
	}
	sort.Strings(groups)
	var b strings.Builder
	b.WriteString(`# bash completion for mxgate(8)                          -*- shell-script -*-
# Generated by "mxgate completion bash"; edit cmd/mxgate, then run:
#   go run ./cmd/mxgate completion bash > doc/mxgate.bash-completion

_mxgate_words='` + strings.Join(words, " ") + ` help -config'

# _mxgate_sub GROUP: the second words of a two-word command.
_mxgate_sub() {
    case $1 in
`)
	for _, g := range groups {
		fmt.Fprintf(&b, "        %s) echo '%s' ;;\n", g, strings.Join(subs[g], " "))
	}
	b.WriteString(`    esac
}

# _mxgate_flags COMMAND: its flags; _mxgate_kind COMMAND: what its
# arguments are (ids: queue IDs, id: one queue ID first, options: -bP
# names).
_mxgate_flags() {
    case $1 in
`)
	kinds := map[string][]string{}
	for _, c := range sortedCommands() {
		var fs []string
		for _, f := range c.flags {
			fs = append(fs, f.name)
		}
		fs = append(fs, "--help")
		fmt.Fprintf(&b, "        %s) echo '%s' ;;\n", shellPattern(c.name), strings.Join(fs, " "))
		if k := completionKind(c); k != "" {
			kinds[k] = append(kinds[k], shellPattern(c.name))
		}
	}
	b.WriteString(`    esac
}
_mxgate_kind() {
    case $1 in
`)
	for _, k := range []string{"ids", "id", "options"} {
		fmt.Fprintf(&b, "        %s) echo %s ;;\n", strings.Join(kinds[k], "|"), k)
	}
	b.WriteString(`    esac
}

_mxgate() {
    local cur=${COMP_WORDS[COMP_CWORD]} prog=${COMP_WORDS[0]}
    local i w cmd= cfg=() nargs=0
    COMPREPLY=()
    # mailq is -bp: its arguments are queue IDs.
    [[ ${prog##*/} == mailq ]] && cmd=-bp
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
            -config|--config)
                ((i + 1 < COMP_CWORD)) && cfg=(-config "${COMP_WORDS[i+1]}")
                ((i++)) ;;
            -config=*|--config=*) cfg=(-config "${w#*=}") ;;
            *)
                if [[ -z $cmd ]]; then
                    cmd=$w
                elif [[ $cmd != *" "* && -n $(_mxgate_sub "$cmd") ]]; then
                    cmd="$cmd $w"
                elif [[ $w != -* ]]; then
                    ((++nargs))
                fi ;;
        esac
    done
    case ${COMP_WORDS[COMP_CWORD-1]} in
        -config|--config)
            COMPREPLY=($(compgen -f -- "$cur"))
            return ;;
    esac
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$_mxgate_words" -- "$cur"))
        return
    fi
    local sub
    sub=$(_mxgate_sub "$cmd")
    if [[ -n $sub ]]; then
        COMPREPLY=($(compgen -W "$sub" -- "$cur"))
        return
    fi
    if [[ $cmd == help ]]; then
        COMPREPLY=($(compgen -W "$_mxgate_words" -- "$cur"))
        return
    fi
    if [[ $cur == -* && $cmd != -bm && $cmd != -t ]]; then
        COMPREPLY=($(compgen -W "$(_mxgate_flags "$cmd")" -- "$cur"))
        return
    fi
    case $(_mxgate_kind "$cmd") in
        ids)
            COMPREPLY=($(compgen -W "$("$prog" "${cfg[@]}" -bpi 2>/dev/null)" -- "$cur")) ;;
        id)
            ((nargs == 0)) && COMPREPLY=($(compgen -W "$("$prog" "${cfg[@]}" -bpi 2>/dev/null)" -- "$cur")) ;;
        options)
            COMPREPLY=($(compgen -W "$("$prog" "${cfg[@]}" -bP 2>/dev/null | cut -d' ' -f1)" -- "$cur")) ;;
    esac
}
complete -F _mxgate mxgate mailq
`)
	return b.String()
}

// shellPattern quotes a command name for a case pattern: "config check"
// has a space.
func shellPattern(name string) string {
	if strings.Contains(name, " ") {
		return "'" + name + "'"
	}
	return name
}
