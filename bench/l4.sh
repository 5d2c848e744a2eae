#!/usr/bin/env bash
# bench/l4.sh: TCP (L4) proxying of waage (mode tcp), HAProxy (mode tcp) and nginx (stream), side by
# side: small keep-alive HTTP requests through the tunnel and one large transfer, each proxy in front
# of the same nginx backends on loopback. See bench/README.md. Everything runs on 127.0.0.1, lives in
# one mktemp dir and is stopped on exit.
#
# Knobs (environment): DURATION (10s) ROUNDS (3) WARMUP (1s) THREADS (2) CONNS (50)
#                      TRANSFER_MB (256) TRANSFER_ROUNDS (3) TRANSFER_TIMEOUT (120, seconds per fetch)
#                      CONTENDERS ("haproxy nginx waage") HAPROXY_SPLICE (0; 1: HAProxy splices)
#                      NGINX_STREAM_MODULE (/usr/lib/nginx/modules/ngx_stream_module.so)
#                      WAAGE_BIN (use this waage binary instead of building ./cmd/waage)
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
TRANSFER_MB=${TRANSFER_MB:-256}
TRANSFER_ROUNDS=${TRANSFER_ROUNDS:-3}
TRANSFER_TIMEOUT=${TRANSFER_TIMEOUT:-120}
CONTENDERS=${CONTENDERS:-haproxy nginx waage}
HAPROXY_SPLICE=${HAPROXY_SPLICE:-0}
NGINX_STREAM_MODULE=${NGINX_STREAM_MODULE:-/usr/lib/nginx/modules/ngx_stream_module.so}

log() { printf '== %s\n' "$*" >&2; }
warn() { printf '!! %s\n' "$*" >&2; }

# Every loop below is bounded by these counts; refuse anything but small positive integers.
for knob in ROUNDS THREADS CONNS TRANSFER_MB TRANSFER_ROUNDS TRANSFER_TIMEOUT; do
	if ! [[ ${!knob} =~ ^[1-9][0-9]{0,4}$ ]]; then
		warn "$knob must be a positive integer, not '${!knob}'"
		exit 2
	fi
done
if [[ $HAPROXY_SPLICE != 0 && $HAPROXY_SPLICE != 1 ]]; then
	warn "HAPROXY_SPLICE must be 0 or 1, not '$HAPROXY_SPLICE'"
	exit 2
fi
for knob in DURATION WARMUP; do
	if ! [[ ${!knob} =~ ^[1-9][0-9]{0,4}(ms|s|m)?$ ]]; then
		warn "$knob must be a wrk duration such as 10s or 1m, not '${!knob}'"
		exit 2
	fi
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/waage-bench-l4.XXXXXX")
# nginx workers drop root privileges and must still read the large file below.
chmod 755 "$tmp"
pids=()  # servers and proxies, stopped on exit
child="" # the wrk, curl, waage validate or go build being waited for

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

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
[[ $nofile == unlimited ]] && nofile=65536
for tool in wrk curl nginx; do
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

# range_ok PORT: the first KB of the large file comes back whole through 127.0.0.1:PORT.
range_ok() {
	local size
	size=$(curl -fsS --max-time 2 -r 0-1023 -o /dev/null -w '%{size_download}' \
		"http://127.0.0.1:$1/big" 2>/dev/null) && [[ $size == 1024 ]]
}

# wait_range PORT [PID]: wait_http for the large-file port.
wait_range() {
	local port=$1 p=${2:-} i
	for ((i = 0; i < 100; i++)); do
		range_ok "$port" && return 0
		if [[ -n $p ]] && ! kill -0 "$p" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# check_proxy NAME: six new connections must return backend bodies, spread over more than one backend
# (round robin per connection), and the large-file port must serve the file.
check_proxy() {
	local name=$1 i body seen=" "
	for ((i = 0; i < 6; i++)); do
		body=$(curl -fsS --max-time 2 "http://127.0.0.1:${port[$name]}/") || {
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
		warn "$name: 6 connections all went to$seen (round robin expected)"
	fi
	if ! wait_range "${bport[$name]}" "${pid[$name]}"; then
		warn "$name: the large-file port 127.0.0.1:${bport[$name]} does not serve /big"
		return 1
	fi
	log "$name on 127.0.0.1:${port[$name]} answers from:${seen% }; large file on 127.0.0.1:${bport[$name]}"
}

# ---------------------------------------------------------------------------------------------
# Backends: one nginx process, one worker, three small servers and one serving the large file.
b1=$(free_port)
b2=$(free_port)
b3=$(free_port)
bb=$(free_port)
big_bytes=$((TRANSFER_MB * 1048576))
mkdir -p "$tmp/backends/big" "$tmp/proxy-nginx"
# fallocate needs no writing (no writeback competing with the runs); head is the fallback.
if ! fallocate -l "$big_bytes" "$tmp/backends/big/big" 2>/dev/null; then
	head -c "$big_bytes" /dev/zero >"$tmp/backends/big/big"
fi
chmod 644 "$tmp/backends/big/big"
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
    }
EOF
		n=$((n + 1))
	done
	cat <<EOF
    server {
        listen 127.0.0.1:$bb;
        location = /big { root $tmp/backends/big; default_type application/octet-stream; }
    }
}
EOF
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
wait_range "$bb" "${pids[0]}" || {
	warn "backend nginx on port $bb does not serve the large file:"
	cat "$tmp/backends/error.log" >&2 || true
	exit 1
}
log "backends on 127.0.0.1:$b1 $b2 $b3, $TRANSFER_MB MB file on 127.0.0.1:$bb"

