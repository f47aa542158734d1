#!/usr/bin/env bash
# load.sh — mxgate measured beside Postfix, on this machine, in one run: the
# numbers of issue 12's "Targets". Benchmarks, not tests: nothing here
# passes or fails on a number; it fails only when a message goes missing.
#
# 1. Throughput, end to end. mxgate and a scratch Postfix both relay
#    example.test to one smtp-sink that saves nothing and counts (-c);
#    Postfix's smtp-source sends the load. Per scenario SIZE x SESSIONS x
#    MESSAGES, ROUNDS interleaved rounds (mxgate, Postfix, mxgate, ...), each
#    timed by test/loadgen from smtp-source's start to its exit (accept) and
#    to the sink's counter having every message (end to end). Printed: the
#    median of each, in messages/s, and the mxgate/Postfix ratios.
# 2. Latency. Each gateway relays to test/loadgen's own sink; 1,000
#    messages go one at a time on an idle gateway, each on a new session,
#    the next once the sink has the last. Printed: p50 and p99 from the
#    connect to the sink's having it, and from the gateway's 250 to the
#    sink (the queue's share).
# 3. Memory (mxgate). The RSS one 50 MiB message adds while in flight
#    (accept to sink: VmHWM after resetting it), then the RSS with 10,000
#    sessions open at once, greeted and EHLO'd, from 127.0.0.1, .2, ...
#    (PER_IP sessions each, under max_connections_per_ip).
# 4. Milter. Postfix alone, Postfix with mxgate as its milter (mxgate
#    milter server, [spamd] scanning each message with a real spamd,
#    reject_score 100 so nothing is refused) and Postfix with Debian's
#    rspamd as its milter (its own checks, offline), in ROUNDS interleaved
#    rounds of MILTER_SCENARIO; each round on a fresh Postfix (peers.sh
#    postfix-mta) relaying to the counting sink. The spam scan is the check
#    they share; MILTER_SPAMD=0 runs mxgate with no content check (its
#    envelope checks only). Printed: the median msg/s of each and the
#    ratios to Postfix alone and mxgate/rspamd.
# With PPROF=1 an extra, unmeasured round of the first scenario runs first
# with MXGATE_PPROF set: a CPU and an allocation profile of PPROF_SECONDS
# are written to the scratch directory (kept) and `go tool pprof -top` of
# each is printed.
#
#   scripts/load.sh               # needs root (Postfix) and scripts/install-test-deps.sh
#   QUICK=1 scripts/load.sh       # a smoke run of every part in about a minute (numbers meaningless)
#   PARTS=latency scripts/load.sh # one or more of: throughput latency memory milter
#
# Environment:
#   PARTS ("throughput latency memory milter"), ROUNDS (3),
#   SCENARIOS ("4096x20x3000 4096x200x3000 102400x20x1000": SIZExSESSIONSxMESSAGES),
#   LATENCY_MESSAGES (1000), LATENCY_SIZE (4096), IDLE_SESSIONS (10000), PER_IP (500),
#   BIG_SIZE (52428800 bytes), PPROF=1, PPROF_SECONDS (20),
#   SKIP_POSTFIX=1 (mxgate only), KEEP=1 (keep the scratch directory),
#   MXGATE=/path/to/binary (default: go build ./cmd/mxgate),
#   MXGATE_TOML=FILE (appended to every mxgate config: e.g. a [queue] section;
#   the harness sets only [smtp] limits, [relay] and [downstream]),
#   DRAIN_TIMEOUT (300 s: the longest wait for the sink after a round's last 250),
#   MILTER_SCENARIO ("4096x20x1000"), MILTER_SPAMD (1).
# QUICK=1 changes the defaults to ROUNDS=1, SCENARIOS="4096x20x300
# 4096x200x400 102400x20x100", LATENCY_MESSAGES=50, IDLE_SESSIONS=1000,
# BIG_SIZE=5242880, PPROF_SECONDS=3, MILTER_SCENARIO="4096x20x100";
# explicit settings still win.
# The scratch directory is under TMPDIR (default /var/tmp): a disk, so
# both gateways pay for fsync as a real spool does.
# Exit status: 0 measured, 1 failed (the reason is on stderr).
set -euo pipefail

