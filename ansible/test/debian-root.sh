#!/usr/bin/env bash
# Fills DIR with a fresh Debian 12 root that stands in for a head node in the role's test: minbase
# plus what every real head node has and the role expects (systemd; python3 with python3-apt for
# ansible's apt module; nftables, so the firewall tasks run for real). ipxe is left out on purpose:
# the role installs it.
#
# debootstrap takes minutes, so its result is cached as a tarball keyed by everything that shapes
# it (suite, variant, mirror, package list); later runs unpack it in seconds. The mirror is the one
# apt on this machine already uses. Usage: debian-root.sh DIR
set -euo pipefail
root=${1:?usage: debian-root.sh DIR}
suite=bookworm
packages=(systemd python3-apt nftables)

mirror_from_apt_sources() {
  # deb822 sources (URIs:) first, then one-line sources (deb URL bookworm ...).
  local sources
  sources=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  awk '/^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }' <<<"$sources" | grep . ||
    awk '$1 == "deb" && $3 == "'"$suite"'" { print $2; exit }' <<<"$sources" | grep . ||
    { echo "debian-root: no Debian mirror in apt's sources" >&2; return 1; }
}

mirror=$(mirror_from_apt_sources)
cache_dir=${SHOAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/shoal}/ansible-root
key=$(printf '%s\n' "layout 1" "$suite" minbase "$mirror" "${packages[@]}" | sha256sum | cut -c1-16)
cache=$cache_dir/$suite-$key.tar
mkdir -p "$cache_dir" "$root"

# One builder at a time; a second test run waits for the first one's tarball instead of racing it.
exec 9>"$cache_dir/.lock"
flock 9
if [ ! -f "$cache" ]; then
  echo "debian-root: debootstrap $suite from $mirror with ${packages[*]} (cached as $cache afterwards)" >&2
  build=$(mktemp -d "$cache_dir/build.XXXXXX")
  trap 'rm -rf --one-file-system "$build"' EXIT
  # debootstrap mounts /proc and /sys inside the target; in a private mount namespace no mount can
  # outlive it, even when it fails, so removing the build tree never reaches the host's /proc.
  unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" "$suite" "$build" "$mirror" 2>&1 | while IFS= read -r line; do printf '%(%T)T %s\n' -1 "$line"; done >"$build.log" ||
    { tail -n 40 "$build.log" >&2; rm -f "$build.log"; exit 1; }
  mv "$build.log" "$cache_dir/last-build.log"
  # The downloaded .debs are not needed again; the package lists stay, so apt in the root works.
  rm -f "$build"/var/cache/apt/archives/*.deb
  # mktemp made the build directory 0700; as the root's / it must be traversable by every user.
  chmod 0755 "$build"
  tar -C "$build" --numeric-owner -cf "$cache.partial" .
  mv "$cache.partial" "$cache"
  # Roots of an older package list or mirror are never read again.
  find "$cache_dir" -maxdepth 1 -name "$suite-*.tar" ! -name "$(basename "$cache")" -delete
fi
flock -u 9
tar -C "$root" --numeric-owner -xf "$cache"
chmod 0755 "$root"
# Name resolution for apt inside the root, as on a configured head node.
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