# ---------------------------------------------------------------------------------------------
# Contenders. Each start_* sets port[NAME] (round robin over the three small backends), bport[NAME]
# (the large-file backend) and pid[NAME], or sets skipped[NAME] and returns non-zero.
declare -A port=() bport=() pid=() skipped=()
active=()

start_haproxy() {
	command -v haproxy >/dev/null || {
		warn "haproxy is not installed"
		skipped[haproxy]="not installed"
		return 1
	}
	local p q splice=""
	p=$(free_port)
	q=$(free_port)
	# HAProxy copies through its buffers unless told to splice (kernel pipes between the sockets).
	((HAPROXY_SPLICE)) && splice=$'\n    option splice-request\n    option splice-response'
	cat >"$tmp/haproxy.cfg" <<EOF
global
    maxconn 5000
    nbthread 2

defaults
    mode tcp$splice
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend tcp
    bind 127.0.0.1:$p
    default_backend web

frontend bulk
    bind 127.0.0.1:$q
    default_backend big

backend web
    balance roundrobin
    server s1 127.0.0.1:$b1
    server s2 127.0.0.1:$b2
    server s3 127.0.0.1:$b3

backend big
    server big 127.0.0.1:$bb
EOF
	haproxy -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1 &
	pids+=("$!")
	port[haproxy]=$p
	bport[haproxy]=$q
	pid[haproxy]=$!
}

start_nginx() {
	if [[ ! -f $NGINX_STREAM_MODULE ]]; then
		warn "nginx: $NGINX_STREAM_MODULE is missing, skipping nginx (apt-get install libnginx-mod-stream)"
		skipped[nginx]="no stream module (apt-get install libnginx-mod-stream)"
		return 1
	fi
	local p q
	p=$(free_port)
	q=$(free_port)
	cat >"$tmp/proxy-nginx/nginx.conf" <<EOF
load_module $NGINX_STREAM_MODULE;
worker_processes 2;
worker_rlimit_nofile $nofile;
daemon off;
pid $tmp/proxy-nginx/nginx.pid;
error_log $tmp/proxy-nginx/error.log warn;
events { worker_connections 10000; }
stream {
    upstream web {
        server 127.0.0.1:$b1;
        server 127.0.0.1:$b2;
        server 127.0.0.1:$b3;
    }
    upstream big {
        server 127.0.0.1:$bb;
    }
    server {
        listen 127.0.0.1:$p;
        proxy_pass web;
        proxy_connect_timeout 5s;
        proxy_timeout 60s;
    }
    server {
        listen 127.0.0.1:$q;
        proxy_pass big;
        proxy_connect_timeout 5s;
        proxy_timeout 60s;
    }
}
EOF
	nginx -p "$tmp/proxy-nginx" -e "$tmp/proxy-nginx/error.log" -c "$tmp/proxy-nginx/nginx.conf" &
	pids+=("$!")
	port[nginx]=$p
	bport[nginx]=$q
	pid[nginx]=$!
}

