#!/usr/bin/env bash
# load.sh — mxgate's throughput next to Postfix's, on the same machine, with
# the same load and the same downstream.
#
# Both gateways relay to one smtp-sink (which saves nothing, so the sink is
# never the bottleneck) and keep their queue on disk with fsync. Postfix's
# smtp-source sends the load, first to mxgate, then to a scratch Postfix
# instance. Printed per gateway: messages/s until smtp-source had its last
# 250 (accept), messages/s until the queue was empty again (end to end),
# and peak RSS (VmHWM; for Postfix summed over the master and its daemons).
# Then the mxgate/Postfix ratios.
#
#   scripts/load.sh            # needs root (Postfix) and scripts/install-test-deps.sh
#
# Environment: SESSIONS (20), MESSAGES (2000), SIZE (4096 bytes),
# SKIP_POSTFIX=1 (mxgate only), KEEP=1 (keep the scratch directory),
# MXGATE=/path/to/binary (default: go build ./cmd/mxgate).
# Exit status: 0 measured, 1 failed (the reason is on stderr).
set -euo pipefail

prog=${0##*/}
# Debian puts the daemons in /usr/sbin, which a non-root PATH may lack.
export PATH=$PATH:/usr/sbin:/sbin
root=$(cd "$(dirname "$0")/.." && pwd)
readonly sessions=${SESSIONS:-20} messages=${MESSAGES:-2000} size=${SIZE:-4096}
# Bounds of the waits: start-up, a drained queue, a stop.
readonly ready_timeout=15 drain_timeout=300 stop_timeout=30

# shellcheck source=scripts/load-lib.sh
. "$(dirname "$0")/load-lib.sh"

# wait_empty NAME COUNT-COMMAND: until COUNT-COMMAND prints 0.
wait_empty() {
	local name=$1 deadline=$((SECONDS + drain_timeout)) left
	shift
	while :; do
		left=$("$@")
		((left == 0)) && return 0
		((SECONDS <= deadline)) || die "$name: $left messages still queued after ${drain_timeout}s"
		sleep 0.02
	done
}

vmhwm_kib() {
	awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# pss_kib PID: proportional set size now (shared pages split among sharers).
pss_kib() {
	awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
}

# load PORT: smtp-source's run against 127.0.0.1:PORT.
load() {
	smtp-source -s "$sessions" -m "$messages" -l "$size" \
		-f sender@load.test -t user@example.test "127.0.0.1:$1" ||
		die "smtp-source against 127.0.0.1:$1 failed"
}

mx_pid='' pf_conf='' pf_master=''
cleanup() {
	local rc=$?
	set +e
	if [[ -n $mx_pid ]] && alive "$mx_pid"; then
		kill -TERM "$mx_pid"
		wait_gone "$mx_pid" || kill -KILL "$mx_pid"
	fi
	if [[ -n $pf_master ]] && alive "$pf_master"; then
		postfix -c "$pf_conf" stop >/dev/null 2>&1 || kill -TERM "$pf_master"
		wait_gone "$pf_master" || kill -KILL "$pf_master"
	fi
	"$root/scripts/peers.sh" stop smtp-sink "$scratch/sink" >/dev/null 2>&1
	if [[ ${KEEP:-0} == 1 || $rc != 0 ]]; then
		echo "$prog: scratch directory kept: $scratch" >&2
	else
		rm -rf "$scratch"
	fi
	exit "$rc"
}

command -v smtp-source >/dev/null || die "smtp-source not found (package postfix): run scripts/install-test-deps.sh"
# A disk, not tmpfs: the point is to pay for fsync like a real spool does.
scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/mxgate-load.XXXXXX")
trap cleanup EXIT
# Postfix's daemons run as user postfix and must reach the queue.
chmod 0755 "$scratch"
if [[ $(stat -f -c %T "$scratch") == tmpfs ]]; then
	echo "$prog: warning: $scratch is on tmpfs: fsync costs nothing there" >&2
fi

bin=${MXGATE:-}
if [[ -z $bin ]]; then
	bin=$scratch/mxgate
	(cd "$root" && go build -o "$bin" ./cmd/mxgate) || die "go build ./cmd/mxgate failed"
fi

sink_port=$(free_port)
"$root/scripts/peers.sh" start smtp-sink "$scratch/sink" "$sink_port" --no-dump >/dev/null

# --- mxgate -----------------------------------------------------------------
mx_port=$(free_port)
mkdir -p "$scratch/mxgate-data"
cat >"$scratch/mxgate.toml" <<EOF
hostname = "mx.load.test"
listen   = ["127.0.0.1:$mx_port"]
data_dir = "$scratch/mxgate-data"

[smtp]
max_connections_per_ip = $((sessions + 10))

[relay]
domains = ["example.test"]

[downstream]
url      = "smtp://127.0.0.1:$sink_port"
starttls = "none"

[queue]
retry        = "F,10m,1s"
run_interval = "1s"
max_parallel = $sessions
EOF
"$bin" serve -config "$scratch/mxgate.toml" </dev/null >"$scratch/mxgate.out" 2>&1 &
mx_pid=$!
wait_greeting mxgate "$mx_port" "$mx_pid"

mx_spooled() {
	find "$scratch/mxgate-data/spool/input" -name '*-H' 2>/dev/null | wc -l
}
echo "$prog: mxgate: smtp-source -s $sessions -m $messages -l $size"
t0=$(now)
load "$mx_port"
t1=$(now)
wait_empty mxgate mx_spooled
t2=$(now)
mx_rss=$(vmhwm_kib "$mx_pid")
kill -TERM "$mx_pid"
wait "$mx_pid" || die "mxgate exited with status $? after SIGTERM; see $scratch/mxgate.out"
mx_pid=''
mx_received=$(grep -c ' <= ' "$scratch/mxgate-data/log/mainlog" || true)
mx_completed=$(grep -c ' Completed$' "$scratch/mxgate-data/log/mainlog" || true)
((mx_received == messages && mx_completed == messages)) ||
	die "mxgate logged $mx_received received and $mx_completed completed, want $messages each; see $scratch"

# rates T0 T1 T2: "ACCEPT END-TO-END" in messages per second.
rates() {
	awk -v n="$messages" -v t0="$1" -v t1="$2" -v t2="$3" 'BEGIN { printf "%.1f %.1f\n", n / (t1 - t0), n / (t2 - t0) }'
}
report() { # NAME ACCEPT END-TO-END RSS-KIB
	awk -v name="$1" -v acc="$2" -v e2e="$3" -v rss="$4" 'BEGIN {
		printf "%-8s accept %8.1f msg/s   end to end %8.1f msg/s   peak RSS %7.1f MiB\n", name, acc, e2e, rss / 1024 }'
}
read -r mx_acc mx_e2e < <(rates "$t0" "$t1" "$t2")

if [[ ${SKIP_POSTFIX:-0} == 1 ]]; then
	report mxgate "$mx_acc" "$mx_e2e" "$mx_rss"
	exit 0
fi

# --- Postfix ----------------------------------------------------------------
((EUID == 0)) || die "the Postfix peer needs root (SKIP_POSTFIX=1 measures mxgate alone)"
pf=$scratch/postfix
pf_conf=$pf/conf
pf_port=$(free_port)
mkdir -p "$pf_conf" "$pf/queue" "$pf/data"
chown postfix "$pf/data"
# Same job as mxgate's config: relay example.test to the sink, queue on
# disk. No chroot (the scratch queue holds none of the files a chroot
# needs), no DNS (relayhost is an IP), logs into the scratch directory.
cat >"$pf_conf/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
myhostname = postfix.load.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.test
relayhost = [127.0.0.1]:$sink_port
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtpd_client_connection_count_limit = $((sessions + 10))
alias_maps =
alias_database =
local_recipient_maps =
smtp_tls_security_level = none
smtpd_tls_security_level = none
biff = no
EOF
cat >"$pf_conf/master.cf" <<EOF
127.0.0.1:$pf_port inet n - n - - smtpd
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
EOF
postfix -c "$pf_conf" start >/dev/null 2>&1 || die "postfix -c $pf_conf start failed; see $pf/maillog:
$(tail -n 20 "$pf/maillog" 2>/dev/null)"
pf_master=$(tr -d ' ' <"$pf/queue/pid/master.pid")
wait_greeting postfix "$pf_port" "$pf_master"

pf_queued() {
	find "$pf/queue/incoming" "$pf/queue/active" "$pf/queue/deferred" "$pf/queue/maildrop" -type f 2>/dev/null | wc -l
}
echo "$prog: postfix: smtp-source -s $sessions -m $messages -l $size"
t0=$(now)
load "$pf_port"
t1=$(now)
wait_empty postfix pf_queued
t2=$(now)
pf_rss=$(vmhwm_kib "$pf_master")
pf_pss=$(pss_kib "$pf_master")
pf_procs=1
for child in $(ps -o pid= --ppid "$pf_master"); do
	pf_rss=$((pf_rss + $(vmhwm_kib "$child")))
	pf_pss=$((pf_pss + $(pss_kib "$child")))
	pf_procs=$((pf_procs + 1))
done
postfix -c "$pf_conf" stop >/dev/null 2>&1 || die "postfix -c $pf_conf stop failed"
wait_gone "$pf_master" || die "postfix master (PID $pf_master) still running ${stop_timeout}s after stop"
pf_master=''
pf_sent=$(grep -c 'status=sent' "$pf/maillog" || true)
((pf_sent == messages)) || die "postfix logged $pf_sent sent, want $messages; see $pf/maillog"
read -r pf_acc pf_e2e < <(rates "$t0" "$t1" "$t2")

report mxgate "$mx_acc" "$mx_e2e" "$mx_rss"
report postfix "$pf_acc" "$pf_e2e" "$pf_rss"
awk -v a1="$mx_acc" -v a2="$pf_acc" -v e1="$mx_e2e" -v e2="$pf_e2e" -v r1="$mx_rss" -v r2="$pf_rss" 'BEGIN {
	printf "mxgate/postfix: accept %.2fx, end to end %.2fx, peak RSS %.2fx\n", a1 / a2, e1 / e2, r1 / r2 }'
awk -v n="$pf_procs" -v pss="$pf_pss" 'BEGIN {
	printf "(Postfix: peak RSS summed over its %d processes counts shared pages once per process; their PSS now sums to %.1f MiB)\n", n, pss / 1024 }'
