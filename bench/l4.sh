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
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

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

# Every loop below is bounded by these counts; refuse anything but small positive integers.
need_knobs '^[1-9][0-9]{0,4}$' "a positive integer" ROUNDS THREADS CONNS TRANSFER_MB TRANSFER_ROUNDS TRANSFER_TIMEOUT
need_knobs '^[01]$' "0 or 1" HAPROXY_SPLICE
need_knobs '^[1-9][0-9]{0,4}(ms|s|m)?$' "a wrk duration such as 10s or 1m" DURATION WARMUP

bench_init waage-bench-l4
need_tools wrk curl nginx

# range_ok PORT: the first KB of the large file comes back whole through 127.0.0.1:PORT.
range_ok() {
	local size
	size=$(curl -fsS --max-time 2 -r 0-1023 -o /dev/null -w '%{size_download}' \
		"http://127.0.0.1:$1/big" 2>/dev/null) && [[ $size == 1024 ]]
}

# wait_range PORT [PID]: wait_http for the large-file port.
wait_range() { poll "${2:-}" range_ok "$1"; }

# check_proxy NAME PORT: six new connections to PORT must return backend bodies, spread over more than
# one backend (round robin per connection), and the large-file port must serve the file.
check_proxy() {
	local name=$1 p=$2
	check_round_robin "$name" "$p" connections || return 1
	if ! wait_range "${bport[$name]}" "${pid[$name]}"; then
		warn "$name: the large-file port 127.0.0.1:${bport[$name]} does not serve /big"
		return 1
	fi
	log "$name on 127.0.0.1:$p answers from:${rr_seen% }; large file on 127.0.0.1:${bport[$name]}"
}

# ---------------------------------------------------------------------------------------------
# Backends: one nginx process, one worker, three small servers and one serving the large file.
bb=$(free_port)
big_bytes=$((TRANSFER_MB * 1048576))
mkdir -p "$tmp/backends/big" "$tmp/proxy-nginx"
# fallocate needs no writing (no writeback competing with the runs); head is the fallback.
if ! fallocate -l "$big_bytes" "$tmp/backends/big/big" 2>/dev/null; then
	head -c "$big_bytes" /dev/zero >"$tmp/backends/big/big"
fi
chmod 644 "$tmp/backends/big/big"
backends_up "" "    server {
        listen 127.0.0.1:$bb;
        location = /big { root $tmp/backends/big; default_type application/octet-stream; }
    }"
wait_range "$bb" "$backend_pid" || {
	warn "backend nginx on port $bb does not serve the large file:"
	cat "$tmp/backends/error.log" >&2 || true
	exit 1
}
log "backends on 127.0.0.1:$b1 $b2 $b3, $TRANSFER_MB MB file on 127.0.0.1:$bb"

# ---------------------------------------------------------------------------------------------
# Contenders. Each start_* spawns NAME (which sets port[NAME], round robin over the three small
# backends, and pid[NAME]) and sets bport[NAME] (the large-file backend), or sets skipped[NAME] and
# returns non-zero.
declare -A bport=()

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
	spawn haproxy "$p" haproxy -f "$tmp/haproxy.cfg" >"$tmp/haproxy.log" 2>&1
	bport[haproxy]=$q
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
	spawn nginx "$p" nginx -p "$tmp/proxy-nginx" -e "$tmp/proxy-nginx/error.log" -c "$tmp/proxy-nginx/nginx.conf"
	bport[nginx]=$q
}

start_waage() {
	local p q
	get_waage "waage is not buildable, skipping it:" || return 1
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
	spawn waage "$p" "$tmp/waage" run -c "$tmp/waage.yaml" >"$tmp/waage.log" 2>&1
	bport[waage]=$q
}

contenders_up

# ---------------------------------------------------------------------------------------------
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

mbs() { awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'; }

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

mkdir -p "$tmp/res/small" "$tmp/res/big"
load_check

# 1. Small keep-alive requests, interleaved: round 1 haproxy nginx waage, round 2 nginx waage haproxy...
wrk_rounds / "$tmp/res/small" "keep-alive connections"

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
report_rps "tcp small: keep-alive HTTP requests through the tunnel, $CONNS connections, median of $ROUNDS x $DURATION" "$tmp/res/small"
print_skipped
report_transfer "$TRANSFER_MB MB transfer: one download (MB = 2^20 bytes), median of $TRANSFER_ROUNDS" "$tmp/res/big"

# ---------------------------------------------------------------------------------------------
printf '\n'
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
