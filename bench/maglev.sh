#!/usr/bin/env bash
# bench/maglev.sh: the cost of a maglev pick against a source_ip_hash pick (waage's hash ring), and
# the time to build maglev's default table (65537 entries), for 10, 100 and 1,000 servers. It runs
# the Go benchmark BenchmarkMaglevScale (internal/balance) COUNT times and prints medians and the
# pick ratio. Nothing listens or sends; see bench/README.md.
#
# Knobs (environment): COUNT (5, runs of each benchmark), BENCHTIME (200000x for picks)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT=${COUNT:-5}
BENCHTIME=${BENCHTIME:-200000x}
[[ $COUNT =~ ^[1-9][0-9]{0,2}$ ]] || { echo "COUNT must be a positive integer" >&2; exit 2; }
[[ $BENCHTIME =~ ^[1-9][0-9]*(x|s)$ ]] || { echo "BENCHTIME must look like 200000x or 1s" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "== go test -bench BenchmarkMaglevScale/pick -benchtime $BENCHTIME -count $COUNT"
go test -run '^$' -bench 'BenchmarkMaglevScale/pick' -benchtime "$BENCHTIME" -count "$COUNT" ./internal/balance >"$out"
echo "== go test -bench BenchmarkMaglevScale/build -benchtime 20x -count $COUNT"
go test -run '^$' -bench 'BenchmarkMaglevScale/build' -benchtime 20x -count "$COUNT" ./internal/balance >>"$out"

# median NAME: the median ns/op of the benchmark lines whose name starts with NAME.
median() {
	awk -v name="BenchmarkMaglevScale/$1-" 'index($1, name) == 1 { print $3 }' "$out" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

printf '\n%-8s %16s %22s %12s %14s\n' servers "maglev pick ns" "source_ip_hash pick ns" "ratio" "build ms"
for n in 10 100 1000; do
	m=$(median "pick/maglev/servers=$n")
	h=$(median "pick/source_ip_hash/servers=$n")
	b=$(median "build/servers=$n")
	printf '%-8s %16.1f %22.1f %12.2f %14.2f\n' "$n" "$m" "$h" "$(echo "$m / $h" | bc -l)" "$(echo "$b / 1000000" | bc -l)"
done
echo
echo "ratio = maglev pick / source_ip_hash pick (lower is cheaper); medians of $COUNT runs"
