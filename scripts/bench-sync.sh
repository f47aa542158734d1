#!/usr/bin/env bash
# bench-sync.sh — the spool's two sync policies (spool.sync = "fdatasync" |
# "syncfs") on a real disk, idle and beside another writer that dirties
# pages on the same filesystem without syncing them (the case syncfs pays
# for: a database or home directories on the spool's /var). It runs
# spool's BenchmarkCommit (4 KiB messages, 1, 20 and 200 concurrent
# committers; commits/s and the p50/p99/max latency of a commit) in interleaved
# rounds, the policies' order alternating, and prints for each case the
# median and the range over the rounds.
#
#   scripts/bench-sync.sh [ROUNDS]      default 3
#
# Environment: DIR, the spool's filesystem (default /var/tmp; refused if
# it is a tmpfs, where every sync is free); BENCHTIME (2s) per benchmark;
# WRITER, the other writer's rate in MiB/s (default 100); RAW, a file that
# keeps the benchmark lines (default: a temporary file, removed).
# Exit status: 0 measured, 1 failed (the reason is on stderr).
set -euo pipefail

prog=${0##*/}
root=$(cd "$(dirname "$0")/.." && pwd)
readonly rounds=${1:-3} dir=${DIR:-/var/tmp} benchtime=${BENCHTIME:-2s} writer=${WRITER:-100}

die() {
	echo "$prog: $*" >&2
	exit 1
}

[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive number, got '$rounds'"
[[ $writer =~ ^[1-9][0-9]*$ ]] || die "WRITER must be a positive number of MiB/s, got '$writer'"
fstype=$(stat -f -c %T "$dir") || die "cannot stat $dir"
case $fstype in
tmpfs | ramfs) die "$dir is a $fstype: syncs cost nothing there; set DIR to a directory on a disk" ;;
esac

work=$(mktemp -d "$dir/bench-sync.XXXXXX")
trap 'rm -rf "$work"' EXIT
raw=${RAW:-$work/raw.txt}
: >"$raw"
(cd "$root" && go test -c -o "$work/spool.test" ./spool) || die "building spool's test binary failed"

echo "# $fstype at $dir ($(df --output=source "$dir" | tail -1)); $rounds rounds, -benchtime $benchtime, other writer $writer MiB/s"
for ((r = 1; r <= rounds; r++)); do
	policies=(fdatasync syncfs)
	((r % 2)) || policies=(syncfs fdatasync)
	for mode in idle writer; do
		flags=()
		[[ $mode == writer ]] && flags=(-spool.otherwriter="$writer")
		for p in "${policies[@]}"; do
			(cd "$work" && TMPDIR=$work ./spool.test -test.run '^$' -test.bench "^BenchmarkCommit\$/^$p\$/" \
				-test.benchtime "$benchtime" "${flags[@]}") |
				awk -v mode="$mode" '/^BenchmarkCommit\// { print mode, $0 }' >>"$raw" ||
				die "round $r, $mode, $p: the benchmark failed"
		done
	done
	echo "# round $r of $rounds done" >&2
done

# Lines: MODE BenchmarkCommit/POLICY/committers=N-P ITER V commits/s V p50-ms V p99-ms V max-ms
awk '
function median(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function lo(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
function hi(list,   n, a, i, m) { n = split(list, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
{
	split($2, part, "/"); sub(/-[0-9]+$/, "", part[3]); sub(/committers=/, "", part[3])
	key = $1 " " part[2] " " part[3]
	if (!(key in seen)) { seen[key] = 1; keys[++nkeys] = key }
	for (i = 4; i < NF; i += 2) vals[key, $(i+1)] = vals[key, $(i+1)] " " $i
}
END {
	printf "%-7s %-10s %10s  %-24s %-24s %-24s %-24s\n", "case", "policy", "committers", "commits/s median [range]", "p50 ms median [range]", "p99 ms median [range]", "max ms median [range]"
	for (k = 1; k <= nkeys; k++) {
		split(keys[k], f, " ")
		line = sprintf("%-7s %-10s %10s ", f[1], f[2], f[3])
		split("commits/s p50-ms p99-ms max-ms", units, " ")
		for (u = 1; u <= 4; u++) {
			v = vals[keys[k], units[u]]
			line = line sprintf(" %-24s", sprintf("%.4g [%.4g-%.4g]", median(v), lo(v), hi(v)))
		}
		print line
	}
}' <(sort -k1,1 -k2,2V "$raw")
