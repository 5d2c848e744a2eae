# shellcheck shell=bash
# bench/lib.sh: what bench/l7.sh and bench/l4.sh share. Not a script of its own: both source it right
# after `set -euo pipefail`; sourcing only defines functions and the global state below. The script
# sets its knobs, then calls bench_init (temporary directory, cleanup of every process on exit, file
# descriptors) before it starts anything, and starts servers and proxies only through backends_up,
# spawn and run, so that cleanup knows them.
#
# Globals set by the functions here, for the script to read:
#   root tmp nofile       bench_init
#   b1 b2 b3 backend_pid  backends_up
#   port pid skipped      spawn (port, pid), start_NAME and contenders_up (skipped)
#   active listed         contenders_up: the contenders measured, and all that were tried
#   rr_seen               check_round_robin
#   load_before cpus      load_check
# The script provides check_proxy and start_NAME for each contender (see contenders_up) and the knobs
# read here: DURATION ROUNDS WARMUP THREADS CONNS CONTENDERS, WAAGE_BIN if set.

pids=()  # servers and proxies, stopped on exit
scheme=http # how the contenders are reached: http, or https (bench/tls.sh)
curl_tls=() # curl options for https contenders (--cacert ...)
child="" # the command run() is waiting for (wrk, curl, idleconns, waage validate, go build)
# Per contender: its round-robin port, its process and, if it did not run, why.
declare -A port=() pid=() skipped=()
active=() # contenders that answer and are measured
listed=() # contenders that were tried (known names from CONTENDERS)

log() { printf '== %s\n' "$*" >&2; }
warn() { printf '!! %s\n' "$*" >&2; }

# need_knobs REGEX WHAT KNOB...: exit 2 with "KNOB must be WHAT" unless each KNOB (a variable name)
# matches REGEX.
need_knobs() {
	local re=$1 what=$2 knob
	shift 2
	for knob in "$@"; do
		if ! [[ ${!knob} =~ $re ]]; then
			warn "$knob must be $what, not '${!knob}'"
			exit 2
		fi
	done
}

# need_tools TOOL...: exit 1 if one is not installed.
need_tools() {
	local tool
	for tool in "$@"; do
		command -v "$tool" >/dev/null || {
			warn "$tool is not installed"
			exit 1
		}
	done
}

cleanup() {
	local pid i all=("${pids[@]}")
	trap - EXIT INT TERM
	[[ -z $child ]] || all=("$child" "${all[@]}")
	for pid in "${all[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${all[@]}"; do
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}

# bench_init NAME: sets root (the repository) and tmp (a new mktemp directory NAME.XXXXXX), stops
# every process in pids and child and removes tmp on exit (130 on INT, 143 on TERM), raises the file
# descriptor limit as far as allowed (nofile: the limit now) and prepares free_port.
bench_init() {
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	# nginx workers drop root privileges and must still read the files the backends serve.
	chmod 755 "$tmp"
	trap cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
	nofile=$(ulimit -n)
	[[ $nofile == unlimited ]] && nofile=65536

	read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_lo=32768
	((eph_lo > 11000)) || eph_lo=65000
	used_ports=" "
}

# run CMD...: run a long command in the background and wait for it. Bash lets a foreground command
# that survives SIGINT (wrk catches it to print its results) swallow Ctrl-C; a Ctrl-C during `wait`
# runs the trap at once instead, and cleanup stops the command.
run() {
	local rc=0
	"$@" &
	child=$!
	wait "$child" || rc=$?
	child=""
	return "$rc"
}

# spawn NAME PORT CMD...: start contender NAME (CMD, in the background; redirect the spawn call to
# redirect CMD) listening on PORT; cleanup stops it.
spawn() {
	local name=$1 p=$2
	shift 2
	"$@" &
	pids+=("$!")
	port[$name]=$p
	pid[$name]=$!
}

