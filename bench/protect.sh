#!/usr/bin/env bash
# bench/protect.sh: what waage's protection (frontend `limits:` and `access:`) costs when it does
# not trigger, and how waage and HAProxy keep serving a legitimate client while one source floods
# them, each in front of the same three nginx backends on loopback. See bench/README.md.
# Everything runs on loopback addresses, lives in one mktemp dir and is stopped on exit.
#
#   1. overhead: wrk (keep-alive, from 127.0.0.1) against two waage processes, one without limits
#      and one with every http limit and access list set far above the load, ROUNDS rounds in
#      alternating order; the ratio of the medians, limits on / off (target >= 0.95).
#   2. flood: bench/flood floods from 127.0.0.60 with FLOOD_CONNS keep-alive connections while a
#      client from 127.0.0.20 sends RATE requests/s; waage (`request_rate` by source) and HAProxy
#      (stick-table http_req_rate + `deny deny_status 429`) both allow LIMIT requests/s per source.
#      The client's success rate and latency, the flood's req/s and its share answered 429.
#
#   bash bench/protect.sh                       # defaults: about 3.5 minutes
#   DURATION=3s ROUNDS=1 bash bench/protect.sh  # a quick look, under a minute
#   TESTS=overhead ROUNDS=9 bash bench/protect.sh
#
# Knobs (environment): DURATION (10s) ROUNDS (3) WARMUP (1s) THREADS (2) CONNS (50)
#                      TESTS ("overhead flood") FLOOD_CONNS (32) RATE (20, the client's
#                      requests/s) LIMIT (100, requests/s per source in the flood test)
#                      CONTENDERS ("haproxy waage", the flood test)
#                      WAAGE_BIN (use this waage binary instead of building ./cmd/waage)
#                      RESULTS (a directory to copy the raw results and logs into before exit)
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
FLOOD_CONNS=${FLOOD_CONNS:-32}
RATE=${RATE:-20}
LIMIT=${LIMIT:-100}
CONTENDERS=${CONTENDERS:-haproxy waage}
TESTS=${TESTS:-overhead flood}

need_knobs '^[1-9][0-9]{0,3}$' "a positive integer below 10000" ROUNDS THREADS CONNS FLOOD_CONNS RATE
need_knobs '^[1-9][0-9]{0,5}$' "a positive integer" LIMIT
need_knobs '^[1-9][0-9]{0,4}s$' "a duration in seconds such as 10s" DURATION WARMUP
need_knobs '^ *((overhead|flood) *)+$' '"overhead", "flood" or both' TESTS

FLOOD_SRC=127.0.0.60 # the flooder's source address
LEGIT_SRC=127.0.0.20 # the legitimate client's
LEAD=1               # seconds the flood runs before the client starts and after it ends
hz=$(getconf CLK_TCK 2>/dev/null || echo 100) # clock ticks a second, for CPU times

bench_init waage-bench-protect
need_tools wrk curl go nginx

check_proxy() {
	check_round_robin "$1" "$2" requests || return 1
	log "$1 on 127.0.0.1:$2 answers from:$rr_seen"
}

mkdir -p "$tmp/backends" "$tmp/res/overhead" "$tmp/res/flood"
backends_up ""
log "backends on 127.0.0.1:$b1 $b2 $b3"

have_waage=0
get_waage "waage does not build, skipping it:" && have_waage=1

log "building bench/flood"
run timeout 120 go build -C "$root" -o "$tmp/flood" ./bench/flood

# waage_conf NAME PORT LIMITS: a waage configuration with one frontend on PORT in front of the
# three backends; LIMITS (YAML lines indented for the frontend) go into the frontend.
waage_conf() {
	cat <<EOF
log: {access: "off", level: warn}
frontends:
  - name: $1
    listen: ["127.0.0.1:$2"]
$3
    default_backend: b
backends:
  - name: b
    servers:
      - {address: "127.0.0.1:$b1"}
      - {address: "127.0.0.1:$b2"}
      - {address: "127.0.0.1:$b3"}
EOF
}

