#!/usr/bin/env bash
# peers.sh — start and stop the real peers mxgate talks to, on 127.0.0.1, in
# a scratch directory, stopped by the PID recorded there. Used by the e2e
# tests and by hand.
#
#   peers.sh start smtp-sink DIR PORT [--no-dump] [SMTP-SINK-OPTION...]
#       Postfix's smtp-sink on 127.0.0.1:PORT. Every message it accepts is
#       saved as its own file DIR/msg.XXXXXXXX (smtp-sink's X-*-Args and
#       Received: lines, then the message as received). An aborted
#       transaction leaves no file. --no-dump saves nothing (load tests:
#       writing files costs orders of magnitude in speed). Further options
#       go to smtp-sink as they are (e.g. -f RCPT to refuse every RCPT).
#       PID in DIR/smtp-sink.pid, output in DIR/smtp-sink.log.
#   peers.sh start dovecot-lmtp DIR PORT [USERS-FILE]
#       Dovecot's LMTP service on 127.0.0.1:PORT and on the unix socket
#       DIR/run/lmtp (mode 0666, for lmtp+unix://) from a scratch config
#       DIR/dovecot.conf; mail for user@domain lands in
#       DIR/mail/domain/user/Maildir. PID in DIR/dovecot-lmtp.pid, log in
#       DIR/dovecot.log. Without USERS-FILE every user exists (a static
#       userdb). With it, a Dovecot passwd-file of the users that exist
#       (one "user@domain" a line; Dovecot's passwd-file fields may
#       follow, uid, gid and home default to the mail user and the
#       Maildir above), copied to DIR/users and used as passdb and
#       userdb: LMTP refuses other users with 550 5.1.1, and the
#       auth-userdb socket DIR/run/auth-userdb (mode 0666) answers user
#       lookups (doveadm user, mxgate's verify_recipients = "dovecot:..."),
#       and the auth-client socket DIR/run/auth-client (mode 0666) checks
#       the passwords of its "user:{SCHEME}hash" lines (mxgate's
#       auth.backend = "dovecot:...").
#       With DOVECOT_QUOTA=SIZE (e.g. 1k) every mailbox gets Dovecot's
#       quota plugin with that storage limit: a message that does not fit
#       is refused after the dot with 552 5.2.2.
#   peers.sh start rbldnsd DIR PORT ZONESPEC...
#       rbldnsd serving DNS lists on 127.0.0.1:PORT (UDP only), e.g.
#       ZONESPEC bl.test:ip4set:testdata/rbl/bl4.zone. Zone files are read
#       relative to the caller's working directory, and as user nobody when
#       started as root (rbldnsd refuses to keep root). PID in
#       DIR/rbldnsd.pid, start-up messages in DIR/rbldnsd.log.
#   peers.sh start spamd DIR PORT
#       SpamAssassin's spamd on 127.0.0.1:PORT, offline and deterministic:
#       its site config holds Debian's .pre files (without them spamd loads
#       no Check plugin and cannot scan) and a local.cf turning off Bayes,
#       the network tests and DNS. The site config is DIR/siteconfig, or,
#       as root, a directory /tmp/mxgate-spamd.* named in
#       DIR/spamd.siteconfig and removed by stop (spamd reads it as user
#       nobody, who may not enter DIR). PID in DIR/spamd.pid, log in
#       DIR/spamd.log.
#   peers.sh start clamd DIR PORT [CLAMD.CONF-LINE...]
#       ClamAV's clamd on 127.0.0.1:PORT, offline: no freshclam, a database
#       DIR/db holding one test signature the script writes, an .ndb body
#       signature for the EICAR test string (found in a raw file and inside
#       a base64 MIME attachment; clamd names it
#       Test.EICAR.NDB.UNOFFICIAL). Config DIR/clamd.conf; further
#       arguments are config lines replacing or adding to its defaults
#       (e.g. "StreamMaxLength 1K").
#       PID in DIR/clamd.pid, log in DIR/clamd.log.
#   peers.sh start rspamd DIR PORT
#       rspamd in milter mode on 127.0.0.1:PORT (its normal and controller
#       workers on PORT+1 and PORT+2), offline: DNS goes to a local port
#       where nothing answers (RSPAMD_DNS_PORT, default 1), add_header = 4
#       and reject = 50 so its answer for the pharmacy spam carries
#       X-Spamd-Bar, X-Spam-Status and X-Spamd-Result; RSPAMD_REJECT_SCORE=N
#       sets reject = N (N <= 4: no add_header, e.g. 1 rejects that spam).
#       Config DIR/local.d,
#       DIR owned by _rspamd. PID in DIR/rspamd.pid, log DIR/log/rspamd.log.
#   peers.sh start opendkim DIR PORT
#       opendkim signing (Mode s) on 127.0.0.1:PORT for example.test,
#       selector sel1, key made by opendkim-genkey in DIR/keys (public
#       record DIR/keys/sel1.txt); signs when the milter connect address is
#       in 127.0.0.0/8 or ::1; with OPENDKIM_INTERNAL_HOSTS=LIST when the
#       connect event's host name or address is in LIST instead
#       (InternalHosts, e.g. "mail.e2e.test": a client named by the MTA's
#       reverse DNS). Config DIR/opendkim.conf (opendkim -x).
#       PID in DIR/opendkim.pid, log in DIR/opendkim.log.
#       With OPENDKIM_VERIFY_KEYS=FILE it verifies instead (Mode v), with
#       the public keys in FILE (TestPublicKeys: one "NAME RECORD" a line,
#       e.g. "sel1._domainkey.example.test v=DKIM1; k=rsa; p=..."), never
#       DNS, and adds "Authentication-Results: mx.example.test; dkim=..."
#       (AlwaysAddARHeader) to every message.
#   peers.sh start redis DIR PORT
#       redis-server on 127.0.0.1:PORT with no persistence (no RDB, no
#       AOF; working directory DIR). Ready when it answers PING with PONG.
#       PID in DIR/redis.pid, log in DIR/redis.log.
#   peers.sh start prometheus DIR PORT TARGET...
#       Prometheus on 127.0.0.1:PORT (its web UI and HTTP API) scraping
#       each TARGET (HOST:PORT, /metrics over HTTP) every second, job
#       "mxgate"; config DIR/prometheus.yml, storage DIR/data. Ready when
#       /-/ready answers 200. PID in DIR/prometheus.pid, log in
#       DIR/prometheus.log.
#   peers.sh start postfix-mta DIR PORT RELAY [MAIN_CF_EXTRA_FILE]
#       A private Postfix MTA (Debian's postfix) on 127.0.0.1:PORT: its own
#       config directory DIR/conf (main.cf, master.cf), queue_directory
#       DIR/queue, data_directory DIR/data, mail log DIR/maillog, no
#       chroot, no DNS, mail_owner postfix. Mail from mynetworks
#       (127.0.0.0/8) or for example.test is relayed to relayhost
#       [127.0.0.1]:RELAY (an smtp-sink). The lines of MAIN_CF_EXTRA_FILE
#       are appended to main.cf (smtpd_milters, check_policy_service,
#       ...). POSTFIX_SESSIONS (default 20): smtpd processes at once, and
#       twice that per client. Needs root; DIR is made 0755 and its
#       parents must let user postfix through. PID (the master's) in
#       DIR/postfix-mta.pid; stop runs postfix -c DIR/conf stop, then
#       SIGTERM.
#   peers.sh stop NAME DIR
#       Stop the peer recorded in DIR and wait until its process is gone.
#   peers.sh status NAME DIR
#       Exit 0 when the peer recorded in DIR runs, 1 when it does not.
#
# start is idempotent (a peer already running from DIR is left alone), and so
# is stop (a peer not running is not an error). A peer is ready when start
# returns: it has answered its 220 greeting on PORT (rbldnsd: it has loaded
# its zones and bound PORT, which it does before it daemonizes; spamd: it has
# answered spamc's PING; clamd: it has answered zPING with PONG).
#
# Exit status: 0 done, 1 failed (the reason is on stderr), 2 usage error.
set -euo pipefail

