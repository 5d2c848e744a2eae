#!/usr/bin/env bash
# bench/tls.sh: TLS termination of waage, HAProxy and nginx, side by side, each in front of the
# same three nginx backends (plain HTTP) on loopback: HTTPS keep-alive requests, new TLS
# connections per second (a full handshake per request), and HTTP/2 requests with h2load. All
# three serve the same ECDSA P-256 certificate. See bench/README.md. Everything runs on
# 127.0.0.1, lives in one mktemp dir and is stopped on exit.
#
# Knobs (environment): DURATION (10s) ROUNDS (3) WARMUP (1s) THREADS (2) CONNS (50)
#                      H2_STREAMS (10, concurrent streams per HTTP/2 connection)
#                      CONTENDERS ("haproxy nginx waage")
#                      WAAGE_BIN (use this waage binary instead of building ./cmd/waage)
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1s}
THREADS=${THREADS:-2}
CONNS=${CONNS:-50}
H2_STREAMS=${H2_STREAMS:-10}
CONTENDERS=${CONTENDERS:-haproxy nginx waage}

need_knobs '^[1-9][0-9]{0,4}$' "a positive integer" ROUNDS THREADS CONNS H2_STREAMS
need_knobs '^[1-9][0-9]{0,4}s$' "a duration in seconds such as 10s" DURATION WARMUP

bench_init waage-bench-tls
need_tools wrk curl nginx openssl

# ---------------------------------------------------------------------------------------------
# One CA and one certificate for bench.test and 127.0.0.1, ECDSA P-256 as most sites serve now.
certs=$tmp/certs
mkdir -p "$certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
	-keyout "$certs/ca.key" -out "$certs/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench.test \
	-keyout "$certs/bench.key" -out "$certs/bench.csr" 2>/dev/null
printf 'subjectAltName=DNS:bench.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$certs/ext"
openssl x509 -req -in "$certs/bench.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" -CAcreateserial \
	-days 2 -extfile "$certs/ext" -out "$certs/bench.pem" 2>/dev/null
