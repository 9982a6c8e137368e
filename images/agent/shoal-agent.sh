#!/bin/sh
# shoal-agent: runs in a node's initramfs, says hello to the Shoal appliance, then sends
# heartbeats and obeys the action in each reply. The wire protocol is in PROTOCOL.md next
# to this file. Needs only busybox (ash, wget, awk, sed, timeout; dd, sha256sum, blockdev and
# gunzip for disk writes), zstd for a zstd image (the deploy@1 image carries it), and kexec
# (kexec-tools) for a kexec action.
#
# The token on the kernel command line is a one-time bootstrap, readable by anyone on the node;
# the hello trades it for this boot's token, which is kept in a root-only file and in a shell
# variable only: never in an argument (any user reads those in /proc) or the environment. So
# every request body, token included, goes to wget as a file (--post-file).
#
# Every path it reads can be overridden from the environment so tests can run it on a
# host; SHOAL_POWER_CMD in particular keeps a "reboot" action from rebooting that host.

umask 077 # the token file and request bodies: root only
CMDLINE_FILE=${SHOAL_CMDLINE:-/proc/cmdline}
BOOT_ID_FILE=${SHOAL_BOOT_ID:-/proc/sys/kernel/random/boot_id}
IMAGE_FILE=${SHOAL_IMAGE_FILE:-/etc/shoal-image}
WORK_DIR=${SHOAL_WORK_DIR:-/run/shoal}
TOKEN_FILE=${SHOAL_TOKEN_FILE:-$WORK_DIR/token}
TOKEN_CHARS='A-Za-z0-9._~+/=-'
POWER_CMD=${SHOAL_POWER_CMD:-}
SYS_DIR=${SHOAL_SYS_DIR:-/sys}    # the hardware report's sources, so a test can give it a made-up machine
PROC_DIR=${SHOAL_PROC_DIR:-/proc}
DEV_DIR=${SHOAL_DEV_DIR:-/dev}    # where the disks a write-disk or erase-disk action names are
# An OS installed to disk: the GRUB environment block on its ESP whose shoal_args its kernel got.
BOOT_ENV_FILE=${SHOAL_BOOT_ENV_FILE:-/boot/efi/shoal/grubenv}
# Under systemd (the real-OS images), the unit a drain stops; the initramfs has a placeholder instead.
WORKLOAD_UNIT=${SHOAL_WORKLOAD_UNIT:-}
SYSTEMD_DIR=${SHOAL_SYSTEMD_DIR:-/run/systemd/system} # exists when systemd is PID 1 (sd_booted)
ETC_DIR=${SHOAL_ETC_DIR:-/etc}       # where the hostname goes, in an image without cloud-init
ROOT_HOME=${SHOAL_ROOT_HOME:-/root}  # whose .ssh/authorized_keys the configuration's keys go to there
HOSTNAME_CMD=${SHOAL_HOSTNAME_CMD:-hostname}
CLOUD_INIT_CMD=${SHOAL_CLOUD_INIT_CMD:-cloud-init} # present: it applies the configuration, not the agent
KEXEC_CMD=${SHOAL_KEXEC_CMD:-kexec}
REQUEST_TIMEOUT=15   # seconds; busybox wget has no timeout of its own
MAX_BACKOFF=60       # seconds between retries once the appliance keeps failing
DEFAULT_INTERVAL=10  # seconds between heartbeats until a reply says otherwise

log() { echo "shoal-agent: $*" >&2; }

# The last value of KEY=... on the kernel command line (the kernel's own rule), or nothing.
cmdline_value() {
  awk -v key="$1=" '{ for (i = 1; i <= NF; i++) if (index($i, key) == 1) v = substr($i, length(key) + 1) } END { print v }' "$CMDLINE_FILE"
}

# Values go into JSON and HTTP headers unescaped, so each must stay inside a safe alphabet.
only_chars() { # VALUE ALPHABET-AS-BRACKET-EXPRESSION-BODY
  case $1 in '' | *[!$2]*) return 1 ;; esac
}

url=$(cmdline_value shoal.url)
node=$(cmdline_value shoal.node)
bootstrap=$(cmdline_value shoal.token)
image=$(cmdline_value shoal.image)
url=${url%/}
case $url in http://*) only_chars "$url" ']A-Za-z0-9._:/[-' || url= ;; *) url= ;; esac
only_chars "$node" 'A-Za-z0-9._-' || node=
only_chars "$bootstrap" "$TOKEN_CHARS" || bootstrap=
if [ -z "$url" ] || [ -z "$node" ] || [ -z "$bootstrap" ]; then
  log "kernel command line needs shoal.url=http://..., shoal.node=<id> and shoal.token=<token>; got: $(cat "$CMDLINE_FILE")"
  exit 2
fi
# shoal.image is what the appliance meant to boot; report null rather than a mangled value.
if only_chars "$image" 'A-Za-z0-9._@+-'; then image_json="\"$image\""; else image_json=null; fi
baked_image=$(sed -n 's/^image=//p' "$IMAGE_FILE" 2>/dev/null | head -n 1)
if only_chars "$baked_image" 'A-Za-z0-9._@+-'; then baked_image_json="\"$baked_image\""; else baked_image_json=null; fi
boot_id=$(cat "$BOOT_ID_FILE")
only_chars "$boot_id" '0-9a-f-' || { log "unreadable boot id in $BOOT_ID_FILE"; exit 2; }
kernel=$(uname -r)
mkdir -p "$WORK_DIR" && chmod 700 "$WORK_DIR"
# This boot's token, when an earlier run of the agent got it (/init restarts the agent; /run is
# a tmpfs, so a file here is from this boot). Until then requests carry the bootstrap.
token=
[ -r "$TOKEN_FILE" ] && read -r token < "$TOKEN_FILE"
only_chars "$token" "$TOKEN_CHARS" || token=