prog=${0##*/}
# Debian puts the daemons in /usr/sbin, which a non-root PATH may lack.
export PATH=$PATH:/usr/sbin:/sbin
# How long start waits for the greeting and stop waits for the exit.
readonly ready_timeout=${PEERS_READY_TIMEOUT:-10}
readonly stop_timeout=${PEERS_STOP_TIMEOUT:-10}

usage() {
	cat >&2 <<EOF
usage: $prog start smtp-sink DIR PORT [--no-dump] [SMTP-SINK-OPTION...]
       $prog start dovecot-lmtp DIR PORT [USERS-FILE]
       $prog start rbldnsd DIR PORT ZONESPEC...
       $prog start spamd DIR PORT
       $prog start clamd DIR PORT [CLAMD.CONF-LINE...]
       $prog start rspamd DIR PORT
       $prog start opendkim DIR PORT
       $prog start redis DIR PORT
       $prog start prometheus DIR PORT TARGET...
       $prog start postfix-mta DIR PORT RELAY [MAIN_CF_EXTRA_FILE]
       $prog stop smtp-sink|dovecot-lmtp|rbldnsd|spamd|clamd|rspamd|opendkim|redis|prometheus|postfix-mta DIR
       $prog status smtp-sink|dovecot-lmtp|rbldnsd|spamd|clamd|rspamd|opendkim|redis|prometheus|postfix-mta DIR
EOF
	exit 2
}

die() {
	echo "$prog: $*" >&2
	exit 1
}

# alive PID: the process exists and is not a zombie. A daemon reparented to
# PID 1 can stay in state Z for seconds after it exited; it holds no port and
# no file any more, so it counts as gone.
alive() {
	local state
	[[ -r /proc/$1/stat ]] || return 1
	# The state is the first field after the ")" closing the command name.
	state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# is_ours PID COMM: the live process PID runs program COMM. Guards against
# killing an unrelated process that reused a stale PID.
is_ours() {
	alive "$1" && [[ $(cat "/proc/$1/comm" 2>/dev/null) == "$2" ]]
}

# pid_of NAME DIR: the recorded PID when that process still runs, else "".
pid_of() {
	local pidfile=$2/$1.pid pid comm
	[[ -f $pidfile ]] || return 0
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || die "$pidfile: not a PID: '$pid'"
	case $1 in
	smtp-sink) comm=smtp-sink ;;
	dovecot-lmtp) comm=dovecot ;;
	rbldnsd) comm=rbldnsd ;;
	spamd) comm=spamd ;;
	clamd) comm=clamd ;;
	rspamd) comm=rspamd ;;
	opendkim) comm=opendkim ;;
	redis) comm=redis-server ;;
	prometheus) comm=prometheus ;;
	postfix-mta) comm=master ;;
	esac
	if is_ours "$pid" "$comm"; then
		echo "$pid"
	fi
}

