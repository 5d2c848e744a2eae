#!/bin/sh
# Installs what waage's tests need and skips what is already there. Debian/Ubuntu packages via
# apt-get (one `apt-get update`, only when something is missing); Go modules via `go mod download`.
set -eu

need=""
# The health-check tests run real peers: redis-server (tcp send/expect), dnsmasq (udp, a DNS
# query) and ip from iproute2 (icmp across a veth pair into a network namespace); the L4 tests
# run Dovecot (IMAP behind the PROXY protocol); the ACME tests run pebble, the ACME test CA, with
# pebble-challtestsrv (same package) as its DNS server; the dashboard test drives chromium
# (headless, through chromedp); the VRRP tests run keepalived as a peer; the Kubernetes tests run
# etcd under a kube-apiserver built below; the BGP tests run BIRD as the router, with nft to pin
# flows on it.
for pair in nginx:nginx-light haproxy:haproxy curl:curl wrk:wrk redis-server:redis-server dnsmasq:dnsmasq-base ip:iproute2 dovecot:dovecot-imapd pebble:pebble keepalived:keepalived chromium:chromium etcd:etcd-server bird:bird2 nft:nftables; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need="$need $pkg"
done

if [ -n "$need" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test-deps: missing packages:$need; run as root or install them (apt-get install$need)" >&2
		exit 1
	fi
	echo "test-deps: installing$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Debian starts nginx, haproxy, redis-server and etcd as services on install; the tests start their
	# own. A policy-rc.d that denies every start (exit 101) keeps the postinst scripts from
	# starting them, so a service that cannot start here (redis on a host without IPv6, a
	# container without an init system) does not fail the install; one already present is kept.
	policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >/dev/null
	if [ -n "$policy" ]; then
		rm -f "$policy"
		trap - EXIT
	fi
	# Where a start got through anyway (another policy-rc.d, systemd), stop the services again.
	for svc in nginx haproxy redis-server dovecot keepalived etcd bird; do
		if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
	done
fi

go mod download

# The Kubernetes tests (internal/kube) run a real kube-apiserver. It is built from the nested module
# test/k8s/apiserver, so the main module does not depend on k8s.io/kubernetes, into a cache folder
# that later runs reuse: about 11 minutes and 3 GB of memory the first time, seconds after.
k8s_cache="${WAAGE_K8S_CACHE:-${HOME}/.cache/waage/k8s}"
if [ ! -x "$k8s_cache/kube-apiserver" ]; then
	echo "test-deps: building kube-apiserver into $k8s_cache (about 11 minutes the first time)"
	mkdir -p "$k8s_cache"
	(cd "$(dirname "$0")/../test/k8s/apiserver" &&
		go build -ldflags "-s -w" -o "$k8s_cache/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
	mv "$k8s_cache/kube-apiserver.tmp" "$k8s_cache/kube-apiserver"
fi
