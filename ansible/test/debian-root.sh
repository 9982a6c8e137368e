#!/usr/bin/env bash
# Makes DIR a fresh Debian 12 root standing in for a head node: minbase plus what every real head
# node has (systemd) and what the test needs to run the playbook inside it (ansible-core, with
# python3-apt for the apt module; nftables so the firewall drop-in is exercised). ipxe is left out
# on purpose: the role installs it.
# debootstrap takes minutes, so the result is cached as a tarball keyed by the package list; later
# runs unpack it in seconds. The mirror is the one apt on this machine already uses.
# Usage: debian-root.sh DIR
set -euo pipefail
root=${1:?usage: debian-root.sh DIR}
include=systemd,python3-apt,ansible-core,nftables,ca-certificates
cache_dir=${SHOAL_TEST_CACHE:-/var/cache/shoal-test}
cache=$cache_dir/debootstrap-bookworm-$(printf '%s' "$include" | sha256sum | cut -c1-12).tar

mirror_from_apt_sources() {
  # deb822 sources (URIs:) first, then one-line sources (deb URL bookworm …).
  local sources
  sources=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  awk '/^URIs:/ && $2 ~ /debian\/?$/ { print $2; exit }' <<<"$sources" | grep . ||
    awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' <<<"$sources" | grep . ||
    { echo "debian-root: no Debian mirror in apt's sources" >&2; return 1; }
}

mkdir -p "$root"
if [ ! -f "$cache" ]; then
  mirror=$(mirror_from_apt_sources)
  mkdir -p "$cache_dir"
  build=$(mktemp -d "$cache_dir/build.XXXXXX")
  trap 'rm -rf "$build"' EXIT
  debootstrap --variant=minbase --include="$include" bookworm "$build" "$mirror" >&2
  rm -rf "$build"/var/cache/apt/archives/*.deb
  tar -C "$build" -cf "$cache.partial" .
  mv "$cache.partial" "$cache"
fi
tar -C "$root" -xf "$cache"
# Name resolution for apt inside the root, as on a configured head node.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