prog=${0##*/}
# Debian puts the daemons in /usr/sbin, which a non-root PATH may lack.
export PATH=$PATH:/usr/sbin:/sbin
root=$(cd "$(dirname "$0")/.." && pwd)

if [[ ${QUICK:-0} == 1 ]]; then
	: "${ROUNDS:=1}" "${SCENARIOS:=4096x20x300 4096x200x400 102400x20x100}" "${LATENCY_MESSAGES:=50}"
	: "${IDLE_SESSIONS:=1000}" "${BIG_SIZE:=5242880}" "${PPROF_SECONDS:=3}" "${MILTER_SCENARIO:=4096x20x100}"
fi
readonly parts=${PARTS:-throughput latency memory milter} rounds=${ROUNDS:-3}
readonly milter_scenario=${MILTER_SCENARIO:-4096x20x1000} milter_spamd=${MILTER_SPAMD:-1}
readonly scenarios=${SCENARIOS:-4096x20x3000 4096x200x3000 102400x20x1000}
readonly latency_messages=${LATENCY_MESSAGES:-1000} latency_size=${LATENCY_SIZE:-4096}
readonly idle_sessions=${IDLE_SESSIONS:-10000} per_ip=${PER_IP:-500} big_size=${BIG_SIZE:-52428800}
readonly pprof=${PPROF:-0} pprof_seconds=${PPROF_SECONDS:-20}
readonly drain_timeout=${DRAIN_TIMEOUT:-300}
# Bounds of the waits: start-up, a stop, the gateway's own log catching up
# with the sink.
readonly ready_timeout=15 stop_timeout=30 log_timeout=30

# shellcheck source=scripts/load-lib.sh
. "$(dirname "$0")/load-lib.sh"

has_part() { [[ " $parts " == *" $1 "* ]]; }
for part in $parts; do
	case $part in throughput | latency | memory | milter) ;; *) die "PARTS: unknown part $part (throughput, latency, memory, milter)" ;; esac
done

postfix_too() { [[ ${SKIP_POSTFIX:-0} != 1 ]]; }

# wait_count NAME WANT COMMAND...: until COMMAND prints WANT.
wait_count() {
	local name=$1 want=$2 deadline=$((SECONDS + log_timeout)) got
	shift 2
	while :; do
		got=$("$@")
		((got == want)) && return 0
		((SECONDS <= deadline)) || die "$name: $got, want $want, ${log_timeout}s after the sink had every message; see $scratch"
		sleep 0.05
	done
}

# --- mxgate -------------------------------------------------------------------
mx_pid='' mx_port='' mx_dir='' mx_received=0

# start_mxgate NAME SINK-PORT MAX-CONNECTIONS MAX-PER-IP [MAX-MESSAGE-SIZE] [PPROF-ADDR] [TOML-FILE]:
# a fresh mxgate in $scratch/NAME relaying example.test to the sink, with
# the sections of TOML-FILE ([milter_server], [spamd]) appended.
start_mxgate() {
	local name=$1 sink=$2 maxconn=$3 perip=$4 maxsize=${5:-52428800} pprof_addr=${6:-} toml=${7:-}
	mx_dir=$scratch/$name
	mx_port=$(free_port)
	mx_received=0
	mkdir -p "$mx_dir/data"
	cat >"$mx_dir/mxgate.toml" <<EOF
hostname = "mx.load.test"
listen   = ["127.0.0.1:$mx_port"]
data_dir = "$mx_dir/data"
# A scratch daemon, started by whoever runs the load (root on the test
# machines): no user to switch to.
run_as_root = true

[smtp]
max_connections        = $maxconn
max_connections_per_ip = $perip
max_message_size       = $maxsize

[relay]
domains = ["example.test"]

[downstream]
url      = "smtp://127.0.0.1:$sink"
starttls = "none"
EOF
	if [[ -n $toml ]]; then
		cat "$toml" >>"$mx_dir/mxgate.toml"
	fi
	if [[ -n ${MXGATE_TOML:-} ]]; then
		cat "$MXGATE_TOML" >>"$mx_dir/mxgate.toml" || die "MXGATE_TOML=$MXGATE_TOML: cannot read"
	fi
	MXGATE_PPROF=$pprof_addr "$bin" serve -config "$mx_dir/mxgate.toml" </dev/null >"$mx_dir/mxgate.out" 2>&1 &
	mx_pid=$!
	wait_greeting mxgate "$mx_port" "$mx_pid"
}