start_waage() {
	local p q
	if [[ -n ${WAAGE_BIN:-} ]]; then
		cp "$WAAGE_BIN" "$tmp/waage"
	else
		if ! command -v go >/dev/null; then
			warn "go is not installed and WAAGE_BIN is not set, skipping waage"
			skipped[waage]="no go to build it (set WAAGE_BIN)"
			return 1
		fi
		log "building waage"
		if ! run timeout 180 go build -C "$root" -o "$tmp/waage" ./cmd/waage >"$tmp/waage-build.log" 2>&1; then
			warn "waage is not buildable, skipping it:"
			head -n 20 "$tmp/waage-build.log" >&2
			skipped[waage]="does not build"
			return 1
		fi
	fi
	p=$(free_port)
	q=$(free_port)
	cat >"$tmp/waage.yaml" <<EOF
log: {level: warn, access: "off"}
frontends:
  - name: tcp
    mode: tcp
    listen: ["127.0.0.1:$p"]
    backend: web
    timeouts: {client_idle: 60s}
  - name: bulk
    mode: tcp
    listen: ["127.0.0.1:$q"]
    backend: big
    timeouts: {client_idle: 60s}
backends:
  - name: web
    algorithm: round_robin
    outlier_detection: {consecutive_failures: 0}
    servers:
      - {name: s1, address: "127.0.0.1:$b1"}
      - {name: s2, address: "127.0.0.1:$b2"}
      - {name: s3, address: "127.0.0.1:$b3"}
  - name: big
    algorithm: round_robin
    outlier_detection: {consecutive_failures: 0}
    servers:
      - {name: big, address: "127.0.0.1:$bb"}
EOF
	# A build without the tcp mode says so here ('mode "tcp" is not supported by this build').
	if ! run timeout 30 "$tmp/waage" validate -c "$tmp/waage.yaml" >"$tmp/waage-validate.log" 2>&1; then
		warn "waage rejects the tcp configuration, skipping it:"
		head -n 20 "$tmp/waage-validate.log" >&2
		skipped[waage]="config rejected: $(grep -m1 -v '^[[:space:]]*$' "$tmp/waage-validate.log" |
			sed "s|^$tmp/waage.yaml: ||" | cut -c1-120)"
		return 1
	fi
	"$tmp/waage" run -c "$tmp/waage.yaml" >"$tmp/waage.log" 2>&1 &
	pids+=("$!")
	port[waage]=$p
	bport[waage]=$q
	pid[waage]=$!
}

