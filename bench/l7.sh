#!/usr/bin/env bash
# bench/l7.sh: HTTP/1.1 keep-alive throughput, p99 latency and idle-connection memory of waage,
# HAProxy and nginx, side by side, each in front of the same three nginx backends on loopback.
# See bench/README.md. Everything runs on 127.0.0.1, lives in one mktemp dir and is stopped on exit.
#
# Knobs (environment): DURATION (10s) ROUNDS (3) WARMUP (1s) THREADS (2) CONNS (50)
#                      IDLE_CONNS (4000) IDLE_HOLD (3s) CONTENDERS ("haproxy nginx waage")
#                      WAAGE_BIN (use this waage binary instead of building ./cmd/waage)
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
IDLE_CONNS=${IDLE_CONNS:-4000}
IDLE_HOLD=${IDLE_HOLD:-3s}
CONTENDERS=${CONTENDERS:-haproxy nginx waage}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/waage-bench.XXXXXX")
# nginx workers drop root privileges and must still read the 16 KB file below.
chmod 755 "$tmp"
pids=()  # servers and proxies, stopped on exit
child="" # the wrk, idleconns or go build being waited for

log() { printf '== %s\n' "$*" >&2; }
warn() { printf '!! %s\n' "$*" >&2; }

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
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# More file descriptors for 4000 idle connections plus the proxies' own; keep what we have otherwise.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
[[ $nofile == unlimited ]] && nofile=65536
if ((nofile < IDLE_CONNS * 2 + 1000)); then
	warn "ulimit -n is $nofile; the idle-connection test may run out of file descriptors"
fi
for tool in wrk curl go; do
	command -v "$tool" >/dev/null || {
		warn "$tool is not installed"
		exit 1
	}
done

# free_port prints a loopback TCP port that no socket uses and that this script has not handed out.
# It draws below the kernel's ephemeral range, so a busy machine's outgoing connections cannot take
# the port between the check and the bind.
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || eph_lo=32768
((eph_lo > 11000)) || eph_lo=65000
used_ports=" "
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

# wait_http URL [PID]: wait until URL answers 200 with a "backend-N" body (up to ~10 s), giving up at
# once if process PID has ended.
wait_http() {
	local url=$1 p=${2:-} i body
	for ((i = 0; i < 100; i++)); do
		if body=$(curl -fsS --max-time 1 "$url" 2>/dev/null) && [[ $body =~ ^backend-[0-9]+$ ]]; then
			return 0
		fi
		if [[ -n $p ]] && ! kill -0 "$p" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# check_proxy NAME PORT: the proxy must return backend bodies, spread over more than one backend, and
# the 16 KB body whole.
check_proxy() {
	local name=$1 port=$2 i body seen=" " size
	for ((i = 0; i < 6; i++)); do
		body=$(curl -fsS --max-time 2 "http://127.0.0.1:$port/") || {
			warn "$name: request failed"
			return 1
		}
		[[ $body =~ ^backend-[0-9]+$ ]] || {
			warn "$name: unexpected body: $body"
			return 1
		}
		[[ $seen == *" $body "* ]] || seen+="$body "
	done
	if (($(wc -w <<<"$seen") < 2)); then
		warn "$name: 6 requests all went to$seen (round robin expected)"
	fi
	size=$(curl -fsS --max-time 5 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/16k") || size=0
	if [[ $size != 16384 ]]; then
		warn "$name: /16k returned $size bytes, want 16384"
		return 1
	fi
	log "$name on 127.0.0.1:$port answers from:$seen"
}

# ---------------------------------------------------------------------------------------------
# Backends: one nginx process, one worker, three servers.
b1=$(free_port)
b2=$(free_port)
b3=$(free_port)
mkdir -p "$tmp/backends/www" "$tmp/proxy-nginx"
head -c 16384 /dev/zero | tr '\0' 'x' >"$tmp/backends/www/16k"
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
        location = /16k { root $tmp/backends/www; }
    }
EOF
		n=$((n + 1))
	done
	echo "}"
} >"$tmp/backends/nginx.conf"
nginx -p "$tmp/backends" -e "$tmp/backends/error.log" -c "$tmp/backends/nginx.conf" &
pids+=("$!")
for p in "$b1" "$b2" "$b3"; do
	wait_http "http://127.0.0.1:$p/" "${pids[0]}" || {
		warn "backend nginx on port $p did not come up:"
		cat "$tmp/backends/error.log" >&2 || true
		exit 1
	}
done
log "backends on 127.0.0.1:$b1 $b2 $b3"

# ---------------------------------------------------------------------------------------------
# Contenders. Each start_* sets port[NAME] and pid[NAME], or returns non-zero with a message.
declare -A port=() pid=()
active=()