uptime_seconds() { cut -d ' ' -f 1 /proc/uptime; }

# [{"name":"eth0","mac":"52:54:00:..","ipv4":["10.0.0.5/24"]},...] for every interface but loopback.
interfaces_json() {
  sep=
  printf '['
  for dev in $(ls /sys/class/net); do
    [ "$dev" = lo ] && continue
    only_chars "$dev" 'A-Za-z0-9._@-' || continue
    mac=$(cat "/sys/class/net/$dev/address" 2>/dev/null)
    addrs=$(ip -4 addr show dev "$dev" 2>/dev/null | sed -n 's/.* inet \([0-9./]*\).*/"\1"/p' | tr '\n' ',')
    printf '%s{"name":"%s","mac":"%s","ipv4":[%s]}' "$sep" "$dev" "$mac" "${addrs%,}"
    sep=,
  done
  printf ']'
}

# A sysfs or /proc value as JSON-safe text: PROTOCOL.md's hardware alphabet, no outer spaces, at most 128 characters.
clean() { # FILE
  { tr -cd 'A-Za-z0-9 ._:/()@+,#-' < "$1"; } 2>/dev/null | sed 's/^ *//; s/ *$//' | head -c 128
}

number() { # FILE: its first line if it is a whole number, else 0
  n=$(head -n 1 "$1" 2>/dev/null)
  case $n in '' | *[!0-9]*) echo 0 ;; *) echo "$n" ;; esac
}

# Every block device backed by hardware (it has a device link; loop, ram and dm have none), but
# optical and floppy drives: the disks an install can pick from.
disks_json() {
  sep=
  printf '['
  for path in "$SYS_DIR"/block/*; do
    [ -e "$path/device" ] || continue
    name=${path##*/}
    case $name in sr* | fd*) continue ;; esac
    only_chars "$name" 'A-Za-z0-9._-' || continue
    serial=$(clean "$path/device/serial")
    [ -n "$serial" ] || serial=$(clean "$path/serial") # virtio-blk keeps it beside the queue
    wwn=$(clean "$path/wwid")
    [ -n "$wwn" ] || wwn=$(clean "$path/device/wwid")
    rotational=false; [ "$(number "$path/queue/rotational")" = 1 ] && rotational=true
    removable=false; [ "$(number "$path/removable")" = 1 ] && removable=true
    printf '%s{"name":"%s","sizeBytes":%s,"model":"%s","serial":"%s","wwn":"%s","rotational":%s,"removable":%s}' \
      "$sep" "$name" "$(( $(number "$path/size") * 512 ))" "$(clean "$path/device/model")" "$serial" "$wwn" "$rotational" "$removable"
    sep=,
  done
  printf ']'
}

# Interfaces backed by hardware (bridges, bonds, VLANs and lo have no device link), with the
# link speed the driver reports (unreadable or -1 when the link is down: 0) and the driver's name.
nics_json() {
  sep=
  printf '['
  for path in "$SYS_DIR"/class/net/*; do
    [ -e "$path/device" ] || continue
    name=${path##*/}
    only_chars "$name" 'A-Za-z0-9._@-' || continue
    mac=$(tr -cd '0-9a-f:' 2>/dev/null < "$path/address")
    driver=$(readlink "$path/device/driver" 2>/dev/null)
    driver=$(printf '%s' "${driver##*/}" | tr -cd 'A-Za-z0-9._-' | head -c 64)
    printf '%s{"name":"%s","mac":"%s","speedMbps":%s,"driver":"%s"}' "$sep" "$name" "$mac" "$(number "$path/speed")" "$driver"
    sep=,
  done
  printf ']'
}

hardware_json() {
  dmi=$SYS_DIR/class/dmi/id
  firmware=bios; [ -d "$SYS_DIR/firmware/efi" ] && firmware=uefi
  # A core is a distinct (physical id, core id) pair; without core ids (some hypervisors), one per thread.
  cores=$(awk -F': *' '/^physical id/ { p = $2 } /^core id/ { seen[p " " $2] = 1 } END { n = 0; for (k in seen) n++; print n }' "$PROC_DIR/cpuinfo" 2>/dev/null)
  cpu_model=$(sed -n 's/^model name[[:space:]]*: *//p' "$PROC_DIR/cpuinfo" 2>/dev/null | head -n 1 | tr -cd 'A-Za-z0-9 ._:/()@+,#-' | head -c 128)
  threads=$(grep -c '^processor' "$PROC_DIR/cpuinfo" 2>/dev/null)
  sockets=$(sed -n 's/^physical id[[:space:]]*: *//p' "$PROC_DIR/cpuinfo" 2>/dev/null | sort -u | grep -c .)
  [ "${sockets:-0}" -gt 0 ] || sockets=1 # no physical id lines (some hypervisors): one socket
  memory_kib=$(awk '$1 == "MemTotal:" { print $2; exit }' "$PROC_DIR/meminfo" 2>/dev/null)
  case $memory_kib in '' | *[!0-9]*) memory_kib=0 ;; esac
  [ "${cores:-0}" -gt 0 ] || cores=${threads:-0}
  printf '{"firmware":"%s","system":{"vendor":"%s","product":"%s","serial":"%s","uuid":"%s"},"cpu":{"model":"%s","sockets":%s,"cores":%s,"threads":%s},"memoryBytes":%s,"disks":%s,"nics":%s}' \
    "$firmware" "$(clean "$dmi/sys_vendor")" "$(clean "$dmi/product_name")" "$(clean "$dmi/product_serial")" "$(clean "$dmi/product_uuid")" \
    "$cpu_model" "$sockets" "$cores" "${threads:-0}" "$((memory_kib * 1024))" "$(disks_json)" "$(nics_json)"
}

