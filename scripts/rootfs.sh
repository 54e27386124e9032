#!/bin/sh
# rootfs.sh builds, once, the root filesystems the packaging tests chroot into,
# and prints the path of the requested one on stdout.
#
#   scripts/rootfs.sh bookworm-python
#
# bookworm-python: `debootstrap --variant=minbase bookworm` plus python3, i.e.
# what a stock Debian-based interpreter image looks like (/bin/bash, /bin/sh,
# /usr/bin/python3), without Docker.
#
# The cache lives outside the repository, under $ATTUNE_ROOTFS_CACHE
# (default /var/cache/attune-sensor-agent), so a second run (and a second
# clone) reuses it. A root filesystem is built in a temporary directory beside
# its final place and renamed into place only when complete, with a marker
# file, so an interrupted build is never mistaken for a cached one. A lock
# serialises concurrent callers (two test binaries on the same machine).
#
# Environment:
#   ATTUNE_ROOTFS_CACHE   cache directory (default /var/cache/attune-sensor-agent)
#   ATTUNE_ROOTFS_MIRROR  Debian mirror (default http://deb.debian.org/debian)
#
# Needs root and debootstrap (scripts/ci-deps.sh installs it).
set -eu

name=${1:-}
case "$name" in
bookworm-python)
	suite=bookworm
	include=python3
	;;
*)
	echo "usage: $0 bookworm-python" >&2
	exit 2
	;;
esac

cache=${ATTUNE_ROOTFS_CACHE:-/var/cache/attune-sensor-agent}
mirror=${ATTUNE_ROOTFS_MIRROR:-http://deb.debian.org/debian}
final="$cache/rootfs-$name"
marker=".attune-rootfs-complete"

if [ -f "$final/$marker" ]; then
	echo "$final"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "rootfs.sh: building $final needs root (debootstrap)" >&2
	exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1 && ! [ -x /usr/sbin/debootstrap ]; then
	echo "rootfs.sh: debootstrap is missing; run scripts/ci-deps.sh" >&2
	exit 1
fi
PATH="$PATH:/usr/sbin:/sbin"

mkdir -p "$cache"
exec 9>"$cache/.lock-$name"
flock 9

# Another caller may have finished the build while this one waited.
if [ -f "$final/$marker" ]; then
	echo "$final"
	exit 0
fi

# A directory without the marker is a leftover of an older, broken layout:
# never reuse it.
rm -rf "$final"

tmp=$(mktemp -d "$cache/.build-$name.XXXXXX")
log="$tmp.log"
cleanup() {
	rm -rf "$tmp" "$log"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if ! debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	echo "rootfs.sh: debootstrap $suite from $mirror failed (no Debian mirror reachable?); full log above" >&2
	exit 1
fi

# Keep the cache small: package archives and lists are not needed to run.
rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"* 2>/dev/null || true

date -u +%Y-%m-%dT%H:%M:%SZ >"$tmp/$marker"
chmod 0755 "$tmp"
mv "$tmp" "$final"
echo "$final"