stop_mxgate() {
	kill -TERM "$mx_pid"
	wait "$mx_pid" || die "mxgate exited with status $? after SIGTERM; see $mx_dir/mxgate.out"
	mx_pid=''
}

mx_logged() { grep -c "$1" "$mx_dir/data/log/mainlog" || true; }
mx_spooled() { find "$mx_dir/data/spool/input" -name '*-H' 2>/dev/null | wc -l; }

# --- Postfix ------------------------------------------------------------------
pf_master='' pf_port='' pf_dir='' pf_sent=0

# start_postfix NAME SINK-PORT SESSIONS [MAIN_CF_EXTRA_FILE]: a scratch
# Postfix in $scratch/NAME doing mxgate's job (peers.sh postfix-mta: relay
# example.test to the sink, queue on disk), with enough smtpd processes and
# per-client connections for SESSIONS at once (twice SESSIONS per client,
# as for mxgate); extra main.cf lines (a milter) from the file.
start_postfix() {
	local name=$1 sink=$2 sessions=$3 extra=${4:-}
	pf_dir=$scratch/$name
	pf_port=$(free_port)
	pf_sent=0
	POSTFIX_SESSIONS=$sessions "$root/scripts/peers.sh" start postfix-mta "$pf_dir" "$pf_port" "$sink" ${extra:+"$extra"} >/dev/null ||
		die "peers.sh start postfix-mta $pf_dir failed"
	pf_master=$(<"$pf_dir/postfix-mta.pid")
}

stop_postfix() {
	"$root/scripts/peers.sh" stop postfix-mta "$pf_dir" >/dev/null || die "peers.sh stop postfix-mta $pf_dir failed"
	pf_master=''
}

pf_logged() { grep -c 'status=sent' "$pf_dir/maillog" || true; }
pf_queued() {
	find "$pf_dir/queue/incoming" "$pf_dir/queue/active" "$pf_dir/queue/deferred" "$pf_dir/queue/maildrop" -type f 2>/dev/null | wc -l
}

sink_pid=''
cleanup() {
	local rc=$?
	set +e
	if [[ -n $mx_pid ]] && alive "$mx_pid"; then
		kill -TERM "$mx_pid"
		wait_gone "$mx_pid" || kill -KILL "$mx_pid"
	fi
	if [[ -n $pf_master ]]; then
		"$root/scripts/peers.sh" stop postfix-mta "$pf_dir" >/dev/null 2>&1
	fi
	[[ -n $sink_pid ]] && "$root/scripts/peers.sh" stop smtp-sink "$scratch/sink" >/dev/null 2>&1
	[[ -d $scratch/rspamd ]] && "$root/scripts/peers.sh" stop rspamd "$scratch/rspamd" >/dev/null 2>&1
	[[ -d $scratch/spamd ]] && "$root/scripts/peers.sh" stop spamd "$scratch/spamd" >/dev/null 2>&1
	if [[ ${KEEP:-0} == 1 || $pprof == 1 || $rc != 0 ]]; then
		echo "$prog: scratch directory kept: $scratch" >&2
	else
		rm -rf "$scratch"
	fi
	exit "$rc"
}

