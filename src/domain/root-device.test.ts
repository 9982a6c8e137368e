import { describe, expect, it } from 'vitest';
import type { Disk } from '../contracts/hardware.js';
import { RootDeviceHintSchema, pickRootDevice } from './root-device.js';

const GIB = 1024 ** 3;
const disk = (name: string, sizeGiB: number, more: Partial<Disk> = {}): Disk => ({ name, sizeBytes: sizeGiB * GIB, model: 'QEMU HARDDISK', serial: `S-${name}`, wwn: '', rotational: true, removable: false, ...more });
const picked = (result: Disk | Error) => (result instanceof Error ? result.message : result.name);

describe('root-device hints', () => {
  const two = [disk('sda', 100), disk('sdb', 2000, { model: 'BIG DISK', rotational: false })];

  it('picks the only disk without a hint, and refuses to guess among several', () => {
    expect(picked(pickRootDevice([disk('vda', 10)], undefined, GIB))).toBe('vda');
    expect(picked(pickRootDevice(two, undefined, GIB))).toMatch(/2 disks and no root-device hint picks one: sda \(100.0 GiB.*sdb/);
    expect(picked(pickRootDevice(two, {}, GIB))).toMatch(/no root-device hint/);
  });

  it('matches every field the hint gives', () => {
    expect(picked(pickRootDevice(two, { serial: 'S-sdb' }, GIB))).toBe('sdb');
    expect(picked(pickRootDevice(two, { name: '/dev/sda' }, GIB))).toBe('sda');
    expect(picked(pickRootDevice(two, { model: 'BIG DISK' }, GIB))).toBe('sdb');
    expect(picked(pickRootDevice(two, { maxSizeGiB: 500 }, GIB))).toBe('sda');
    expect(picked(pickRootDevice(two, { rotational: false }, GIB))).toBe('sdb');
    expect(picked(pickRootDevice(two, { serial: 'S-sdb', rotational: true }, GIB))).toMatch(/^no disk matches the root-device hint serial=S-sdb rotational=true; the node has sda/);
  });

  it('refuses several matches, no match, a disk too small and no disks at all', () => {
    expect(picked(pickRootDevice(two, { minSizeGiB: 50 }, GIB))).toMatch(/^2 disks match the root-device hint minSizeGiB=50: .*narrow the hint/);
    expect(picked(pickRootDevice(two, { serial: 'nope' }, GIB))).toMatch(/^no disk matches/);
    expect(picked(pickRootDevice([disk('vda', 1)], undefined, 2 * GIB))).toMatch(/^disk too small: vda \(1.0 GiB.* has 1073741824 bytes, the image needs 2147483648/);
    expect(picked(pickRootDevice([], undefined, 1))).toBe('the node reported no disks');
  });

  it('validates a hint at the edge', () => {
    expect(RootDeviceHintSchema.safeParse({ name: 'sda; rm -rf' }).success).toBe(false);
    expect(RootDeviceHintSchema.safeParse({ minSizeGiB: 10, maxSizeGiB: 5 }).error?.issues[0]?.message).toBe('minSizeGiB is above maxSizeGiB');
    expect(RootDeviceHintSchema.safeParse({ size: 10 }).success).toBe(false);
  });
});