# Whether this boot can load and execute another kernel (the kexec action): ready, or why not.
kexec_support() {
  command -v "$KEXEC_CMD" >/dev/null 2>&1 || { echo no-tool; return; }
  [ -e "$SYS_DIR/kernel/kexec_loaded" ] || { echo unsupported; return; }
  [ "$(cat "$PROC_DIR/sys/kernel/kexec_load_disabled" 2>/dev/null)" = 1 ] && { echo disabled; return; }
  echo ready
}

hello_body() {
  printf '{"node":"%s","bootId":"%s","image":%s,"bakedImage":%s,"kernel":"%s","uptime":%s,"interfaces":%s,"hardware":%s,"kexec":"%s"%s%s}' \
    "$node" "$boot_id" "$image_json" "$baked_image_json" "$kernel" "$(uptime_seconds)" "$(interfaces_json)" "$(hardware_json)" "$(kexec_support)" "$(system_json)" "$(config_json)"
}

# The node's configuration (its profiles; PROTOCOL.md): the NoCloud seed cloud-init reads,
# `ds=nocloud-net;s=URL/` on the command line. Its meta-data names the configuration's digest in
# the instance-id (shoal-<node>-<sha256>), which the hello reports. In an image without cloud-init
# the agent applies the hostname and the authorized keys itself.
seed=$(cmdline_value ds)
case $seed in nocloud-net\;s=http://* | nocloud\;s=http://*) seed=${seed#*;s=}; seed=${seed%%;*} ;; *) seed= ;; esac
only_chars "$seed" ']A-Za-z0-9._:/[-' || seed=
config_digest=
config_read=no

# Reads the seed's meta-data once (retried with each hello until it answers).
read_config() {
  [ -n "$seed" ] && [ "$config_read" = no ] || return 0
  meta=$(timeout "$REQUEST_TIMEOUT" wget -q -O - "${seed}meta-data" 2>/dev/null) || { log "node configuration not read (${seed}meta-data did not answer); trying again with the next hello"; return 0; }
  config_read=yes
  instance=$(printf '%s\n' "$meta" | sed -n 's/^instance-id: *//p' | head -n 1)
  digest=${instance##*-}
  if [ "${#digest}" = 64 ] && only_chars "$digest" '0-9a-f'; then config_digest=$digest; fi
  command -v "$CLOUD_INIT_CMD" >/dev/null 2>&1 || apply_identity "$meta"
}

# apply_identity META-DATA: local-hostname and public-keys, as cloud-init would apply them.
apply_identity() {
  name=$(printf '%s\n' "$1" | sed -n 's/^local-hostname: *//p' | head -n 1)
  if only_chars "$name" 'A-Za-z0-9.-'; then
    echo "${name%%.*}" > "$ETC_DIR/hostname"
    $HOSTNAME_CMD "${name%%.*}" && log "hostname ${name%%.*} (the node's configuration: $name)"
  fi
  # One key per list item (the appliance writes them unfolded); quotes YAML put around one go.
  keys=$(printf '%s\n' "$1" | awk '/^public-keys:/ { on = 1; next } on && /^ *- / { sub(/^ *- /, ""); gsub(/^["\047]|["\047]$/, ""); print; next } { on = 0 }')
  [ -n "$keys" ] || return 0
  mkdir -p "$ROOT_HOME/.ssh" && chmod 700 "$ROOT_HOME/.ssh" &&
    printf '%s\n' "$keys" > "$ROOT_HOME/.ssh/authorized_keys.new" && chmod 600 "$ROOT_HOME/.ssh/authorized_keys.new" &&
    mv "$ROOT_HOME/.ssh/authorized_keys.new" "$ROOT_HOME/.ssh/authorized_keys" &&
    log "$(printf '%s\n' "$keys" | wc -l) authorized key(s) for root (the node's configuration)"
}

# `,"config":"<sha256>"`: the configuration this boot was given, once its meta-data was read.
config_json() {
  [ -n "$config_digest" ] && printf ',"config":"%s"' "$config_digest"
  return 0
}

# `,"system":"running"`: systemctl is-system-running under systemd, so a degraded node shows; nothing elsewhere.
system_json() {
  [ -d "$SYSTEMD_DIR" ] || return 0
  system=$(systemctl is-system-running 2>/dev/null | tr -cd 'a-z' | head -c 32)
  printf ',"system":"%s"' "${system:-unknown}"
}

status_body() { # STATE
  printf '{"node":"%s","bootId":"%s","uptime":%s,"state":"%s"%s%s%s}' "$node" "$boot_id" "$(uptime_seconds)" "$1" "$(system_json)" "$(disk_json)" "$(kexec_json)"
}

# post PATH BODY: sends BODY with the credential (the boot token, or the bootstrap before the
# hello) as its first field; sets $status to the HTTP status (0 when there was no complete
# answer) and leaves a 200 reply's body in $WORK_DIR/reply.
post() {
  rm -f "$WORK_DIR/reply"
  printf '{"token":"%s",%s' "${token:-$bootstrap}" "${2#\{}" > "$WORK_DIR/request"
  timeout "$REQUEST_TIMEOUT" wget -q -S -O "$WORK_DIR/reply" \
    --header 'Content-Type: application/json' \
    --post-file "$WORK_DIR/request" "$url$1" 2>"$WORK_DIR/wget.err"
  wget_rc=$?
  status=$(sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' "$WORK_DIR/wget.err" | tail -n 1)
  if [ -z "$status" ] || { [ "$status" = 200 ] && [ "$wget_rc" != 0 ]; }; then status=0; fi
}

reply_value() { tr -d '\r' < "$WORK_DIR/reply" | sed -n "s/^$1=//p" | tail -n 1; }

# The boot token a hello reply hands out: kept in the file (written whole, then renamed) and used
# from now on. Returns 1 when the reply has none.
keep_token() {
  new_token=$(reply_value token)
  [ -n "$new_token" ] || return 1
  if ! only_chars "$new_token" "$TOKEN_CHARS"; then log "reply has a token outside the token alphabet; ignored"; return 1; fi
  printf '%s\n' "$new_token" > "$TOKEN_FILE.new" && mv -f "$TOKEN_FILE.new" "$TOKEN_FILE" || log "cannot write $TOKEN_FILE; the token lasts only as long as this agent"
  token=$new_token
}

# A hello's `next=` (an OS booted from disk): the bootstrap of the node's next boot from this disk,
# put in place of this boot's, spent now, in the GRUB environment block its words come from, so a
# reboot the appliance did not arm (a power cut, a reboot by hand) can still say hello.
keep_next_bootstrap() {
  next=$(reply_value next)
  [ -n "$next" ] || return 0
  if ! only_chars "$next" "$TOKEN_CHARS"; then log "reply has a next bootstrap outside the token alphabet; ignored"; return 0; fi
  args=$(sed -n 's/^shoal_args=//p' "$BOOT_ENV_FILE" 2>/dev/null)
  case " $args " in
    *" shoal.token=$next "*) return 0 ;; # repeated in every reply of this boot; kept once
    *" shoal.token="*) ;;
    *) log "the appliance sent the next boot's bootstrap, but $BOOT_ENV_FILE has no shoal.token to replace; the next boot from disk cannot say hello"; return 0 ;;
  esac
  args=$(printf '%s' "$args" | sed "s|shoal\.token=[^ ]*|shoal.token=$next|")
  { printf '# GRUB Environment Block\nshoal_args=%s\n' "$args"; } > "$BOOT_ENV_FILE.new"
  head -c $((1024 - $(wc -c < "$BOOT_ENV_FILE.new"))) /dev/zero | tr '\0' '#' >> "$BOOT_ENV_FILE.new"
  if [ "$(wc -c < "$BOOT_ENV_FILE.new")" = 1024 ] && mv -f "$BOOT_ENV_FILE.new" "$BOOT_ENV_FILE" && sync; then
    log "the next boot from disk has its bootstrap ($BOOT_ENV_FILE)"
  else
    rm -f "$BOOT_ENV_FILE.new"
    log "cannot rewrite $BOOT_ENV_FILE; the next boot from disk cannot say hello"
  fi
}