read -ra contenders <<<"$CONTENDERS"
listed=()
for c in "${contenders[@]}"; do
	if ! declare -F "start_$c" >/dev/null; then
		warn "unknown contender $c (known: haproxy nginx waage)"
		continue
	fi
	listed+=("$c")
	"start_$c" || continue
	if ! wait_http "http://127.0.0.1:${port[$c]}/" "${pid[$c]}"; then
		warn "$c did not answer on 127.0.0.1:${port[$c]}, skipping it; its log:"
		tail -n 20 "$tmp/$c.log" "$tmp/proxy-$c/error.log" >&2 2>/dev/null || true
		kill "${pid[$c]}" 2>/dev/null || true
		skipped[$c]="did not answer on its port"
		continue
	fi
	check_proxy "$c" || {
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

# ---------------------------------------------------------------------------------------------
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

# run_wrk NAME DURATION OUTFILE: one measured wrk run against NAME's round-robin port after a warmup;
# OUTFILE gets "req/s p99_us errors".
run_wrk() {
	local name=$1 dur=$2 out=$3 url raw
	url="http://127.0.0.1:${port[$name]}/"
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

# fetch NAME PORT OUTFILE: one timed download of the large file through 127.0.0.1:PORT; OUTFILE gets
# "bytes/s errors" (0 bytes/s and 1 error if the download failed or came back short).
fetch() {
	local name=$1 p=$2 out=$3 speed size code
	run timeout $((TRANSFER_TIMEOUT + 10)) curl -sS --max-time "$TRANSFER_TIMEOUT" -o /dev/null \
		-w '%{speed_download} %{size_download} %{http_code}\n' "http://127.0.0.1:$p/big" \
		>"$out.curl" 2>&1 || true
	read -r speed size code _ <"$out.curl" || true
	if [[ ${code:-} == 200 && ${size:-} == "$big_bytes" ]]; then
		printf '%d 0\n' "${speed%.*}" >"$out"
	else
		warn "$name: download failed or short: $(tr '\n' ' ' <"$out.curl")"
		printf '0 1\n' >"$out"
	fi
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
mbs() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

# print_skipped: a row for each listed contender that did not run.
print_skipped() {
	local c
	for c in "${listed[@]}"; do
		[[ -n ${skipped[$c]:-} ]] && printf '%-10s skipped: %s\n' "$c" "${skipped[$c]}"
	done
	return 0
}

# report_small TITLE DIR: the table for the keep-alive test, from DIR/NAME.N files ("req/s p99_us errors").
report_small() {
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
	print_skipped
}

# report_transfer TITLE DIR: the table for the large transfer, from DIR/NAME.N files ("bytes/s errors").
report_transfer() {
	local title=$1 dir=$2 c bps base direct r rd errs range
	printf '\n%s\n' "$title"
	printf '%-10s %12s %11s %10s %7s   %s\n' contender "median MB/s" "vs haproxy" "vs direct" errors "MB/s range"
	base=""
	[[ " ${active[*]} " == *" haproxy "* ]] && base=$(median 1 "$dir"/haproxy.*[0-9])
	direct=$(median 1 "$dir"/direct.*[0-9])
	for c in direct "${active[@]}"; do
		bps=$(median 1 "$dir/$c".*[0-9])
		errs=$(awk '{ s += $2 } END { print s + 0 }' "$dir/$c".*[0-9])
		range=$(awk '{ printf "%.0f\n", $1 / 1048576 }' "$dir/$c".*[0-9] | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo ".." hi }')
		r="-"
		rd="-"
		if [[ $c != direct ]]; then
			[[ -n $base ]] && r=$(ratio "$bps" "$base")
			rd=$(ratio "$bps" "$direct")
			printf '%s %s\n' "$c" "$r" >>"$dir/ratios"
		fi
		printf '%-10s %12s %11s %10s %7s   %s\n' "$c" "$(mbs "$bps")" "$r" "$rd" "$errs" "$range"
	done
	print_skipped
}

# loadavg: the 1-minute load average, to tell a reader how busy the machine was.
loadavg() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }

mkdir -p "$tmp/res/small" "$tmp/res/big"
load_before=$(loadavg)
cpus=$(nproc 2>/dev/null || echo 1)
if awk -v l="$load_before" -v c="$cpus" 'BEGIN { exit !(l + 0 > c / 2) }'; then
	warn "load average is $load_before on $cpus CPUs before measuring: other work is running, expect noise"
fi

# 1. Small keep-alive requests, interleaved: round 1 haproxy nginx waage, round 2 nginx waage haproxy...
n=${#active[@]}
for ((r = 0; r < ROUNDS; r++)); do
	for ((i = 0; i < n; i++)); do
		c=${active[$(((i + r) % n))]}
		log "round $((r + 1))/$ROUNDS: $c, $DURATION, $CONNS keep-alive connections"
		run_wrk "$c" "$DURATION" "$tmp/res/small/$c.$r"
	done
done

# 2. The large transfer, interleaved the same way, with a direct download as the baseline. One
# unmeasured direct download first puts the file in the page cache.
log "large file: warming the page cache"
fetch direct "$bb" "$tmp/res/big/warm"
declare -A bigport=([direct]=$bb)
for c in "${active[@]}"; do bigport[$c]=${bport[$c]}; done
order=(direct "${active[@]}")
n=${#order[@]}
for ((r = 0; r < TRANSFER_ROUNDS; r++)); do
	for ((i = 0; i < n; i++)); do
		c=${order[$(((i + r) % n))]}
		log "transfer round $((r + 1))/$TRANSFER_ROUNDS: $c, $TRANSFER_MB MB"
		fetch "$c" "${bigport[$c]}" "$tmp/res/big/$c.$r"
	done
done

printf '\nload average: %s before, %s after the runs (%s CPUs)\n' "$load_before" "$(loadavg)" "$cpus"
((HAPROXY_SPLICE)) && printf 'haproxy: option splice-request, option splice-response (HAPROXY_SPLICE=1)\n'
report_small "tcp small: keep-alive HTTP requests through the tunnel, $CONNS connections, median of $ROUNDS x $DURATION" "$tmp/res/small"
report_transfer "$TRANSFER_MB MB transfer: one download (MB = 2^20 bytes), median of $TRANSFER_ROUNDS" "$tmp/res/big"

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
summary() {
	printf '%s/haproxy req/s ratio (tcp small): %s\n' "$1" "$(ratio_of "$1" "$tmp/res/small/ratios")"
	printf '%s/haproxy throughput ratio (%s MB): %s\n' "$1" "$TRANSFER_MB" "$(ratio_of "$1" "$tmp/res/big/ratios")"
}
if [[ " ${active[*]} " == *" waage "* ]]; then
	summary waage
else
	printf 'waage/haproxy req/s ratio (tcp small): n/a (waage did not run: %s)\n' "${skipped[waage]:-not in CONTENDERS}"
	printf 'waage/haproxy throughput ratio (%s MB): n/a (waage did not run)\n' "$TRANSFER_MB"
fi
for c in "${active[@]}"; do
	[[ $c == waage || $c == haproxy ]] || summary "$c"
done