for p in smtp-source smtp-sink; do
	command -v "$p" >/dev/null || die "$p not found (package postfix): run scripts/install-test-deps.sh"
done
if postfix_too; then
	((EUID == 0)) || die "the Postfix peer needs root (SKIP_POSTFIX=1 measures mxgate alone)"
fi
scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/mxgate-load.XXXXXX")
trap cleanup EXIT
# Postfix's daemons run as user postfix and must reach the queue.
chmod 0755 "$scratch"
if [[ $(stat -f -c %T "$scratch") == tmpfs ]]; then
	echo "$prog: warning: $scratch is on tmpfs: fsync costs nothing there" >&2
fi

bin=${MXGATE:-}
if [[ -z $bin ]]; then
	bin=$scratch/bin/mxgate
	(cd "$root" && go build -o "$bin" ./cmd/mxgate) || die "go build ./cmd/mxgate failed"
fi
loadgen=$scratch/bin/loadgen
(cd "$root" && go build -o "$loadgen" ./test/loadgen) || die "go build ./test/loadgen failed"

# median: the median of the numbers on stdin, one a line.
median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# field KEY LINE: the value of KEY=... in loadgen's LINE.
field() {
	local kv
	for kv in $2; do
		if [[ $kv == "$1="* ]]; then
			echo "${kv#*=}"
			return 0
		fi
	done
	die "no $1 in loadgen's output: $2"
}

echo "$prog: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), scratch $scratch, commit $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')"

# --- 1. throughput --------------------------------------------------------------
results=$scratch/throughput.txt
: >"$results"

# round GATEWAY SIZE SESSIONS MESSAGES: one smtp-source run against
# GATEWAY (mxgate or postfix), timed to the sink, loadgen's result in
# round_line; the gateway's log must then show every message received and
# delivered, and its queue be empty.
round_line=''
round() {
	local gw=$1 size=$2 sessions=$3 messages=$4 port
	if [[ $gw == mxgate ]]; then port=$mx_port; else port=$pf_port; fi
	# Every round starts on a clean disk: the page cache the round before
	# left dirty (its spool or queue files) is written out now, not during
	# this round's fsyncs, whichever gateway it belonged to.
	sync
	round_line=$("$loadgen" throughput -counter "$scratch/sink/smtp-sink.log" -n "$messages" -timeout "${drain_timeout}s" -- \
		smtp-source -s "$sessions" -m "$messages" -l "$size" -f sender@load.test -t user@example.test "127.0.0.1:$port") ||
		die "$gw: the round ${size}x${sessions}x$messages failed; see $scratch"
	if [[ $gw == mxgate ]]; then
		mx_received=$((mx_received + messages))
		wait_count "mxgate: messages received (<= lines)" "$mx_received" mx_logged ' <= '
		wait_count "mxgate: messages completed" "$mx_received" mx_logged ' Completed$'
		wait_count "mxgate: messages in the spool" 0 mx_spooled
	else
		pf_sent=$((pf_sent + messages))
		wait_count "postfix: status=sent lines" "$pf_sent" pf_logged
		wait_count "postfix: messages in the queue" 0 pf_queued
	fi
}

