#!/bin/sh
# Run by acpid when the ACPI power button is pressed (a BMC's graceful power-off). PID 1 is
# /init, not busybox init, so poweroff must be -f: the reboot syscall, after a sync.
echo "shoal-init: power button pressed; powering off" >/dev/console
sync
poweroff -f
