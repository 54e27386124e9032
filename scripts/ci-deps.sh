#!/bin/sh
# ci-deps.sh installs the Debian packages that the packaging tests need and
# that this machine lacks. It is idempotent and quiet: when everything is
# already present it runs nothing (not even `apt-get update`).
#
#   debootstrap      builds the stock bookworm root filesystem (rootfs_test.go)
#   docker-compose   validates deploy/compose*.yaml with `docker-compose config`
#   file             checks that the agent binary is statically linked
#   libc-bin         provides ldd
#   coreutils        provides chroot (with --userspec)
#   util-linux       provides unshare and mount (read-only install test)
#   systemd          provides systemd-analyze (verifies the unit file)
#   python3, nodejs, bash  interpreters of the fixture and demo sensors
#   postgresql-client      psql, used by demo/run.sh
#
# When it cannot install (not root, no network, no such package) it prints
# exactly one line naming what is missing and exits 1; apt-get's output is
# kept in a file that line names, so the reason is one `cat` away.
set -eu

# cmd:package pairs: a package is needed when its command is missing.
wanted="debootstrap:debootstrap docker-compose:docker-compose file:file ldd:libc-bin chroot:coreutils unshare:util-linux systemd-analyze:systemd python3:python3 node:nodejs bash:bash psql:postgresql-client"

missing=""
for pair in $wanted; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ]; then
		missing="$missing $pkg"
	fi
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "ci-deps.sh: missing:$missing (run as root to install them, or install them yourself)" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp "${TMPDIR:-/tmp}/ci-deps.XXXXXX.log")
# Output is kept only when something fails, so a green run stays quiet and
# a failed one still says everything in one line.
# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
	reason=$(grep -E '^(E|W|Err):' "$log" | tail -n 1 | cut -c1-200)
	echo "ci-deps.sh: missing:$missing (apt-get failed${reason:+: $reason}; details in $log)" >&2
	exit 1
fi
rm -f "$log"
echo "ci-deps.sh: installed:$missing"