backoff=1
back_off() {
  delay=$((backoff + ${RANDOM:-0} % (backoff / 2 + 1)))  # jitter, so a fleet does not retry in lockstep
  log "retrying in ${delay}s"
  sleep "$delay"
  backoff=$((backoff * 2))
  [ "$backoff" -gt "$MAX_BACKOFF" ] && backoff=$MAX_BACKOFF
}

# --- Disk jobs: write-disk and erase-disk (PROTOCOL.md, "Disk actions") ---
# A job runs in the background so heartbeats go on; its state lives in files under DISK_DIR so
# the heartbeat (and an agent restarted by /init) can report it, and so the action, which the
# appliance repeats until it sees the result, starts a job id only once.
DISK_DIR=$WORK_DIR/disk
MIB=1048576
DISK_CHUNK_MIB=8 # progress is counted per chunk written
# busybox wget has no read timeout: a store that goes silent without closing the connection is cut
# off after this many seconds without a chunk written.
DISK_STALL_SECONDS=${SHOAL_DISK_STALL_SECONDS:-120}
ERROR_CHARS='A-Za-z0-9 ._:/()@+,#-'

disk_file() { cat "$DISK_DIR/$1" 2>/dev/null; }
disk_set() { printf '%s\n' "$2" > "$DISK_DIR/$1.new" && mv -f "$DISK_DIR/$1.new" "$DISK_DIR/$1"; }

# The pid of the job still running, or nothing (a job whose process is gone is not running).
disk_running_pid() {
  case $(disk_file state) in writing | erasing) ;; *) return 0 ;; esac
  pid=$(disk_file pid)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# `,"disk":"writing","diskJob":"j1","diskBytes":N[,"diskSha256":..][,"diskError":..]` once a job was started.
disk_json() {
  job=$(disk_file job)
  [ -n "$job" ] || return 0
  disk_state=$(disk_file state)
  # A job that died without saying so (the agent was killed with it): report it failed, once and for all.
  if { [ "$disk_state" = writing ] || [ "$disk_state" = erasing ]; } && [ -z "$(disk_running_pid)" ]; then
    # Read again now the process is seen gone: it may have ended, and said so, in between.
    disk_state=$(disk_file state)
    case $disk_state in writing | erasing) disk_set error "the disk job stopped before it ended (the agent was killed)"; disk_set state failed; disk_state=failed ;; esac
  fi
  printf ',"disk":"%s","diskJob":"%s","diskBytes":%s' "$disk_state" "$job" "$(disk_file bytes | tr -cd 0-9 | grep . || echo 0)"
  [ "$disk_state" = written ] && printf ',"diskSha256":"%s"' "$(disk_file sha256)"
  [ "$disk_state" = failed ] && printf ',"diskError":"%s"' "$(disk_file error)"
  return 0
}

# Ends the job: its state, and a marker that makes the main loop report at once.
disk_end() { # STATE
  disk_set state "$1"
  : > "$DISK_DIR/ended"
}
disk_fail() { # REASON
  log "disk job $(disk_file job) failed: $1"
  disk_set error "$(printf '%s' "$1" | tr -cd "$ERROR_CHARS" | head -c 200)"
  disk_end failed
}

# zero_range DEVICE OFFSET LENGTH: writes zeros, in bytes, without truncating (the tests' disk is a file).
zero_range() {
  dd if=/dev/zero of="$1" bs=65536 seek="$2" count="$3" oflag=seek_bytes iflag=count_bytes conv=notrunc 2>/dev/null
}

