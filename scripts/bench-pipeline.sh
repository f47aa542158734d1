#!/usr/bin/env bash
# bench-pipeline.sh — the latency of one SMTP session through the gateway
# with RBL + callout + spamd + clamd on (test/bench, against in-process
# fakes on 127.0.0.1), for comparing two checkouts: issue 10 asks that the
# check pipeline add no measurable latency per message.
#
#   scripts/bench-pipeline.sh [run] [DIR]      run the benchmark in checkout DIR
#                                              (default: this repository); the
#                                              results go to stdout, benchstat-able
#   scripts/bench-pipeline.sh compare OLD NEW  compare two result files
#   scripts/bench-pipeline.sh ab OLDDIR NEWDIR run both checkouts in turn, one
#                                              -count at a time, so load on the
#                                              machine hits both alike; writes
#                                              $OUT/old.txt and $OUT/new.txt
#                                              and compares them
#
# run is exactly
#   go test -run '^$' -bench . -benchtime 300x -count 8 ./test/bench/
# in DIR, which must hold test/bench (only its wire_test.go differs between
# the code before and after the refactor).
#
# compare uses benchstat when it is installed (on PATH or in
# $(go env GOPATH)/bin):
#   go install golang.org/x/perf/cmd/benchstat@latest
# and without it prints each benchmark's mean ± standard deviation of
# ns/op and p50-ns/msg, and the change of the mean.
#
# Environment: BENCHTIME (300x), COUNT (8), BENCH (. : every benchmark),
# OUT (ab: a new temporary directory, printed). The spool and logs of the
# runs go under TMPDIR; TMPDIR=/dev/shm takes the disk's fsync latency
# (most of a session's time) and its noise out of the numbers.
# Exit status: 0 measured, 1 failed (the reason is on stderr).
set -euo pipefail

prog=${0##*/}
root=$(cd "$(dirname "$0")/.." && pwd)
readonly benchtime=${BENCHTIME:-300x} count=${COUNT:-8} bench=${BENCH:-.}

die() {
	echo "$prog: $*" >&2
	exit 1
}

usage() {
	echo "usage: $prog [run] [DIR] | compare OLD NEW | ab OLDDIR NEWDIR" >&2
	exit 1
}

# checkout DIR: DIR's absolute path, after checking it holds the benchmark.
checkout() {
	local dir
	dir=$(cd "$1" 2>/dev/null && pwd) || die "$1: no such directory"
	grep -qx 'module mxgate' "$dir/go.mod" 2>/dev/null || die "$dir is not an mxgate checkout (no go.mod of module mxgate)"
	[[ -f $dir/test/bench/session_test.go && -f $dir/test/bench/wire_test.go ]] ||
		die "$dir has no test/bench: merge branch bench into it (or copy test/bench, adapting wire_test.go)"
	echo "$dir"
}

run() {
	local dir
	dir=$(checkout "${1:-$root}")
	cd "$dir"
	echo "# $dir at $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >&2
	go test -run '^$' -bench "$bench" -benchtime "$benchtime" -count "$count" ./test/bench/ ||
		die "the benchmark failed in $dir"
}

benchstat_bin() {
	local gobin
	if command -v benchstat >/dev/null; then
		command -v benchstat
		return 0
	fi
	gobin=$(go env GOPATH 2>/dev/null)/bin/benchstat
	[[ -x $gobin ]] && echo "$gobin"
}

compare() {
	local old=$1 new=$2 bs
	[[ -r $old ]] || die "$old: cannot read"
	[[ -r $new ]] || die "$new: cannot read"
	if bs=$(benchstat_bin); then
		"$bs" "$old" "$new"
		return
	fi
	echo "$prog: benchstat not found (go install golang.org/x/perf/cmd/benchstat@latest); means only" >&2
	awk '
		FNR == 1 { f++ }
		/^Benchmark/ {
			for (i = 3; i < NF; i += 2) {
				if ($(i + 1) != "ns/op" && $(i + 1) != "p50-ns/msg") continue
				k = $1 " " $(i + 1)
				if (!(k in seen)) { seen[k] = 1; keys[++nk] = k }
				n[f, k]++; s[f, k] += $i; ss[f, k] += $i * $i
			}
		}
		function mean(f, k) { return s[f, k] / n[f, k] }
		function sd(f, k,   m, v) { m = mean(f, k); v = ss[f, k] / n[f, k] - m * m; return v > 0 ? sqrt(v) : 0 }
		END {
			printf "%-44s %22s %22s %8s\n", "benchmark unit", "old mean ± sd", "new mean ± sd", "change"
			for (j = 1; j <= nk; j++) {
				k = keys[j]
				if (!n[1, k] || !n[2, k]) continue
				printf "%-44s %11.0f ± %8.0f %11.0f ± %8.0f %+7.1f%%\n", k, mean(1, k), sd(1, k),
					mean(2, k), sd(2, k), 100 * (mean(2, k) / mean(1, k) - 1)
			}
		}' "$old" "$new"
}

# ab OLDDIR NEWDIR: builds both test binaries, then runs them in turn,
# -count 1 each, COUNT times.
ab() {
	local old new out i
	old=$(checkout "$1")
	new=$(checkout "$2")
	out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-pipeline.XXXXXX")}
	mkdir -p "$out"
	(cd "$old" && go test -c -o "$out/old.test" ./test/bench/) || die "building the benchmark in $old failed"
	(cd "$new" && go test -c -o "$out/new.test" ./test/bench/) || die "building the benchmark in $new failed"
	: >"$out/old.txt"
	: >"$out/new.txt"
	for ((i = 1; i <= count; i++)); do
		echo "$prog: round $i/$count" >&2
		# The test binary runs in its package directory, as go test runs it.
		(cd "$old/test/bench" && "$out/old.test" -test.run '^$' -test.bench "$bench" \
			-test.benchtime "$benchtime" -test.count 1) >>"$out/old.txt" || die "the benchmark failed in $old"
		(cd "$new/test/bench" && "$out/new.test" -test.run '^$' -test.bench "$bench" \
			-test.benchtime "$benchtime" -test.count 1) >>"$out/new.txt" || die "the benchmark failed in $new"
	done
	echo "$prog: results in $out/old.txt and $out/new.txt" >&2
	compare "$out/old.txt" "$out/new.txt"
}

case ${1:-run} in
run)
	(($# <= 2)) || usage
	run "${2:-}"
	;;
compare)
	(($# == 3)) || usage
	compare "$2" "$3"
	;;
ab)
	(($# == 3)) || usage
	ab "$2" "$3"
	;;
-h | --help) usage ;;
*)
	(($# == 1)) || usage
	run "$1"
	;;
esac