# greeting PORT: read the first line 127.0.0.1:PORT sends, within 1 s.
greeting() {
	local line
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	IFS= read -r -t 1 line <&3 || { exec 3<&-; return 1; }
	printf 'QUIT\r\n' >&3 2>/dev/null || true
	exec 3<&-
	printf '%s\n' "${line%$'\r'}"
}

# port_busy PORT: something already listens on 127.0.0.1:PORT.
port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_ready NAME DIR PORT PID LOG: poll until PORT greets with 220, the
# process dies, or the timeout passes.
wait_ready() {
	local name=$1 port=$3 pid=$4 log=$5 line deadline
	deadline=$((SECONDS + ready_timeout))
	while ((SECONDS <= deadline)); do
		if ! alive "$pid"; then
			die "$name exited during start-up; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
		fi
		if line=$(greeting "$port" 2>/dev/null) && [[ $line == 220* ]]; then
			return 0
		fi
		sleep 0.05
	done
	die "$name (PID $pid) did not greet on 127.0.0.1:$port within ${ready_timeout}s; see $log"
}

# wait_gone PID NAME: poll until PID is gone or a zombie.
wait_gone() {
	local deadline=$((SECONDS + stop_timeout))
	while alive "$1"; do
		((SECONDS <= deadline)) || return 1
		sleep 0.05
	done
}

# run_as_user DIR: the user smtp-sink drops to (it refuses to keep root
# privileges without -u). The owner of DIR can always write there, even when
# DIR sits below a 0700 test directory that nobody else may enter.
run_as_user() {
	stat -c %U "$1"
}

# mail_user DIR: the user dovecot delivers as. Dovecot refuses uid 0 for
# mail, so a root-owned DIR gets nobody.
mail_user() {
	local owner
	owner=$(stat -c %U "$1")
	if [[ $owner == root ]]; then
		owner=nobody
	fi
	echo "$owner"
}

check_port() {
	if ! [[ $1 =~ ^[0-9]+$ ]] || (($1 < 1 || $1 > 65535)); then
		die "PORT must be 1-65535, not '$1'"
	fi
}

start_smtp_sink() {
	local dir=$1 port=$2 pid log=$1/smtp-sink.log
	shift 2
	local dump=(-d "$dir/msg.")
	if [[ ${1:-} == --no-dump ]]; then
		dump=()
		shift
	fi
	local user=()
	if ((EUID == 0)); then
		user=(-u "$(run_as_user "$dir")")
	fi
	command -v smtp-sink >/dev/null || die "smtp-sink not found (package postfix): run scripts/install-test-deps.sh"
	port_busy "$port" && die "127.0.0.1:$port is already in use"
	# setsid: a Ctrl-C in the terminal that started a peer by hand must not
	# reach the peer; stop is the one way it ends. stdin/stdout/stderr are
	# redirected so a caller reading this script's output is not held open.
	setsid smtp-sink "${user[@]}" "${dump[@]}" "$@" "127.0.0.1:$port" 256 \
		</dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/smtp-sink.pid"
	wait_ready smtp-sink "$dir" "$port" "$pid" "$log"
	echo "smtp-sink PID $pid on 127.0.0.1:$port, messages in $dir/msg.*"
}

start_dovecot() {
	local dir=$1 port=$2 conf=$1/dovecot.conf log=$1/dovecot.log user group pid users=${3:-}
	(($# == 2 || $# == 3)) || usage
	if [[ -n $users && ! -r $users ]]; then
		die "USERS-FILE $users: not a readable file"
	fi
	command -v dovecot >/dev/null || die "dovecot not found (packages dovecot-core, dovecot-lmtpd): run scripts/install-test-deps.sh"
	[[ -x /usr/lib/dovecot/lmtp ]] || die "dovecot's lmtp service is missing (package dovecot-lmtpd): run scripts/install-test-deps.sh"
	((EUID == 0)) || die "dovecot-lmtp needs root (dovecot switches to the mail user per delivery)"
	port_busy "$port" && die "127.0.0.1:$port is already in use"
	user=$(mail_user "$dir")
	group=$(id -gn "$user")
	mkdir -p "$dir/run" "$dir/state" "$dir/mail"
	chown "$user:$group" "$dir/mail"
	# Delivery runs as $user: every directory above the Maildirs must let it
	# through, which a 0700 parent (mktemp -d, Go's t.TempDir) does not.
	if ! setpriv --reuid="$user" --regid="$group" --clear-groups test -w "$dir/mail" 2>/dev/null; then
		die "user $user cannot write $dir/mail (a parent directory is not searchable by others?); use a directory reachable by $user"
	fi
	# Dovecot's login processes run as dovenull and need to enter base_dir.
	chmod 0755 "$dir/run"
	local auth
	if [[ -n $users ]]; then
		# Dovecot's auth process runs as an unprivileged user: the copy is
		# readable by all, in DIR, which the caller made searchable.
		# A bare "user@domain" gets the empty fields passwd-file needs to
		# find userdb data (default_fields then fill it).
		awk -F: 'NF == 1 && $0 !~ /^[[:space:]]*(#|$)/ { print $0 "::::::"; next } { print }' "$users" >"$dir/users"
		chmod 0644 "$dir/users"
		auth="passdb {
  driver = passwd-file
  args = $dir/users
}
userdb {
  driver = passwd-file
  args = $dir/users
  default_fields = uid=$user gid=$group home=$dir/mail/%d/%n
}
service auth {
  unix_listener auth-userdb {
    mode = 0666
  }
  unix_listener auth-client {
    mode = 0666
  }
}"
	else
		auth="passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=$user gid=$group home=$dir/mail/%d/%n
}"
	fi
	cat >"$conf" <<EOF
# Scratch Dovecot for mxgate tests; written by scripts/peers.sh.
base_dir = $dir/run
state_dir = $dir/state
log_path = $log
info_log_path = $log
protocols = lmtp
ssl = no
listen = 127.0.0.1
mail_location = maildir:$dir/mail/%d/%n/Maildir
mail_uid = $user
mail_gid = $group
first_valid_uid = 0
first_valid_gid = 0
lmtp_save_to_detail_mailbox = no
$auth
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $port
  }
  unix_listener lmtp {
    mode = 0666
  }
}
service anvil {
  chroot =
}
service stats {
  chroot =
}
EOF
	if [[ -n ${DOVECOT_QUOTA:-} ]]; then
		[[ $DOVECOT_QUOTA =~ ^[0-9]+[kKmMgG]?$ ]] || die "DOVECOT_QUOTA must be a size such as 1k, not '$DOVECOT_QUOTA'"
		cat >>"$conf" <<EOF