# Kills the download once no chunk has been written for DISK_STALL_SECONDS (the write's background watcher).
stall_watch() {
  last=; still=0
  while sleep 1; do
    now=$(disk_file bytes)
    if [ "$now" = "$last" ]; then still=$((still + 1)); else still=0; last=$now; fi
    [ "$still" -ge "$DISK_STALL_SECONDS" ] || continue
    : > "$DISK_DIR/stalled"
    kill "$(disk_file fetch.pid)" 2>/dev/null
    return
  done
}

# copy_chunks DEVICE FROM_MIB MIBS: copies MIBS MiB from stdin to DEVICE at FROM_MIB, counting
# progress in the bytes file (which starts at FROM_MIB). Returns 1 when stdin ended early.
copy_chunks() {
  at=$2
  end=$(($2 + $3))
  while [ "$at" -lt "$end" ]; do
    n=$((end - at)); [ "$n" -gt "$DISK_CHUNK_MIB" ] && n=$DISK_CHUNK_MIB
    full=$(dd of="$1" bs=1M seek="$at" count="$n" iflag=fullblock conv=notrunc 2>&1 | sed -n 's/^\([0-9]*\)+[0-9]* records in$/\1/p')
    at=$((at + ${full:-0}))
    disk_set bytes $((at * MIB))
    [ "${full:-0}" = "$n" ] || return 1
  done
}

