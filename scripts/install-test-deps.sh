#!/usr/bin/env bash
# install-test-deps.sh — install what mxgate's tests run, when it is missing:
# Postfix (smtp-sink, smtp-source and a real Postfix for scripts/load.sh),
# Dovecot LMTP, rbldnsd (the DNS lists of package rbl's tests), redis-server
# (package state's Redis backend), SpamAssassin's
# spamd and spamc (package filters/spamd's tests), ClamAV's clamd and
# clamdscan (package filters/clamd's tests), swaks, Perl,
# Exim's eximstats and exigrep, groff (the man page's test), what the Debian
# package's test needs (adduser, logrotate, systemd-analyze, man), Prometheus
# (the metrics scrape test), PostgreSQL (package tracking), and staticcheck.
# Meant for root on Debian 12 (CI and a fresh developer machine); running it
# again changes nothing.
#
# Installing postfix starts no daemon here: its debconf answer is "No
# configuration", and tests start every peer themselves (scripts/peers.sh).
# Neither does rbldnsd's: its /etc/default/rbldnsd names no zone.
#
# eximstats and exigrep come from Debian's exim4-base, which is unpacked
# (apt-get download, dpkg -x) into $exim_dir and not installed: installing
# it would pull in an Exim daemon and remove Postfix. The e2e tests look for
# them there.
set -euo pipefail