mail_plugins = \$mail_plugins quota
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=$DOVECOT_QUOTA
}
EOF
	fi
	# dovecot daemonizes; its master writes base_dir/master.pid.
	dovecot -c "$conf" </dev/null >>"$log" 2>&1 || die "dovecot -c $conf failed; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
	local deadline=$((SECONDS + ready_timeout))
	while [[ ! -s $dir/run/master.pid ]]; do
		((SECONDS <= deadline)) || die "dovecot wrote no $dir/run/master.pid within ${ready_timeout}s; see $log"
		sleep 0.05
	done
	pid=$(<"$dir/run/master.pid")
	echo "$pid" >"$dir/dovecot-lmtp.pid"
	wait_ready dovecot-lmtp "$dir" "$port" "$pid" "$log"
	echo "dovecot-lmtp PID $pid on 127.0.0.1:$port and $dir/run/lmtp, mail in $dir/mail/DOMAIN/USER/Maildir"
}

start_rbldnsd() {
	local dir=$1 port=$2 log=$1/rbldnsd.log pidfile=$1/rbldnsd.pid pid
	shift 2
	(($# >= 1)) || usage
	command -v rbldnsd >/dev/null || die "rbldnsd not found (package rbldnsd): run scripts/install-test-deps.sh"
	local user=()
	if ((EUID == 0)); then
		user=(-u nobody)
	fi
	rm -f "$pidfile"
	# rbldnsd loads every zone and binds the port, then daemonizes: when it
	# returns 0 it answers. A bad zone file or a busy port makes it fail
	# here, with the reason in the log. -w: zone files relative to the
	# caller's directory.
	setsid rbldnsd "${user[@]}" -w "$PWD" -b "127.0.0.1/$port" -p "$pidfile" "$@" \
		</dev/null >>"$log" 2>&1 || die "rbldnsd failed to start; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
	# The daemon writes its PID file itself, possibly just after the parent
	# returned.
	local deadline=$((SECONDS + ready_timeout))
	while [[ ! -s $pidfile ]]; do
		((SECONDS <= deadline)) || die "rbldnsd wrote no $pidfile within ${ready_timeout}s; see $log"
		sleep 0.05
	done
	pid=$(<"$pidfile")
	alive "$pid" || die "rbldnsd (PID $pid) exited after start-up; see $log"
	echo "rbldnsd PID $pid on 127.0.0.1:$port (UDP)"
}

start_spamd() {
	local dir=$1 port=$2 conf=$1/siteconfig log=$1/spamd.log pidfile=$1/spamd.pid pid
	(($# == 2)) || usage
	command -v spamd >/dev/null || die "spamd not found (package spamd): run scripts/install-test-deps.sh"
	command -v spamc >/dev/null || die "spamc not found (package spamc): run scripts/install-test-deps.sh"
	port_busy "$port" && die "127.0.0.1:$port is already in use"
	# spamd will not run its children as root, and they read the site
	# config after dropping to nobody: as root it goes where nobody can
	# read it, since DIR may sit below a 0700 test directory.
	local user=()
	if ((EUID == 0)); then
		user=(-u nobody)
		remove_spamd_siteconfig "$dir"
		conf=$(mktemp -d /tmp/mxgate-spamd.XXXXXX)
		chmod 0755 "$conf"
		echo "$conf" >"$dir/spamd.siteconfig"
	fi
	mkdir -p "$conf"
	cp /etc/spamassassin/*.pre "$conf/" || die "cannot copy /etc/spamassassin/*.pre into $conf (package spamassassin)"
	cat >"$conf/local.cf" <<EOF
# Scratch spamd for mxgate tests; written by scripts/peers.sh. Offline and
# deterministic: no Bayes (it learns from what it saw), no network tests.
use_bayes 0
skip_rbl_checks 1
dns_available no
EOF
	chmod 0644 "$conf"/*
	rm -f "$pidfile"
	# -s stderr: without it spamd logs to syslog and dies when there is
	# none. -d daemonizes once the rules are loaded; the daemon writes its
	# own PID file.
	setsid spamd --listen="127.0.0.1:$port" --allowed-ips=127.0.0.1 --nouser-config \
		--max-children=2 --siteconfigpath="$conf" "${user[@]}" -s stderr \
		--pidfile="$pidfile" -d </dev/null >>"$log" 2>&1 || die "spamd failed to start; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
	local deadline=$((SECONDS + ready_timeout))
	while [[ ! -s $pidfile ]]; do
		((SECONDS <= deadline)) || die "spamd wrote no $pidfile within ${ready_timeout}s; see $log"
		sleep 0.05
	done
	pid=$(<"$pidfile")
	until spamc -d 127.0.0.1 -p "$port" -K >/dev/null 2>&1; do
		alive "$pid" || die "spamd exited during start-up; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
		((SECONDS <= deadline)) || die "spamd (PID $pid) did not answer PING on 127.0.0.1:$port within ${ready_timeout}s; see $log"
		sleep 0.1
	done
	echo "spamd PID $pid on 127.0.0.1:$port, site config $conf"
}

# The EICAR test file (68 bytes) in hex, for an .ndb body signature: target
# 0 (any file), offset * (anywhere).
readonly eicar_hex=58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a

# clamd_pong PORT: clamd on 127.0.0.1:PORT answers zPING with PONG within 1 s.
clamd_pong() {
	local reply
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'zPING\0' >&3 2>/dev/null || { exec 3<&-; return 1; }
	IFS= read -r -d '' -t 1 reply <&3 || { exec 3<&-; return 1; }
	exec 3<&-
	[[ $reply == PONG ]]
}

start_clamd() {
	local dir=$1 port=$2 conf=$1/clamd.conf log=$1/clamd.log pid deadline line
	shift 2
	command -v clamd >/dev/null || die "clamd not found (package clamav-daemon): run scripts/install-test-deps.sh"
	port_busy "$port" && die "127.0.0.1:$port is already in use"
	mkdir -p "$dir/db" "$dir/tmp"
	# clamd refuses an empty database directory; this one signature is all
	# it loads, so it starts in well under a second and needs no network.
	echo "Test.EICAR.NDB:0:*:$eicar_hex" >"$dir/db/test.ndb"
	# No User line: clamd keeps the user that starts it, who owns DIR.
	cat >"$conf" <<EOF
# Scratch clamd for mxgate tests; written by scripts/peers.sh.
TCPSocket $port
TCPAddr 127.0.0.1
DatabaseDirectory $dir/db
TemporaryDirectory $dir/tmp
LogFile $log
LogTime yes
Foreground yes
SelfCheck 0
StreamMaxLength 25M
EOF
	# An extra line replaces the default for its option: clamd would take
	# the first of two.
	for line in "$@"; do
		[[ $line =~ ^([A-Za-z]+)\  ]] || die "'$line' is not a clamd.conf line (Option value)"
		sed -i "/^${BASH_REMATCH[1]} /d" "$conf"
		printf '%s\n' "$line" >>"$conf"
	done
	# Foreground: the PID is the daemon's own, so stop can signal it.
	setsid clamd --config-file="$conf" </dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/clamd.pid"
	deadline=$((SECONDS + ready_timeout))
	until clamd_pong "$port" 2>/dev/null; do
		alive "$pid" || die "clamd exited during start-up; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
		((SECONDS <= deadline)) || die "clamd (PID $pid) did not answer PING on 127.0.0.1:$port within ${ready_timeout}s; see $log"
		sleep 0.05
	done
	echo "clamd PID $pid on 127.0.0.1:$port, database $dir/db"
}

# milter_up PORT: something answers a TCP connect on 127.0.0.1:PORT (a
# milter says nothing until the MTA's option negotiation).
milter_up() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_milter NAME PORT PID LOG: poll until PORT accepts connections.
wait_milter() {
	local name=$1 port=$2 pid=$3 log=$4 deadline=$((SECONDS + ${5:-$ready_timeout}))
	until milter_up "$port"; do
		alive "$pid" || die "$name exited during start-up; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
		((SECONDS <= deadline)) || die "$name (PID $pid) did not listen on 127.0.0.1:$port within ${5:-$ready_timeout}s; see $log"
		sleep 0.1
	done
}

start_rspamd() {
	local dir=$1 port=$2 log=$1/log/rspamd.log pidfile=$1/run/rspamd.pid pid user=_rspamd
	(($# == 2)) || usage
	command -v rspamd >/dev/null || die "rspamd not found (package rspamd): run scripts/install-test-deps.sh"
	local p
	for p in "$port" $((port + 1)) $((port + 2)); do
		port_busy "$p" && die "127.0.0.1:$p is already in use (rspamd takes PORT and the two ports after it)"
	done
	mkdir -p "$dir/local.d" "$dir/override.d" "$dir/db" "$dir/run" "$dir/log"
	# The normal and controller workers get the two ports after PORT.
	cat >"$dir/local.d/worker-proxy.inc" <<EOT
# Scratch rspamd for mxgate tests; written by scripts/peers.sh.
bind_socket = "127.0.0.1:$port";
milter = yes;
timeout = 120s;
upstream "local" { default = yes; self_scan = yes; }
EOT
	echo "bind_socket = \"127.0.0.1:$((port + 1))\";" >"$dir/local.d/worker-normal.inc"
	echo "bind_socket = \"127.0.0.1:$((port + 2))\";" >"$dir/local.d/worker-controller.inc"
	# Its RBL and URL-list checks would each wait for DNS timeouts: point
	# the resolver at a local port where nothing answers, refused at once.
	cat >"$dir/local.d/options.inc" <<EOT
dns { nameserver = ["127.0.0.1:${RSPAMD_DNS_PORT:-1}"]; timeout = 0.1s; retransmits = 1; }
EOT
	# Offline it scores the pharmacy spam only ~4: a low add_header
	# threshold makes its milter answer carry header modifications.
	# RSPAMD_REJECT_SCORE (whole number, default 50) lowers the reject
	# threshold; rspamd takes the highest threshold a score reaches, so
	# add_header goes when reject is not above it.
	local reject=${RSPAMD_REJECT_SCORE:-50} add_header=4
	[[ $reject =~ ^[0-9]+$ ]] || die "RSPAMD_REJECT_SCORE must be a whole number, not '$reject'"
	if ((reject <= add_header)); then
		add_header=null
	fi
	cat >"$dir/local.d/actions.conf" <<EOT
add_header = $add_header;
reject = $reject;
greylist = null;
EOT
	cat >"$dir/local.d/milter_headers.conf" <<EOT
use = ["x-spamd-bar", "x-spam-status", "x-spamd-result"];
skip_local = false;
skip_authenticated = false;
EOT
	chown -R "$user:$user" "$dir" 2>/dev/null || ((EUID != 0)) || die "cannot chown $dir to $user"
	rm -f "$pidfile"
	setsid rspamd -u "$user" -g "$user" -c /etc/rspamd/rspamd.conf \
		--var="LOCAL_CONFDIR=$dir" --var="DBDIR=$dir/db" --var="RUNDIR=$dir/run" \
		--var="LOGDIR=$dir/log" </dev/null >>"$dir/rspamd.out" 2>&1 || die "rspamd failed to start; see $dir/rspamd.out and $log"
	local deadline=$((SECONDS + ready_timeout))
	while [[ ! -s $pidfile ]]; do
		((SECONDS <= deadline)) || die "rspamd wrote no $pidfile within ${ready_timeout}s; see $log"
		sleep 0.1
	done
	pid=$(<"$pidfile")
	echo "$pid" >"$dir/rspamd.pid"
	# Loading its rules and maps takes a few seconds.
	wait_milter rspamd "$port" "$pid" "$log" $((ready_timeout * 3))
	# The milter port alone is not enough: when another program holds one
	# of the workers' ports rspamd exits soon after binding the first.
	# With the controller's port up too and rspamd alive, it stays.
	wait_milter rspamd $((port + 2)) "$pid" "$log" "$ready_timeout"
	alive "$pid" || die "rspamd exited during start-up; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
	echo "rspamd PID $pid, milter on 127.0.0.1:$port, log $log"
}

start_opendkim() {
	local dir=$1 port=$2 conf=$1/opendkim.conf log=$1/opendkim.log pid user=opendkim
	(($# == 2)) || usage
	command -v opendkim >/dev/null || die "opendkim not found (package opendkim): run scripts/install-test-deps.sh"
	command -v opendkim-genkey >/dev/null || die "opendkim-genkey not found (package opendkim-tools): run scripts/install-test-deps.sh"
	port_busy "$port" && die "127.0.0.1:$port is already in use"
	mkdir -p "$dir/keys"
	if [[ -n ${OPENDKIM_VERIFY_KEYS:-} ]]; then
		cp "$OPENDKIM_VERIFY_KEYS" "$dir/keys/public.keys" || die "OPENDKIM_VERIFY_KEYS: cannot copy '$OPENDKIM_VERIFY_KEYS'"
	elif [[ ! -f $dir/keys/sel1.private ]]; then
		opendkim-genkey -D "$dir/keys" -d example.test -s sel1 -b 2048 >>"$log" 2>&1 || die "opendkim-genkey failed; see $log"
	fi
	local userid=""
	if ((EUID == 0)); then
		chown -R "$user:$user" "$dir/keys"
		userid="UserID $user:$user"
	fi
	if [[ -n ${OPENDKIM_VERIFY_KEYS:-} ]]; then
		# Verify mode: public keys from a file, never DNS (Debian's opendkim
		# resolves through libunbound, which cannot be pointed at a test port).
		cat >"$conf" <<EOT
# Scratch opendkim for mxgate tests; written by scripts/peers.sh. Verifies
# DKIM signatures with the keys in TestPublicKeys.
Mode v
Socket inet:$port@127.0.0.1
TestPublicKeys $dir/keys/public.keys
AuthservID mx.example.test
AlwaysAddARHeader yes
Background no
$userid
EOT
	else
		cat >"$conf" <<EOT
# Scratch opendkim for mxgate tests; written by scripts/peers.sh. Signs
# mail from example.test whose milter connect address is internal.
Mode s
Domain example.test
Selector sel1
KeyFile $dir/keys/sel1.private
Socket inet:$port@127.0.0.1
Canonicalization relaxed/simple
InternalHosts ${OPENDKIM_INTERNAL_HOSTS:-127.0.0.0/8,::1}
RequireSafeKeys false
Background no
$userid
EOT
	fi
	opendkim -x "$conf" -n >>"$log" 2>&1 || die "opendkim rejects $conf; see $log"
	# Foreground (Background no): the PID is the daemon's own.
	setsid opendkim -x "$conf" -f </dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/opendkim.pid"
	wait_milter opendkim "$port" "$pid" "$log"
	echo "opendkim PID $pid, milter on 127.0.0.1:$port, public key $dir/keys/sel1.txt"
}

# remove_spamd_siteconfig DIR: remove the site config start_spamd made
# outside DIR, if any.
remove_spamd_siteconfig() {
	local conf
	[[ -f $1/spamd.siteconfig ]] || return 0
	conf=$(<"$1/spamd.siteconfig")
	# Only ever a directory start_spamd created.
	if [[ $conf == /tmp/mxgate-spamd.* && -d $conf ]]; then
		rm -rf "$conf"
	fi
	rm -f "$1/spamd.siteconfig"
}

# redis_pong PORT: 127.0.0.1:PORT answers PING with +PONG within 1 s.
redis_pong() {
	local line
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'PING\r\n' >&3 2>/dev/null || { exec 3<&-; return 1; }
	IFS= read -r -t 1 line <&3 || { exec 3<&-; return 1; }
	exec 3<&-
	[[ ${line%$'\r'} == +PONG ]]
}

start_redis() {
	local dir=$1 port=$2 log=$1/redis.log pid deadline
	command -v redis-server >/dev/null || die "redis-server not found (package redis-server): run scripts/install-test-deps.sh"
	# Nothing on disk: the tests' state lives as long as the server.
	setsid redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
		--save '' --appendonly no --daemonize no --protected-mode yes \
		</dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/redis.pid"
	deadline=$((SECONDS + ready_timeout))
	while ! redis_pong "$port" 2>/dev/null; do
		alive "$pid" || die "redis-server exited during start-up; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
		((SECONDS <= deadline)) || die "redis-server (PID $pid) did not answer PING on 127.0.0.1:$port within ${ready_timeout}s; see $log"
		sleep 0.05
	done
	echo "redis-server PID $pid on 127.0.0.1:$port"
}

# http_ok PORT PATH: GET http://127.0.0.1:PORT/PATH answers 200 within 1 s.
http_ok() {
	local line
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$2" "$1" >&3 2>/dev/null || { exec 3<&-; return 1; }
	IFS= read -r -t 1 line <&3 || { exec 3<&-; return 1; }
	exec 3<&-
	[[ $line == "HTTP/1."?" 200"* ]]
}

start_prometheus() {
	local dir=$1 port=$2 log=$1/prometheus.log pid deadline targets="" t
	shift 2
	(($# >= 1)) || die "prometheus needs at least one TARGET (HOST:PORT)"
	command -v prometheus >/dev/null || die "prometheus not found (package prometheus): run scripts/install-test-deps.sh"
	for t in "$@"; do
		targets+="${targets:+, }'$t'"
	done
	printf '%s\n' "global:" "  scrape_interval: 1s" "  scrape_timeout: 1s" "  evaluation_interval: 1s" \
		"scrape_configs:" "  - job_name: mxgate" "    static_configs:" "      - targets: [$targets]" \
		>"$dir/prometheus.yml"
	mkdir -p "$dir/data"
	setsid prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--web.listen-address="127.0.0.1:$port" --log.level=warn \
		</dev/null >>"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/prometheus.pid"
	deadline=$((SECONDS + ready_timeout))
	while ! http_ok "$port" /-/ready 2>/dev/null; do
		alive "$pid" || die "prometheus exited during start-up; last lines of $log:
$(tail -n 20 "$log" 2>/dev/null)"
		((SECONDS <= deadline)) || die "prometheus (PID $pid) was not ready on 127.0.0.1:$port within ${ready_timeout}s; see $log"
		sleep 0.05
	done
	echo "prometheus PID $pid on 127.0.0.1:$port"
}

start_postfix_mta() {
	local dir=$1 port=$2 relay=${3:-} extra=${4:-} conf=$1/conf log=$1/maillog pid deadline
	local sessions=${POSTFIX_SESSIONS:-20}
	(($# == 3 || $# == 4)) || usage
	check_port "$relay"
	[[ $sessions =~ ^[0-9]+$ ]] && ((sessions > 0)) || die "POSTFIX_SESSIONS must be a whole number > 0, not '$sessions'"
	if [[ -n $extra && ! -r $extra ]]; then
		die "MAIN_CF_EXTRA_FILE $extra: not a readable file"
	fi
	command -v postfix >/dev/null || die "postfix not found (package postfix): run scripts/install-test-deps.sh"
	((EUID == 0)) || die "postfix-mta needs root (postfix start, daemons as user postfix)"
	port_busy "$port" && die "127.0.0.1:$port is already in use"
	mkdir -p "$conf" "$dir/queue" "$dir/data"
	chown postfix "$dir/data"
	# Postfix's daemons run as user postfix and must reach the queue.
	chmod 0755 "$dir"
	if ! setpriv --reuid=postfix --regid=postfix --clear-groups test -x "$dir/queue" 2>/dev/null; then
		die "user postfix cannot enter $dir (a parent directory is not searchable by others?); use a directory reachable by postfix"
	fi
	# No chroot (the scratch queue holds none of the files a chroot
	# needs), no DNS (relayhost is an IP), no local delivery, logs in DIR.
	cat >"$conf/main.cf" <<EOT
# Scratch Postfix for mxgate tests; written by scripts/peers.sh.
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
mail_owner = postfix
maillog_file = $log
maillog_file_prefixes = $dir
myhostname = postfix.peers.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
relayhost = [127.0.0.1]:$relay
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = $((2 * sessions + 10))
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
EOT
	if [[ -n $extra ]]; then
		printf '# From %s:\n' "$extra" >>"$conf/main.cf"
		cat "$extra" >>"$conf/main.cf"
	fi
	cat >"$conf/master.cf" <<EOT
127.0.0.1:$port inet n - n - $((sessions + 10)) smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
EOT
	# postfix start daemonizes the master, which writes queue/pid/master.pid.
	rm -f "$dir/queue/pid/master.pid"
	postfix -c "$conf" start </dev/null >>"$dir/postfix.out" 2>&1 || die "postfix -c $conf start failed; see $dir/postfix.out and $log:
$(tail -n 20 "$dir/postfix.out" "$log" 2>/dev/null)"
	deadline=$((SECONDS + ready_timeout))
	while [[ ! -s $dir/queue/pid/master.pid ]]; do
		((SECONDS <= deadline)) || die "postfix wrote no $dir/queue/pid/master.pid within ${ready_timeout}s; see $log"
		sleep 0.05
	done
	pid=$(tr -d ' \n' <"$dir/queue/pid/master.pid")
	echo "$pid" >"$dir/postfix-mta.pid"
	wait_ready postfix-mta "$dir" "$port" "$pid" "$log"
	echo "postfix-mta PID $pid on 127.0.0.1:$port, relaying to 127.0.0.1:$relay, config $conf, log $log"
}

cmd_start() {
	(($# >= 3)) || usage
	local name=$1 dir=$2 port=$3 pid
	shift 3
	check_port "$port"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	pid=$(pid_of "$name" "$dir")
	if [[ -n $pid ]]; then
		echo "$name already running from $dir (PID $pid)"
		return 0
	fi
	case $name in
	smtp-sink) start_smtp_sink "$dir" "$port" "$@" ;;
	dovecot-lmtp) start_dovecot "$dir" "$port" "$@" ;;
	rbldnsd) start_rbldnsd "$dir" "$port" "$@" ;;
	spamd) start_spamd "$dir" "$port" "$@" ;;
	clamd) start_clamd "$dir" "$port" "$@" ;;
	rspamd) start_rspamd "$dir" "$port" "$@" ;;
	opendkim) start_opendkim "$dir" "$port" "$@" ;;
	redis) start_redis "$dir" "$port" ;;
	prometheus) start_prometheus "$dir" "$port" "$@" ;;
	postfix-mta) start_postfix_mta "$dir" "$port" "$@" ;;
	*) usage ;;
	esac
}

cmd_stop() {
	(($# == 2)) || usage
	local name=$1 dir=$2 pid
	case $name in smtp-sink | dovecot-lmtp | rbldnsd | spamd | clamd | rspamd | opendkim | redis | prometheus | postfix-mta) ;; *) usage ;; esac
	[[ -d $dir ]] || die "$dir: no such directory"
	dir=$(cd "$dir" && pwd)
	pid=$(pid_of "$name" "$dir")
	if [[ -z $pid ]]; then
		rm -f "$dir/$name.pid"
		if [[ $name == spamd ]]; then
			remove_spamd_siteconfig "$dir"
		fi
		echo "$name not running from $dir"
		return 0
	fi
	if [[ $name == postfix-mta ]]; then
		# postfix stop has the master end its children in order.
		postfix -c "$dir/conf" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
	elif [[ $name == dovecot-lmtp ]]; then
		# doveadm stop asks the master to stop its services in order; fall
		# back to SIGTERM on the recorded PID when it cannot.
		doveadm -c "$dir/dovecot.conf" stop >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
	else
		kill -TERM "$pid" 2>/dev/null || true
	fi
	if ! wait_gone "$pid"; then
		echo "$prog: $name (PID $pid) still running ${stop_timeout}s after SIGTERM; sending SIGKILL" >&2
		kill -KILL "$pid" 2>/dev/null || true
		wait_gone "$pid" || die "$name (PID $pid) survived SIGKILL"
	fi
	rm -f "$dir/$name.pid"
	if [[ $name == spamd ]]; then
		remove_spamd_siteconfig "$dir"
	fi
	echo "$name (PID $pid) stopped"
}

cmd_status() {
	(($# == 2)) || usage
	local name=$1 dir=$2 pid
	case $name in smtp-sink | dovecot-lmtp | rbldnsd | spamd | clamd | rspamd | opendkim | redis | prometheus | postfix-mta) ;; *) usage ;; esac
	pid=$(pid_of "$name" "$dir")
	if [[ -n $pid ]]; then
		echo "$name running from $dir (PID $pid)"
		return 0
	fi
	echo "$name not running from $dir"
	return 1
}

(($# >= 1)) || usage
action=$1
shift
case $action in
start) cmd_start "$@" ;;
stop) cmd_stop "$@" ;;
status) cmd_status "$@" ;;
-h | --help | help) usage ;;
*) usage ;;
esac