# profile_round SIZE SESSIONS MESSAGES: a round of mxgate with CPU and
# allocation profiles taken while it runs; not counted.
profile_round() {
	local out=$scratch/pprof cpu_pid alloc_pid
	mkdir -p "$out"
	echo "$prog: profiling mxgate for ${pprof_seconds}s during an extra round $1x$2x$3 (not counted)"
	curl -sf -o "$out/cpu.pprof" "http://$pprof_addr/debug/pprof/profile?seconds=$pprof_seconds" &
	cpu_pid=$!
	curl -sf -o "$out/allocs.pprof" "http://$pprof_addr/debug/pprof/allocs?seconds=$pprof_seconds" &
	alloc_pid=$!
	round mxgate "$@"
	wait "$cpu_pid" || die "fetching the CPU profile from $pprof_addr failed"
	wait "$alloc_pid" || die "fetching the allocation profile from $pprof_addr failed"
	go tool pprof -top -nodecount=30 "$bin" "$out/cpu.pprof" >"$out/cpu.top" 2>&1 || die "go tool pprof failed on $out/cpu.pprof"
	go tool pprof -top -nodecount=30 -sample_index=alloc_space "$bin" "$out/allocs.pprof" >"$out/allocs.top" 2>&1 ||
		die "go tool pprof failed on $out/allocs.pprof"
	# By cumulative share too, saved: the flat list blames the syscalls,
	# this one names who made them.
	go tool pprof -top -cum -nodecount=60 "$bin" "$out/cpu.pprof" >"$out/cpu.cum.top" 2>&1 || true
	go tool pprof -top -cum -nodecount=60 -sample_index=alloc_space "$bin" "$out/allocs.pprof" >"$out/allocs.cum.top" 2>&1 || true
	echo "--- CPU profile ($out/cpu.pprof; by cumulative share: $out/cpu.cum.top) ---"
	cat "$out/cpu.top"
	echo "--- allocation profile, alloc_space ($out/allocs.pprof; by cumulative share: $out/allocs.cum.top) ---"
	cat "$out/allocs.top"
	echo "--- end of profiles ---"
}

if has_part throughput; then
	max_sessions=0
	for s in $scenarios; do
		IFS=x read -r size sessions messages <<<"$s"
		[[ $size =~ ^[0-9]+$ && $sessions =~ ^[0-9]+$ && $messages =~ ^[0-9]+$ ]] ||
			die "SCENARIOS: $s is not SIZExSESSIONSxMESSAGES"
		((sessions > max_sessions)) && max_sessions=$sessions
	done
	mkdir -p "$scratch/sink"
	sink_port=$(free_port)
	"$root/scripts/peers.sh" start smtp-sink "$scratch/sink" "$sink_port" --no-dump -c >/dev/null
	sink_pid=$(<"$scratch/sink/smtp-sink.pid")
	pprof_addr=''
	if [[ $pprof == 1 ]]; then
		pprof_addr=127.0.0.1:$(free_port)
	fi
	# Twice the sessions per client: smtp-source reconnects at once, and a
	# gateway counts a closed session until its handler has returned.
	start_mxgate mxgate "$sink_port" $((2 * max_sessions + 100)) $((2 * max_sessions + 10)) 52428800 "$pprof_addr"
	if postfix_too; then
		start_postfix postfix "$sink_port" "$max_sessions"
	fi
	if [[ $pprof == 1 ]]; then
		IFS=x read -r size sessions messages <<<"${scenarios%% *}"
		profile_round "$size" "$sessions" "$messages"
	fi
	for s in $scenarios; do
		IFS=x read -r size sessions messages <<<"$s"
		for ((r = 1; r <= rounds; r++)); do
			for gw in mxgate postfix; do
				[[ $gw == postfix ]] && ! postfix_too && continue
				round "$gw" "$size" "$sessions" "$messages"
				accept=$(field accept_s "$round_line")
				e2e=$(field e2e_s "$round_line")
				echo "$s $gw $accept $e2e" >>"$results"
				awk -v s="$s" -v r="$r" -v gw="$gw" -v n="$messages" -v a="$accept" -v e="$e2e" 'BEGIN {
					printf "round %d %-16s %-7s accept %7.2f s (%7.1f msg/s)  end to end %7.2f s (%7.1f msg/s)\n", r, s, gw, a, n / a, e, n / e }'
			done
		done
	done
	stop_mxgate
	if postfix_too; then
		stop_postfix
	fi
	"$root/scripts/peers.sh" stop smtp-sink "$scratch/sink" >/dev/null
	sink_pid=''
