#!/bin/sh
# /init of a Shoal node image, PID 1 in the initramfs: mounts the kernel filesystems, loads
# the NIC drivers listed in /etc/shoal-modules (the Debian kernel builds them as modules and
# has no in-kernel IP autoconfiguration), gets an address by DHCP and runs the agent.
# With shoal.rootfs=URL on the kernel command line it first fetches that root filesystem and
# checks it against shoal.rootfs_sha256=. A squashfs (a real OS, images/recipes/) is mounted
# read-only under an overlay whose upper layer is a tmpfs, and /init switch_roots into its
# /sbin/init (systemd), which runs the agent as a service. A gzip'd tar (compute@3) is unpacked
# into a tmpfs and has this same script as /init (and /etc/shoal-rootfs): run again there, it
# finds the kernel filesystems moved in and the modules loaded, and runs the agent.
# PID 1 must never exit (the kernel panics), hence the loops.
[ -e /proc/self ] || /bin/busybox mount -t proc proc /proc
[ -d /sys/class ] || /bin/busybox mount -t sysfs sysfs /sys
[ -e /dev/null ] || /bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "shoal-init: $*"; }
# The last value of shoal.NAME= on the kernel command line, or nothing.
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^shoal\.$1=//p" | tail -n 1; }

image=$(sed -n 's/^image=//p' /etc/shoal-image)
log "image $image, kernel $(uname -r)"
[ -e /etc/shoal-rootfs ] && log "switched root: running from the root filesystem of $(sed -n 's/^rootfs=//p' /etc/shoal-rootfs)"

