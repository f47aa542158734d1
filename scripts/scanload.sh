#!/usr/bin/env bash
# scanload.sh — is mxgate the bottleneck when it scans with spamd and clamd?
#
# One spamd and one clamd (scripts/peers.sh) serve two runs over the same
# messages (testdata/messages/exim-basics-ham.eml and pharmacy-spam.eml,
# half each):
#   1. the scanners alone: SESSIONS parallel spamc loops and SESSIONS
#      parallel clamdscan --stream runs, both at once, every message
#      through both, as mxgate asks them;
#   2. through mxgate: smtp-source sends the messages to mxgate (spamd and
#      clamd on, relaying to an smtp-sink that saves nothing) with SESSIONS
#      sessions; timed until the last 250.
# Printed: messages/s of each run, and mxgate's rate as a share of the
# scanners' own. Near 1.0 the scanners are the limit, not the gateway.
#
#   scripts/scanload.sh        # needs scripts/install-test-deps.sh
#
# Environment: SESSIONS (8), MESSAGES (400), KEEP=1 (keep the scratch
# directory), MXGATE=/path/to/binary (default: go build ./cmd/mxgate).
# Exit status: 0 measured, 1 failed (the reason is on stderr).
set -euo pipefail

prog=${0##*/}
export PATH=$PATH:/usr/sbin:/sbin
root=$(cd "$(dirname "$0")/.." && pwd)
readonly sessions=${SESSIONS:-8} messages=${MESSAGES:-400}
readonly ready_timeout=15 stop_timeout=30
readonly ham=$root/testdata/messages/exim-basics-ham.eml spam=$root/testdata/messages/pharmacy-spam.eml

# shellcheck source=scripts/load-lib.sh
. "$(dirname "$0")/load-lib.sh"

mx_pid=''
cleanup() {
	local rc=$?
	set +e
	if [[ -n $mx_pid ]] && alive "$mx_pid"; then
		kill -TERM "$mx_pid"
		wait_gone "$mx_pid" || kill -KILL "$mx_pid"
	fi
	for peer in smtp-sink spamd clamd; do
		"$root/scripts/peers.sh" stop "$peer" "$scratch/$peer" >/dev/null 2>&1
	done
	if [[ ${KEEP:-0} == 1 || $rc != 0 ]]; then
		echo "$prog: scratch directory kept: $scratch" >&2
	else
		rm -rf "$scratch"
	fi
	exit "$rc"
}

for p in smtp-source spamc clamdscan; do
	command -v "$p" >/dev/null || die "$p not found: run scripts/install-test-deps.sh"
done
[[ -r $ham && -r $spam ]] || die "$ham and $spam are needed"
((messages >= 2 * sessions)) || die "MESSAGES must be at least 2 x SESSIONS"
scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/mxgate-scanload.XXXXXX")
trap cleanup EXIT
chmod 0755 "$scratch"
mkdir -p "$scratch/smtp-sink" "$scratch/spamd" "$scratch/clamd"

bin=${MXGATE:-}
if [[ -z $bin ]]; then
	bin=$scratch/mxgate
	(cd "$root" && go build -o "$bin" ./cmd/mxgate) || die "go build ./cmd/mxgate failed"
fi

spamd_port=$(free_port)
"$root/scripts/peers.sh" start spamd "$scratch/spamd" "$spamd_port" >/dev/null
clamd_port=$(free_port)
"$root/scripts/peers.sh" start clamd "$scratch/clamd" "$clamd_port" >/dev/null
sink_port=$(free_port)
"$root/scripts/peers.sh" start smtp-sink "$scratch/smtp-sink" "$sink_port" --no-dump >/dev/null

# rate SECONDS: messages per second.
rate() { awk -v n="$messages" -v t="$1" 'BEGIN { printf "%.1f\n", n / t }'; }

# --- the scanners alone -------------------------------------------------------
# Worker i scans messages i, i+SESSIONS, ...: ham for even numbers, spam
# for odd ones, the same mix as the mxgate run.
cat >"$scratch/clamdscan.conf" <<EOF
TCPSocket $clamd_port
TCPAddr 127.0.0.1
EOF
mkdir -p "$scratch/files"
for ((i = 0; i < messages; i++)); do
	if ((i % 2 == 0)); then src=$ham; else src=$spam; fi
	ln -s "$src" "$scratch/files/$i.eml"
done
spamc_worker() {
	local i
	for ((i = $1; i < messages; i += sessions)); do
		spamc -d 127.0.0.1 -p "$spamd_port" -c <"$scratch/files/$i.eml" >/dev/null || (($? == 1)) ||
			{ echo "spamc failed on message $i" >&2; return 1; }
	done
}
clamd_worker() {
	local i files=()
	for ((i = $1; i < messages; i += sessions)); do
		files+=("$scratch/files/$i.eml")
	done
	clamdscan --config-file="$scratch/clamdscan.conf" --stream --no-summary --quiet "${files[@]}" ||
		{ echo "clamdscan failed (worker $1)" >&2; return 1; }
}
echo "$prog: scanners alone: $sessions spamc loops and $sessions clamdscan --stream runs, $messages messages"
pids=()
t0=$(now)
for ((w = 0; w < sessions; w++)); do
	spamc_worker "$w" &
	pids+=($!)
	clamd_worker "$w" &
	pids+=($!)
done
for p in "${pids[@]}"; do
	wait "$p" || die "a scanner run failed"
done
t1=$(now)
alone=$(rate "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")

# --- through mxgate -----------------------------------------------------------
mx_port=$(free_port)
mkdir -p "$scratch/mxgate-data"
cat >"$scratch/mxgate.toml" <<EOF
hostname = "mx.load.test"
listen   = ["127.0.0.1:$mx_port"]
data_dir = "$scratch/mxgate-data"
# A scratch daemon, started by whoever runs the load (root on the test
# machines): no user to switch to.
run_as_root = true

[smtp]
max_connections_per_ip = $((sessions + 10))

[relay]
domains = ["example.test"]

[spamd]
address = ["127.0.0.1:$spamd_port"]

[clamd]
address = ["127.0.0.1:$clamd_port"]

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

# smtp-source appends CRLF to every line it reads: it needs LF files.
tr -d '\r' <"$ham" >"$scratch/ham.lf"
tr -d '\r' <"$spam" >"$scratch/spam.lf"
echo "$prog: through mxgate: smtp-source -s $sessions, $messages messages"
half=$((messages / 2))
t0=$(now)
smtp-source -s $((sessions / 2 > 0 ? sessions / 2 : 1)) -m "$half" -F "$scratch/ham.lf" \
	-f sender@load.test -t user@example.test "127.0.0.1:$mx_port" &
ham_pid=$!
smtp-source -s $((sessions - sessions / 2)) -m $((messages - half)) -F "$scratch/spam.lf" \
	-f sender@load.test -t user@example.test "127.0.0.1:$mx_port" ||
	die "smtp-source (spam) failed"
wait "$ham_pid" || die "smtp-source (ham) failed"
t1=$(now)
through=$(rate "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
kill -TERM "$mx_pid"
wait "$mx_pid" || die "mxgate exited with status $? after SIGTERM; see $scratch/mxgate.out"
mx_pid=''
received=$(grep -c ' <= ' "$scratch/mxgate-data/log/mainlog" || true)
((received == messages)) ||
	die "mxgate accepted $received of $messages messages; see $scratch/mxgate-data/log"

printf 'scanners alone  %8.1f msg/s\n' "$alone"
printf 'through mxgate  %8.1f msg/s\n' "$through"
awk -v a="$alone" -v m="$through" 'BEGIN { printf "mxgate/scanners: %.2f\n", m / a }'