# start_waage_with NAME LIMITS: validate and spawn a waage named NAME with LIMITS (see waage_conf).
start_waage_with() {
	local name=$1 p
	((have_waage)) || return 1
	p=$(free_port)
	waage_conf "$name" "$p" "$2" >"$tmp/$name.yaml"
	if ! "$tmp/waage" validate -c "$tmp/$name.yaml" >"$tmp/$name-validate.log" 2>&1; then
		warn "waage rejects the configuration of $name:"
		cat "$tmp/$name-validate.log" >&2
		skipped[$name]="config rejected: $(head -n 1 "$tmp/$name-validate.log")"
		return 1
	fi
	spawn "$name" "$p" "$tmp/waage" run -c "$tmp/$name.yaml" >"$tmp/$name.log" 2>&1
}

# stop NAME: stop a contender that is no longer needed (cleanup would also do it on exit).
stop() {
	kill -TERM "${pid[$1]}" 2>/dev/null || true
	wait "${pid[$1]}" 2>/dev/null || true
}

# refusals NAME: the refusals waage NAME logged ("msg=refused" lines, sampled: one per reason and
# 10 s, each with the running total).
refusals() { grep -c 'msg=refused' "$tmp/$1.log" 2>/dev/null || true; }

# ---------------------------------------------------------------------------------------------
# 1. Overhead of limits that do not trigger. wrk connects from 127.0.0.1 only, so every per-source
# limit sees one source with CONNS connections: the caps sit far above what it reaches (request
# rate 10 million/s: the token is still taken on every request, from the one bucket of 127.0.0.1).
limits_on='    limits:
      max_connections: 20000
      max_connections_per_source: 5000
      connection_rate_per_source: 5000
      request_rate: {rate: 10000000, per: 1s, key: source}
      header_timeout: 10s
      min_body_rate: 1KB
      max_header_bytes: 32KB
      max_uri_bytes: 8192
      max_body_bytes: 100MB
    access:
      allow: ["127.0.0.0/8", "10.0.0.0/8"]
      deny: ["203.0.113.0/24", "198.51.100.7"]'

start_off() { start_waage_with off ""; }
start_on() { start_waage_with on "$limits_on"; }