cat "$certs/bench.pem" "$certs/bench.key" >"$certs/haproxy.pem" # HAProxy wants both in one file
chmod 644 "$certs"/*

scheme=https
curl_tls=(--cacert "$certs/ca.pem")

# check_proxy NAME PORT: new connections must reach more than one backend, and HTTP/2 must be
# offered by ALPN.
check_proxy() {
	local name=$1 p=$2 v
	check_round_robin "$name" "$p" connections || return 1
	v=$(curl -fsS --max-time 2 "${curl_tls[@]}" --http2 -o /dev/null -w '%{http_version}' "https://127.0.0.1:$p/") || v=""
	if [[ $v != 2 ]]; then
		warn "$name: HTTP/2 not negotiated (curl got HTTP/$v)"
		return 1
	fi
	log "$name on 127.0.0.1:$p answers from:${rr_seen% }, HTTP/2 by ALPN"
}

mkdir -p "$tmp/backends" "$tmp/proxy-nginx"
backends_up ""
log "backends on 127.0.0.1:$b1 $b2 $b3"

# ---------------------------------------------------------------------------------------------
# Contenders.
start_haproxy() { start_haproxy_http "ssl crt $certs/haproxy.pem alpn h2,http/1.1"; }

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
        listen 127.0.0.1:$p ssl http2;
        ssl_certificate $certs/bench.pem;
        ssl_certificate_key $certs/bench.key;
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
	get_waage "waage is not buildable, skipping it:" || return 1
	p=$(free_port)
	cat >"$tmp/waage.yaml" <<EOF
log: {access: "off", level: warn}
frontends:
  - name: tls
    listen: ["127.0.0.1:$p"]
    tls:
      certificates: [{cert: "$certs/bench.pem", key: "$certs/bench.key"}]
    default_backend: b
backends:
  - name: b
    servers:
      - {address: "127.0.0.1:$b1"}
      - {address: "127.0.0.1:$b2"}
      - {address: "127.0.0.1:$b3"}
EOF
	if ! "$tmp/waage" validate -c "$tmp/waage.yaml" >"$tmp/waage-validate.log" 2>&1; then
		warn "waage refuses the TLS frontend:"
		cat "$tmp/waage-validate.log" >&2
		skipped[waage]="refuses tls on an http frontend"
		return 1
	fi
	spawn waage "$p" "$tmp/waage" run -c "$tmp/waage.yaml" >"$tmp/waage.log" 2>&1
}

contenders_up

# ---------------------------------------------------------------------------------------------
# h2_run NAME OUTFILE: one h2load run of DURATION against NAME after a warmup; OUTFILE gets
# "req/s 0 errors" (h2load reports no percentile of its own to compare).
h2_run() {
	local name=$1 out=$2 raw=$2.h2load d w
	d=$(secs "$DURATION")
	w=$(secs "$WARMUP")
	run timeout $((d + w + 30)) h2load -t "$THREADS" -c "$CONNS" -m "$H2_STREAMS" -D "$d" \
		--warm-up-time="$w" "https://127.0.0.1:${port[$name]}/" >"$raw" 2>&1 || true
	awk '
		/^finished in/ { for (i = 1; i <= NF; i++) if ($(i + 1) ~ /^req\/s/) { rps = $i; sub(/,$/, "", rps) } }
		/^requests:/ { errs = $10 + $12 + $14 } # "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout"
		END { printf "%d 0 %d\n", rps, errs }
	' "$raw" >"$out"
	if [[ $(cut -d' ' -f1 "$out") == 0 ]]; then
		warn "$name: h2load measured nothing:"
		tail -n 5 "$raw" >&2
	fi
}

mkdir -p "$tmp/res/keepalive" "$tmp/res/handshake" "$tmp/res/h2"
load_check
wrk_rounds / "$tmp/res/keepalive" "keep-alive HTTPS connections"
wrk_rounds / "$tmp/res/handshake" "clients, a new TLS connection per request" -H "Connection: close"
h2=0
if command -v h2load >/dev/null; then
	h2=1
	n=${#active[@]}
	for ((r = 0; r < ROUNDS; r++)); do
		for ((i = 0; i < n; i++)); do
			c=${active[$(((i + r) % n))]}
			log "round $((r + 1))/$ROUNDS: $c, HTTP/2, $DURATION, $CONNS connections x $H2_STREAMS streams"
			h2_run "$c" "$tmp/res/h2/$c.$r"
		done
	done
else
	warn "h2load is not installed (Debian: nghttp2-client), skipping HTTP/2"
fi

printf '\nload average: %s before, %s after the runs (%s CPUs)\n' "$load_before" "$(loadavg)" "$cpus"
report_rps "HTTPS keep-alive requests, $CONNS connections, median of $ROUNDS x $DURATION" "$tmp/res/keepalive"
report_rps "new TLS connections (full handshake, one request each), $CONNS clients, median of $ROUNDS x $DURATION" "$tmp/res/handshake"
if ((h2)); then
	report_rps "HTTP/2 requests (h2load), $CONNS connections x $H2_STREAMS streams, median of $ROUNDS x $DURATION (p99: n/a)" "$tmp/res/h2"
fi
print_skipped

printf '\n'
if [[ " ${active[*]} " == *" waage "* ]]; then
	printf 'waage/haproxy req/s ratio (https keep-alive): %s\n' "$(ratio_of waage "$tmp/res/keepalive/ratios")"
	printf 'waage/haproxy ratio (new TLS connections/s): %s\n' "$(ratio_of waage "$tmp/res/handshake/ratios")"
	if ((h2)); then
		printf 'waage/haproxy req/s ratio (HTTP/2): %s\n' "$(ratio_of waage "$tmp/res/h2/ratios")"
	fi
else
	printf 'waage/haproxy ratios: n/a (waage did not run)\n'
fi