fi

# --- 2. latency and 3. memory ---------------------------------------------------
probe_sink=127.0.0.1:$(free_port)
mx_latency='' pf_latency='' mx_big='' mx_idle=''
if has_part latency || has_part memory; then
	# loadgen holds every idle session, mxgate too and its spool besides:
	# both need that many descriptors (Go raises its soft limit to the
	# hard one by itself; root may raise the hard one).
	if has_part memory && (($(ulimit -Hn) < idle_sessions + 1000)); then
		ulimit -n $((idle_sessions + 1000)) 2>/dev/null ||
			die "IDLE_SESSIONS=$idle_sessions needs $((idle_sessions + 1000)) open files, the hard limit is $(ulimit -Hn)"
	fi
	probe=(-sink "$probe_sink")
	has_part latency && probe+=(-latency "$latency_messages" -size "$latency_size")
	has_part memory && probe+=(-big "$big_size" -idle "$idle_sessions" -per-ip "$per_ip")
	start_mxgate mxgate-probe "${probe_sink#*:}" $((idle_sessions + 100)) $((per_ip + 10)) $((big_size + 16 * 1048576))
	echo "$prog: mxgate: probe ${probe[*]}"
	out=$("$loadgen" probe -to "127.0.0.1:$mx_port" -pid "$mx_pid" "${probe[@]}") ||
		die "mxgate: loadgen probe failed; see $scratch"
	stop_mxgate
	mx_latency=$(grep '^latency ' <<<"$out" || true)
	mx_big=$(grep '^bigmsg ' <<<"$out" || true)
	mx_idle=$(grep '^idle ' <<<"$out" || true)
	if has_part latency && postfix_too; then
		start_postfix postfix-probe "${probe_sink#*:}" 20
		echo "$prog: postfix: probe -latency $latency_messages"
		out=$("$loadgen" probe -to "127.0.0.1:$pf_port" -sink "$probe_sink" -latency "$latency_messages" -size "$latency_size") ||
			die "postfix: loadgen probe failed; see $scratch"
		stop_postfix
		pf_latency=$(grep '^latency ' <<<"$out" || true)
	fi
fi

