#!/bin/sh
# Installs what waage's tests need and skips what is already there. Debian/Ubuntu packages via
# apt-get (one `apt-get update`, only when something is missing); Go modules via `go mod download`.
set -eu

need=""
# The health-check tests run real peers: redis-server (tcp send/expect), dnsmasq (udp, a DNS
# query) and ip from iproute2 (icmp across a veth pair into a network namespace); the L4 tests
# run Dovecot (IMAP behind the PROXY protocol); the ACME tests run pebble, the ACME test CA, with
# pebble-challtestsrv (same package) as its DNS server; the dashboard test drives chromium
# (headless, through chromedp); the VRRP tests run keepalived as a peer.
for pair in nginx:nginx-light haproxy:haproxy curl:curl wrk:wrk redis-server:redis-server dnsmasq:dnsmasq-base ip:iproute2 dovecot:dovecot-imapd pebble:pebble keepalived:keepalived chromium:chromium; do
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
	# Debian starts nginx, haproxy and redis-server as services on install; the tests start their
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
	for svc in nginx haproxy redis-server dovecot keepalived; do
		if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
	done
fi

go mod download
