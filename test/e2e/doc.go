// Package e2e owns mxgate's end-to-end tests: the real binary, built once,
// run with generated configs on 127.0.0.1 against real peers (Postfix's
// smtp-sink, Dovecot LMTP, a Maildir) that scripts/peers.sh starts and
// stops. A missing peer program fails the test; scripts/install-test-deps.sh
// installs them all.
package e2e
