// A node's hardware as its agent reads it at boot (images/agent/PROTOCOL.md, the hello's
// `hardware`): defined once for the agent module, which validates and records it, and for every
// reader that picks by it (the API, templates, a disk install's root-device hints).
import { z } from 'zod';

/** Text read from sysfs or /proc: the agent keeps only this alphabet, so nothing needs escaping anywhere. */
const text = z.string().max(128).regex(/^[A-Za-z0-9 ._:/()@+,#-]*$/, 'only letters, digits, spaces and ._:/()@+,#-');
const count = z.number().int().nonnegative().max(1_000_000);
const bytes = z.number().int().nonnegative().max(2 ** 60);

export const DiskSchema = z.strictObject({
  /** The kernel's name for it: sda, nvme0n1, vda. */
  name: z.string().max(32).regex(/^[A-Za-z0-9._-]+$/),
  sizeBytes: bytes,
  model: text,
  serial: text,
  /** World Wide Name, when the device reports one (empty otherwise). */
  wwn: text,
  rotational: z.boolean(),
  removable: z.boolean(),
});
export type Disk = z.infer<typeof DiskSchema>;

export const NicSchema = z.strictObject({
  name: z.string().max(32).regex(/^[A-Za-z0-9._@-]+$/),
  mac: z.string().max(64).regex(/^[0-9a-f:]*$/),
  /** 0 when the link is down or the driver does not say. */
  speedMbps: count,
  driver: text,
});
export type Nic = z.infer<typeof NicSchema>;

export const HardwareSchema = z.strictObject({
  /** How the firmware booted the running kernel: `uefi` when /sys/firmware/efi exists. */
  firmware: z.enum(['bios', 'uefi']),
  system: z.strictObject({ vendor: text, product: text, serial: text, uuid: text }),
  cpu: z.strictObject({ model: text, sockets: count, cores: count, threads: count }),
  memoryBytes: bytes,
  disks: z.array(DiskSchema).max(256),
  /** Network interfaces backed by hardware (bridges, bonds and VLANs have no device link). */
  nics: z.array(NicSchema).max(256),
});
export type Hardware = z.infer<typeof HardwareSchema>;

/** The observed facet a node's hardware is recorded on: value a digest of it (so a change is news), detail the JSON. */
export const HARDWARE_FACET = 'hardware';

/** Parses a recorded detail back; undefined when there is none or it is not one (an older appliance's record). */
export function parseHardware(detail: string | undefined): Hardware | undefined {
  if (detail === undefined) return undefined;
  try {
    const parsed = HardwareSchema.safeParse(JSON.parse(detail));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

const GIB = 1024 ** 3;
const size = (n: number) => (n >= GIB ? `${(n / GIB).toFixed(1)} GiB` : `${(n / 1024 ** 2).toFixed(0)} MiB`);

/** One line per part, as `shoal node hardware` prints it. */
export function describeHardware(hardware: Hardware): string[] {
  const { firmware, system, cpu, memoryBytes, disks, nics } = hardware;
  const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const lines = [
    `system   ${[system.vendor, system.product].filter(Boolean).join(' ') || '?'}${system.serial ? `, serial ${system.serial}` : ''}, booted ${firmware.toUpperCase()}`,
    `cpu      ${cpu.model || '?'}: ${plural(cpu.sockets, 'socket')}, ${plural(cpu.cores, 'core')}, ${plural(cpu.threads, 'thread')}`,
    `memory   ${size(memoryBytes)}`,
  ];
  for (const n of nics) lines.push(`nic      ${n.name} ${n.mac}${n.speedMbps ? ` ${n.speedMbps} Mb/s` : ' (no link speed)'}${n.driver ? ` ${n.driver}` : ''}`);
  if (disks.length === 0) lines.push('disks    none');
  for (const d of disks) {
    const traits = [d.model, d.serial && `serial ${d.serial}`, d.wwn && `wwn ${d.wwn}`, d.rotational ? 'rotational' : 'solid-state', d.removable && 'removable'].filter(Boolean);
    lines.push(`disk     ${d.name} ${size(d.sizeBytes)} (${traits.join(', ')})`);
  }
  return lines;
}
