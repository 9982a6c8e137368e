#!/usr/bin/env bash
# Run inside the head-node root (in-root.sh --isolated-net ROOT bash start-appliance.sh [PROBE-ARG...]):
# starts the installed appliance the way its systemd unit does (its ExecStart, User, Group,
# WorkingDirectory, Environment, UMask, ambient capabilities and no-new-privileges, all read from the
# installed unit), lets probe-api.mjs ask it questions, stops it, and prints the probe's JSON
# result as the last line. systemd is not running in a chroot, so this is as close to
# `systemctl start shoal` as the root allows; the unit's file-system sandboxing is not applied.
set -euo pipefail
unit=/etc/systemd/system/shoal.service
setting() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
exec_start=$(setting ExecStart)
user=$(setting User)
group=$(setting Group)
workdir=$(setting WorkingDirectory)
umask "$(setting UMask)"
capabilities=$(setting AmbientCapabilities | tr 'A-Z' 'a-z' | sed 's/cap_//g; s/\([a-z_]\+\)/+\1/g; s/ /,/g')
environment=()
for e in $(setting Environment); do environment+=("$e"); done
node=${exec_start%% *}
log=$(mktemp)

cd "$workdir"
# shellcheck disable=SC2086 # ExecStart is a command line: split into words as systemd does
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${environment[@]}" \
  setpriv --reuid="$user" --regid="$group" --init-groups \
  --inh-caps="$capabilities" --ambient-caps="$capabilities" --bounding-set="-all,$capabilities" --no-new-privs \
  $exec_start >"$log" 2>&1 &
appliance=$!
trap 'kill "$appliance" 2>/dev/null; wait "$appliance" 2>/dev/null || true; rm -f "$log"' EXIT

if ! "$node" "$(dirname "$0")/probe-api.mjs" /etc/shoal/config.yaml "$appliance" "$@"; then
  echo "start-appliance: the probe failed; the appliance's output:" >&2
  cat "$log" >&2
  exit 1
fi
