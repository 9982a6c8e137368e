// Which of a node's disks an install writes to: a root-device hint, as Ironic's, matched against
// the disks the node's agent reported in its hardware (src/contracts/hardware.ts). Every field the
// hint gives must match; no hint picks the node's only disk. Two disks that both match are refused
// rather than guessed between, and so is a hint nothing matches: writing the wrong disk destroys data.
import { z } from 'zod';
import type { Disk } from '../contracts/hardware.js';

const GIB = 1024 ** 3;

export const RootDeviceHintSchema = z
  .strictObject({
    /** The kernel's name for the disk, with or without /dev/: `sda`, `/dev/nvme0n1`. Names can change between boots; prefer serial or wwn. */
    name: z.string().regex(/^(\/dev\/)?[a-z0-9]{1,32}$/, 'a device name is like sda, vda, nvme0n1 or /dev/sda').optional(),
    serial: z.string().min(1).max(128).optional(),
    model: z.string().min(1).max(128).optional(),
    wwn: z.string().min(1).max(128).optional(),
    minSizeGiB: z.number().positive().optional(),
    maxSizeGiB: z.number().positive().optional(),
    rotational: z.boolean().optional(),
  })
  .refine((h) => h.minSizeGiB === undefined || h.maxSizeGiB === undefined || h.minSizeGiB <= h.maxSizeGiB, 'minSizeGiB is above maxSizeGiB');
export type RootDeviceHint = z.infer<typeof RootDeviceHintSchema>;

/** A disk as one line: what an operator needs to write a better hint. */
export function describeDisk(disk: Disk): string {
  const parts = [`${(disk.sizeBytes / GIB).toFixed(1)} GiB`, disk.model && `model ${disk.model}`, disk.serial && `serial ${disk.serial}`, disk.wwn && `wwn ${disk.wwn}`];
  return `${disk.name} (${parts.filter(Boolean).join(', ')})`;
}

function describeHint(hint: RootDeviceHint): string {
  return Object.entries(hint)
    .map(([k, v]) => `${k}=${String(v)}`)
    .join(' ');
}

function matches(disk: Disk, hint: RootDeviceHint): boolean {
  if (hint.name !== undefined && disk.name !== hint.name.replace(/^\/dev\//, '')) return false;
  if (hint.serial !== undefined && disk.serial !== hint.serial) return false;
  if (hint.model !== undefined && disk.model !== hint.model) return false;
  if (hint.wwn !== undefined && disk.wwn !== hint.wwn) return false;
  if (hint.minSizeGiB !== undefined && disk.sizeBytes < hint.minSizeGiB * GIB) return false;
  if (hint.maxSizeGiB !== undefined && disk.sizeBytes > hint.maxSizeGiB * GIB) return false;
  if (hint.rotational !== undefined && disk.rotational !== hint.rotational) return false;
  return true;
}

/**
 * The disk to write `neededBytes` to, or an Error whose message says why none can be picked: no disk
 * reported, several and no hint, none or several matching, or the one matching too small.
 */
export function pickRootDevice(disks: readonly Disk[], hint: RootDeviceHint | undefined, neededBytes: number): Disk | Error {
  if (disks.length === 0) return new Error('the node reported no disks');
  const all = disks.map(describeDisk).join(', ');
  let disk: Disk;
  if (hint === undefined || Object.keys(hint).length === 0) {
    if (disks.length > 1) return new Error(`the node has ${disks.length} disks and no root-device hint picks one: ${all}; set rootDevice (serial, wwn, model, name or size) in its configuration`);
    disk = disks[0]!;
  } else {
    const matching = disks.filter((d) => matches(d, hint));
    if (matching.length === 0) return new Error(`no disk matches the root-device hint ${describeHint(hint)}; the node has ${all}`);
    if (matching.length > 1) return new Error(`${matching.length} disks match the root-device hint ${describeHint(hint)}: ${matching.map(describeDisk).join(', ')}; narrow the hint rather than let Shoal guess`);
    disk = matching[0]!;
  }
  if (disk.sizeBytes < neededBytes) return new Error(`disk too small: ${describeDisk(disk)} has ${disk.sizeBytes} bytes, the image needs ${neededBytes}`);
  return disk;
}