# The action's disk.* fields, checked, into variables; returns 1 with the reason in field_error when one is bad.
read_disk_fields() { # write-disk|erase-disk
  device=$(reply_value 'disk\.device'); device_bytes=$(reply_value 'disk\.deviceBytes')
  case $device in '' | *[!a-z0-9]*) field_error="disk.device '$device' is not a name under /sys/block"; return 1 ;; esac
  case $device_bytes in '' | *[!0-9]*) field_error="disk.deviceBytes is not a number"; return 1 ;; esac
  if [ "$1" = erase-disk ]; then
    erase_mode=$(reply_value 'disk\.mode')
    case $erase_mode in quick | full) return 0 ;; *) field_error="disk.mode '$erase_mode' is not quick or full"; return 1 ;; esac
  fi
  image_path=$(reply_value 'disk\.path'); format=$(reply_value 'disk\.format'); image_bytes=$(reply_value 'disk\.bytes')
  want_sha=$(reply_value 'disk\.sha256' | tr 'A-F' 'a-f'); env_offset=$(reply_value 'disk\.envOffset'); boot_args=$(reply_value 'disk\.bootArgs')
  case $image_path in /images/*) only_chars "$image_path" 'A-Za-z0-9._/@+-' && case $image_path in *..*) false ;; esac || { field_error="disk.path has characters outside its alphabet, or .."; return 1; } ;;
    *) field_error="disk.path must start with /images/"; return 1 ;; esac
  case $format in raw | gzip | zstd) ;; *) field_error="disk.format '$format' is not raw, gzip or zstd"; return 1 ;; esac
  case $image_bytes in '' | *[!0-9]*) field_error="disk.bytes is not a number"; return 1 ;; esac
  if [ "$image_bytes" -lt "$MIB" ] || [ $((image_bytes % MIB)) != 0 ]; then field_error="disk.bytes $image_bytes is not a whole number of MiB"; return 1; fi
  [ "${#want_sha}" = 64 ] && only_chars "$want_sha" '0-9a-f' || { field_error="disk.sha256 is not 64 hex digits"; return 1; }
  [ -n "$env_offset" ] && [ -n "$boot_args" ] || { env_offset=; return 0; }
  case $env_offset in *[!0-9]*) field_error="disk.envOffset is not a number"; return 1 ;; esac
  if [ $((env_offset + 1024)) -gt "$image_bytes" ] || { [ "$env_offset" -lt "$MIB" ] && [ $((env_offset + 1024)) -gt "$MIB" ]; }; then
    field_error="disk.envOffset $env_offset: the 1024-byte block must lie inside the image and not straddle its first MiB"; return 1
  fi
  # GRUB's env file escapes backslashes and newlines; words from this alphabet need no escaping.
  only_chars "$boot_args" '] A-Za-z0-9._:/[@+=~,;-' || { field_error="disk.bootArgs has characters outside its alphabet"; return 1; }
  # 24 + 1 header, 11 + 1 around the words: the rest of the 1024 bytes is room for them.
  [ "${#boot_args}" -le 987 ] || { field_error="disk.bootArgs is ${#boot_args} characters, at most 987 fit the 1024-byte environment block"; return 1; }
}

# The device the job works on, checked against what the appliance saw; prints its size in bytes.
check_device() {
  [ -r "$SYS_DIR/block/$device/size" ] && [ -e "$DEV_DIR/$device" ] || { disk_fail "no disk $device on this node"; return 1; }
  size=$(( $(number "$SYS_DIR/block/$device/size") * 512 ))
  [ "$size" = "$device_bytes" ] || { disk_fail "disk $device is $size bytes, the appliance expected $device_bytes (another disk)"; return 1; }
  # The agent runs in installed systems too: never overwrite a disk something has mounted (the running root).
  mounted=$(awk -v disk="/dev/$device" '$1 == disk || index($1, disk) == 1 && substr($1, length(disk) + 1) ~ /^p?[0-9]+$/ { print $1 " on " $2; exit }' "$PROC_DIR/mounts" 2>/dev/null)
  [ -z "$mounted" ] || { disk_fail "disk $device is in use: $mounted"; return 1; }
}

write_disk() {
  check_device || return
  [ "$image_bytes" -le "$size" ] || { disk_fail "disk too small: the image is $image_bytes bytes, disk $device $size bytes"; return; }
  case $format in raw) unpack=cat ;; gzip) unpack='gunzip -c' ;; zstd) unpack='zstd -dc' ;; esac
  command -v "${unpack%% *}" >/dev/null 2>&1 || { disk_fail "${unpack%% *} is missing on this node, so a $format image cannot be written"; return; }
  dev=$DEV_DIR/$device
  # No partition table at either end until the whole image is there and checked: a half-written disk never boots.
  zero_range "$dev" 0 "$MIB" && zero_range "$dev" $((size - MIB)) "$MIB" && sync || { disk_fail "cannot write to $dev"; return; }
  rm -f "$DISK_DIR/first" "$DISK_DIR/fetch.rc" "$DISK_DIR/unpack.rc" "$DISK_DIR/short" "$DISK_DIR/fetch.pid" "$DISK_DIR/stalled"
  log "writing $url$image_path ($format, $image_bytes bytes) to $dev"
  stall_watch & watch_pid=$!
  { wget -q -O - "$url$image_path" 2>"$DISK_DIR/fetch.err" & echo $! > "$DISK_DIR/fetch.pid"; wait $!; echo $? > "$DISK_DIR/fetch.rc"; } |
    { $unpack 2>"$DISK_DIR/unpack.err"; echo $? > "$DISK_DIR/unpack.rc"; } |
    # The first MiB (the partition table, the boot code) stays aside until the rest is checked.
    { dd of="$DISK_DIR/first" bs=1M count=1 iflag=fullblock 2>/dev/null && [ "$(wc -c < "$DISK_DIR/first")" = "$MIB" ] &&
      copy_chunks "$dev" 1 $((image_bytes / MIB - 1)) || : > "$DISK_DIR/short"; }
  kill "$watch_pid" 2>/dev/null
  if [ -e "$DISK_DIR/stalled" ]; then disk_fail "the image store sent nothing for $DISK_STALL_SECONDS s after $(( $(number "$DISK_DIR/bytes") / MIB )) MiB: fetching $url$image_path stopped"; return; fi
  if [ "$(disk_file fetch.rc)" != 0 ]; then disk_fail "fetching $url$image_path failed: $(tail -n 1 "$DISK_DIR/fetch.err")"; return; fi
  if [ "$(disk_file unpack.rc)" != 0 ]; then disk_fail "unpacking the $format image failed: $(tail -n 1 "$DISK_DIR/unpack.err")"; return; fi
  if [ -e "$DISK_DIR/short" ]; then disk_fail "the image ended after $(disk_file bytes) bytes, disk.bytes says $image_bytes"; return; fi
  sync
  blockdev --flushbufs "$dev" 2>/dev/null # read back from the disk, not from the page cache
  got_sha=$({ cat "$DISK_DIR/first"; dd if="$dev" bs=1M skip=1 count=$((image_bytes / MIB - 1)) 2>/dev/null; } | sha256sum | cut -d ' ' -f 1)
  [ "$got_sha" = "$want_sha" ] || { disk_fail "checksum mismatch: wrote $got_sha, expected $want_sha"; return; }
  if [ -n "$env_offset" ]; then
    { printf '# GRUB Environment Block\nshoal_args=%s\n' "$boot_args"; } > "$DISK_DIR/envblock"
    head -c $((1024 - $(wc -c < "$DISK_DIR/envblock"))) /dev/zero | tr '\0' '#' >> "$DISK_DIR/envblock"
    if [ "$env_offset" -lt "$MIB" ]; then env_target=$DISK_DIR/first; else env_target=$dev; fi
    dd if="$DISK_DIR/envblock" of="$env_target" bs=1024 seek="$env_offset" oflag=seek_bytes conv=notrunc 2>/dev/null || { disk_fail "cannot write the boot environment block"; return; }
  fi
  dd if="$DISK_DIR/first" of="$dev" bs=1M count=1 conv=notrunc,fsync 2>/dev/null && sync || { disk_fail "cannot write the first MiB of $dev"; return; }
  blockdev --rereadpt "$dev" 2>/dev/null # a file or a busy disk: the kernel reads the table at the next boot anyway
  disk_set sha256 "$got_sha"
  log "wrote $device: sha256 $got_sha"
  disk_end written
}

erase_disk() {
  check_device || return
  dev=$DEV_DIR/$device
  log "erasing $dev ($erase_mode)"
  if [ "$erase_mode" = full ]; then
    copy_chunks "$dev" 0 $((size / MIB)) < /dev/zero && zero_range "$dev" $((size / MIB * MIB)) $((size % MIB)) || { disk_fail "cannot zero $dev"; return; }
  else
    # The partition tables at both ends, and each partition's first MiB: its file system's superblock.
    zero_range "$dev" 0 "$MIB" && zero_range "$dev" $((size - MIB)) "$MIB" || { disk_fail "cannot zero $dev"; return; }
    for part in "$SYS_DIR/block/$device/$device"*; do
      [ -r "$part/start" ] || continue
      zero_range "$dev" $(( $(number "$part/start") * 512 )) "$MIB" || { disk_fail "cannot zero partition ${part##*/}"; return; }
    done
  fi
  disk_set bytes "$size"
  sync
  blockdev --rereadpt "$dev" 2>/dev/null
  disk_end erased
}

start_disk_job() { # write-disk|erase-disk
  job=$(reply_value 'disk\.job')
  [ "$job" = "$(disk_file job)" ] && return 0 # repeated until the appliance sees the result
  if ! only_chars "$job" 'A-Za-z0-9._,-' || [ "${#job}" -gt 64 ]; then log "$1 with a bad disk.job '$job' ignored"; return 0; fi
  running=$(disk_running_pid)
  if [ -n "$running" ]; then log "$1 job $job ignored: job $(disk_file job) is still running"; return 0; fi
  mkdir -p "$DISK_DIR"
  rm -f "$DISK_DIR/error" "$DISK_DIR/sha256" "$DISK_DIR/ended"
  disk_set bytes 0
  disk_set job "$job"
  if [ "$1" = write-disk ]; then disk_set state writing; else disk_set state erasing; fi
  read_disk_fields "$1" || { disk_fail "$field_error"; return 0; }
  if [ "$1" = write-disk ]; then write_disk & else erase_disk & fi
  disk_set pid $!
}