failed_modules=
while read -r module; do
  name=${module##*/}
  [ -d "/sys/module/${name%.ko}" ] && continue # loaded before switch_root
  insmod "$module" || failed_modules="$failed_modules $name"
done < /etc/shoal-modules
[ -n "$failed_modules" ] && log "modules that failed to load:$failed_modules"

# The power button (a BMC's soft off) powers the node off, as a full OS would.
acpid -c /etc/acpi -l /dev/null

# Image self-test (shoal.selftest=1): proves the kernel boots this initramfs and accepts its
# modules, with no network at all, then powers off so the tester sees QEMU exit.
if [ "$(arg selftest)" = 1 ]; then
  if [ -z "$failed_modules" ]; then echo "SHOAL-SELFTEST-OK $image"; else echo "SHOAL-SELFTEST-FAIL $image:$failed_modules"; fi
  poweroff -f
fi

node=$(arg node)
[ -n "$node" ] && hostname "$node"
ip link set lo up

# udhcpc stays in the background once bound, renewing the lease; -n makes it give up
# (rather than background) when no server answers, so this loop can try again.
dhcp_any_interface() {
  bound=1
  for dev in $(ls /sys/class/net); do
    [ "$dev" = lo ] && continue
    ip link set "$dev" up
    udhcpc -i "$dev" -s /etc/udhcpc.script -V shoal-node -n -t 4 -T 2 && bound=0
  done
  return $bound
}
until dhcp_any_interface; do
  log "no DHCP lease on any interface; trying again in 5s"
  sleep 5
done

# busybox has no mountpoint applet.
is_mounted() { grep -q "^[^ ]* $1 " /proc/mounts; }

# fetch_rootfs URL [SHA256]: the root filesystem mounted at /newroot and $next_init set to what
# switch_root runs there, or 1 with the reason on the console and a short code for it in
# $rootfs_error (the next attempt tells the appliance).
fetch_rootfs() {
  # Beside the mounts made from it, on a tmpfs that systemd finds already mounted at /run and
  # keeps: the squashfs is held in RAM once, compressed, and never unpacked.
  is_mounted /run || mount -t tmpfs -o mode=0755,nosuid,nodev,size=90% shoal-run /run || { log "cannot mount a tmpfs on /run"; rootfs_error=no-tmpfs; return 1; }
  archive=/run/shoal/rootfs
  umount /newroot /run/shoal/lower /run/shoal/rw 2>/dev/null
  rm -rf /run/shoal
  mkdir -p /run/shoal
  log "fetching root filesystem $1"
  started=$(cut -d ' ' -f 1 /proc/uptime)
  timeout 300 wget -O "$archive" "$1" # busybox wget has no timeout of its own
  status=$?
  [ "$status" = 0 ] || { log "root filesystem download failed (wget exit status $status)"; rootfs_error=download-failed-$status; return 1; }
  log "fetched $(wc -c < "$archive") bytes in $(awk -v s="$started" '{ printf "%.1f", $1 - s }' /proc/uptime)s"
  if [ -n "$2" ]; then
    actual=$(sha256sum "$archive" | cut -d ' ' -f 1)
    [ "$actual" = "$2" ] || { log "root filesystem has sha256 $actual, expected $2"; rootfs_error=sha256-mismatch; return 1; }
    log "root filesystem sha256 verified"
  fi
  if [ "$(head -c 4 "$archive")" = hsqs ]; then
    mount_squashfs_root "$archive"
  else
    unpack_tar_root "$archive"
  fi
}

# A squashfs, read-only (loop), under an overlay whose upper layer is a tmpfs of its own.
mount_squashfs_root() {
  mkdir -p /run/shoal/lower /run/shoal/rw
  mount -t squashfs -o ro,loop "$1" /run/shoal/lower || { log "cannot mount the root filesystem as a squashfs"; rootfs_error=squashfs-mount-failed; return 1; }
  mount -t tmpfs -o mode=0755 shoal-overlay /run/shoal/rw && mkdir -p /run/shoal/rw/upper /run/shoal/rw/work &&
    mount -t overlay -o lowerdir=/run/shoal/lower,upperdir=/run/shoal/rw/upper,workdir=/run/shoal/rw/work shoal-root /newroot ||
    { log "cannot mount the overlay (squashfs below, tmpfs above) on /newroot"; rootfs_error=overlay-failed; return 1; }
  # A symlink (Debian's /sbin/init -> /lib/systemd/systemd) is resolved inside the new root by switch_root.
  [ -e /newroot/sbin/init ] || [ -L /newroot/sbin/init ] || { log "root filesystem has no /sbin/init"; rootfs_error=no-init; return 1; }
  log "root filesystem mounted: squashfs read-only, overlay on a tmpfs"
  next_init=/sbin/init
}

# A gzip'd tar, unpacked into a tmpfs at /newroot; it has this script as /init.
unpack_tar_root() {
  mount -t tmpfs -o mode=0755 shoal-root /newroot || { log "cannot mount a tmpfs on /newroot"; rootfs_error=no-tmpfs; return 1; }
  if ! tar -x -z -f "$1" -C /newroot || [ ! -x /newroot/init ]; then
    log "root filesystem did not unpack into a tree with /init"
    rootfs_error=unpack-failed
    return 1
  fi
  rm -f "$1"
  next_init=/init
}

rootfs=$(arg rootfs)
if [ -n "$rootfs" ] && [ ! -e /etc/shoal-rootfs ]; then
  delay=2
  url=$rootfs
  until fetch_rootfs "$url" "$(arg rootfs_sha256)"; do
    log "trying the root filesystem again in ${delay}s"
    sleep "$delay"
    delay=$((delay * 2))
    [ "$delay" -gt 60 ] && delay=60
    # The appliance sees every attempt (the boot's detail); this one says why the last failed.
    case "$rootfs" in *\?*) url="$rootfs&error=$rootfs_error" ;; *) url="$rootfs?error=$rootfs_error" ;; esac
  done
  # Processes left here would keep the old, emptied root: the new init starts its own.
  killall udhcpc acpid
  # A real OS configures its NICs itself, from a clean state (and udev renames only a link that is down).
  if [ "$next_init" = /sbin/init ]; then
    for dev in $(ls /sys/class/net); do [ "$dev" = lo ] || { ip -4 addr flush dev "$dev"; ip link set "$dev" down; }; done
  fi
  for fs in /dev /proc /sys /run; do is_mounted "$fs" && mount -o move "$fs" "/newroot$fs"; done
  log "switching root to /newroot, running $next_init"
  exec switch_root /newroot "$next_init"
fi

while :; do
  sh /usr/bin/shoal-agent
  log "agent exited with status $?; restarting it in 10s"
  sleep 10
done
