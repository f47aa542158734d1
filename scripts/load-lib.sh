# load-lib.sh — helpers shared by load.sh and scanload.sh (sourced, not run).
# The caller sets prog, ready_timeout, stop_timeout and scratch.
# shellcheck shell=bash disable=SC2154  # prog, ready_timeout, stop_timeout, scratch come from the caller

die() {
	echo "$prog: $*" >&2
	exit 1
}

# alive PID: running and not a zombie (see peers.sh).
alive() {
	local state
	[[ -r /proc/$1/stat ]] || return 1
	state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

wait_gone() {
	local deadline=$((SECONDS + stop_timeout))
	while alive "$1"; do
		((SECONDS <= deadline)) || return 1
		sleep 0.05
	done
}

# free_port: a loopback port no socket uses, below the kernel's ephemeral
# range: a port that some outgoing connection holds as its source (many,
# under load) refuses connections like a free one but cannot be bound.
free_port() {
	local port low=32768
	read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	((low > 11000)) || low=32768
	for _ in {1..100}; do
		port=$((10000 + RANDOM % (low - 10000)))
		if [[ -z $(ss -Htan "( sport = :$port )" 2>/dev/null) ]] &&
			! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	die "no free port found on 127.0.0.1"
}

# wait_greeting NAME PORT PID: until 127.0.0.1:PORT answers 220.
wait_greeting() {
	local name=$1 port=$2 pid=$3 line deadline=$((SECONDS + ready_timeout))
	while ((SECONDS <= deadline)); do
		alive "$pid" || die "$name (PID $pid) exited during start-up; see $scratch"
		# The braces keep 2>/dev/null from sticking to the shell, as it
		# would on a bare exec.
		if { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null; then
			if IFS= read -r -t 1 line <&3 && [[ $line == 220* ]]; then
				printf 'QUIT\r\n' >&3 || true
				exec 3<&-
				return 0
			fi
			exec 3<&-
		fi
		sleep 0.05
	done
	die "$name did not greet on 127.0.0.1:$port within ${ready_timeout}s"
}

now() { date +%s.%N; }
