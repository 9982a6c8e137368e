#!/bin/sh
# /init of a Shoal node image, PID 1 in the initramfs: mounts the kernel filesystems, loads
# the NIC drivers listed in /etc/shoal-modules (the Debian kernel builds them as modules and
# has no in-kernel IP autoconfiguration), gets an address by DHCP and runs the agent.
# PID 1 must never exit (the kernel panics), hence the loops.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

log() { echo "shoal-init: $*"; }

image=$(sed -n 's/^image=//p' /etc/shoal-image)
log "image $image, kernel $(uname -r)"

failed_modules=
while read -r module; do
  insmod "$module" || failed_modules="$failed_modules ${module##*/}"
done < /etc/shoal-modules
[ -n "$failed_modules" ] && log "modules that failed to load:$failed_modules"

# The power button (a BMC's soft off) powers the node off, as a full OS would.
acpid -c /etc/acpi -l /dev/null

# Image self-test (shoal.selftest=1): proves the kernel boots this initramfs and accepts its
# modules, with no network at all, then powers off so the tester sees QEMU exit.
if grep -qw 'shoal.selftest=1' /proc/cmdline; then
  if [ -z "$failed_modules" ]; then echo "SHOAL-SELFTEST-OK $image"; else echo "SHOAL-SELFTEST-FAIL $image:$failed_modules"; fi
  poweroff -f
fi

node=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^shoal\.node=//p' | tail -n 1)
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

while :; do
  sh /usr/bin/shoal-agent
  log "agent exited with status $?; restarting it in 10s"
  sleep 10
done