# --- kexec (PROTOCOL.md, "kexec") ---
# The next boot started by this one: the kernel and initrd are fetched and checked in the
# background (heartbeats go on), loaded, and once the appliance has heard `executing`, executed:
# through systemd when it is PID 1, so every unit stops in order first.
KEXEC_DIR=$WORK_DIR/kexec
kexec_file() { cat "$KEXEC_DIR/$1" 2>/dev/null; }
kexec_set() { printf '%s\n' "$2" > "$KEXEC_DIR/$1.new" && mv -f "$KEXEC_DIR/$1.new" "$KEXEC_DIR/$1"; }

# `,"kexec":"loading","kexecJob":"k1"[,"kexecError":..]` once a kexec was asked for.
kexec_json() {
  job=$(kexec_file job)
  [ -n "$job" ] || return 0
  kexec_state=$(kexec_file state)
  case $kexec_state in loaded) kexec_state=loading ;; esac # executing is said only just before it happens
  printf ',"kexec":"%s","kexecJob":"%s"' "$kexec_state" "$job"
  [ "$kexec_state" = failed ] && printf ',"kexecError":"%s"' "$(kexec_file error)"
  return 0
}

kexec_fail() { # REASON
  log "kexec $(kexec_file job) failed: $1"
  kexec_set error "$(printf '%s' "$1" | tr -cd "$ERROR_CHARS" | head -c 200)"
  kexec_set state failed
  rm -f "$KEXEC_DIR/vmlinuz" "$KEXEC_DIR/initrd"
  : > "$KEXEC_DIR/ended"
}

# fetch_checked PATH SHA256 FILE: the store's file, checked; returns 1 with the reason in field_error.
fetch_checked() {
  timeout 600 wget -q -O "$3" "$url$1" 2>"$KEXEC_DIR/wget.err" || { field_error="fetching $1 failed: $(tail -n 1 "$KEXEC_DIR/wget.err")"; return 1; }
  got=$(sha256sum "$3" | cut -d ' ' -f 1)
  [ "$got" = "$2" ] || { field_error="checksum mismatch for $1: got $got, expected $2"; return 1; }
}

# Runs in the background: fetch, check, load.
kexec_load() {
  fetch_checked "$kexec_kernel" "$kexec_kernel_sha" "$KEXEC_DIR/vmlinuz" && fetch_checked "$kexec_initrd" "$kexec_initrd_sha" "$KEXEC_DIR/initrd" || { kexec_fail "$field_error"; return; }
  # kexec_file_load first (-s: what a kernel under Secure Boot lockdown accepts, for a signed kernel), then kexec_load.
  if ! "$KEXEC_CMD" -s -l "$KEXEC_DIR/vmlinuz" --initrd="$KEXEC_DIR/initrd" --command-line="$kexec_cmdline" 2>"$KEXEC_DIR/load.err" &&
    ! "$KEXEC_CMD" -l "$KEXEC_DIR/vmlinuz" --initrd="$KEXEC_DIR/initrd" --command-line="$kexec_cmdline" 2>>"$KEXEC_DIR/load.err"; then
    kexec_fail "the kernel refused to load it: $(tail -n 1 "$KEXEC_DIR/load.err")"
    return
  fi
  # The kernel keeps its own copy: the files need not hold on to the tmpfs's memory.
  rm -f "$KEXEC_DIR/vmlinuz" "$KEXEC_DIR/initrd"
  log "loaded $(kexec_file image) for kexec"
  kexec_set state loaded
  : > "$KEXEC_DIR/ended"
}