# --- 4. milter ---------------------------------------------------------------------
milter_results=$scratch/milter.txt
milter_variants="postfix mxgate rspamd"
if has_part milter; then
	: >"$milter_results"
	IFS=x read -r size sessions messages <<<"$milter_scenario"
	[[ $size =~ ^[0-9]+$ && $sessions =~ ^[0-9]+$ && $messages =~ ^[0-9]+$ ]] ||
		die "MILTER_SCENARIO: $milter_scenario is not SIZExSESSIONSxMESSAGES"
	((EUID == 0)) || die "the milter part runs Postfix and needs root"
	mkdir -p "$scratch/sink"
	sink_port=$(free_port)
	"$root/scripts/peers.sh" start smtp-sink "$scratch/sink" "$sink_port" --no-dump -c >/dev/null
	sink_pid=$(<"$scratch/sink/smtp-sink.pid")
	# rspamd takes its port and the two after it.
	rspamd_port=$(free_port)
	"$root/scripts/peers.sh" start rspamd "$scratch/rspamd" "$rspamd_port" >/dev/null
	milter_port=$(free_port)
	{
		printf '[milter_server]\nlisten = "inet:127.0.0.1:%s"\n' "$milter_port"
		if [[ $milter_spamd == 1 ]]; then
			spamd_port=$(free_port)
			"$root/scripts/peers.sh" start spamd "$scratch/spamd" "$spamd_port" >/dev/null
			printf '[spamd]\naddress = ["127.0.0.1:%s"]\nreject_score = 100.0\ntimeout = "60s"\n' "$spamd_port"
		fi
	} >"$scratch/mxgate-milter.toml"
	start_mxgate mxgate-milter "$sink_port" $((2 * sessions + 100)) $((2 * sessions + 10)) 52428800 "" "$scratch/mxgate-milter.toml"
	for v in mxgate rspamd; do
		if [[ $v == mxgate ]]; then port=$milter_port; else port=$rspamd_port; fi
		printf '%s\n' "smtpd_milters = inet:127.0.0.1:$port" "milter_protocol = 6" "milter_default_action = tempfail" \
			"milter_content_timeout = 120s" >"$scratch/main.cf.$v"
	done
	: >"$scratch/main.cf.postfix"
	echo "$prog: milter: $milter_scenario through Postfix alone, with mxgate (milter_server$([[ $milter_spamd == 1 ]] && echo ", spamd")) and with rspamd as its milter"
	for ((r = 1; r <= rounds; r++)); do
		for v in $milter_variants; do
			start_postfix "milter-$v-$r" "$sink_port" "$sessions" "$scratch/main.cf.$v"
			round postfix "$size" "$sessions" "$messages"
			stop_postfix
			accept=$(field accept_s "$round_line")
			e2e=$(field e2e_s "$round_line")
			echo "$v $accept $e2e" >>"$milter_results"
			awk -v r="$r" -v v="$v" -v n="$messages" -v a="$accept" -v e="$e2e" 'BEGIN {
				printf "round %d postfix+%-7s accept %7.2f s (%7.1f msg/s)  end to end %7.2f s (%7.1f msg/s)\n", r, v, a, n / a, e, n / e }'
		done
	done
	stop_mxgate
	"$root/scripts/peers.sh" stop rspamd "$scratch/rspamd" >/dev/null
	[[ $milter_spamd == 1 ]] && "$root/scripts/peers.sh" stop spamd "$scratch/spamd" >/dev/null
	"$root/scripts/peers.sh" stop smtp-sink "$scratch/sink" >/dev/null
	sink_pid=''
fi

# --- the report -------------------------------------------------------------------
echo
echo "$prog: done, load average $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews every number)"
if has_part throughput; then
	echo
	echo "Throughput: median of $rounds interleaved rounds; end to end = smtp-source's start to the sink's last message; accept = to smtp-source's exit"
	printf '%-18s %13s %13s %7s   %13s %13s %7s\n' "SIZExSESSxMSGS" "mxgate e2e/s" "postfix e2e/s" "mx/pf" "mxgate acc/s" "postfix acc/s" "mx/pf"
	for s in $scenarios; do
		messages=${s##*x}
		mx_e=$(awk -v s="$s" '$1 == s && $2 == "mxgate" { print $4 }' "$results" | median)
		mx_a=$(awk -v s="$s" '$1 == s && $2 == "mxgate" { print $3 }' "$results" | median)
		pf_e='' pf_a=''
		if postfix_too; then
			pf_e=$(awk -v s="$s" '$1 == s && $2 == "postfix" { print $4 }' "$results" | median)
			pf_a=$(awk -v s="$s" '$1 == s && $2 == "postfix" { print $3 }' "$results" | median)
		fi
		awk -v s="$s" -v n="$messages" -v me="$mx_e" -v ma="$mx_a" -v pe="$pf_e" -v pa="$pf_a" 'BEGIN {
			if (pe == "") printf "%-18s %13.1f %13s %7s   %13.1f %13s %7s\n", s, n / me, "-", "-", n / ma, "-", "-"
			else printf "%-18s %13.1f %13.1f %6.2fx   %13.1f %13.1f %6.2fx\n", s, n / me, n / pe, pe / me, n / ma, n / pa, pa / ma }'
	done
