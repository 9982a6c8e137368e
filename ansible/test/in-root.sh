#!/usr/bin/env bash
# Runs COMMAND with ROOT's /proc, /sys and /dev mounted, as a head node has them, in namespaces of
# its own: a private mount namespace (the mounts vanish with the command, so nothing leaks into the
# host's mount table when a test fails, and removing ROOT afterwards cannot reach the host's /dev)
# and a PID namespace (every process the command starts, an appliance too, ends with it).
#   in-root.sh [--outside] [--isolated-net] ROOT COMMAND [ARG...]
# COMMAND runs chrooted into ROOT with a clean environment; with --outside it runs on the host
# instead, with ROOT prepared (ansible-playbook reaching ROOT through its chroot connection).
# --isolated-net adds a network namespace with only loopback up: whatever the command starts
# listens nowhere the host or any network can see.
set -euo pipefail
outside=0
isolated_net=0
namespaces=(--mount --propagation private --pid --fork --kill-child)
while [ $# -gt 0 ]; do
  case $1 in
    --outside) outside=1 ;;
    --isolated-net) isolated_net=1 namespaces+=(--net) ;;
    *) break ;;
  esac
  shift
done
root=${1:?usage: in-root.sh [--outside] [--isolated-net] ROOT COMMAND [ARG...]}
shift
[ $# -gt 0 ] || { echo "in-root.sh: no command" >&2; exit 2; }
root=$(readlink -f "$root")

# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare "${namespaces[@]}" -- bash -euc '
  outside=$1 isolated_net=$2 root=$3
  shift 3
  # /proc of this PID namespace: the root sees only the command and what it starts.
  mount -t proc proc "$root/proc"
  mount -t sysfs -o ro sysfs "$root/sys"
  mount --rbind /dev "$root/dev"
  if [ "$isolated_net" = 1 ]; then ip link set lo up; fi
  if [ "$outside" = 1 ]; then exec "$@"; fi
  # A clean environment, as a login on the head node has: nothing of the test runner leaks in.
  exec chroot "$root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 "$@"
' in-root "$outside" "$isolated_net" "$root" "$@"