# cpu_ticks PID: the user and system CPU time process PID used so far, in clock ticks (hz a second).
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# overhead_run NAME OUT: a warmup, then one measured wrk run of DURATION against waage NAME; OUT
# gets "req/s p99_us errors cpu_us_per_request" (the CPU time waage used over the measured run,
# per request: far steadier than req/s on a shared machine).
overhead_run() {
	local name=$1 out=$2 url t0 t1
	url="http://127.0.0.1:${port[$name]}/"
	run timeout $(($(secs "$WARMUP") + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$url" >/dev/null 2>&1 || true
	t0=$(cpu_ticks "${pid[$name]}")
	run timeout $(($(secs "$DURATION") + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$url" >"$out.wrk" 2>&1 || true
	t1=$(cpu_ticks "${pid[$name]}")
	awk -v ticks=$((t1 - t0)) -v hz="$hz" '
		function us(v) {
			if (v ~ /us$/) return v + 0
			if (v ~ /ms$/) return v * 1000
			if (v ~ /s$/) return v * 1000000
			return v + 0
		}
		/requests in/ { n = $1 }
		/Requests\/sec:/ { rps = $2 }
		$1 == "99%" { p99 = us($2) }
		/Non-2xx or 3xx responses:/ { errs += $NF }
		/Socket errors:/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
		END { printf "%d %d %d %.2f\n", rps, p99, errs, (n > 0 ? ticks / hz * 1e6 / n : 0) }
	' "$out.wrk" >"$out"
	if [[ $(cut -d' ' -f1 "$out") == 0 ]]; then
		warn "$name: wrk measured nothing:"
		tail -n 5 "$out.wrk" >&2
	fi
}

# overhead_test: the rounds and the table of the overhead test; sets overhead_ratio and cpu_ratio.
overhead_test() {
	local r c rps p99 errs range order
	local -A med=() cpu=()
	CONTENDERS="off on" contenders_up
	if [[ " ${active[*]} " != *" off "* || " ${active[*]} " != *" on "* ]]; then
		overhead_ratio="n/a (off: ${skipped[off]:-ran}, on: ${skipped[on]:-ran})"
		return
	fi
	load_check
	for ((r = 0; r < ROUNDS; r++)); do
		order=(off on)
		((r % 2 == 0)) || order=(on off)
		for c in "${order[@]}"; do
			log "round $((r + 1))/$ROUNDS: waage, limits $c, $DURATION, $CONNS connections"
			overhead_run "$c" "$tmp/res/overhead/$c.$r"
		done
	done
	printf '\nload average: %s before, %s after the overhead runs (%s CPUs)\n' "$load_before" "$(loadavg)" "$cpus"
	printf '\nlimits on vs off: waage alone, %s keep-alive connections from 127.0.0.1, median of %s x %s\n' "$CONNS" "$ROUNDS" "$DURATION"
	printf '%-10s %13s %10s %12s %7s %8s   %s\n' waage "median req/s" "p99" "CPU us/req" errors refused "req/s range"
	for c in off on; do
		rps=$(median 1 "$tmp/res/overhead/$c".*[0-9])
		p99=$(median 2 "$tmp/res/overhead/$c".*[0-9])
		cpu[$c]=$(awk '{ print $4 }' "$tmp/res/overhead/$c".*[0-9] | sort -n |
			awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
		errs=$(awk '{ s += $3 } END { print s + 0 }' "$tmp/res/overhead/$c".*[0-9])
		range=$(awk '{ print $1 }' "$tmp/res/overhead/$c".*[0-9] | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo ".." hi }')
		printf '%-10s %13s %10s %12s %7s %8s   %s\n' "limits $c" "$rps" "$(fmt_us "$p99")" "${cpu[$c]}" "$errs" "$(refusals "$c")" "$range"
		med[$c]=$rps
	done
	overhead_ratio=$(ratio "${med[on]}" "${med[off]}")
	cpu_ratio=$(awk -v a="${cpu[on]}" -v b="${cpu[off]}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }')
	if [[ $(refusals on) != 0 ]]; then
		warn "waage with limits refused something during the overhead test (it should not):"
		grep 'msg=refused' "$tmp/on.log" | head -n 5 >&2
	fi
	for c in off on; do
		stop "$c"
	done
}

# ---------------------------------------------------------------------------------------------
# 2. Flood. Both proxies allow LIMIT requests/s per source address; beyond it they answer 429.

start_haproxy() {
	start_haproxy_http "" "    stick-table type ip size 1m expire 10s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt $LIMIT }"
}

start_waage() {
	start_waage_with waage "    limits:
      request_rate: {rate: $LIMIT, per: 1s, key: source}"
}

# kv FILE KEY: the value of KEY in bench/flood's key=value line in FILE (0 if absent).
kv() {
	[[ -s $1 ]] || {
		echo 0
		return
	}
	awk -v k="$2" '{ for (i = 1; i <= NF; i++) if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit } }' "$1"
}

# pct A B: A as a percentage of B.
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f%%", 100 * a / b; else print "-" }'; }

# legit NAME OUT: the legitimate client against NAME for DURATION, its line into OUT.
legit() {
	local d
	d=$(secs "$DURATION")
	run timeout $((d + 30)) "$tmp/flood" -target "http://127.0.0.1:${port[$1]}/" -src "$LEGIT_SRC" \
		-rate "$RATE" -duration "$DURATION" -latencies "$2.lat" >"$2" 2>"$2.err" || true
	[[ -s $2 ]] || warn "$1: the client measured nothing: $(cat "$2.err")"
}

# flood_run NAME OUT: the flood against NAME for DURATION + 2 LEAD seconds, the client within it;
# OUT.legit and OUT.flood get their lines, OUT.cpu the CPU time NAME used meanwhile, in µs.
flood_run() {
	local name=$1 out=$2 d fp i t0
	d=$(secs "$DURATION")
	t0=$(cpu_ticks "${pid[$name]}")
	timeout $((d + 2 * LEAD + 30)) "$tmp/flood" -target "http://127.0.0.1:${port[$name]}/" -src "$FLOOD_SRC" \
		-conns "$FLOOD_CONNS" -duration "$((d + 2 * LEAD))s" >"$out.flood" 2>"$out.flood.err" &
	fp=$!
	pids+=("$fp")
	sleep "$LEAD"
	legit "$name" "$out.legit"
	for ((i = 0; i < (2 * LEAD + 30) * 10; i++)); do
		kill -0 "$fp" 2>/dev/null || break
		sleep 0.1
	done
	wait "$fp" 2>/dev/null || true
	echo $((($(cpu_ticks "${pid[$name]}") - t0) * 1000000 / hz)) >"$out.cpu"
	[[ -s $out.flood ]] || warn "$name: the flood measured nothing: $(cat "$out.flood.err")"
}

# client_stats FILE...: the client's results over the runs in FILE... (bench/flood lines, with
# FILE.lat beside each): cs_ok (share of the requests due that got a 2xx), cs_failed (the others),
# cs_p50 and cs_p99 over the latencies of all runs together, cs_range (the p99 of each run, lowest
# to highest).
client_stats() {
	local x d lo hi ok=0 due=0 p99s=() lats=()
	cs_failed=0
	for x in "$@"; do
		d=$(kv "$x" due)
		((d > 0)) || d=$((RATE * $(secs "$DURATION"))) # the client did not run: all failed
		ok=$((ok + $(kv "$x" ok)))
		due=$((due + d))
		cs_failed=$((cs_failed + d - $(kv "$x" ok)))
		p99s+=("$(kv "$x" p99_us)")
		[[ -s $x.lat ]] && lats+=("$x.lat")
	done
	cs_ok=$(pct "$ok" "$due")
	read -r cs_p50 cs_p99 < <(cat "${lats[@]}" /dev/null | sort -n |
		awk '{ v[NR] = $1 } END { if (!NR) { print 0, 0; exit }; print v[int(NR * 0.5 + 0.999999)], v[int(NR * 0.99 + 0.999999)] }')
	read -r lo hi < <(printf '%s\n' "${p99s[@]}" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo, hi }')
	cs_range="$(fmt_us "$lo")..$(fmt_us "$hi")"
}

# flood_test: the rounds and the table of the flood test; sets legit_ok, legit_p99 and quiet_p99.
flood_test() {
	local r i n c f x fok freq f429 ferr frec fdur frps rpss fcpu
	contenders_up
	load_check
	n=${#active[@]}
	for ((r = 0; r < ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			c=${active[$(((i + r) % n))]}
			log "round $((r + 1))/$ROUNDS: $c, the client alone at $RATE/s from $LEGIT_SRC, $DURATION"
			legit "$c" "$tmp/res/flood/$c.quiet$r"
			log "round $((r + 1))/$ROUNDS: $c, flood of $FLOOD_CONNS connections from $FLOOD_SRC, client at $RATE/s from $LEGIT_SRC, $DURATION"
			flood_run "$c" "$tmp/res/flood/$c.$r"
		done
	done

	printf '\nload average: %s before, %s after the flood runs (%s CPUs)\n' "$load_before" "$(loadavg)" "$cpus"
	printf '\nflood: %s keep-alive connections from %s as fast as they go, limit %s requests/s per source;\n' "$FLOOD_CONNS" "$FLOOD_SRC" "$LIMIT"
	printf 'the client: %s requests/s on one keep-alive connection from %s, alone (quiet) and under the flood;\n' "$RATE" "$LEGIT_SRC"
	printf '%s x %s each; p50 and p99 over all rounds, "p99 range" the p99 of each round\n' "$ROUNDS" "$DURATION"
	printf '%-10s %-6s %7s %6s %9s %9s %19s   %11s %9s %11s %7s %6s %10s\n' contender client ok failed p50 p99 "p99 range" \
		"flood req/s" "flood 429" "flood 2xx/s" reconn errors "CPU us/req"
	for c in "${active[@]}"; do
		f=$tmp/res/flood/$c
		client_stats "$f".quiet*[0-9]
		quiet_p99[$c]=$(fmt_us "$cs_p99")
		printf '%-10s %-6s %7s %6s %9s %9s %19s\n' "$c" quiet "$cs_ok" "$cs_failed" "$(fmt_us "$cs_p50")" "${quiet_p99[$c]}" "$cs_range"
		client_stats "$f".*[0-9].legit
		legit_ok[$c]=$cs_ok
		legit_p99[$c]=$(fmt_us "$cs_p99")
		fok=0 freq=0 f429=0 ferr=0 frec=0 fdur=0 rpss=() fcpu=0
		for x in "$f".*[0-9].cpu; do
			fcpu=$((fcpu + $(cat "$x")))
		done
		for x in "$f".*[0-9].flood; do
			freq=$((freq + $(kv "$x" requests)))
			fok=$((fok + $(kv "$x" ok)))
			f429=$((f429 + $(kv "$x" s429)))
			ferr=$((ferr + $(kv "$x" errors)))
			frec=$((frec + $(kv "$x" reconnects)))
			fdur=$(awk -v a="$fdur" -v b="$(kv "$x" duration_s)" 'BEGIN { print a + b }')
			rpss+=("$(kv "$x" rps)")
		done
		frps=$(printf '%s\n' "${rpss[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "%d", v[int((NR + 1) / 2)] }')
		printf '%-10s %-6s %7s %6s %9s %9s %19s   %11s %9s %11s %7s %6s %10s\n' "" flood "$cs_ok" "$cs_failed" "$(fmt_us "$cs_p50")" \
			"${legit_p99[$c]}" "$cs_range" "$frps" "$(pct "$f429" "$freq")" \
			"$(awk -v a="$fok" -v b="$fdur" 'BEGIN { if (b > 0) printf "%.0f", a / b; else print "-" }')" "$frec" "$ferr" \
			"$(awk -v a="$fcpu" -v b="$freq" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')"
	done
	print_skipped
}

# ---------------------------------------------------------------------------------------------
overhead_ratio="n/a (waage did not run)"
cpu_ratio="n/a"
declare -A legit_ok=() legit_p99=() quiet_p99=()
if [[ " $TESTS " == *" overhead "* ]]; then
	if ((have_waage)); then
		overhead_test
	fi
	active=()
	listed=()
fi
if [[ " $TESTS " == *" flood "* ]]; then
	flood_test
fi
if [[ -n ${RESULTS:-} ]]; then
	mkdir -p "$RESULTS"
	cp -r "$tmp/res" "$tmp"/*.log "$tmp"/*.yaml "$tmp"/*.cfg "$RESULTS/" 2>/dev/null || true
fi

printf '\n'
if [[ " $TESTS " == *" overhead "* ]]; then
	printf 'waage limits on/off req/s ratio: %s\n' "$overhead_ratio"
	printf 'waage limits on/off CPU per request ratio: %s\n' "$cpu_ratio"
fi
for c in "${active[@]}"; do
	[[ -n ${legit_ok[$c]:-} ]] || continue
	printf '%s client under flood: %s ok, p99 %s (quiet: %s)\n' "$c" "${legit_ok[$c]}" "${legit_p99[$c]}" "${quiet_p99[$c]}"
done
