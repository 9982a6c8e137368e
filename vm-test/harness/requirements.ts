// What a lab needs from the machine. Tests call skipUnless(suite, labRequirements()) so a
// machine without root, /dev/net/tun, QEMU or the firmware skips with the reason printed.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { requirements, type Requirement } from '../../test/support/environment.js';
import { firmwareFiles } from './vm.js';

export const labCommands = ['ip', 'qemu-system-x86_64', 'ipmi_sim', 'ipmitool', 'radvd', 'tcpdump'];

export const labFiles = [
  firmwareFiles.ovmfCode,
  firmwareFiles.ovmfVars,
  // QEMU's default option ROMs for the two NIC models (BIOS and UEFI images in one file each).
  join(firmwareFiles.ipxeRomDir, 'efi-virtio.rom'),
  join(firmwareFiles.ipxeRomDir, 'efi-e1000.rom'),
  // What firmware chain-loads over TFTP.
  '/usr/lib/ipxe/undionly.kpxe',
  '/usr/lib/ipxe/ipxe.efi',
  '/usr/lib/ipxe/snponly.efi',
];

export function labRequirements(): Requirement {
  const base = requirements({ root: true, tun: true, commands: labCommands });
  const missingFiles = labFiles.filter((file) => !existsSync(file));
  if (missingFiles.length === 0) return base;
  const files = `missing files ${missingFiles.join(', ')}`;
  return {
    ok: false,
    reason: base.ok ? `${files}; run scripts/install-deps.sh as root` : base.reason.replace('; run', `, ${files}; run`),
  };
}
