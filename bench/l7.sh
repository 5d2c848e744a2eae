#!/usr/bin/env bash
# bench/l7.sh: HTTP/1.1 keep-alive throughput, p99 latency and idle-connection memory of waage,
# HAProxy and nginx, side by side, each in front of the same three nginx backends on loopback.
# See bench/README.md. Everything runs on 127.0.0.1, lives in one mktemp dir and is stopped on exit.
#
# Knobs (environment): DURATION (10s) ROUNDS (3) WARMUP (1s) THREADS (2) CONNS (50)
#                      IDLE_CONNS (4000) IDLE_HOLD (3s) CONTENDERS ("haproxy nginx waage")
#                      WAAGE_BIN (use this waage binary instead of building ./cmd/waage)
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
IDLE_CONNS=${IDLE_CONNS:-4000}
IDLE_HOLD=${IDLE_HOLD:-3s}
CONTENDERS=${CONTENDERS:-haproxy nginx waage}

bench_init waage-bench
# More file descriptors for 4000 idle connections plus the proxies' own (bench_init raised the limit).
if ((nofile < IDLE_CONNS * 2 + 1000)); then
	warn "ulimit -n is $nofile; the idle-connection test may run out of file descriptors"
fi
need_tools wrk curl go

# check_proxy NAME PORT: the proxy must return backend bodies, spread over more than one backend, and
# the 16 KB body whole.
check_proxy() {
	local name=$1 p=$2 size
	check_round_robin "$name" "$p" requests || return 1
	size=$(curl -fsS --max-time 5 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$p/16k") || size=0
	if [[ $size != 16384 ]]; then
		warn "$name: /16k returned $size bytes, want 16384"
		return 1
	fi
	log "$name on 127.0.0.1:$p answers from:$rr_seen"
}

# ---------------------------------------------------------------------------------------------
# Backends: one nginx process, one worker, three servers, each also serving a 16 KB file.
mkdir -p "$tmp/backends/www" "$tmp/proxy-nginx"
head -c 16384 /dev/zero | tr '\0' 'x' >"$tmp/backends/www/16k"
backends_up "        location = /16k { root $tmp/backends/www; }"
log "backends on 127.0.0.1:$b1 $b2 $b3"

# ---------------------------------------------------------------------------------------------
# Contenders. Each start_* spawns NAME (which sets port[NAME] and pid[NAME]), or returns non-zero
# with a message.

start_haproxy() { start_haproxy_http ""; }

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
	spawn nginx "$p" nginx -p "$tmp/proxy-nginx" -e "$tmp/proxy-nginx/error.log" -c "$tmp/proxy-nginx/nginx.conf"
}

start_waage() {
	local p
	get_waage "waage is not buildable yet, skipping it:" || return 1
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
	spawn waage "$p" "$tmp/waage" run -c "$tmp/waage.yaml" >"$tmp/waage.log" 2>&1
}

contenders_up

# ---------------------------------------------------------------------------------------------
# Throughput and latency with wrk.
mkdir -p "$tmp/res/small" "$tmp/res/16k"
load_check
wrk_rounds / "$tmp/res/small" connections
for c in "${active[@]}"; do
	log "16 KB body: $c, $DURATION"
	run_wrk "$c" /16k "$DURATION" "$tmp/res/16k/$c.0"
done

printf '\nload average: %s before, %s after the throughput runs (%s CPUs)\n' "$load_before" "$(loadavg)" "$cpus"
report_rps "small body (\"backend-N\\n\"), $CONNS keep-alive connections, median of $ROUNDS x $DURATION" "$tmp/res/small"
report_rps "16 KB body, $CONNS keep-alive connections, 1 x $DURATION" "$tmp/res/16k"

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