# free_port prints a loopback TCP port that no socket uses and that this script has not handed out.
# It draws below the kernel's ephemeral range, so a busy machine's outgoing connections cannot take
# the port between the check and the bind.
port_busy() {
	if command -v ss >/dev/null; then
		[[ -n $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((10000 + RANDOM % (eph_lo - 10000)))
		[[ $used_ports == *" $p "* ]] && continue
		if ! port_busy "$p"; then
			used_ports+="$p "
			echo "$p"
			return 0
		fi
	done
	warn "no free port found"
	return 1
}

# poll PID CMD...: run CMD until it succeeds (return 0), every 0.1 s for up to ~10 s, giving up at
# once if process PID (if not empty) has ended.
poll() {
	local p=$1 i
	shift
	for ((i = 0; i < 100; i++)); do
		"$@" && return 0
		if [[ -n $p ]] && ! kill -0 "$p" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# backend_ok URL: URL answers 200 with a "backend-N" body.
backend_ok() {
	local body
	body=$(curl -fsS --max-time 1 "${curl_tls[@]}" "$1" 2>/dev/null) && [[ $body =~ ^backend-[0-9]+$ ]]
}

# wait_http URL [PID]: wait until URL answers 200 with a "backend-N" body (up to ~10 s), giving up at
# once if process PID has ended.
wait_http() { poll "${2:-}" backend_ok "$1"; }

# check_round_robin NAME PORT WHAT: six requests, each on a new connection, to 127.0.0.1:PORT must
# return backend bodies; warns if they did not reach more than one backend (WHAT names the six in
# the message). Sets rr_seen to " backend-N backend-M ... " (the backends seen).
check_round_robin() {
	local name=$1 p=$2 what=$3 i body
	rr_seen=" "
	for ((i = 0; i < 6; i++)); do
		body=$(curl -fsS --max-time 2 "${curl_tls[@]}" "$scheme://127.0.0.1:$p/") || {
			warn "$name: request failed"
			return 1
		}
		[[ $body =~ ^backend-[0-9]+$ ]] || {
			warn "$name: unexpected body: $body"
			return 1
		}
		[[ $rr_seen == *" $body "* ]] || rr_seen+="$body "
	done
	if (($(wc -w <<<"$rr_seen") < 2)); then
		warn "$name: 6 $what all went to$rr_seen (round robin expected)"
	fi
}

# backends_up [LOCATIONS [SERVERS]]: one nginx process (pid in backend_pid), one worker, with three
# servers on loopback ports b1 b2 b3 answering GET / with "backend-N\n". LOCATIONS (nginx lines) go
# into each of the three, SERVERS (nginx lines) after them. The directory $tmp/backends must exist.
# Waits until the three answer; exits 1 if they do not.
backends_up() {
	local locations=${1:-} servers=${2:-} p n
	b1=$(free_port)
	b2=$(free_port)
	b3=$(free_port)
	{
		cat <<EOF
worker_processes 1;
daemon off;
pid $tmp/backends/nginx.pid;
error_log $tmp/backends/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    sendfile on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
EOF
		n=1
		for p in "$b1" "$b2" "$b3"; do
			cat <<EOF
    server {
        listen 127.0.0.1:$p;
        location / { return 200 "backend-$n\n"; }
EOF
			[[ -z $locations ]] || printf '%s\n' "$locations"
			echo "    }"
			n=$((n + 1))
		done
		[[ -z $servers ]] || printf '%s\n' "$servers"
		echo "}"
	} >"$tmp/backends/nginx.conf"
	nginx -p "$tmp/backends" -e "$tmp/backends/error.log" -c "$tmp/backends/nginx.conf" &
	pids+=("$!")
	backend_pid=$!
	for p in "$b1" "$b2" "$b3"; do
		wait_http "http://127.0.0.1:$p/" "$backend_pid" || {
			warn "backend nginx on port $p did not come up:"
			cat "$tmp/backends/error.log" >&2 || true
			exit 1
		}
	done
}

# get_waage MESSAGE: put a waage binary at $tmp/waage, a copy of WAAGE_BIN or a build of ./cmd/waage.
# Returns non-zero with a warning (MESSAGE and the build log if the build failed) and skipped[waage]
# if there is none.
get_waage() {
	if [[ -n ${WAAGE_BIN:-} ]]; then
		cp "$WAAGE_BIN" "$tmp/waage"
		return 0
	fi
	if ! command -v go >/dev/null; then
		warn "go is not installed and WAAGE_BIN is not set, skipping waage"
		skipped[waage]="no go to build it (set WAAGE_BIN)"
		return 1
	fi
	log "building waage"
	if ! run timeout 180 go build -C "$root" -o "$tmp/waage" ./cmd/waage >"$tmp/waage-build.log" 2>&1; then
		warn "$1"
		head -n 20 "$tmp/waage-build.log" >&2
		skipped[waage]="does not build"
		return 1
	fi
}

# start_haproxy_http [BIND_OPTIONS [FRONTEND_LINES]]: spawns haproxy (HAProxy 2.6 in http mode,
# nbthread 2, keep-alive to the clients and, with http-reuse safe, to the servers) in front of the
# three backends, round robin. BIND_OPTIONS follow the bind address (e.g. "ssl crt ... alpn ...");
# FRONTEND_LINES (whole lines, indented) go into the frontend. Without haproxy it warns, sets
# skipped[haproxy] and returns non-zero.
start_haproxy_http() {
	command -v haproxy >/dev/null || {
		warn "haproxy is not installed"
		skipped[haproxy]="not installed"
		return 1
	}
	local p
	p=$(free_port)
	cat >"$tmp/haproxy.cfg" <<EOF
global
    maxconn 5000
    nbthread 2

defaults
    mode http
    option http-keep-alive
    http-reuse safe
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s

frontend bench
    bind 127.0.0.1:$p${1:+ $1}
${2:+$2
}    default_backend b

backend b
    balance roundrobin
    server s1 127.0.0.1:$b1
    server s2 127.0.0.1:$b2
    server s3 127.0.0.1:$b3
EOF
	spawn haproxy "$p" haproxy -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1
}

# contenders_up: for each name in CONTENDERS, start_NAME (the script's: it calls spawn or sets
# skipped[NAME] and returns non-zero), wait until it answers and check_proxy NAME PORT (the script's)
# passes; then it is active. A contender that fails is stopped and skipped with the reason. Exits 1
# if none is active.
contenders_up() {
	local c
	local -a contenders
	# shellcheck disable=SC2153 # CONTENDERS is the script's knob, not a misspelling of contenders
	read -ra contenders <<<"$CONTENDERS"
	for c in "${contenders[@]}"; do
		if ! declare -F "start_$c" >/dev/null; then
			warn "unknown contender $c (known: haproxy nginx waage)"
			continue
		fi
		listed+=("$c")
		"start_$c" || continue
		if ! wait_http "$scheme://127.0.0.1:${port[$c]}/" "${pid[$c]}"; then
			warn "$c did not answer on 127.0.0.1:${port[$c]}, skipping it; its log:"
			tail -n 20 "$tmp/$c.log" "$tmp/proxy-$c/error.log" >&2 2>/dev/null || true
			kill "${pid[$c]}" 2>/dev/null || true
			skipped[$c]="did not answer on its port"
			continue
		fi
		check_proxy "$c" "${port[$c]}" || {
			kill "${pid[$c]}" 2>/dev/null || true
			skipped[$c]="failed the sanity check"
			continue
		}
		active+=("$c")
	done
	if ((${#active[@]} == 0)); then
		warn "no contender is running"
		exit 1
	fi
}

# ---------------------------------------------------------------------------------------------
# Measuring.

# loadavg: the 1-minute load average, to tell a reader how busy the machine was.
loadavg() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

# load_check: sets load_before and cpus, and warns if the machine is busy before measuring.
load_check() {
	load_before=$(loadavg)
	cpus=$(nproc 2>/dev/null || echo 1)
	if awk -v l="$load_before" -v c="$cpus" 'BEGIN { exit !(l + 0 > c / 2) }'; then
		warn "load average is $load_before on $cpus CPUs before measuring: other work is running, expect noise"
	fi
}

# secs DURATION: a wrk duration in whole units ("10s", "1m", "500ms") as seconds, for the timeout
# around wrk.
secs() {
	local d=$1
	case $d in
	*ms) echo 1 ;;
	*m) echo $((${d%m} * 60)) ;;
	*s) echo "${d%s}" ;;
	*) echo "$d" ;;
	esac
}

# run_wrk NAME PATH DURATION OUTFILE [WRK_OPTION...]: one measured wrk run against PATH on NAME's
# round-robin port after a warmup; OUTFILE gets "req/s p99_us errors".
run_wrk() {
	local name=$1 path=$2 dur=$3 out=$4 url raw
	shift 4
	url="$scheme://127.0.0.1:${port[$name]}$path"
	run timeout $(($(secs "$WARMUP") + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$@" "$url" >/dev/null 2>&1 || true
	raw="$out.wrk"
	run timeout $(($(secs "$dur") + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency "$@" "$url" >"$raw" 2>&1 || true
	awk '
		function us(v) {
			if (v ~ /us$/) return v + 0
			if (v ~ /ms$/) return v * 1000
			if (v ~ /m$/) return v * 60000000
			if (v ~ /s$/) return v * 1000000
			return v + 0
		}
		/Requests\/sec:/ { rps = $2 }
		$1 == "99%" { p99 = us($2) }
		/Non-2xx or 3xx responses:/ { errs += $NF }
		/Socket errors:/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
		END { printf "%d %d %d\n", rps, p99, errs }
	' "$raw" >"$out"
	if [[ $(cut -d' ' -f1 "$out") == 0 ]]; then
		warn "$name: wrk measured nothing:"
		tail -n 5 "$raw" >&2
	fi
}

# wrk_rounds PATH DIR WHAT [WRK_OPTION...]: ROUNDS measured wrk runs of DURATION per active
# contender against PATH, interleaved (round 1: haproxy nginx waage, round 2: nginx waage haproxy,
# ...), into DIR/NAME.ROUND. WHAT says what the CONNS connections are in the log.
wrk_rounds() {
	local path=$1 dir=$2 what=$3 n r i c
	shift 3
	n=${#active[@]}
	for ((r = 0; r < ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			c=${active[$(((i + r) % n))]}
			log "round $((r + 1))/$ROUNDS: $c, $DURATION, $CONNS $what"
			run_wrk "$c" "$path" "$DURATION" "$dir/$c.$r" "$@"
		done
	done
}

# median COL FILE...: median of column COL over the files (the mean of the middle two for an even count).
median() {
	local col=$1
	shift
	awk -v c="$col" '{ print $c }' "$@" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }
fmt_us() { awk -v u="$1" 'BEGIN { if (u >= 1000) printf "%.2fms", u / 1000; else printf "%dus", u }'; }

# report_rps TITLE DIR: the table for a wrk test, from DIR/NAME.N result files ("req/s p99_us
# errors"); appends "NAME RATIO" lines to DIR/ratios for ratio_of.
report_rps() {
	local title=$1 dir=$2 c rps p99 errs base r range
	printf '\n%s\n' "$title"
	printf '%-10s %13s %10s %11s %7s   %s\n' contender "median req/s" "p99" "vs haproxy" errors "req/s range"
	base=""
	[[ " ${active[*]} " == *" haproxy "* ]] && base=$(median 1 "$dir"/haproxy.*[0-9])
	for c in "${active[@]}"; do
		rps=$(median 1 "$dir/$c".*[0-9])
		p99=$(median 2 "$dir/$c".*[0-9])
		errs=$(awk '{ s += $3 } END { print s + 0 }' "$dir/$c".*[0-9])
		range=$(awk '{ print $1 }' "$dir/$c".*[0-9] | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo ".." hi }')
		r="-"
		[[ -n $base ]] && r=$(ratio "$rps" "$base")
		printf '%-10s %13s %10s %11s %7s   %s\n' "$c" "$rps" "$(fmt_us "$p99")" "$r" "$errs" "$range"
		printf '%s %s\n' "$c" "$r" >>"$dir/ratios"
	done
}

# print_skipped: a row for each listed contender that did not run.
print_skipped() {
	local c
	for c in "${listed[@]}"; do
		[[ -n ${skipped[$c]:-} ]] && printf '%-10s skipped: %s\n' "$c" "${skipped[$c]}"
	done
	return 0
}

# ratio_of NAME FILE: NAME's ratio to HAProxy from a ratios file of report_rps (or the like).
ratio_of() {
	local r
	r=$(awk -v c="$1" '$1 == c { print $2 }' "$2" 2>/dev/null) || true
	if [[ -n $r && $r != - ]]; then
		echo "$r"
	else
		echo "n/a (no haproxy run to compare with)"
	fi
}