prog=${0##*/}
# staticcheck v0.8.2 (2026.2.2) is the first release that reads go1.26 code.
readonly staticcheck_version=${STATICCHECK_VERSION:-v0.8.2}
# Where the e2e tests find exim4-base's scripts (test/e2e/eximtools_test.go).
readonly exim_dir=/opt/mxgate-test/exim4-base

die() {
	echo "$prog: $*" >&2
	exit 1
}

# Each Debian package with the file whose presence means it is installed.
packages=(
	postfix:/usr/sbin/smtp-sink
	postfix:/usr/sbin/smtp-source
	# The private Postfix MTA of the milter and policy e2e tests
	# (peers.sh postfix-mta); it needs no /etc/postfix/main.cf.
	postfix:/usr/sbin/postfix
	dovecot-core:/usr/sbin/dovecot
	dovecot-lmtpd:/usr/lib/dovecot/lmtp
	rbldnsd:/usr/sbin/rbldnsd
	redis-server:/usr/bin/redis-server
	swaks:/usr/bin/swaks
	# PostgreSQL (package tracking's tests against a real server; the
	# tests initdb a cluster of their own, internal/peertest.Postgres).
	# Debian 12's server is 15, out of PATH.
	postgresql:/usr/lib/postgresql/15/bin/postgres
	# SpamAssassin's rules and its daemon and client (filters/spamd's tests).
	spamassassin:/usr/bin/spamassassin
	spamd:/usr/sbin/spamd
	spamc:/usr/bin/spamc
	# ClamAV's daemon and its client (filters/clamd's tests, run offline
	# with a test signature database scripts/peers.sh writes; no freshclam).
	clamav-daemon:/usr/sbin/clamd
	clamdscan:/usr/bin/clamdscan
	# Real milters (filters/milter's tests): rspamd in milter mode, opendkim
	# signing with a key from opendkim-genkey.
	rspamd:/usr/bin/rspamd
	opendkim:/usr/sbin/opendkim
	opendkim-tools:/usr/sbin/opendkim-genkey
	# eximstats and exigrep need the full Perl (Pod::Usage, Time::Local).
	perl:/usr/bin/perldoc
	# groff renders the man page (cmd/mxgate's TestManPageRenders); bash
	# runs the completion script (TestBashCompletion).
	groff-base:/usr/bin/groff
	# A real Prometheus scrapes /metrics (test/e2e's TestPrometheusScrape).
	prometheus:/usr/bin/prometheus
	bash:/bin/bash
	# The Debian package's test (test/e2e/package_test.go): what its
	# Depends and maintainer scripts use, logrotate for its logrotate
	# file, systemd-analyze (and man, for Documentation=) for its unit.
	adduser:/usr/sbin/adduser
	init-system-helpers:/usr/bin/deb-systemd-helper
	logrotate:/usr/sbin/logrotate
	systemd:/usr/bin/systemd-analyze
	man-db:/usr/bin/man
	# The web console's and the quarantine digest's end-to-end tests drive
	# Debian's Chromium (internal/browsertest).
	chromium:/usr/bin/chromium
)

missing=()
for entry in "${packages[@]}"; do
	pkg=${entry%%:*}
	file=${entry#*:}
	if [[ ! -e $file ]] && [[ " ${missing[*]} " != *" $pkg "* ]]; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} > 0)); then
	((EUID == 0)) || die "need root to install ${missing[*]} (or install them yourself)"
	command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} with this system's package manager"
	export DEBIAN_FRONTEND=noninteractive
	# Postfix asks which mail setup to write; "No configuration" writes none
	# and so starts nothing.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	echo "$prog: installing ${missing[*]}"
	apt-get update -qq
	# With recommends, as the component recipes were checked on a fresh machine.
	apt-get install -y -qq "${missing[@]}" >/dev/null
	for entry in "${packages[@]}"; do
		[[ -e ${entry#*:} ]] || die "${entry%%:*} installed but ${entry#*:} is still missing"
	done
fi

if [[ ! -f $exim_dir/usr/sbin/eximstats || ! -f $exim_dir/usr/sbin/exigrep ]]; then
	((EUID == 0)) || die "need root to unpack exim4-base into $exim_dir"
	command -v apt-get >/dev/null || die "apt-get not found: unpack Debian's exim4-base into $exim_dir yourself"
	echo "$prog: unpacking exim4-base (eximstats, exigrep) into $exim_dir"
	# The scratch directory sits beside $exim_dir, so the final mv is a
	# rename and a half-unpacked tree is never seen there.
	mkdir -p "${exim_dir%/*}"
	work=$(mktemp -d "${exim_dir%/*}/.exim4-base.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	# apt-get download needs the package lists; fetch them only when the
	# cached ones do not know exim4-base.
	if ! (cd "$work" && apt-get download -qq exim4-base >/dev/null 2>&1); then
		apt-get update -qq
		(cd "$work" && apt-get download -qq exim4-base) || die "apt-get download exim4-base failed"
	fi
	debs=("$work"/exim4-base_*.deb)
	[[ -f ${debs[0]} ]] || die "apt-get download exim4-base left no .deb in $work"
	dpkg -x "${debs[0]}" "$work/root"
	rm -rf "$exim_dir"
	mv "$work/root" "$exim_dir"
	for tool in eximstats exigrep; do
		[[ -f $exim_dir/usr/sbin/$tool ]] || die "exim4-base unpacked but $exim_dir/usr/sbin/$tool is missing"
	done
fi

# staticcheck goes where `go install` puts it: GOBIN, else GOPATH/bin.
command -v go >/dev/null || die "go not found in PATH"
gobin=$(go env GOBIN)
[[ -n $gobin ]] || gobin=$(go env GOPATH)/bin
# An older staticcheck cannot load go1.26 packages: replace it too.
if [[ $("$gobin/staticcheck" -version 2>/dev/null) != *"(${staticcheck_version#v})"* ]]; then
	echo "$prog: installing staticcheck $staticcheck_version into $gobin"
	# Outside any module, so the project's go.mod is left alone.
	(cd / && go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version")
	[[ -x $gobin/staticcheck ]] || die "go install staticcheck@$staticcheck_version left no $gobin/staticcheck"
fi

echo "$prog: test dependencies present (postfix, dovecot-core, dovecot-lmtpd, rbldnsd, spamassassin, spamd, spamc, clamav-daemon, clamdscan, rspamd, opendkim, opendkim-tools, prometheus, swaks, perl, adduser, init-system-helpers, logrotate, systemd, man-db, exim4-base in $exim_dir, staticcheck in $gobin)"