start_haproxy() {
	command -v haproxy >/dev/null || {
		warn "haproxy is not installed"
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
    bind 127.0.0.1:$p
    default_backend b

backend b
    balance roundrobin
    server s1 127.0.0.1:$b1
    server s2 127.0.0.1:$b2
    server s3 127.0.0.1:$b3
EOF
	haproxy -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
	pids+=("$!")
	port[haproxy]=$p
	pid[haproxy]=$!
}

start_nginx() {
	local p
	p=$(free_port)
	cat >"$tmp/proxy-nginx/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile $nofile;
daemon off;
pid $tmp/proxy-nginx/nginx.pid;
error_log $tmp/proxy-nginx/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    upstream b {
        server 127.0.0.1:$b1;
        server 127.0.0.1:$b2;
        server 127.0.0.1:$b3;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$p;
        location / {
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	nginx -p "$tmp/proxy-nginx" -e "$tmp/proxy-nginx/error.log" -c "$tmp/proxy-nginx/nginx.conf" &
	pids+=("$!")
	port[nginx]=$p
	pid[nginx]=$!
}

start_waage() {
	local p
	if [[ -n ${WAAGE_BIN:-} ]]; then
		cp "$WAAGE_BIN" "$tmp/waage"
	else
		log "building waage"
		if ! run timeout 180 go build -C "$root" -o "$tmp/waage" ./cmd/waage >"$tmp/waage-build.log" 2>&1; then
			warn "waage is not buildable yet, skipping it:"
			head -n 20 "$tmp/waage-build.log" >&2
			return 1
		fi
	fi
	p=$(free_port)
	cat >"$tmp/waage.yaml" <<EOF
log: {access: "off", level: warn}
frontends:
  - name: bench
    listen: ["127.0.0.1:$p"]
    default_backend: b
backends:
  - name: b
    servers:
      - {address: "127.0.0.1:$b1"}
      - {address: "127.0.0.1:$b2"}
      - {address: "127.0.0.1:$b3"}
EOF
	"$tmp/waage" run -c "$tmp/waage.yaml" >"$tmp/waage.log" 2>&1 &
	pids+=("$!")
	port[waage]=$p
	pid[waage]=$!
}

read -ra contenders <<<"$CONTENDERS"
for c in "${contenders[@]}"; do
	if ! declare -F "start_$c" >/dev/null; then
		warn "unknown contender $c (known: haproxy nginx waage)"
		continue
	fi
	"start_$c" || continue
	if ! wait_http "http://127.0.0.1:${port[$c]}/" "${pid[$c]}"; then
		warn "$c did not answer on 127.0.0.1:${port[$c]}, skipping it; its log:"
		tail -n 20 "$tmp/$c.log" "$tmp/proxy-$c/error.log" >&2 2>/dev/null || true
		kill "${pid[$c]}" 2>/dev/null || true
		continue
	fi
	check_proxy "$c" "${port[$c]}" || {
		kill "${pid[$c]}" 2>/dev/null || true
		continue
	}
	active+=("$c")
done
if ((${#active[@]} == 0)); then
	warn "no contender is running"
	exit 1
fi

# ---------------------------------------------------------------------------------------------
# Throughput and latency with wrk.
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

# run_wrk NAME PATH DURATION OUTFILE: one measured wrk run; OUTFILE gets "req/s p99_us errors".
run_wrk() {
	local name=$1 path=$2 dur=$3 out=$4 url raw
	url="http://127.0.0.1:${port[$name]}$path"
	run timeout $(($(secs "$WARMUP") + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$url" >/dev/null 2>&1 || true
	raw="$out.wrk"
	run timeout $(($(secs "$dur") + 30)) wrk -t"$THREADS" -c"$CONNS" -d"$dur" --latency "$url" >"$raw" 2>&1 || true
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

# median COL FILE...: median of column COL over the files (the mean of the middle two for an even count).
median() {
	local col=$1
	shift
	awk -v c="$col" '{ print $c }' "$@" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%d\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

fmt_us() { awk -v u="$1" 'BEGIN { if (u >= 1000) printf "%.2fms", u / 1000; else printf "%dus", u }'; }

# report TITLE DIR: the table for one test, from DIR/NAME.* result files ("req/s p99_us errors").
report() {
	local title=$1 dir=$2 c rps p99 errs base ratio range
	printf '\n%s\n' "$title"
	printf '%-10s %13s %10s %11s %7s   %s\n' contender "median req/s" "p99" "vs haproxy" errors "req/s range"
	base=""
	[[ " ${active[*]} " == *" haproxy "* ]] && base=$(median 1 "$dir"/haproxy.*[0-9])
	for c in "${active[@]}"; do
		rps=$(median 1 "$dir/$c".*[0-9])
		p99=$(median 2 "$dir/$c".*[0-9])
		errs=$(awk '{ s += $3 } END { print s + 0 }' "$dir/$c".*[0-9])
		range=$(awk '{ print $1 }' "$dir/$c".*[0-9] | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo ".." hi }')
		ratio="-"
		[[ -n $base && $base -gt 0 ]] && ratio=$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
		printf '%-10s %13s %10s %11s %7s   %s\n' "$c" "$rps" "$(fmt_us "$p99")" "$ratio" "$errs" "$range"
		printf '%s %s\n' "$c" "$ratio" >>"$dir/ratios"
	done
}

# loadavg: the 1-minute load average, to tell a reader how busy the machine was.
loadavg() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

mkdir -p "$tmp/res/small" "$tmp/res/16k"
load_before=$(loadavg)
cpus=$(nproc 2>/dev/null || echo 1)
if awk -v l="$load_before" -v c="$cpus" 'BEGIN { exit !(l + 0 > c / 2) }'; then
	warn "load average is $load_before on $cpus CPUs before measuring: other work is running, expect noise"
fi
n=${#active[@]}
for ((r = 0; r < ROUNDS; r++)); do
	for ((i = 0; i < n; i++)); do
		c=${active[$(((i + r) % n))]}
		log "round $((r + 1))/$ROUNDS: $c, $DURATION, $CONNS connections"
		run_wrk "$c" / "$DURATION" "$tmp/res/small/$c.$r"
	done
done
for c in "${active[@]}"; do
	log "16 KB body: $c, $DURATION"
	run_wrk "$c" /16k "$DURATION" "$tmp/res/16k/$c.0"
done

printf '\nload average: %s before, %s after the throughput runs (%s CPUs)\n' "$load_before" "$(loadavg)" "$cpus"
report "small body (\"backend-N\\n\"), $CONNS keep-alive connections, median of $ROUNDS x $DURATION" "$tmp/res/small"
report "16 KB body, $CONNS keep-alive connections, 1 x $DURATION" "$tmp/res/16k"

# ---------------------------------------------------------------------------------------------
# Idle keep-alive connections: RSS growth per connection.
log "building bench/idleconns"
run timeout 120 go build -C "$root" -o "$tmp/idleconns" ./bench/idleconns
printf '\nidle keep-alive connections: %s connections held %s\n' "$IDLE_CONNS" "$IDLE_HOLD"
printf '%-10s %10s %10s %12s %12s %14s\n' contender opened still_open "rss before" "rss after" "bytes/conn"
declare -A idle=()
for c in "${active[@]}"; do
	run "$tmp/idleconns" -addr "127.0.0.1:${port[$c]}" -n "$IDLE_CONNS" -hold "$IDLE_HOLD" \
		-pids "${pid[$c]}" -timeout 40s >"$tmp/idle-$c.out" 2>"$tmp/idle-$c.err" || true
	line=$(cat "$tmp/idle-$c.out")
	if [[ $line != idleconns* ]]; then
		warn "$c: idleconns failed: $(cat "$tmp/idle-$c.err")"
		continue
	fi
	declare -A kv=()
	read -ra fields <<<"$line"
	for f in "${fields[@]}"; do
		[[ $f == *=* ]] && kv[${f%%=*}]=${f#*=}
	done
	idle[$c]=${kv[bytes_per_conn]}
	printf '%-10s %10s %10s %10sKB %10sKB %14s\n' "$c" "${kv[opened]}" "${kv[still_open]}" \
		"${kv[rss_before_kb]}" "${kv[rss_after_kb]}" "${kv[bytes_per_conn]}"
	if ((kv[failed] > 0)); then
		warn "$c: ${kv[failed]} connections failed: $(cat "$tmp/idle-$c.err")"
	fi
	unset kv
done

# ---------------------------------------------------------------------------------------------
printf '\n'
ratio_of() {
	local r
	r=$(awk -v c="$1" '$1 == c { print $2 }' "$2" 2>/dev/null) || true
	if [[ -n $r && $r != - ]]; then
		echo "$r"
	else
		echo "n/a (no haproxy run to compare with)"
	fi
}
if [[ " ${active[*]} " == *" waage "* ]]; then
	printf 'waage/haproxy req/s ratio: %s\n' "$(ratio_of waage "$tmp/res/small/ratios")"
	printf 'waage/haproxy req/s ratio (16 KB): %s\n' "$(ratio_of waage "$tmp/res/16k/ratios")"
	printf 'waage idle bytes/conn: %s\n' "${idle[waage]:-n/a}"
else
	printf 'waage/haproxy req/s ratio: n/a (waage did not run)\n'
	printf 'waage idle bytes/conn: n/a (waage did not run)\n'
fi
for c in "${active[@]}"; do
	[[ $c == waage || $c == haproxy ]] && continue
	printf '%s/haproxy req/s ratio: %s\n' "$c" "$(ratio_of "$c" "$tmp/res/small/ratios")"
done
for c in "${active[@]}"; do
	[[ $c == waage ]] && continue
	printf '%s idle bytes/conn: %s\n' "$c" "${idle[$c]:-n/a}"
done
