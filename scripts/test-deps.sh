#!/bin/sh
# Installs what waage's tests need and skips what is already there. Debian/Ubuntu packages via
# apt-get (one `apt-get update`, only when something is missing); Go modules via `go mod download`.
set -eu

need=""
for pair in nginx:nginx-light haproxy:haproxy curl:curl wrk:wrk; do
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
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $need >/dev/null
	# Debian starts nginx and haproxy as services on install; the tests start their own.
	for svc in nginx haproxy; do
		if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
	done
fi

go mod download
