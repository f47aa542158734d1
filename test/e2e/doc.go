// Package e2e owns mxgate's end-to-end tests: the real binary, built once,
// run with generated configs on 127.0.0.1 against real peers (Postfix's
// smtp-sink, Dovecot LMTP, a Maildir) that scripts/peers.sh starts and
// stops, and against a scripted SMTP downstream of its own that defers or
// fails chosen recipients on purpose. The admin commands run beside the
// daemon on its live spool, and the mainlog it writes is read by Debian's
// own eximstats and exigrep. A missing peer program or tool fails the
// test; scripts/install-test-deps.sh installs them all.
package e2e
