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
set -eu

# cmd:package pairs: a package is needed when its command is missing.
wanted="debootstrap:debootstrap docker-compose:docker-compose file:file ldd:libc-bin chroot:coreutils unshare:util-linux systemd-analyze:systemd"

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
	echo "ci-deps.sh: need root to install:$missing" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Output is kept and shown only when something fails, so a green run stays quiet.
# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "ci-deps.sh: failed to install:$missing" >&2
	exit 1
fi
echo "ci-deps.sh: installed:$missing"