fi
if [[ -n $mx_latency ]]; then
	echo
	echo "Latency: $latency_messages messages of $latency_size bytes one at a time, each on a new session; connect to sink, and the gateway's 250 to sink"
	printf '%-8s %9s %9s %9s %14s %14s\n' "" "p50 ms" "p99 ms" "max ms" "250->sink p50" "250->sink p99"
	for gw in mxgate postfix; do
		if [[ $gw == mxgate ]]; then line=$mx_latency; else line=$pf_latency; fi
		[[ -n $line ]] || continue
		printf '%-8s %9s %9s %9s %14s %14s\n' "$gw" "$(field p50_ms "$line")" "$(field p99_ms "$line")" "$(field max_ms "$line")" \
			"$(field queue_p50_ms "$line")" "$(field queue_p99_ms "$line")"
	done
	if [[ -n $pf_latency ]]; then
		awk -v m50="$(field p50_ms "$mx_latency")" -v m99="$(field p99_ms "$mx_latency")" \
			-v p50="$(field p50_ms "$pf_latency")" -v p99="$(field p99_ms "$pf_latency")" 'BEGIN {
			printf "mxgate/postfix: p50 %.2fx, p99 %.2fx (lower is better)\n", m50 / p50, m99 / p99 }'
	fi
fi
if [[ -n $mx_big || -n $mx_idle ]]; then
	echo
	echo "Memory (mxgate):"
fi
if [[ -n $mx_big ]]; then
	awk -v b="$(field bytes "$mx_big")" -v before="$(field rss_before_kib "$mx_big")" -v peak="$(field rss_peak_kib "$mx_big")" \
		-v added="$(field added_kib "$mx_big")" -v t="$(field seconds "$mx_big")" -v how="$(field peak_from "$mx_big")" 'BEGIN {
		printf "  one %.1f MiB message in flight: RSS %.1f -> %.1f MiB, added %.1f MiB (target < 10), accept to sink %.1f s (peak: %s)\n",
			b / 1048576, before / 1024, peak / 1024, added / 1024, t, how }'
fi
if [[ -n $mx_idle ]]; then
	awk -v n="$(field sessions "$mx_idle")" -v before="$(field rss_before_kib "$mx_idle")" -v rss="$(field rss_kib "$mx_idle")" \
		-v per="$(field per_session_kib "$mx_idle")" -v t="$(field open_s "$mx_idle")" 'BEGIN {
		printf "  %d idle sessions: RSS %.1f MiB (target < 200), %.1f MiB before, %.1f KiB a session, opened in %.1f s\n",
			n, rss / 1024, before / 1024, per, t }'
fi
if has_part milter; then
	echo
	echo "Milter: $milter_scenario, median of $rounds interleaved rounds, each on a fresh Postfix; end to end = smtp-source's start to the sink's last message"
	checks="its envelope checks only (MILTER_SPAMD=0)"
	[[ $milter_spamd == 1 ]] && checks="spamd scanning every message"
	echo "(postfix+mxgate: mxgate's milter server, $checks; postfix+rspamd: rspamd's own checks, offline)"
	IFS=x read -r _ _ messages <<<"$milter_scenario"
	pf_e=$(awk '$1 == "postfix" { print $3 }' "$milter_results" | median)
	mx_e=$(awk '$1 == "mxgate" { print $3 }' "$milter_results" | median)
	printf '%-16s %13s %13s %10s\n' "" "e2e msg/s" "accept msg/s" "vs alone"
	for v in $milter_variants; do
		e=$(awk -v v="$v" '$1 == v { print $3 }' "$milter_results" | median)
		a=$(awk -v v="$v" '$1 == v { print $2 }' "$milter_results" | median)
		awk -v v="postfix+$v" -v n="$messages" -v e="$e" -v a="$a" -v p="$pf_e" 'BEGIN {
			if (v == "postfix+postfix") v = "postfix alone"
			printf "%-16s %13.1f %13.1f %9.2fx\n", v, n / e, n / a, p / e }'
	done
	rs_e=$(awk '$1 == "rspamd" { print $3 }' "$milter_results" | median)
	awk -v m="$mx_e" -v r="$rs_e" 'BEGIN { printf "postfix+mxgate / postfix+rspamd (end to end): %.2fx\n", r / m }'
fi