kexec_running_pid() {
  [ "$(kexec_file state)" = loading ] || return 0
  pid=$(kexec_file pid)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start_kexec() {
  job=$(reply_value 'kexec\.job')
  [ "$job" = "$(kexec_file job)" ] && return 0 # repeated until the appliance sees the new boot
  if ! only_chars "$job" 'A-Za-z0-9._,-' || [ "${#job}" -gt 64 ]; then log "kexec with a bad kexec.job '$job' ignored"; return 0; fi
  if [ -n "$(kexec_running_pid)" ]; then log "kexec $job ignored: kexec $(kexec_file job) is still loading"; return 0; fi
  mkdir -p "$KEXEC_DIR"
  rm -f "$KEXEC_DIR/error" "$KEXEC_DIR/ended"
  kexec_set job "$job"
  kexec_set state loading
  kexec_kernel=$(reply_value 'kexec\.kernel'); kexec_kernel_sha=$(reply_value 'kexec\.kernelSha256')
  kexec_initrd=$(reply_value 'kexec\.initrd'); kexec_initrd_sha=$(reply_value 'kexec\.initrdSha256')
  kexec_cmdline=$(reply_value 'kexec\.cmdline')
  for path in "$kexec_kernel" "$kexec_initrd"; do
    case $path in
      /images/*) if ! only_chars "$path" 'A-Za-z0-9._/@+-' || case $path in *..*) true ;; *) false ;; esac; then kexec_fail "kexec path $path has characters outside its alphabet, or .."; return 0; fi ;;
      *) kexec_fail "kexec paths must start with /images/"; return 0 ;;
    esac
  done
  for sha in "$kexec_kernel_sha" "$kexec_initrd_sha"; do
    [ "${#sha}" = 64 ] && only_chars "$sha" '0-9a-f' || { kexec_fail "a kexec sha256 is not 64 hex digits"; return 0; }
  done
  # The words go to kexec as one argument; none may hold a quote or a backslash, and x86 keeps 2047 bytes.
  only_chars "$kexec_cmdline" '] A-Za-z0-9._:/[@+=~,;-' || { kexec_fail "kexec.cmdline has characters outside its alphabet"; return 0; }
  [ "${#kexec_cmdline}" -le 2047 ] || { kexec_fail "kexec.cmdline is ${#kexec_cmdline} bytes, more than the 2047 x86 keeps"; return 0; }
  kexec_set image "$(printf '%s' "$kexec_cmdline" | sed -n 's/.*shoal\.image=\([^ ]*\).*/\1/p')"
  log "kexec $job: fetching $kexec_kernel and $kexec_initrd"
  kexec_load &
  kexec_set pid $!
}

# Once loaded: say `executing`, and only once the appliance has heard it, go.
kexec_go() {
  [ "$(kexec_file state)" = loaded ] || return 0
  kexec_set state executing
  post /agent/v1/heartbeat "$(status_body "$state")"
  if [ "$status" != 200 ]; then kexec_set state loaded; log "the appliance did not hear that the kexec starts (HTTP $status); trying again"; return 0; fi
  log "kexec into $(kexec_file image)"
  sync
  if [ -n "$POWER_CMD" ]; then
    $POWER_CMD kexec
  elif [ -d "$SYSTEMD_DIR" ]; then
    # systemd stops every unit in order, this agent among them, then executes the loaded kernel.
    systemctl kexec && { log "systemd is taking the node into the new kernel"; return 0; }
  else
    "$KEXEC_CMD" -e
  fi
  kexec_fail "executing the loaded kernel did not happen (exit status $?)"
}

# Sleeps the interval, but reports at once when a disk job ends or a kexec is loaded or failed.
wait_interval() {
  waited=0
  while [ "$waited" -lt "$interval" ]; do
    [ -e "$DISK_DIR/ended" ] && { rm -f "$DISK_DIR/ended"; return; }
    [ -e "$KEXEC_DIR/ended" ] && { rm -f "$KEXEC_DIR/ended"; return; }
    if [ -z "$(disk_running_pid)" ] && [ ! -e "$DISK_DIR/ended" ] && [ -z "$(kexec_running_pid)" ] && [ ! -e "$KEXEC_DIR/ended" ]; then sleep $((interval - waited)); return; fi
    sleep 1
    waited=$((waited + 1))
  done
}

# What "drain" stops: the image's workload unit under systemd, else a placeholder process.
workload_pid=
if [ -z "$WORKLOAD_UNIT" ]; then
  sleep 2147483647 &
  workload_pid=$!
fi
state=running
trap '[ -n "$workload_pid" ] && kill "$workload_pid" 2>/dev/null; exit 0' TERM INT

stop_workload() {
  if [ -n "$WORKLOAD_UNIT" ]; then
    systemctl stop "$WORKLOAD_UNIT" || log "systemctl stop $WORKLOAD_UNIT failed (exit status $?); reporting drained anyway"
  else
    kill "$workload_pid" 2>/dev/null
    wait "$workload_pid" 2>/dev/null
  fi
}

power() { # reboot|poweroff
  log "appliance asks for $1"
  sync
  if [ -n "$POWER_CMD" ]; then
    $POWER_CMD "$1"
  elif [ -d "$SYSTEMD_DIR" ]; then
    # systemd stops every unit in order first; it queues the job and returns, and stops this agent too.
    systemctl "$1" && { log "systemd is taking the node down ($1)"; return; }
  else
    "$1" -f
  fi
  log "$1 did not happen (exit status $?); carrying on"
}

apply_reply() {
  keep_next_bootstrap
  new_interval=$(reply_value interval)
  case $new_interval in
    '' | *[!0-9]*) log "reply has no valid interval; keeping ${interval}s" ;;
    *) if [ "$new_interval" -ge 1 ] && [ "$new_interval" -le 3600 ]; then interval=$new_interval; else log "interval $new_interval out of 1..3600; keeping ${interval}s"; fi ;;
  esac
  action=$(reply_value action)
  case $action in
    none | '') ;;
    reboot | poweroff) power "$action" ;;
    drain)
      if [ "$state" = running ]; then
        log "draining: stopping the workload${WORKLOAD_UNIT:+ ($WORKLOAD_UNIT)}"
        stop_workload
        state=draining
      fi
      ;;
    write-disk | erase-disk) start_disk_job "$action" ;;
    kexec) start_kexec ;;
    *) log "unknown action '$action' ignored" ;;
  esac
}

interval=$DEFAULT_INTERVAL
said_hello=no
log "node $node, boot $boot_id, image ${image:-?} (built as ${baked_image:-?}), appliance $url"
while :; do
  if [ "$said_hello" = no ]; then
    read_config
    post /agent/v1/hello "$(hello_body)"
  else
    post /agent/v1/heartbeat "$(status_body "$state")"
  fi
  case $status in
    200) ;;
    401)
      if [ -n "$token" ]; then log "appliance rejected the boot token as invalid or stale (HTTP 401)"; else log "appliance rejected the bootstrap token as invalid, stale or spent (HTTP 401)"; fi
      back_off
      continue
      ;;
    409) log "appliance does not know this boot (HTTP 409); saying hello again"; said_hello=no; back_off; continue ;;
    0) log "no answer from $url ($(tail -n 1 "$WORK_DIR/wget.err"))"; back_off; continue ;;
    *) log "appliance answered HTTP $status"; back_off; continue ;;
  esac
  confirm_now=no
  if [ "$said_hello" = no ]; then
    log "hello accepted"
    # The first report with the new token confirms it, and from then on the bootstrap is spent
    # for good: send it now rather than an interval later.
    keep_token && confirm_now=yes
    [ -z "$token" ] && log "the appliance handed out no boot token; reports carry the bootstrap and will be refused"
  fi
  said_hello=yes
  backoff=1
  apply_reply
  if [ "$state" = draining ]; then
    # A failed report leaves the state at draining: the next heartbeat says so and this retries.
    post /agent/v1/drained "$(status_body drained)"
    if [ "$status" = 200 ]; then state=drained; log "drained"; else log "drained report failed (HTTP $status)"; fi
  fi
  kexec_go
  [ "$confirm_now" = yes ] && continue
  wait_interval
done
